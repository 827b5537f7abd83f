"""Evaluation results in the MTEB results format (``translit-ppa report --format mteb``).

The results are made the way ``translit-ppa evaluate`` makes them: the retrieval grid (``run_retrieval``) over files
in the Tatoeba layout (real parallel text, the shipped dev set) with a fixed embedder, written to a results file by
the ``ResultStore``; fine-tuned results as ``run_finetune`` records them.  MTEB's bitext-mining metrics are checked
against scikit-learn's weighted precision / recall / F1 (what MTEB calls) on nearest neighbours found by brute force.
"""

from __future__ import annotations

import json
import re
import zlib
from pathlib import Path

import numpy as np
import pytest
import torch
from eval_fixtures import parallel_dev, write_retrieval
from sklearn.metrics import accuracy_score, f1_score, precision_score, recall_score

from translit_plugin.cli import main
from translit_plugin.core.safe_output import UnsafeOutputError
from translit_plugin.evaluation.mteb_results import (
    MTEB_TATOEBA_LANGUAGES,
    build_mteb_results,
    write_mteb_results,
)
from translit_plugin.evaluation.results import ResultStore, read_records
from translit_plugin.evaluation.retrieval import mining_metrics, mining_scores, nearest_neighbours
from translit_plugin.evaluation.runner import EvalOptions, run_retrieval

LANGS = ["eng_Latn", "ell_Grek", "amh_Ethi", "fas_Arab", "zho_Hans"]  # MTEB's Tatoeba has ell, amh; not fas, zho
N = 60
FINGERPRINTS = {"model": "0123456789abcdef", "data": "fedcba9876543210"}
DIM, NOISE = 16, 1.1


def embed(sentences: list[str], tag: str) -> torch.Tensor:
    """Row i = meaning i (shared by every language) + noise of the language: translations are near, not equal."""
    lang = tag.split(":")[1]
    base = torch.randn(len(sentences), DIM, generator=torch.Generator().manual_seed(0))
    noise = torch.randn(len(sentences), DIM, generator=torch.Generator().manual_seed(zlib.crc32(lang.encode())))
    return base + NOISE * noise


def brute_nn(queries: np.ndarray, candidates: np.ndarray) -> np.ndarray:
    q = queries / np.linalg.norm(queries, axis=1, keepdims=True)
    c = candidates / np.linalg.norm(candidates, axis=1, keepdims=True)
    return np.array([int(np.argmax([float(q[i] @ c[j]) for j in range(len(c))])) for i in range(len(q))])


def sklearn_mining(gold, pred) -> dict[str, float]:
    """MTEB's BitextMining metrics as mteb computes them (scikit-learn, weighted, zero_division=0)."""
    kw = {"zero_division": 0, "average": "weighted"}
    return {"precision": precision_score(gold, pred, **kw), "recall": recall_score(gold, pred, **kw),
            "f1": f1_score(gold, pred, **kw), "accuracy": accuracy_score(gold, pred)}  # fmt: skip


# ---------------------------------------------------------------------------------------------------------------
# the metrics


def test_mining_metrics_by_hand():
    # queries 0 and 1 both find candidate 0 (a hub), query 2 finds its own
    got = mining_metrics(torch.tensor([0, 1, 2]), torch.tensor([0, 0, 2]))
    assert got == pytest.approx({"accuracy": 2 / 3, "recall": 2 / 3, "precision": (1 / 2 + 0 + 1) / 3,
                                 "f1": (2 / 3 + 0 + 1) / 3})  # fmt: skip
    assert list(got) == ["precision", "recall", "f1", "accuracy"]
    with pytest.raises(ValueError):
        mining_metrics(torch.tensor([0, 1]), torch.tensor([0]))


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_mining_metrics_equal_sklearn_weighted(seed):
    rng = np.random.default_rng(seed)
    n = 50
    gold = np.arange(n) if seed < 2 else rng.integers(0, 20, n)  # seed 2: repeated gold classes too
    pred = np.where(rng.random(n) < 0.5, gold, rng.integers(0, 8, n))  # half right, the rest piles on a few hubs
    got = mining_metrics(torch.from_numpy(gold), torch.from_numpy(pred))
    assert got == pytest.approx(sklearn_mining(gold, pred), abs=1e-12)
    assert got["f1"] < got["accuracy"] or seed == 2  # hubs cost precision, so F1 is below top-1 accuracy


def test_mining_scores_find_the_nearest_neighbour_by_cosine():
    g = torch.Generator().manual_seed(3)
    src = torch.randn(40, 8, generator=g)
    tgt = src + 1.2 * torch.randn(40, 8, generator=g)
    pred = brute_nn(tgt.numpy(), src.numpy())
    assert nearest_neighbours(tgt, src * 5.0).tolist() == pred.tolist()  # cosine: the scale does not matter
    assert nearest_neighbours(tgt, src, chunk_size=7).tolist() == pred.tolist()
    assert mining_scores(tgt, src) == pytest.approx(sklearn_mining(np.arange(40), pred))


def test_the_tatoeba_language_table():
    assert len(MTEB_TATOEBA_LANGUAGES) == 112
    assert all(re.fullmatch(r"[a-z]{3}-[A-Z][a-z]{3}", x) for x in MTEB_TATOEBA_LANGUAGES)
    assert {"amh-Ethi", "ell-Grek", "heb-Hebr", "cmn-Hans", "pes-Arab"} <= MTEB_TATOEBA_LANGUAGES
    assert not {"fas-Arab", "zho-Hans", "amh-Latn", "eng-Latn"} & MTEB_TATOEBA_LANGUAGES


# ---------------------------------------------------------------------------------------------------------------
# results made as the evaluation makes them


def make_results(tmp_path: Path) -> Path:
    """A results file with Tatoeba (English and Greek sources) and SIB-200 (two seeds) results of model ``base``."""
    parallel = parallel_dev(LANGS, n=N)
    data = write_retrieval(tmp_path / "tatoeba", parallel, prefix="tatoeba")
    path = tmp_path / "results.jsonl"
    store = ResultStore(path)
    opts = EvalOptions(task="tatoeba", data_dir=data, sources=["eng_Latn", "ell_Grek"], progress=False)
    summary = run_retrieval("base", "/models/base", embed, opts, store, fingerprints=FINGERPRINTS)
    assert summary.ok == 4 + 4 - 1 and not summary.errors
    # a fine-tuned task as run_finetune records it: one record per (source, target, seed)
    config = {"model_path": "/models/base", "data_dir": "/data/sib200", "max_eval_examples": None,
              "content": FINGERPRINTS, "finetune": {"lr": 1e-5}, "max_train_examples": None}  # fmt: skip
    for seed, scores in ((42, {"amh_Ethi": 0.5, "ell_Grek": 0.7}), (43, {"amh_Ethi": 0.6, "ell_Grek": 0.8})):
        for target, f1 in scores.items():
            details = {"seconds": 1.0, "train_seconds": 10.0}
            store.add({"model": "base", "task": "sib200", "source": "eng_Latn", "target": target, "seed": seed,
                       "config": config, "model_path": "/models/base", "details": details,
                       "metrics": {"macro_f1": f1, "accuracy": f1 + 0.1}})  # fmt: skip
    return path


@pytest.fixture
def results(tmp_path) -> Path:
    return make_results(tmp_path)


def expected_mining(target: str) -> dict[str, float]:
    """The target's sentences mined among the English ones, computed here without the package's retrieval code."""
    q = embed(["x"] * N, f"{target}:{target}").numpy()
    c = embed(["x"] * N, f"{target}:eng_Latn").numpy()
    return sklearn_mining(np.arange(N), brute_nn(q, c))


def top10(queries: np.ndarray, candidates: np.ndarray) -> float:
    q = queries / np.linalg.norm(queries, axis=1, keepdims=True)
    c = candidates / np.linalg.norm(candidates, axis=1, keepdims=True)
    ranks = np.argsort(-(q @ c.T), axis=1)[:, :10]
    return float(np.mean([i in ranks[i] for i in range(len(q))]))


def load(out: Path) -> dict[str, dict]:
    return {str(p.relative_to(out)): json.loads(p.read_text(encoding="utf-8")) for p in sorted(out.rglob("*.json"))}


def test_tatoeba_is_written_as_mteb_tatoeba_with_its_metrics(results, tmp_path):
    out = tmp_path / "mteb"
    written = write_mteb_results(results, out)
    files = load(out)
    folder = "translit-ppa__base/0123456789abcdef"
    assert sorted(files) == sorted(f"{folder}/{n}" for n in ("Tatoeba.json", "TranslitPPA.tatoeba.json",
                                                             "TranslitPPA.sib200.json", "model_meta.json"))
    assert sorted(written) == sorted(out / f for f in files)
    tat = files[f"{folder}/Tatoeba.json"]
    assert {k for k in tat if k != "translit_ppa"} == {"dataset_revision", "task_name", "mteb_version", "scores",
                                                       "evaluation_time", "kg_co2_emissions", "date"}
    assert tat["task_name"] == "Tatoeba" and tat["mteb_version"] is None and list(tat["scores"]) == ["test"]
    assert tat["translit_ppa"]["custom_task"] is False and tat["dataset_revision"].endswith(FINGERPRINTS["data"])
    entries = {e["hf_subset"]: e for e in tat["scores"]["test"]}
    assert sorted(entries) == ["amh-eng", "ell-eng"]  # fas_Arab, zho_Hans: not MTEB Tatoeba languages
    assert entries["amh-eng"]["languages"] == ["amh-Ethi", "eng-Latn"]
    assert entries["ell-eng"]["languages"] == ["ell-Grek", "eng-Latn"]
    for subset, target in (("amh-eng", "amh_Ethi"), ("ell-eng", "ell_Grek")):
        e, ref = entries[subset], expected_mining(target)
        assert e["main_score"] == e["f1"] == pytest.approx(ref["f1"], abs=1e-12)
        assert {m: e[m] for m in ref} == pytest.approx(ref, abs=1e-12)
        assert e["accuracy"] == pytest.approx(e["tgt2src_top1"])  # MTEB's accuracy is top-1 of the same search
        assert 0 < e["f1"] < e["accuracy"] < 1  # not a trivial case: wrong neighbours and hubs
    assert tat["evaluation_time"] > 0 and isinstance(tat["date"], float)


def test_everything_else_goes_to_clearly_custom_tasks(results, tmp_path):
    out = tmp_path / "mteb"
    write_mteb_results(results, out)
    files = load(out)
    folder = "translit-ppa__base/0123456789abcdef"
    custom = files[f"{folder}/TranslitPPA.tatoeba.json"]
    assert custom["task_name"] == "TranslitPPA.tatoeba" and custom["translit_ppa"]["custom_task"] is True
    assert "custom task" in custom["translit_ppa"]["about"]
    entries = {e["hf_subset"]: e for e in custom["scores"]["test"]}
    assert sorted(entries) == ["amh_Ethi-ell_Grek", "fas_Arab-ell_Grek", "fas_Arab-eng_Latn", "zho_Hans-ell_Grek",
                               "zho_Hans-eng_Latn"]
    e = entries["fas_Arab-eng_Latn"]
    assert e["languages"] == ["fas-Arab", "eng-Latn"]
    ref = top10(embed(["x"] * N, "fas_Arab:fas_Arab").numpy(), embed(["x"] * N, "fas_Arab:eng_Latn").numpy())
    assert e["main_score"] == e["tgt2src_top10"] == pytest.approx(ref)
    assert "f1" not in e  # MTEB's metric names only where the task is MTEB's
    e = entries["amh_Ethi-ell_Grek"]  # ell_Grek source: amh queries against the Greek sentences
    ref = top10(embed(["x"] * N, "amh_Ethi:amh_Ethi").numpy(), embed(["x"] * N, "ell_Grek:ell_Grek").numpy())
    assert e["main_score"] == pytest.approx(ref) and e["languages"] == ["amh-Ethi", "ell-Grek"]

    sib = files[f"{folder}/TranslitPPA.sib200.json"]
    entries = {e["hf_subset"]: e for e in sib["scores"]["test"]}
    assert sorted(entries) == ["amh_Ethi-eng_Latn", "ell_Grek-eng_Latn"]
    assert entries["amh_Ethi-eng_Latn"]["main_score"] == pytest.approx((0.5 + 0.6) / 2)
    assert entries["ell_Grek-eng_Latn"]["accuracy"] == pytest.approx((0.8 + 0.9) / 2)
    assert [x["seed"] for x in entries["ell_Grek-eng_Latn"]["scores_per_experiment"]] == [42, 43]
    assert sib["evaluation_time"] == pytest.approx(4 * 1.0 + 2 * 10.0)  # training counted once per seed
    for f in files.values():
        for entry in f.get("scores", {}).get("test", []):
            assert all(re.fullmatch(r"[a-z]{3}-[A-Z][a-z]{3}", x) for x in entry["languages"])

    meta = files[f"{folder}/model_meta.json"]
    assert meta["name"] == "translit-ppa/base" and meta["revision"] == FINGERPRINTS["model"]
    assert meta["framework"] == ["PyTorch"] and meta["similarity_fn_name"] == "cosine"
    assert meta["use_instructions"] is False  # no prompt was used


def test_names_filters_and_refusals(results, tmp_path):
    out = tmp_path / "mteb"
    files = build_mteb_results(read_records(results), names={"base": "me/glot500-aligned"}, tasks=["sib200"])
    assert sorted(files) == ["me__glot500-aligned/0123456789abcdef/TranslitPPA.sib200.json",
                             "me__glot500-aligned/0123456789abcdef/model_meta.json"]
    with pytest.raises(ValueError, match="organisation/name"):
        build_mteb_results(read_records(results), names={"base": "aligned"})
    with pytest.raises(ValueError, match="without results"):
        build_mteb_results(read_records(results), names={"other": "me/x"})
    # written twice: our own files are replaced
    write_mteb_results(results, out)
    write_mteb_results(results, out)
    # a folder holding someone else's MTEB results is not written into
    folder = out / "translit-ppa__base" / "0123456789abcdef"
    (folder / "STS12.json").write_text(json.dumps({"task_name": "STS12", "scores": {}}))
    with pytest.raises(UnsafeOutputError, match="did not write"):
        write_mteb_results(results, out)


def test_results_of_another_configuration_are_not_mixed(results, tmp_path):
    recs = read_records(results)
    other = next(r for r in recs if r["task"] == "tatoeba" and r["target"] == "ell_Grek")
    store = ResultStore(results)
    store.add({**other, "config": {**other["config"], "layer": 3}, "time": "2999-01-01T00:00:00+0000"})
    with pytest.raises(ValueError, match="2 configurations"):
        build_mteb_results(read_records(results))


def test_old_records_without_the_mining_metrics(results, tmp_path):
    """A Tatoeba record written before the mining metrics is refused with what to do, and the same evaluate run
    computes the metrics for it (and only for it)."""
    store = ResultStore(results)
    old = next(r for r in store.records() if r["task"] == "tatoeba" and r["target"] == "amh_Ethi"
               and r["source"] == "eng_Latn")  # fmt: skip
    metrics = {k: v for k, v in old["metrics"].items() if "mining" not in k}
    store.add({**old, "metrics": metrics})
    with pytest.raises(ValueError, match="run the same `translit-ppa evaluate retrieval` command again"):
        build_mteb_results(read_records(results))
    opts = EvalOptions(task="tatoeba", data_dir=Path(old["config"]["data_dir"]), sources=["eng_Latn", "ell_Grek"],
                       progress=False)  # fmt: skip
    summary = run_retrieval("base", "/models/base", embed, opts, ResultStore(results), fingerprints=FINGERPRINTS)
    assert summary.ok == 1 and summary.done_before == 6
    tat = build_mteb_results(read_records(results))["translit-ppa__base/0123456789abcdef/Tatoeba.json"]
    amh = next(e for e in tat["scores"]["test"] if e["hf_subset"] == "amh-eng")
    assert amh["f1"] == pytest.approx(expected_mining("amh_Ethi")["f1"])


def test_cli(results, tmp_path, capsys):
    out = tmp_path / "mteb"
    assert main(["report", str(results), "-o", str(out), "--format", "mteb", "--mteb-name", "base=me/aligned"]) == 0
    assert (out / "me__aligned" / "0123456789abcdef" / "Tatoeba.json").is_file()
    capsys.readouterr()
    assert main(["report", str(results), "-o", str(out), "--format", "mteb", "--spread"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "not --format mteb" in err
    with pytest.raises(SystemExit) as e:
        main(["report", str(results), "-o", str(out), "--format", "mteb", "--mteb-name", "base=aligned"])
    assert e.value.code == 2
