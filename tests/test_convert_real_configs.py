"""Conversion of real XLM-R-family configurations: LayerNorm epsilon other than 1e-5, bare encoders, unused rows.

multilingual-e5-small (the one real pretrained encoder reachable offline) has ``layer_norm_eps`` 1e-12, no LM head and
35 embedding rows beyond its tokenizer's ids.  These tests build tiny models with each property, where the property
visibly changes the outputs, and convert them with the built-in parity check on.
"""

from __future__ import annotations

import json

import pytest
import torch
from conftest import MULTI_SCRIPT_SENTENCES, build_tiny_hf

from translit_plugin.conversion import ConversionError
from translit_plugin.conversion.fairseq_to_hf import export_fairseq_to_hf
from translit_plugin.conversion.hf_source import check_hf_config
from translit_plugin.conversion.hf_to_fairseq import convert_hf_to_fairseq
from translit_plugin.hub import from_pretrained
from translit_plugin.models.translit_roberta import set_layer_norm_eps


@pytest.fixture(scope="module")
def e5_like_hf(tmp_path_factory):
    """Bare encoder, eps 1e-12, 7 unused rows, embeddings scaled so that eps 1e-5 vs 1e-12 differ a lot."""
    return build_tiny_hf(tmp_path_factory.mktemp("e5like") / "hf", bare=True, layer_norm_eps=1e-12, extra_rows=7,
                         embedding_scale=1e-4, seed=3)  # fmt: skip


@pytest.fixture(scope="module")
def e5_like_model(e5_like_hf, tmp_path_factory):
    out = tmp_path_factory.mktemp("e5like_fs") / "model"
    return convert_hf_to_fairseq(e5_like_hf, out, arch="translit_roberta_tiny", check_parity=True)


def _hf_states(hf_dir, sentences, masked_lm=False):
    from transformers import AutoModel, AutoModelForMaskedLM, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(str(hf_dir))
    model = (AutoModelForMaskedLM if masked_lm else AutoModel).from_pretrained(str(hf_dir)).eval()
    batch = tok(sentences, padding=True, return_tensors="pt")
    with torch.no_grad():
        return batch, model(**batch, output_hidden_states=True)


def test_bare_eps_1e12_converts_with_parity_on(e5_like_hf, e5_like_model):
    rec = json.loads((e5_like_model / "conversion.json").read_text())
    assert rec["carried_config"]["layer_norm_eps"] == 1e-12
    assert rec["lm_head"].startswith("initialised")
    assert rec["unused_rows_dropped"] == 7
    parity = rec["parity"]
    assert parity["max_rel_diff"] < 1e-4 and parity["tolerance_rel"] == 1e-4
    assert len(parity["hidden_states"]) == 3 and parity["logits"]["scale"] > 0  # logits were compared
    hub = from_pretrained(e5_like_model).eval()
    norms = [m for m in hub.model.modules() if isinstance(m, torch.nn.LayerNorm)]
    assert norms and all(m.eps == 1e-12 for m in norms)  # 2 per layer + embedding + LM head
    assert len(norms) == 2 * 2 + 1 + 1


def test_eps_is_what_makes_parity_hold(e5_like_hf, e5_like_model):
    """With fairseq's default 1e-5 the same weights give different hidden states: the carried eps matters here."""
    batch, ref = _hf_states(e5_like_hf, MULTI_SCRIPT_SENTENCES)
    hub = from_pretrained(e5_like_model).eval()
    ids = hub.batch_encode(MULTI_SCRIPT_SENTENCES)
    assert torch.equal(ids, batch["input_ids"])
    with torch.no_grad():
        _, extra = hub.model(ids, return_all_hiddens=True)
    for ours, theirs in zip(extra["inner_states"], ref.hidden_states):
        assert (ours.transpose(0, 1) - theirs).abs().max() <= 1e-4 * theirs.abs().max()
    set_layer_norm_eps(hub.model, 1e-5)
    with torch.no_grad():
        _, wrong = hub.model(ids, return_all_hiddens=True)
    assert (wrong["inner_states"][0].transpose(0, 1) - ref.hidden_states[0]).abs().max() > 0.1


def test_bare_logits_compared_with_the_same_fresh_head(e5_like_hf, e5_like_model):
    """The parity check gives HF our head; an HF model with *its own* random head would differ (the old failure)."""
    from translit_plugin.conversion.parity import _give_hf_our_head

    hub = from_pretrained(e5_like_model).eval()
    batch, ref = _hf_states(e5_like_hf, MULTI_SCRIPT_SENTENCES[:4], masked_lm=True)
    with torch.no_grad():
        logits, _ = hub.model(batch["input_ids"])
    v = logits.shape[-1]
    assert (logits - ref.logits[..., :v]).abs().max() > 0.1 * logits.abs().max()  # HF's own random head
    from transformers import AutoModelForMaskedLM

    hf = AutoModelForMaskedLM.from_pretrained(str(e5_like_hf)).eval()
    _give_hf_our_head(hf, hub)
    with torch.no_grad():
        theirs = hf(**batch).logits[..., :v]
    assert (logits - theirs).abs().max() <= 1e-4 * theirs.abs().max()


def test_export_round_trip_keeps_eps(e5_like_hf, e5_like_model, tmp_path):
    out = export_fairseq_to_hf(e5_like_model / "model.pt", tmp_path / "hf")
    cfg = json.loads((out / "config.json").read_text())
    assert cfg["layer_norm_eps"] == 1e-12 and cfg["hidden_act"] == "gelu"
    rec = json.loads((out / "translit_ppa_export.json").read_text())
    assert rec["parity"]["max_rel_diff"] < 1e-4
    # the exported model computes what the original bare encoder computed (hidden states, every layer)
    batch, ref = _hf_states(e5_like_hf, MULTI_SCRIPT_SENTENCES)
    batch2, back = _hf_states(out, MULTI_SCRIPT_SENTENCES)
    assert torch.equal(batch["input_ids"], batch2["input_ids"])
    for a, b in zip(ref.hidden_states, back.hidden_states):
        assert (a - b).abs().max() <= 1e-5 * a.abs().max()


def test_activation_carried_and_unknown_refused(tmp_path):
    assert check_hf_config({"model_type": "xlm-roberta", "hidden_act": "gelu_new"}, tmp_path)["activation_fn"] == (
        "gelu_accurate"
    )
    with pytest.raises(ConversionError, match="hidden_act='swish'"):
        check_hf_config({"model_type": "xlm-roberta", "hidden_act": "swish"}, tmp_path)
    with pytest.raises(ConversionError, match="position_embedding_type"):
        check_hf_config({"model_type": "xlm-roberta", "position_embedding_type": "relative_key"}, tmp_path)


def test_relu_model_converts_with_gelu_lm_head(tmp_path):
    """HF's LM head always applies GELU; a relu encoder must not change our head's activation."""
    hf_dir = build_tiny_hf(tmp_path / "hf", seed=5)
    cfg = json.loads((hf_dir / "config.json").read_text())
    cfg["hidden_act"] = "relu"
    (hf_dir / "config.json").write_text(json.dumps(cfg))
    out = convert_hf_to_fairseq(hf_dir, tmp_path / "fs", arch="translit_roberta_tiny", check_parity=True)
    assert json.loads((out / "conversion.json").read_text())["carried_config"]["activation_fn"] == "relu"
