"""HF <-> fairseq conversion and the hub interface against HF Transformers on a tiny real checkpoint."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from conftest import MULTI_SCRIPT_SENTENCES, build_tiny_hf

from translit_plugin.conversion import ConversionError
from translit_plugin.conversion.fairseq_to_hf import export_fairseq_to_hf
from translit_plugin.conversion.hf_to_fairseq import convert_hf_to_fairseq
from translit_plugin.hub import from_pretrained


@pytest.fixture(scope="module")
def hub(tiny_model_dir):
    h = from_pretrained(tiny_model_dir)
    h.eval()
    return h


@pytest.fixture(scope="module")
def hf(tiny_hf_dir):
    from transformers import AutoModelForMaskedLM, AutoTokenizer

    model = AutoModelForMaskedLM.from_pretrained(str(tiny_hf_dir)).eval()
    return AutoTokenizer.from_pretrained(str(tiny_hf_dir)), model


def test_token_ids_equal_hf_tokenizer(hub, hf):
    tok, _ = hf
    for s in MULTI_SCRIPT_SENTENCES:
        assert hub.encode(s).tolist() == tok(s)["input_ids"], s
    assert hub.encode("").tolist() == [0, 2]
    # something outside the tiny vocabulary really maps to <unk> on both sides
    assert 3 in hub.encode("😀").tolist()


def test_hidden_states_and_logits_equal_hf_with_padding(hub, hf):
    tok, model = hf
    batch = tok(MULTI_SCRIPT_SENTENCES, padding=True, return_tensors="pt")
    ids = hub.batch_encode(MULTI_SCRIPT_SENTENCES)
    assert torch.equal(ids, batch["input_ids"])
    assert ids.eq(1).any(), "the batch must contain padding"
    with torch.no_grad():
        ref = model(**batch, output_hidden_states=True)
        logits, extra = hub.model(ids, return_all_hiddens=True)
    assert len(extra["inner_states"]) == len(ref.hidden_states) == 3
    for k, (ours, theirs) in enumerate(zip(extra["inner_states"], ref.hidden_states)):
        diff = (ours.transpose(0, 1) - theirs).abs().max().item()  # padding positions included
        assert diff < 1e-4, f"hidden state {k}: {diff}"
    assert (logits - ref.logits).abs().max().item() < 1e-4
    # masked-only LM head gives the same rows
    masked = ids.ne(1) & (torch.rand(ids.shape, generator=torch.Generator().manual_seed(0)) < 0.3)
    with torch.no_grad():
        part, _ = hub.model(ids, masked_tokens=masked)
    assert torch.allclose(part, logits[masked], atol=1e-5)


def test_embed_matches_hf_mean_pooling_and_is_order_independent(hub, hf):
    tok, model = hf
    sents = MULTI_SCRIPT_SENTENCES
    ours = hub.embed(sents, layer=1, batch_size=4)
    batch = tok(sents, padding=True, return_tensors="pt")
    with torch.no_grad():
        h = model(**batch, output_hidden_states=True).hidden_states[1]
    m = batch["attention_mask"].unsqueeze(-1).float()
    ref = (h * m).sum(1) / m.sum(1)
    assert (ours - ref).abs().max().item() < 1e-4
    one_by_one = torch.cat([hub.embed([s], layer=1) for s in sents])
    assert (ours - one_by_one).abs().max().item() < 1e-5
    with pytest.raises(ValueError, match="layer"):
        hub.embed(sents, layer=3)


def test_round_trip_hf_fairseq_hf(tiny_hf_dir, tiny_model_dir, tmp_path, hf):
    from safetensors import safe_open
    from transformers import AutoModelForMaskedLM, AutoTokenizer

    out = export_fairseq_to_hf(tiny_model_dir / "model.pt", tmp_path / "hf2")
    orig, back = str(tiny_hf_dir / "model.safetensors"), str(out / "model.safetensors")
    with safe_open(orig, "pt") as a, safe_open(back, "pt") as b:
        assert set(a.keys()) == set(b.keys())
        for k in a.keys():
            x, y = a.get_tensor(k), b.get_tensor(k)
            assert x.dtype == y.dtype and x.shape == y.shape, k
            if k == "roberta.embeddings.position_embeddings.weight":
                # folded (p + t) then unfolded: float32 rounding of the sum, at most one ulp of p + t
                ulp = torch.finfo(torch.float32).eps * (x.abs() + 1.0)
                assert ((x - y).abs() <= ulp).all(), k
            else:
                assert torch.equal(x, y), k
    tok2 = AutoTokenizer.from_pretrained(str(out))
    tok, model = hf
    for s in MULTI_SCRIPT_SENTENCES:
        assert tok2(s)["input_ids"] == tok(s)["input_ids"]
    model2 = AutoModelForMaskedLM.from_pretrained(str(out)).eval()
    batch = tok(MULTI_SCRIPT_SENTENCES, padding=True, return_tensors="pt")
    with torch.no_grad():
        a, b = model(**batch).logits, model2(**batch).logits
    assert (a - b).abs().max().item() < 1e-5
    record = json.loads((out / "translit_ppa_export.json").read_text())
    assert record["parity_max_abs_diff"] < 1e-4


def test_conversion_record_and_layout(tiny_model_dir):
    names = {p.name for p in tiny_model_dir.iterdir()}
    assert {"model.pt", "dict.txt", "sentencepiece.bpe.model", "conversion.json"} <= names
    rec = json.loads((tiny_model_dir / "conversion.json").read_text())
    assert rec["token_type_folded"] is True and len(rec["source_sha256"]) == 64
    assert rec["parity_max_abs_diff"] < 1e-4
    assert "converted from the checkpoint" in rec["lm_head"]


def test_bare_encoder_gets_tied_head(tmp_path):
    from transformers import AutoModel

    hf_dir = build_tiny_hf(tmp_path / "bare", bare=True, seed=1)
    out = convert_hf_to_fairseq(hf_dir, tmp_path / "fs", arch="translit_roberta_tiny", check_parity=False)
    rec = json.loads((out / "conversion.json").read_text())
    assert rec["lm_head"].startswith("initialised") and any(k.startswith("pooler.") for k in rec["dropped_tensors"])
    hub = from_pretrained(out).eval()
    enc = hub.model.encoder
    assert enc.lm_head.weight is enc.sentence_encoder.embed_tokens.weight
    ref = AutoModel.from_pretrained(str(hf_dir)).eval()
    ids = hub.batch_encode(["Καλημέρα", "hello there"])
    with torch.no_grad():
        theirs = ref(input_ids=ids, attention_mask=ids.ne(1).long(), output_hidden_states=True).hidden_states
        ours = hub.extract_features(ids, return_all_hiddens=True)
    for a, b in zip(ours, theirs):
        assert (a - b).abs().max().item() < 1e-4


def test_pytorch_bin_checkpoint(tiny_hf_dir, tmp_path):
    """Older HF checkpoints (Glot500 on the hub among them) ship ``pytorch_model.bin`` instead of safetensors."""
    from safetensors.torch import load_file

    src = _copy(tiny_hf_dir, tmp_path / "bin", "model.safetensors")
    torch.save(load_file(str(tiny_hf_dir / "model.safetensors")), src / "pytorch_model.bin")
    out = convert_hf_to_fairseq(src, tmp_path / "fs", arch="translit_roberta_tiny")
    rec = json.loads((out / "conversion.json").read_text())
    assert rec["source_files"] == ["pytorch_model.bin"] and rec["parity_max_abs_diff"] < 1e-4


# ------------------------------------------------------------------------------------------------------ bad input
def _copy(src: Path, dst: Path, skip: str = "") -> Path:
    shutil.copytree(src, dst, ignore=shutil.ignore_patterns(skip) if skip else None)
    return dst


@pytest.mark.parametrize(
    "skip,match",
    [("config.json", "config.json not found"), ("sentencepiece.bpe.model", "no sentencepiece model"),
     ("model.safetensors", "no model weights")],
)  # fmt: skip
def test_missing_files_clear_error_nothing_written(tiny_hf_dir, tmp_path, skip, match):
    src = _copy(tiny_hf_dir, tmp_path / "src", skip)
    with pytest.raises(ConversionError, match=match):
        convert_hf_to_fairseq(src, tmp_path / "out")
    assert not (tmp_path / "out").exists()
    assert not list(tmp_path.glob(".out.tmp-*"))


def test_non_xlmr_architecture(tiny_hf_dir, tmp_path):
    src = _copy(tiny_hf_dir, tmp_path / "src")
    cfg = json.loads((src / "config.json").read_text())
    cfg["model_type"] = "bert"
    (src / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(ConversionError, match="not an XLM-R"):
        convert_hf_to_fairseq(src, tmp_path / "out")
    cfg["model_type"] = "xlm-roberta"
    cfg["position_embedding_type"] = "relative_key"
    (src / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(ConversionError, match="position_embedding_type"):
        convert_hf_to_fairseq(src, tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_dictionary_size_disagrees_with_embeddings(tiny_hf_dir, tmp_path):
    from translit_plugin.conversion.start_model import train_sentencepiece

    src = _copy(tiny_hf_dir, tmp_path / "src")
    text = tmp_path / "t.txt"
    text.write_text("\n".join(f"line {i} with some words number {i * 7}" for i in range(300)), encoding="utf-8")
    train_sentencepiece([text], src / "sentencepiece.bpe.model", vocab_size=100)
    with pytest.raises(ConversionError, match="embedding matrix has"):
        convert_hf_to_fairseq(src, tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_existing_output_needs_force(tiny_hf_dir, tmp_path):
    from translit_plugin.core.safe_output import UnsafeOutputError

    out = tmp_path / "out"
    out.mkdir()
    (out / "keep.txt").write_text("user data")
    with pytest.raises(FileExistsError, match="--force"):
        convert_hf_to_fairseq(tiny_hf_dir, out, arch="translit_roberta_tiny", check_parity=False)
    with pytest.raises(UnsafeOutputError, match="not written by"):  # --force replaces only our own output
        convert_hf_to_fairseq(tiny_hf_dir, out, arch="translit_roberta_tiny", check_parity=False, force=True)
    assert (out / "keep.txt").exists()
    (out / "keep.txt").unlink()
    convert_hf_to_fairseq(tiny_hf_dir, out, arch="translit_roberta_tiny", check_parity=False)  # empty: no --force
    with pytest.raises(FileExistsError, match="--force"):
        convert_hf_to_fairseq(tiny_hf_dir, out, arch="translit_roberta_tiny", check_parity=False)
    convert_hf_to_fairseq(tiny_hf_dir, out, arch="translit_roberta_tiny", check_parity=False, force=True)
    assert (out / "model.pt").exists() and (out / "conversion.json").exists()


def test_cli_reports_errors(tmp_path):
    r = subprocess.run(
        [sys.executable, "-m", "translit_plugin.cli", "convert", str(tmp_path / "nope"), str(tmp_path / "o")],
        capture_output=True, text=True,
    )  # fmt: skip
    assert r.returncode == 2 and "no such directory" in r.stderr and "Traceback" not in r.stderr
    r = subprocess.run([sys.executable, "-m", "translit_plugin.cli", "--help"], capture_output=True, text=True)
    assert r.returncode == 0 and "export-hf" in r.stdout and "prepare" in r.stdout
