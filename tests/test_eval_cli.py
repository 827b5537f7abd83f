"""End to end on CPU: every command on real-format fixtures, with broken inputs, interruption and resumption."""

from __future__ import annotations

import contextlib
import json
import logging
import shutil

import pytest
import torch
from eval_fixtures import (
    chromium_classification,
    parallel_dev,
    write_retrieval,
    write_sib200,
    write_tagging,
    write_taxi1500,
)

from translit_plugin.cli import main
from translit_plugin.evaluation import retrieval as retrieval_mod
from translit_plugin.evaluation.results import read_records

COMMON = ["--device", "cpu", "--no-progress"]


class Killed(BaseException):
    """Stands for the process being stopped (Ctrl-C, kill): not an ``Exception``, so nothing catches it."""


@contextlib.contextmanager
def collect_logs(level=logging.INFO):
    """Messages logged under ``translit_plugin`` (fairseq's hydra setup can replace pytest's root handlers)."""
    messages: list[str] = []
    handler = logging.Handler(level)
    handler.emit = lambda record: messages.append(record.getMessage())
    log = logging.getLogger("translit_plugin")
    old = log.level
    log.setLevel(level)
    log.addHandler(handler)
    try:
        yield messages
    finally:
        log.removeHandler(handler)
        log.setLevel(old)


def _by_target(path):
    out = {}
    for r in read_records(path):
        out.setdefault((r["model"], r["source"], r["target"], r["seed"]), []).append(r)
    return out


@pytest.fixture()
def srb_dir(tmp_path):
    par = parallel_dev(["eng_Latn", "ell_Grek", "kor_Hang", "ara_Arab", "heb_Hebr", "tur_Latn", "tha_Thai"], n=60)
    d = write_retrieval(tmp_path / "srb", par)
    (d / "bible.heb_Hebr-eng_Latn.heb_Hebr").unlink()  # missing language file
    (d / "bible.tur_Latn-eng_Latn.tur_Latn").write_text("")  # empty file
    (d / "bible.tha_Thai-eng_Latn.tha_Thai").write_text("one line only\n")  # malformed: not line-parallel
    return d


def test_retrieval_robust_and_resumable(tiny_model_dir, srb_dir, tmp_path, monkeypatch):
    out = tmp_path / "srb.jsonl"
    argv = ["evaluate", "retrieval", "--models", f"base={tiny_model_dir}", "--data-dir", str(srb_dir), "-o", str(out),
            "--layer", "2", "--sources", "eng_Latn", "ell_Grek", *COMMON]
    real = retrieval_mod.bidirectional_scores
    calls = []

    def interrupted(*a, **k):  # the process is stopped during the third pair
        calls.append(1)
        if len(calls) == 3:
            raise Killed
        return real(*a, **k)

    monkeypatch.setattr(retrieval_mod, "bidirectional_scores", interrupted)
    with pytest.raises(Killed):
        main(argv)
    first = read_records(out)
    assert len([r for r in first if r["status"] == "ok"]) == 2

    def counting(*a, **k):
        calls.append(1)
        return real(*a, **k)

    calls.clear()
    monkeypatch.setattr(retrieval_mod, "bidirectional_scores", counting)
    with collect_logs(logging.ERROR) as messages:
        assert main([*argv, "--allow-failures"]) == 0
    assert len(calls) == 3  # the 3 pairs the interrupted run had not finished, nothing else
    assert main(argv) == 3  # errors remain: the exit status says so unless failures are allowed
    assert main([*argv, "--strict"]) == 3  # the old flag is still accepted
    assert len(calls) == 3
    recs = _by_target(out)
    ok = {k for k, v in recs.items() if v[-1]["status"] == "ok"}
    assert ok == {("base", s, t, None) for s in ("eng_Latn", "ell_Grek") for t in ("kor_Hang", "ara_Arab", "ell_Grek")
                  if s != t}
    # each finished pair was computed exactly once over the interrupted run and the resumed runs
    assert all(len([r for r in recs[k] if r["status"] == "ok"]) == 1 for k in ok)
    errors = {k[2]: v[-1]["error"] for k, v in recs.items() if v[-1]["status"] == "error"}
    assert "missing retrieval file" in errors["heb_Hebr"] and "is empty" in errors["tur_Latn"]
    assert "line-parallel" in errors["tha_Thai"]
    assert any("missing retrieval file" in m and "heb_Hebr" in m for m in messages)
    r = recs[("base", "ell_Grek", "kor_Hang", None)][-1]
    assert r["details"]["english_sides"] == "identical" and r["config"]["layer"] == 2
    # report lists what is missing
    assert main(["report", str(out), "-o", str(tmp_path / "rep"), "--no-heatmaps"]) == 0
    md = (tmp_path / "rep" / "report.md").read_text(encoding="utf-8")
    assert "sr-b base eng_Latn -> heb_Hebr seed=None: ERROR" in md and "| kor_Hang |" in md



def test_pooling_mean_is_the_deprecated_name_of_mean_with_special(tiny_model_dir, tmp_path):
    """``--pooling mean`` warns and gives the same vectors under the same results key (a rerun recomputes nothing)."""
    data = write_retrieval(tmp_path / "srb", parallel_dev(["eng_Latn", "ell_Grek", "kor_Hang"], n=20))
    out = tmp_path / "srb.jsonl"
    argv = ["evaluate", "retrieval", "--models", f"base={tiny_model_dir}", "--data-dir", str(data), "--layer", "2",
            *COMMON]
    assert main([*argv, "-o", str(out)]) == 0  # default: mean_with_special
    first = read_records(out)
    with collect_logs(logging.WARNING) as messages:
        assert main([*argv, "-o", str(out), "--pooling", "mean"]) == 0
    assert any("--pooling mean is deprecated" in m for m in messages)
    assert read_records(out) == first and len(first) == 2  # same key: nothing recomputed
    assert {r["config"]["pooling"] for r in first} == {"mean"}  # the key results files have always had
    fresh = tmp_path / "again.jsonl"
    assert main([*argv, "-o", str(fresh), "--pooling", "mean"]) == 0
    assert [r["metrics"] for r in read_records(fresh)] == [r["metrics"] for r in first]

def test_classification_tasks(tiny_model_dir, tmp_path):
    texts, labels = chromium_classification(["eng_Latn", "tur_Latn", "ell_Grek", "heb_Hebr"])
    taxi = write_taxi1500(tmp_path / "taxi", texts, labels)
    # a test label the source never saw; a malformed line elsewhere
    p = taxi / "heb_Hebr_test.tsv"
    p.write_text(p.read_text(encoding="utf-8").replace(labels[-1], "UnknownTopic", 1), encoding="utf-8")
    p = taxi / "ell_Grek_test.tsv"
    p.write_text(p.read_text(encoding="utf-8") + "broken line without tabs\n", encoding="utf-8")
    out = tmp_path / "taxi.jsonl"
    argv = ["evaluate", "taxi1500", "--models", f"m={tiny_model_dir}", "--data-dir", str(taxi), "-o", str(out),
            "--seeds", "1", "2", "--max-epochs", "2", "--lr", "5e-4", "--max-train-examples", "100",
            "--targets", "eng_Latn", "tur_Latn", "ell_Grek", "heb_Hebr", "amh_Ethi", *COMMON]
    assert main(argv) == 3  # two targets fail (their error records below): the exit status says so
    recs = _by_target(out)
    assert len(recs) == 2 * 5
    for seed in (1, 2):
        for t in ("eng_Latn", "tur_Latn", "ell_Grek"):
            r = recs[("m", "eng_Latn", t, seed)][-1]
            assert r["status"] == "ok" and 0.0 <= r["metrics"]["macro_f1"] <= 1.0
            assert r["details"]["best_epoch"] in (1, 2) and r["details"]["n_train"] == 100
        assert "UnknownTopic" in recs[("m", "eng_Latn", "heb_Hebr", seed)][-1]["error"]
        assert "file not found" in recs[("m", "eng_Latn", "amh_Ethi", seed)][-1]["error"]
    assert any("malformed" in w for w in recs[("m", "eng_Latn", "ell_Grek", 1)][-1]["details"]["warnings"])
    assert recs[("m", "eng_Latn", "tur_Latn", 1)][-1]["config"]["finetune"]["lr"] == 5e-4
    n_lines = len(out.read_text().splitlines())
    assert main([*argv, "--allow-failures"]) == 0  # resume: only the failed ones are retried, none twice
    assert len(out.read_text().splitlines()) == n_lines + 4

    sib = write_sib200(tmp_path / "sib", {k: texts[k] for k in ("eng_Latn", "tur_Latn")}, labels)
    out2 = tmp_path / "sib.jsonl"
    assert main(["evaluate", "sib200", "--models", str(tiny_model_dir), "--data-dir", str(sib), "-o", str(out2),
                 "--seeds", "7", "--max-epochs", "1", "--max-train-examples", "64", *COMMON]) == 0
    assert {r["status"] for r in read_records(out2)} == {"ok"} and len(read_records(out2)) == 2


@pytest.mark.parametrize("task", ["ner", "pos"])
def test_tagging_tasks(tiny_model_dir, tmp_path, task):
    d = write_tagging(tmp_path / task, task)
    (d / "test-emp_Latn.tsv").write_text("\n", encoding="utf-8")  # empty
    (d / "test-bad_Latn.tsv").write_text("kelime\tNOTALABEL\n", encoding="utf-8")  # label not in labels.txt
    out = tmp_path / f"{task}.jsonl"
    assert main(["evaluate", task, "--models", f"m={tiny_model_dir}", "--data-dir", str(d), "-o", str(out),
                 "--sources", "tur_Latn", "--seeds", "11", "--max-epochs", "2", "--lr", "1e-3", "--max-length", "24",
                 "--batch-size", "8", *COMMON]) == 3  # two broken targets: error records, exit status 3
    recs = {r["target"]: r for r in read_records(out)}
    assert set(recs) == {"tur_Latn", "trx_Latn", "emp_Latn", "bad_Latn"}
    for t in ("tur_Latn", "trx_Latn"):
        m = recs[t]["metrics"]
        assert recs[t]["status"] == "ok" and 0.0 <= m["seqeval_f1"] <= 1.0 and 0.0 <= m["token_accuracy"] <= 1.0
        assert ("token_macro_f1" in m) == (task == "pos")
        assert recs[t]["details"]["n_test"] == 40
    assert "no sentences" in recs["emp_Latn"]["error"]
    assert "test-bad_Latn.tsv:1: label 'NOTALABEL' is not in labels.txt" in recs["bad_Latn"]["error"]


def test_select_checkpoint(tiny_model_dir, tmp_path):
    par = parallel_dev(["eng_Latn", "ell_Grek", "kor_Hang"], n=80)
    tat = write_retrieval(tmp_path / "tatoeba", par, prefix="tatoeba")
    run = tmp_path / "run"
    run.mkdir()
    state = torch.load(tiny_model_dir / "model.pt", map_location="cpu", weights_only=False)
    shutil.copyfile(tiny_model_dir / "model.pt", run / "checkpoint_1_100.pt")
    g = torch.Generator().manual_seed(0)
    for k, v in state["model"].items():  # a "later" checkpoint whose weights are destroyed by noise
        if v.is_floating_point() and "layers" in k:
            state["model"][k] = v + 5.0 * torch.randn(v.shape, generator=g)
    torch.save(state, run / "checkpoint_2_200.pt")
    argv = ["select-checkpoint", str(run), "--data-dir", str(tat), "--model-dir", str(tiny_model_dir),
            "--layer", "2", *COMMON]
    with collect_logs() as messages:
        assert main(argv) == 0
    assert sum(m.startswith("scoring") for m in messages) == 2
    sel = json.loads((run / "selected_checkpoint.json").read_text())
    assert set(sel["checkpoints"]) == {"checkpoint_1_100.pt", "checkpoint_2_200.pt"}
    s1, s2 = (sel["checkpoints"][n]["score"] for n in ("checkpoint_1_100.pt", "checkpoint_2_200.pt"))
    assert sel["best"].endswith("checkpoint_1_100.pt" if s1 >= s2 else "checkpoint_2_200.pt")
    assert s1 != s2 and set(sel["checkpoints"]["checkpoint_1_100.pt"]["per_language"]) == {"ell_Grek", "kor_Hang"}
    with collect_logs() as messages:
        assert main(argv) == 0  # second run: both from the cache
    assert sum("cached score" in m for m in messages) == 2
    assert not any(m.startswith("scoring") for m in messages)


def test_two_models_full_report(tiny_model_dir, tmp_path):
    """Baseline directory vs a training checkpoint (loaded with --assets-dir), several tasks, one report."""
    run = tmp_path / "run"
    run.mkdir()
    state = torch.load(tiny_model_dir / "model.pt", map_location="cpu", weights_only=False)
    g = torch.Generator().manual_seed(1)
    for k, v in state["model"].items():
        if v.is_floating_point() and "layers.1." in k:
            state["model"][k] = v + 0.05 * torch.randn(v.shape, generator=g)
    torch.save(state, run / "checkpoint_best.pt")
    models = ["--models", f"baseline={tiny_model_dir}", f"aligned={run / 'checkpoint_best.pt'}",
              "--assets-dir", str(tiny_model_dir)]
    par = parallel_dev(["eng_Latn", "ell_Grek", "kor_Hang", "heb_Hebr"], n=60)
    srb = write_retrieval(tmp_path / "srb", par)
    texts, labels = chromium_classification(["eng_Latn", "ell_Grek", "heb_Hebr"])
    taxi = write_taxi1500(tmp_path / "taxi", texts, labels)
    out = tmp_path / "all.jsonl"
    assert main(["evaluate", "retrieval", *models, "--data-dir", str(srb), "-o", str(out), "--layer", "2",
                 "--sources", "eng_Latn", "heb_Hebr", *COMMON]) == 0
    assert main(["evaluate", "taxi1500", *models, "--data-dir", str(taxi), "-o", str(out), "--seeds", "1", "2",
                 "--max-epochs", "2", "--lr", "1e-3", "--max-train-examples", "96", "--sources", "eng_Latn",
                 "ell_Grek", *COMMON]) == 0
    recs = read_records(out)
    assert {r["status"] for r in recs} == {"ok"}
    top10 = {(r["model"], r["source"], r["target"]): r["metrics"]["tgt2src_top10"] for r in recs if r["task"] == "sr-b"}
    assert any(top10[("aligned", s, t)] != top10[("baseline", s, t)] for _, s, t in top10)  # the models differ
    rep = tmp_path / "report"
    assert main(["report", str(out), "-o", str(rep), "--baseline", "baseline", "--spread"]) == 0
    md = (rep / "report.md").read_text(encoding="utf-8")
    assert "| target | Latn (eng_Latn) baseline | Latn (eng_Latn) aligned | Hebr (heb_Hebr) baseline |" in md
    assert "### Taxi1500: macro-F1" in md and "| **Average** |" in md and "Nothing is missing." in md
    assert " ± " in md  # two seeds: spread shown
    for name in ("heatmap_sr-b_tgt2src_top10.png", "heatmap_taxi1500_macro_f1.png", "report.tex", "report.csv"):
        assert (rep / name).stat().st_size > 0
