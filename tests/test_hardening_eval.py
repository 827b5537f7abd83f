"""Issue 12, evaluation side and the CLI in general: one truncated checkpoint no longer aborts select-checkpoint,
results / selections / caches / reports never overwrite an input or someone else's file, errors are one line with
exit status 2 or 3, and a traceback appears only for bugs or with --debug."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys

import pytest
from eval_fixtures import parallel_dev, write_retrieval

import translit_plugin.cli.report as report_cli
from translit_plugin.cli import main

COMMON = ["--device", "cpu", "--no-progress"]


def run_cli(capsys, *argv) -> tuple[int, str, str]:
    rc = main([str(a) for a in argv])
    cap = capsys.readouterr()
    return rc, cap.out, cap.err


def error_lines(err: str) -> list[str]:
    return [line for line in err.splitlines() if line.startswith("translit-ppa ")]


@pytest.fixture()
def tatoeba(tmp_path):
    return write_retrieval(tmp_path / "tatoeba", parallel_dev(["eng_Latn", "ell_Grek", "kor_Hang"], n=30), "tatoeba")


@pytest.fixture()
def run_dir(tiny_model_dir, tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    for name in ("checkpoint_1_100.pt", "checkpoint_2_200.pt"):
        shutil.copyfile(tiny_model_dir / "model.pt", run / name)
    return run


def select(capsys, run, tatoeba, model_dir, *extra):
    return run_cli(capsys, "select-checkpoint", run, "--data-dir", tatoeba, "--model-dir", model_dir,
                   "--layer", "2", *COMMON, *extra)


def test_one_truncated_checkpoint_does_not_abort_the_selection(run_dir, tatoeba, tiny_model_dir, capsys):
    data = (run_dir / "checkpoint_2_200.pt").read_bytes()
    (run_dir / "checkpoint_2_200.pt").write_bytes(data[: len(data) // 3])  # the disk filled up while saving
    rc, out, err = select(capsys, run_dir, tatoeba, tiny_model_dir)
    assert rc == 0, err
    assert "checkpoint_2_200.pt  failed:" in out and "Traceback" not in err
    sel = json.loads((run_dir / "selected_checkpoint.json").read_text())
    assert sel["best"].endswith("checkpoint_1_100.pt") and list(sel["failed"]) == ["checkpoint_2_200.pt"]
    (run_dir / "checkpoint_1_100.pt").write_bytes(b"")  # now none can be scored
    (run_dir / "select_checkpoint_cache.json").unlink()
    rc, out, err = select(capsys, run_dir, tatoeba, tiny_model_dir)
    assert rc == 3 and len(error_lines(err)) == 1 and "none of the 2 checkpoint(s) could be scored" in err


def test_selection_outputs_never_replace_inputs(run_dir, tatoeba, tiny_model_dir, tmp_path, capsys):
    rc, _, err = select(capsys, run_dir, tatoeba, tiny_model_dir, "--output", run_dir / "checkpoint_2_200.pt")
    assert rc == 2 and "is the input" in err
    notes = tmp_path / "notes.txt"
    notes.write_text("my notes\n")
    rc, _, err = select(capsys, run_dir, tatoeba, tiny_model_dir, "--cache", notes)
    assert rc == 2 and "not a select-checkpoint score cache" in err and notes.read_text() == "my notes\n"
    rc, _, err = select(capsys, run_dir, tatoeba, tiny_model_dir, "--output", tatoeba / "sel.json")
    assert rc == 2 and "inside the input directory" in err
    rc, _, err = select(capsys, tmp_path / "nope", tatoeba, tiny_model_dir)
    assert rc == 2 and "run directory not found" in err


def test_evaluate_results_file_is_checked(tiny_model_dir, tatoeba, tmp_path, capsys):
    base = ["evaluate", "retrieval", "--dataset", "tatoeba", "--models", f"m={tiny_model_dir / 'model.pt'}",
            "--assets-dir", tiny_model_dir, "--data-dir", tatoeba, "--layer", "2", *COMMON]
    before = (tiny_model_dir / "model.pt").read_bytes()
    rc, _, err = run_cli(capsys, *base, "-o", tiny_model_dir / "model.pt")  # appending JSON to the checkpoint
    assert rc == 2 and "is the input" in err and (tiny_model_dir / "model.pt").read_bytes() == before
    other = tmp_path / "table.csv"
    other.write_text("a,b\n1,2\n")
    rc, _, err = run_cli(capsys, *base, "-o", other)
    assert rc == 2 and "not a results file of translit-ppa evaluate" in err and other.read_text() == "a,b\n1,2\n"
    out = tmp_path / "results.jsonl"
    assert run_cli(capsys, *base, "-o", out)[0] == 0
    assert run_cli(capsys, *base, "-o", out)[0] == 0  # our own file: resumed, not refused
    with pytest.raises(SystemExit) as info:
        run_cli(capsys, *base, "-o", out, "--embed-batch-size", "0")
    assert info.value.code == 2 and "argument --embed-batch-size: must be an integer >= 1" in capsys.readouterr().err


def test_evaluate_where_everything_fails(tiny_model_dir, tmp_path, capsys):
    data = tmp_path / "srb"
    data.mkdir()
    (data / "bible.ell_Grek-eng_Latn.ell_Grek").write_text("")  # empty
    (data / "bible.ell_Grek-eng_Latn.eng_Latn").write_text("")
    rc, _, err = run_cli(capsys, "evaluate", "retrieval", "--models", tiny_model_dir, "--data-dir", data,
                         "-o", tmp_path / "r.jsonl", *COMMON)
    assert rc == 2 and "nothing was evaluated" in error_lines(err)[0] and "Traceback" not in err
    rc, _, err = run_cli(capsys, "evaluate", "retrieval", "--models", tiny_model_dir, "--data-dir",
                         tmp_path / "missing", "-o", tmp_path / "r.jsonl", *COMMON)
    assert rc == 2 and error_lines(err) == [f"translit-ppa evaluate: error: --data-dir {tmp_path / 'missing'} is "
                                            "not a directory"]


def test_report_never_overwrites_inputs_or_foreign_files(tmp_path, capsys):
    results = tmp_path / "res" / "report.csv"  # an unlucky results file name
    results.parent.mkdir()
    results.write_text(json.dumps({"model": "m", "task": "sr-b", "source": "eng_Latn", "target": "ell_Grek",
                                   "seed": None, "status": "ok", "metrics": {"tgt2src_top10": 0.5}}) + "\n")
    rc, _, err = run_cli(capsys, "report", results, "-o", results.parent, "--no-heatmaps")
    assert rc == 2 and "is the input" in err
    mine = tmp_path / "paper"
    mine.mkdir()
    (mine / "report.md").write_text("# My paper draft\n")
    rc, _, err = run_cli(capsys, "report", results, "-o", mine, "--no-heatmaps")
    assert rc == 2 and "report.md" in err and (mine / "report.md").read_text() == "# My paper draft\n"
    out = tmp_path / "rep"
    assert run_cli(capsys, "report", results, "-o", out, "--no-heatmaps")[0] == 0
    assert run_cli(capsys, "report", results, "-o", out, "--no-heatmaps")[0] == 0  # rewriting our own report
    rc, _, err = run_cli(capsys, "report", tmp_path / "none.jsonl", "-o", out)
    assert rc == 2 and "results file not found" in err


def test_bugs_keep_their_traceback_and_debug_shows_every_one(monkeypatch, tmp_path, capsys):
    def broken(args):
        raise TypeError("unsupported operand")

    monkeypatch.setattr(report_cli, "run", broken)
    rc, _, err = run_cli(capsys, "report", tmp_path / "x.jsonl", "-o", tmp_path / "o")
    assert rc == 1 and "Traceback" in err and "internal error: TypeError: unsupported operand. This is a bug" in err

    def interrupted(args):
        raise KeyboardInterrupt

    monkeypatch.setattr(report_cli, "run", interrupted)
    assert run_cli(capsys, "report", tmp_path / "x.jsonl", "-o", tmp_path / "o")[0] == 130
    monkeypatch.undo()
    rc, _, err = run_cli(capsys, "--debug", "report", tmp_path / "x.jsonl", "-o", tmp_path / "o")
    assert rc == 2 and "Traceback" in err and "results file not found" in err
    rc, _, err = run_cli(capsys, "report", tmp_path / "x.jsonl", "-o", tmp_path / "o", "--debug")
    assert rc == 2 and "Traceback" in err


def test_global_options_before_the_command():
    r = subprocess.run([sys.executable, "-m", "translit_plugin.cli", "--log-level", "WARNING", "export-hf",
                        "missing.pt", "out"], capture_output=True, text=True)
    assert r.returncode == 2 and r.stderr.strip() == "translit-ppa export-hf: error: checkpoint not found: missing.pt"


def test_hf_conversion_cache_follows_content_not_mtime(tiny_hf_dir, tmp_path):
    import os

    from translit_plugin.evaluation.models import _fingerprint

    hf = tmp_path / "hf"
    shutil.copytree(tiny_hf_dir, hf)
    before = _fingerprint(hf)
    cfg = hf / "config.json"
    st = cfg.stat()
    text = cfg.read_text()
    assert '"hidden_dropout_prob": 0.1' in text
    cfg.write_text(text.replace('"hidden_dropout_prob": 0.1', '"hidden_dropout_prob": 0.2'))  # same size
    os.utime(cfg, ns=(st.st_atime_ns, st.st_mtime_ns))
    assert cfg.stat().st_size == st.st_size and _fingerprint(hf) != before
