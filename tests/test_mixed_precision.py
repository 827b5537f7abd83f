"""Mixed precision on a model with large activations, through the real CLI (CPU).

multilingual-e5-small has FFN outputs of several hundred (layers 0, 4, 5: up to ~350) and LayerNorm eps 1e-12.  A
tiny bare encoder with those two properties (layer-0 FFN output weights scaled x5000, eps 1e-12) is converted and
post-trained for a few updates with all four terms plus the anchored term, in float32, with ``--autocast bf16``
(forward in bfloat16, float32 weights/gradients/optimizer, no loss scaling) and with fairseq's own ``--fp16`` (the
model cast to float16 whole, float32 master weights, dynamic loss scaling from 128; on CPU it needs
``--fp16-no-flatten-grads``, since the flattened copy asks for a CUDA device).  Checked: every update is applied (six
logged updates, no "gradient overflow", the loss scale never falls, finite losses), every logged loss term follows the
float32 run within 3% (bfloat16: 8 bits of mantissa) or 1% (float16: 11 bits), and neither run equals float32 bit for
bit.  fairseq 0.12's ``--bf16`` means TPU, hence the plugin's ``--autocast``.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from conftest import build_tiny_hf
from test_train_cli import parse, run, train_cmd
from translit_helpers import build_data_bin

TERMS = ("loss_mlm_orig", "loss_mlm_latn", "loss_seq", "loss_tlm", "loss_anchor")


@pytest.fixture(scope="module")
def loud_model(tmp_path_factory):
    """Bare, eps 1e-12, layer 0's FFN output scaled so activations reach the hundreds, like e5-small's."""
    from safetensors.torch import load_file, save_file

    from translit_plugin.conversion.hf_to_fairseq import convert_hf_to_fairseq

    hf = build_tiny_hf(tmp_path_factory.mktemp("loud") / "hf", bare=True, layer_norm_eps=1e-12, seed=9)
    path = hf / "model.safetensors"
    state = load_file(str(path))
    key = next(k for k in state if k.endswith("layer.0.output.dense.weight"))
    state[key] = state[key] * 5000.0
    save_file(state, str(path), metadata={"format": "pt"})
    out = convert_hf_to_fairseq(hf, tmp_path_factory.mktemp("loud_fs") / "model", arch="translit_roberta_tiny")
    rec = json.loads((out / "conversion.json").read_text())
    assert rec["carried_config"]["layer_norm_eps"] == 1e-12
    return out


@pytest.fixture(scope="module")
def loud_data(loud_model, tmp_path_factory):
    return build_data_bin(tmp_path_factory.mktemp("loud_data") / "data", loud_model / "sentencepiece.bpe.model",
                          train_per_lang=16, valid_per_lang=4)  # fmt: skip


def _activation_scale(model_dir: Path, data: Path) -> float:
    from translit_plugin.hub import from_pretrained

    hub = from_pretrained(model_dir).eval()
    ids = hub.batch_encode(["Kedi paspasın üzerinde oturuyor.", "Η γάτα κάθεται στο χαλί.", "猫坐在垫子上。"])
    seen = []
    handle = hub.model.encoder.sentence_encoder.layers[0].fc2.register_forward_hook(
        lambda m, i, o: seen.append(float(o.abs().max()))
    )
    with torch.no_grad():
        hub.model(ids, features_only=True)
    handle.remove()
    return seen[0]


def _losses(log: str) -> list[dict]:
    return [{t: float(r[t]) for t in TERMS} for r in parse(log, "train_inner")]


def test_bf16_and_fp16_follow_fp32_without_skipped_updates(loud_model, loud_data, tmp_path):
    assert _activation_scale(loud_model, loud_data) > 100, "the test model must have e5-like large activations"
    updates = 6
    extra = ("--anchor-weight", "1", "--anchor-layer", "2", "--dropout", "0", "--attention-dropout", "0",
             "--layer-norm-eps", "1e-12", "--disable-validation")  # fmt: skip
    logs = {}
    # fp16 is fairseq's own --fp16 (model cast to float16 whole, float32 master weights, dynamic loss scaling);
    # fairseq's flattened float32 copy asks for a CUDA device, so on CPU the grads stay per parameter
    precisions = (("fp32", ()), ("bf16", ("--autocast", "bf16")), ("fp16", ("--fp16", "--fp16-no-flatten-grads")))
    for name, flags in precisions:
        logs[name] = run(train_cmd(loud_data, loud_model, tmp_path / name, updates, *extra, *flags), timeout=600)
    ref = _losses(logs["fp32"])
    assert len(ref) == updates
    for name, rtol in (("bf16", 0.03), ("fp16", 0.01)):
        assert "gradient overflow" not in logs[name].lower(), f"{name}: an update was skipped"
        got = _losses(logs[name])
        assert len(got) == updates, f"{name}: {len(got)} logged updates of {updates}"
        for step, (a, b) in enumerate(zip(ref, got), start=1):
            for term in TERMS:
                assert abs(a[term] - b[term]) <= rtol * max(abs(a[term]), 1.0), (name, step, term, a[term], b[term])
    for name in ("bf16", "fp16"):
        differs = max(abs(a[t] - b[t]) for a, b in zip(ref, _losses(logs[name])) for t in TERMS)
        assert differs > 0, f"{name} losses equal fp32's bit for bit: half precision did not apply"
    assert all(float(r["loss_scale"]) >= 128 for r in parse(logs["fp16"], "train_inner")), "loss scale fell"
    assert "gradient overflow" not in logs["bf16"].lower() and "nan" not in json.dumps(_losses(logs["bf16"]))
