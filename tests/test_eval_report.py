"""Results store (append, resume, truncated lines) and the report (tables, averages, best marks, missing list)."""

from __future__ import annotations

import csv
import json

import pytest

from translit_plugin.evaluation.report import block_cells, build_blocks, missing_entries, write_report
from translit_plugin.evaluation.results import ResultStore, make_key, read_records


def _rec(model, task, source, target, seed, **metrics):
    return {"model": model, "task": task, "source": source, "target": target, "seed": seed, "config": {"x": 1},
            "metrics": metrics}


def test_store_resume_and_truncated_line(tmp_path):
    path = tmp_path / "r.jsonl"
    store = ResultStore(path)
    store.add(_rec("m", "sr-b", "eng_Latn", "amh_Ethi", None, tgt2src_top10=0.5))
    store.add({**_rec("m", "sr-b", "eng_Latn", "ell_Grek", None), "status": "error", "error": "file not found"})
    assert store.is_done(make_key("m", "sr-b", "eng_Latn", "amh_Ethi", None, {"x": 1}))
    assert not store.is_done(make_key("m", "sr-b", "eng_Latn", "ell_Grek", None, {"x": 1}))  # errors are retried
    assert not store.is_done(make_key("m", "sr-b", "eng_Latn", "amh_Ethi", None, {"x": 2}))  # other config
    # an interrupted write leaves half a line without a newline
    with open(path, "a", encoding="utf-8") as f:
        f.write('{"model": "m", "task": "sr-b", "sou')
    store2 = ResultStore(path)
    assert len(store2) == 2
    store2.add(_rec("m", "sr-b", "eng_Latn", "ell_Grek", None, tgt2src_top10=0.25))
    recs = read_records(path)
    assert [r["target"] for r in recs] == ["amh_Ethi", "ell_Grek", "ell_Grek"]
    assert recs[-1]["status"] == "ok" and "versions" in recs[-1] and "torch" in recs[-1]["versions"]
    assert ResultStore(path).is_done(make_key("m", "sr-b", "eng_Latn", "ell_Grek", None, {"x": 1}))


def _grid(tmp_path):
    path = tmp_path / "res.jsonl"
    store = ResultStore(path)
    vals = {  # (model, source, target) -> per-seed macro-F1
        ("base", "eng_Latn", "amh_Ethi"): [0.40, 0.50],
        ("aligned", "eng_Latn", "amh_Ethi"): [0.60, 0.70],
        ("base", "eng_Latn", "ell_Grek"): [0.80, 0.90],
        ("aligned", "eng_Latn", "ell_Grek"): [0.70, 0.70],
        ("base", "eng_Latn", "eng_Latn"): [0.95, 0.95],
        ("aligned", "eng_Latn", "eng_Latn"): [0.97, 0.97],
        ("base", "ell_Grek", "amh_Ethi"): [0.30, 0.30],
        ("aligned", "ell_Grek", "amh_Ethi"): [0.50, 0.50],
    }
    for (m, s, t), v in vals.items():
        for seed, x in zip((42, 43), v):
            store.add(_rec(m, "taxi1500", s, t, seed, macro_f1=x, accuracy=x))
    # one failure, and one cell the aligned model lacks
    store.add({**_rec("aligned", "taxi1500", "ell_Grek", "heb_Hebr", 42), "status": "error",
               "error": "heb_Hebr_test.tsv: file not found", "metrics": {}})
    store.add(_rec("base", "taxi1500", "ell_Grek", "heb_Hebr", 42, macro_f1=0.2, accuracy=0.2))
    store.add(_rec("base", "sr-b", "eng_Latn", "amh_Ethi", None, tgt2src_top10=0.3, src2tgt_top10=0.2))
    store.add(_rec("aligned", "sr-b", "eng_Latn", "amh_Ethi", None, tgt2src_top10=0.6, src2tgt_top10=0.5))
    return path


def test_blocks_average_and_best(tmp_path):
    recs = read_records(_grid(tmp_path))
    blocks = build_blocks(recs, baseline="base")
    assert [(b.task, b.metric) for b in blocks] == [("sr-b", "tgt2src_top10"), ("taxi1500", "macro_f1")]
    taxi = blocks[1]
    assert taxi.models == ["base", "aligned"] and taxi.sources == ["eng_Latn", "ell_Grek"]
    cells, avg_targets = block_cells(taxi)
    assert cells[("amh_Ethi", "eng_Latn", "aligned")].mean == pytest.approx(0.65)
    assert cells[("amh_Ethi", "eng_Latn", "aligned")].std == pytest.approx(0.0707107, abs=1e-6)
    assert cells[("amh_Ethi", "eng_Latn", "aligned")].best and not cells[("amh_Ethi", "eng_Latn", "base")].best
    # average over the targets both models have, source excluded: eng -> {amh, ell}
    assert avg_targets["eng_Latn"] == ["amh_Ethi", "ell_Grek"]
    # per-seed averages for aligned: (0.6+0.7)/2, (0.7+0.7)/2 -> mean 0.675, std of (0.65, 0.70)
    avg = cells[("Average", "eng_Latn", "aligned")]
    assert avg.mean == pytest.approx(0.675) and avg.std == pytest.approx(0.0353553, abs=1e-6)
    assert cells[("Average", "eng_Latn", "base")].mean == pytest.approx(0.65)
    # heb_Hebr only for base -> not in the ell_Grek average
    assert avg_targets["ell_Grek"] == ["amh_Ethi"]
    cells2, targets2 = block_cells(taxi, include_self_in_average=True)
    assert targets2["eng_Latn"] == ["amh_Ethi", "ell_Grek", "eng_Latn"]


def test_missing_entries(tmp_path):
    lines = missing_entries(read_records(_grid(tmp_path)))
    assert any("ERROR heb_Hebr_test.tsv: file not found" in x for x in lines)
    assert any(x.startswith("taxi1500 aligned ell_Grek -> heb_Hebr seed=43: not run") for x in lines)


def test_write_report_files(tmp_path):
    paths = write_report([_grid(tmp_path)], tmp_path / "out", baseline="base", spread=True)
    md = paths["markdown"].read_text(encoding="utf-8")
    assert "### Taxi1500: macro-F1" in md and "| Latn (eng_Latn) base | Latn (eng_Latn) aligned |" in md
    assert "| amh_Ethi | 45.0 ± 7.1 | **65.0 ± 7.1** |" in md
    assert "## Missing" in md and "file not found" in md
    tex = paths["latex"].read_text(encoding="utf-8")
    assert r"\multicolumn{2}{c}{Grek (ell\_Grek)}" in tex and r"\textbf{67.5 $\pm$ 3.5}" in tex
    rows = list(csv.DictReader(open(paths["csv"], encoding="utf-8")))
    avg = [r for r in rows if r["task"] == "taxi1500" and r["target"] == "Average" and r["source"] == "eng_Latn"]
    assert {r["model"]: float(r["mean"]) for r in avg} == pytest.approx({"base": 0.65, "aligned": 0.675})
    for key in ("heatmap_taxi1500_macro_f1", "heatmap_sr-b_tgt2src_top10"):
        assert paths[key].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    with pytest.raises(ValueError, match="baseline model 'nope'"):
        write_report([_grid(tmp_path / "b")], tmp_path / "o2", baseline="nope", heatmaps=False)


def test_report_cli(tmp_path):
    from translit_plugin.cli import main

    res = _grid(tmp_path)
    assert main(["report", str(res), "-o", str(tmp_path / "rep"), "--baseline", "base", "--no-heatmaps",
                 "--metric", "sr-b=tgt2src_top10,src2tgt_top10"]) == 0
    md = (tmp_path / "rep" / "report.md").read_text(encoding="utf-8")
    assert "top-10 acc., source->target" in md
    assert json.loads(res.read_text().splitlines()[0])["model"] == "base"
