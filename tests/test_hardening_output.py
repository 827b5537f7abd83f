"""Issue 12, data loss: commands that write refuse outputs that are, contain or lie inside an input, and ``--force``
replaces only a directory the same command wrote (its marker file and nothing else).  Run as a user would: the CLI
entry point on real files in temporary directories."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from translit_plugin.cli import main


def run_cli(capsys, *argv) -> tuple[int, str]:
    rc = main([str(a) for a in argv])
    err = capsys.readouterr().err
    return rc, err


def _listing(d: Path) -> dict[str, bytes]:
    return {str(p.relative_to(d)): p.read_bytes() for p in sorted(d.rglob("*")) if p.is_file()}


@pytest.fixture()
def run_dir(tiny_model_dir, tmp_path) -> Path:
    """A training run directory: two checkpoints + the start model's sentencepiece file."""
    run = tmp_path / "run"
    run.mkdir()
    for name in ("checkpoint_best.pt", "checkpoint_last.pt"):
        shutil.copyfile(tiny_model_dir / "model.pt", run / name)
    shutil.copyfile(tiny_model_dir / "sentencepiece.bpe.model", run / "sentencepiece.bpe.model")
    return run


def test_export_into_the_run_directory_is_refused(run_dir, capsys):
    before = _listing(run_dir)
    rc, err = run_cli(capsys, "export-hf", run_dir / "checkpoint_best.pt", run_dir, "--force", "--no-parity-check")
    assert rc == 2
    assert "contains the input" in err and "Traceback" not in err and len(err.strip().splitlines()) == 1
    assert _listing(run_dir) == before  # every checkpoint is still there, unchanged
    rc, err = run_cli(capsys, "export-hf", run_dir / "checkpoint_best.pt", run_dir / "hf", "--no-parity-check")
    assert rc == 0  # a subdirectory of the run is fine: the checkpoint file is the input, not its directory


def test_export_to_a_sibling_and_replace_it(run_dir, tmp_path, capsys):
    out = tmp_path / "hf"
    rc, _ = run_cli(capsys, "export-hf", run_dir / "checkpoint_best.pt", out, "--no-parity-check")
    assert rc == 0 and (out / "translit_ppa_export.json").is_file()
    rc, err = run_cli(capsys, "export-hf", run_dir / "checkpoint_last.pt", out, "--no-parity-check")
    assert rc == 2 and "--force" in err
    rc, _ = run_cli(capsys, "export-hf", run_dir / "checkpoint_last.pt", out, "--force", "--no-parity-check")
    assert rc == 0
    assert json.loads((out / "translit_ppa_export.json").read_text())["source_checkpoint"].endswith("last.pt")
    (out / "my_notes.txt").write_text("mine")
    rc, err = run_cli(capsys, "export-hf", run_dir / "checkpoint_best.pt", out, "--force", "--no-parity-check")
    assert rc == 2 and "my_notes.txt" in err and (out / "my_notes.txt").read_text() == "mine"
    assert not list(tmp_path.glob(".hf.*"))  # no staging leftovers


def test_convert_into_the_parent_of_its_source_is_refused(tiny_hf_dir, tmp_path, capsys):
    parent = tmp_path / "parent"
    shutil.copytree(tiny_hf_dir, parent / "hf")
    (parent / "unrelated.txt").write_text("keep me")
    before = _listing(parent)
    rc, err = run_cli(capsys, "convert", parent / "hf", parent, "--force", "--no-parity-check",
                      "--arch", "translit_roberta_tiny")
    assert rc == 2 and "contains the input" in err
    assert _listing(parent) == before
    rc, err = run_cli(capsys, "convert", parent / "hf", parent / "hf" / "fs", "--no-parity-check")
    assert rc == 2 and "inside the input directory" in err and not (parent / "hf" / "fs").exists()
    rc, err = run_cli(capsys, "convert", parent / "hf", parent / "hf", "--force", "--no-parity-check")
    assert rc == 2 and "is the input" in err and _listing(parent) == before


def test_convert_force_replaces_only_its_own_directory(tiny_hf_dir, tmp_path, capsys):
    other = tmp_path / "other"
    other.mkdir()
    (other / "data.bin").write_bytes(b"\x00" * 10)
    rc, err = run_cli(capsys, "convert", tiny_hf_dir, other, "--force", "--no-parity-check",
                      "--arch", "translit_roberta_tiny")
    assert rc == 2 and "not written by translit-ppa convert (no conversion.json)" in err
    assert (other / "data.bin").is_file()
    out = tmp_path / "fs"
    argv = ["convert", tiny_hf_dir, out, "--no-parity-check", "--arch", "translit_roberta_tiny"]
    assert run_cli(capsys, *argv)[0] == 0
    (out / "checkpoints").mkdir()  # e.g. fairseq-train --save-dir pointed into the model directory
    (out / "checkpoints" / "checkpoint1.pt").write_bytes(b"x")
    rc, err = run_cli(capsys, *argv, "--force")
    assert rc == 2 and "checkpoints" in err and (out / "checkpoints" / "checkpoint1.pt").is_file()
    shutil.rmtree(out / "checkpoints")
    assert run_cli(capsys, *argv, "--force")[0] == 0


def test_export_missing_or_truncated_checkpoint(run_dir, tmp_path, capsys):
    rc, err = run_cli(capsys, "export-hf", tmp_path / "nowhere" / "checkpoint_best.pt", tmp_path / "hf")
    assert rc == 2 and "checkpoint not found" in err and "sentencepiece" not in err
    data = (run_dir / "checkpoint_last.pt").read_bytes()
    (run_dir / "checkpoint_last.pt").write_bytes(data[: len(data) // 2])
    rc, err = run_cli(capsys, "export-hf", run_dir / "checkpoint_last.pt", tmp_path / "hf", "--no-parity-check")
    assert rc == 2 and "cannot read checkpoint" in err and "Traceback" not in err
    assert not (tmp_path / "hf").exists()


def test_errors_inside_the_staging_directory_name_the_output(tmp_path):
    from translit_plugin.conversion import ConversionError
    from translit_plugin.core.safe_output import staged_dir

    out = tmp_path / "model"
    with pytest.raises(ConversionError) as info:
        with staged_dir(out, False, [], "conversion.json") as tmp:
            raise ConversionError(f"{tmp}: our tokenization differs from the HF tokenizer of x")
    assert str(out) in str(info.value) and ".tmp-" not in str(info.value)
    assert not out.exists() and not list(tmp_path.iterdir())


def test_build_start_model_refuses_unsafe_outputs(tmp_path, capsys):
    text = tmp_path / "text"
    text.mkdir()
    (text / "a.txt").write_text("\n".join(f"sentence number {i} with words" for i in range(200)) + "\n")
    rc, err = run_cli(capsys, "build-start-model", "--text", text / "a.txt", "--output", tmp_path / "x",
                      "--vocab-size", "5000")
    assert rc == 2 and "Vocabulary size too high" in err and "Traceback" not in err
    common = ["--vocab-size", "40", "--layers", "1", "--hidden", "8", "--heads", "2", "--ffn", "8",
              "--max-positions", "16"]
    rc, err = run_cli(capsys, "build-start-model", "--text", text / "a.txt", "--output", text, "--force", *common)
    assert rc == 2 and "contains the input" in err
    hf = tmp_path / "glot500"
    hf.mkdir()
    (hf / "model.safetensors").write_bytes(b"real weights")
    rc, err = run_cli(capsys, "build-start-model", "--text", text / "a.txt", "--output", hf, "--force", *common)
    assert rc == 2 and "not written by" in err and (hf / "model.safetensors").read_bytes() == b"real weights"
    out = tmp_path / "start"
    assert run_cli(capsys, "build-start-model", "--text", text / "a.txt", "--output", out, *common)[0] == 0
    assert run_cli(capsys, "build-start-model", "--text", text / "a.txt", "--output", out, *common)[0] == 2
    assert run_cli(capsys, "build-start-model", "--text", text / "a.txt", "--output", out, "--force", *common)[0] == 0
    assert (out / "config.json").is_file() and (out / "translit_ppa_start_model.json").is_file()
    rc, err = run_cli(capsys, "build-start-model", "--text", text / "a.txt", "--output", tmp_path / "y", *common,
                      "--hidden", "9")
    assert rc == 2 and "--hidden 9 is not a multiple of --heads 2" in err
    with pytest.raises(SystemExit) as info:
        run_cli(capsys, "build-start-model", "--text", text / "a.txt", "--output", tmp_path / "y", "--layers", "0")
    assert info.value.code == 2


def test_failed_parity_check_is_exit_3_and_writes_nothing(tiny_hf_dir, tmp_path, capsys, monkeypatch):
    from translit_plugin.conversion import ConversionError, hf_to_fairseq

    def failing(hf_dir, model_dir, *a, **k):
        raise ConversionError(f"parity check failed for {model_dir}: HF and fairseq differ")

    monkeypatch.setattr(hf_to_fairseq, "parity_check", failing)
    out = tmp_path / "fs"
    rc, err = run_cli(capsys, "convert", tiny_hf_dir, out, "--arch", "translit_roberta_tiny")
    assert rc == 3 and f"parity check failed for {out}:" in err and ".tmp-" not in err
    assert not out.exists() and not list(tmp_path.glob(".fs.*"))


def test_staged_outputs_get_normal_directory_permissions(tmp_path):
    """mkdtemp makes 0700 directories; a finished output must be readable like any directory mkdir makes."""
    import os

    from translit_plugin.core.safe_output import staged_dir

    with staged_dir(tmp_path / "out", force=False, inputs=[], marker="conversion.json") as tmp:
        (tmp / "conversion.json").write_text("{}")
    umask = os.umask(0)
    os.umask(umask)
    assert (tmp_path / "out").stat().st_mode & 0o777 == 0o777 & ~umask
