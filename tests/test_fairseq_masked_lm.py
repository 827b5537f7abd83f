"""End to end through the real ``fairseq-train`` CLI with ``--user-dir translit_plugin``: registration, starting from a
converted model (``--restore-file``), and resuming from ``checkpoint_last.pt`` on torch >= 2.6 with weights-only
loading left on (the plugin's allow-list, no environment variable)."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

from conftest import DEMO_TRAIN, REPO

BIN = Path(sys.executable).parent


def _binarize(model_dir: Path, out: Path) -> Path:
    from translit_plugin.vocab import load_spm

    sp = load_spm(model_dir / "sentencepiece.bpe.model")
    lines = (DEMO_TRAIN / "ell_Grek.txt").read_text(encoding="utf-8").splitlines()[:240]
    out.mkdir(parents=True)
    for split, part in (("train", lines[:200]), ("valid", lines[200:])):
        (out / f"{split}.spm").write_text("\n".join(" ".join(sp.EncodeAsPieces(x)) for x in part) + "\n")
    subprocess.run(
        [BIN / "fairseq-preprocess", "--only-source", "--srcdict", model_dir / "dict.txt", "--trainpref",
         out / "train.spm", "--validpref", out / "valid.spm", "--destdir", out / "bin", "--workers", "1"],
        check=True, capture_output=True,
    )  # fmt: skip
    return out / "bin"


def _train(data: Path, save_dir: Path, max_update: int, restore: Path | None = None) -> str:
    env = {k: v for k, v in os.environ.items() if k != "TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD"}
    cmd = [
        BIN / "fairseq-train", data, "--user-dir", REPO / "translit_plugin", "--task", "masked_lm",
        "--criterion", "masked_lm", "--arch", "translit_roberta_tiny", "--tokens-per-sample", "128",
        "--optimizer", "adam", "--lr", "1e-4", "--batch-size", "8", "--max-update", str(max_update),
        "--save-interval-updates", "3", "--no-epoch-checkpoints", "--save-dir", save_dir, "--cpu", "--seed", "1",
        "--log-format", "json", "--log-interval", "1", "--num-workers", "0", "--disable-validation",
    ]  # fmt: skip
    if restore is not None:
        cmd += ["--restore-file", restore, "--reset-optimizer", "--reset-dataloader", "--reset-meters"]
    r = subprocess.run([str(c) for c in cmd], capture_output=True, text=True, env=env, timeout=300)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    return r.stdout + r.stderr


def _updates(log: str) -> list[int]:
    return [int(json.loads(m)["num_updates"]) for m in re.findall(r"\| train_inner \| (\{.*?\})", log)]


def test_train_from_converted_model_and_resume(tiny_model_dir, tmp_path):
    data = _binarize(tiny_model_dir, tmp_path / "data")
    save = tmp_path / "ckpt"
    log = _train(data, save, 4, restore=tiny_model_dir / "model.pt")
    assert "TranslitRobertaModel" in log, log[-3000:]
    assert re.search(r"Loaded checkpoint .*model\.pt", log), log[-3000:]
    assert (save / "checkpoint_last.pt").exists()
    assert max(_updates(log)) == 4
    log2 = _train(data, save, 7)  # resumes from checkpoint_last.pt
    assert re.search(r"Loaded checkpoint .*checkpoint_last\.pt \(epoch \d+ @ 4 updates\)", log2), log2[-2000:]
    ups = _updates(log2)
    assert min(ups) == 5 and max(ups) == 7
    # the trained checkpoint loads through the hub with the start model's files
    from translit_plugin.hub import from_pretrained

    hub = from_pretrained(save, "checkpoint_last.pt", sentencepiece_model=tiny_model_dir / "sentencepiece.bpe.model",
                          dictionary=tiny_model_dir / "dict.txt")  # fmt: skip
    assert hub.embed(["Καλημέρα"], layer=2).shape == (1, 64)
