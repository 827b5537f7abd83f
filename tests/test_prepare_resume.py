"""Kill ``translit-ppa prepare`` mid-transliteration (SIGKILL), rerun it: it resumes, and the data-bin is
byte-identical to an uninterrupted run.

Runs the real CLI in subprocesses (one worker, small chunks so the kill lands between chunk writes).  Deterministic
except for *when* the kill lands, which the test checks: at least one chunk finished and at least one not.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from prepare_helpers import build_model_dir, demo_lines

pytest.importorskip("uroman")
pytest.importorskip("fairseq")

LANGS = ("ell_Grek", "kor_Hang", "heb_Hebr")


def _cmd(inp: Path, model_dir: Path, out: Path) -> list[str]:
    return [sys.executable, "-m", "translit_plugin.cli", "prepare", "--input", str(inp), "--model-dir", str(model_dir),
            "--output", str(out), "--workers", "1", "--chunk-size", "25", "--valid-size", "20",
            "--valid-max-fraction", "0.1", "--no-progress", "--verify-translit", "5"]


def _files(d: Path) -> dict[str, bytes]:
    return {str(p.relative_to(d)): p.read_bytes() for p in sorted(d.rglob("*")) if p.is_file()}


def test_kill_and_resume_is_byte_identical(tmp_path, tmp_path_factory):
    model_dir = build_model_dir(tmp_path_factory.getbasetemp() / "prepare_model")
    inp = tmp_path / "input"
    inp.mkdir()
    for lang in LANGS:
        (inp / f"{lang}.txt").write_text("\n".join(demo_lines(lang, 400)) + "\n", encoding="utf-8")
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])}

    reference = tmp_path / "reference"
    subprocess.run(_cmd(inp, model_dir, reference), check=True, env=env, capture_output=True)

    out = tmp_path / "interrupted"
    proc = subprocess.Popen(_cmd(inp, model_dir, out), env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)
    translit = out / "work" / "translit"
    deadline = time.time() + 120
    while time.time() < deadline and proc.poll() is None:
        if len(list(translit.rglob("*.tsv.done.json"))) >= 3:
            break
        time.sleep(0.05)
    assert proc.poll() is None, "prepare finished before it could be killed; make the input larger"
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    done = len(list(translit.rglob("*.tsv.done.json")))
    total = len(list((out / "work" / "sample").rglob("*.txt")))
    assert 3 <= done < total, (done, total)
    assert not (out / "data-bin" / "orig" / "train.bin").exists()

    result = subprocess.run(_cmd(inp, model_dir, out), env=env, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr[-3000:]
    resumed = re.search(r"(\d+) up to date, (\d+) to do", result.stderr)
    assert resumed and int(resumed.group(1)) >= done - 1 and int(resumed.group(2)) >= 1, result.stderr[-3000:]
    assert _files(out / "data-bin") == _files(reference / "data-bin")
