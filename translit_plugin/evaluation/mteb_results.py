"""Evaluation results in the MTEB results format (``translit-ppa report --format mteb``), so an aligned model can be
put next to published MTEB numbers.

Layout: mteb 2.x's results folder (what ``mteb.ResultCache(CACHE)`` reads under ``CACHE/results``)::

    OUT/<org>__<name>/<revision>/<TaskName>.json     one file per task
    OUT/<org>__<name>/<revision>/model_meta.json     the model's metadata (the fields of mteb's ModelMeta)

``<org>/<name>`` is ``translit-ppa/<our model name>`` unless given (``--mteb-name``); ``<revision>`` is our
fingerprint of the model's files (``no_revision_available`` for results written before fingerprints).  A task
file holds ``dataset_revision``, ``task_name``, ``mteb_version``, ``scores`` (``{"test": [one entry per subset:
hf_subset, languages, main_score and the metrics]}``), ``evaluation_time``, ``kg_co2_emissions``, ``date`` and a
``translit_ppa`` block (what the task is, the model path, where vectors were read, the config hash), which mteb's
loader ignores.  ``mteb_version`` is null: mteb did not write these files.

Which task a result goes to:

- ``Tatoeba``, MTEB's BitextMining task: our ``tatoeba`` results with English as the source, on whole test sets (no
  ``--max-eval-examples``), for the targets whose language and script are those of one of MTEB's 112 ``xxx-eng``
  subsets (:data:`MTEB_TATOEBA_LANGUAGES`; ``amh_Ethi`` -> subset ``amh-eng``, languages ``amh-Ethi``,
  ``eng-Latn``).  Metrics: MTEB's ``precision``, ``recall``, ``f1`` and ``accuracy`` of nearest-neighbour mining of
  the target-language sentences among the English ones (the direction of the subsets' names), computed by the
  evaluation as MTEB defines them (:func:`~translit_plugin.evaluation.retrieval.mining_metrics`; records keep them
  as ``tgt2src_mining_*``); ``main_score`` is ``f1``, as in MTEB.  Our own metrics stay under their own names
  (``tgt2src_top10``, ...).  The data is taken to be the LASER Tatoeba v1 test sets, which MTEB's Tatoeba and the
  Glot500 evaluation both use; ``dataset_revision`` is our fingerprint of the data files, not MTEB's HF revision.
- Everything else has no MTEB counterpart and goes to a custom task ``TranslitPPA.<task>`` (``TranslitPPA.sr-b``,
  ``TranslitPPA.tatoeba``, ``TranslitPPA.taxi1500``, ``TranslitPPA.sib200``, ``TranslitPPA.ner``,
  ``TranslitPPA.pos``) with ``translit_ppa.custom_task`` true: SR-B (MTEB's Bible task is another corpus),
  Tatoeba from another source language, on part of a test set or for a language MTEB's Tatoeba lacks, and the
  fine-tuned tasks (MTEB's SIB200Classification trains a classifier on frozen embeddings; ours fine-tunes the
  encoder zero-shot across languages).  ``hf_subset`` is ``<target>-<source>`` in our codes, ``main_score`` the
  metric the report shows first (:data:`~translit_plugin.evaluation.report.DEFAULT_METRICS`), and a fine-tuned
  task's entry holds the mean over seeds with each seed's metrics in ``scores_per_experiment``, as MTEB's
  classification tasks do.
"""

from __future__ import annotations

import datetime
import json
import logging
import os
import re
import statistics
from collections import defaultdict
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from .metrics import MINING_METRICS, MINING_PREFIX
from .readers import ENGLISH
from .report import DEFAULT_METRICS, select_records
from .results import read_records

logger = logging.getLogger(__name__)

SPLIT = "test"
TATOEBA = "Tatoeba"
CUSTOM_PREFIX = "TranslitPPA."
DEFAULT_ORG = "translit-ppa"
NO_REVISION = "no_revision_available"
#: the key of our block in every task file (mteb's loader ignores it); a file with it is one this module wrote
MARKER = "translit_ppa"
MODEL_META = "model_meta.json"

#: The languages of MTEB's ``Tatoeba`` task (subset ``xxx-eng`` pairs language ``xxx-Script`` with ``eng-Latn``), as
#: listed by mteb 2.x's task metadata.
MTEB_TATOEBA_LANGUAGES = frozenset("""
afr-Latn amh-Ethi ang-Latn ara-Arab arq-Arab arz-Arab ast-Latn awa-Deva aze-Latn bel-Cyrl ben-Beng
ber-Tfng bos-Latn bre-Latn bul-Cyrl cat-Latn cbk-Latn ceb-Latn ces-Latn cha-Latn cmn-Hans cor-Latn
csb-Latn cym-Latn dan-Latn deu-Latn dsb-Latn dtp-Latn ell-Grek epo-Latn est-Latn eus-Latn fao-Latn
fin-Latn fra-Latn fry-Latn gla-Latn gle-Latn glg-Latn gsw-Latn heb-Hebr hin-Deva hrv-Latn hsb-Latn
hun-Latn hye-Armn ido-Latn ile-Latn ina-Latn ind-Latn isl-Latn ita-Latn jav-Latn jpn-Jpan kab-Latn
kat-Geor kaz-Cyrl khm-Khmr kor-Hang kur-Latn kzj-Latn lat-Latn lfn-Latn lit-Latn lvs-Latn mal-Mlym
mar-Deva max-Deva mhr-Cyrl mkd-Cyrl mon-Cyrl nds-Latn nld-Latn nno-Latn nob-Latn nov-Latn oci-Latn
orv-Cyrl pam-Latn pes-Arab pms-Latn pol-Latn por-Latn ron-Latn rus-Cyrl slk-Latn slv-Latn spa-Latn
sqi-Latn srp-Cyrl swe-Latn swg-Latn swh-Latn tam-Taml tat-Cyrl tel-Telu tgl-Latn tha-Thai tuk-Latn
tur-Latn tzl-Latn uig-Arab ukr-Cyrl urd-Arab uzb-Latn vie-Latn war-Latn wuu-Hans xho-Latn yid-Hebr
yue-Hant zsm-Latn
""".split())

_ABOUT_TATOEBA = (
    "MTEB task Tatoeba (BitextMining): nearest-neighbour mining of the target-language sentences among the English "
    "ones, cosine similarity; precision/recall/f1 weighted over the gold pairs as MTEB computes them, main_score = "
    "f1. Data taken to be the LASER Tatoeba v1 test sets; dataset_revision is translit-ppa's fingerprint of the "
    "data files"
)
_ABOUT_CUSTOM = {
    "sr-b": "custom task (no MTEB counterpart): SR-B sentence retrieval (Glot500's Bible sets), cosine, top-k "
            "accuracy with target-language queries and source candidates (tgt2src) and the reverse (src2tgt)",
    "tatoeba": "custom task (not MTEB's Tatoeba: another source language, part of a test set, or a language MTEB's "
               "Tatoeba lacks): Tatoeba sentence retrieval, cosine, top-k accuracy both directions",
    "taxi1500": "custom task (no MTEB counterpart): Taxi1500 topic classification, the encoder fine-tuned on the "
                "source language and tested zero-shot on the target; mean over seeds",
    "sib200": "custom task (not MTEB's SIB200Classification, which trains a classifier on frozen embeddings): "
              "SIB-200 topic classification, the encoder fine-tuned on the source language and tested zero-shot on "
              "the target; mean over seeds",
    "ner": "custom task (no MTEB counterpart): WikiAnn NER, the encoder fine-tuned on the source language and tested "
           "zero-shot on the target; seqeval F1; mean over seeds",
    "pos": "custom task (no MTEB counterpart): UD POS tagging, the encoder fine-tuned on the source language and "
           "tested zero-shot on the target; seqeval F1 (the paper's number) and token accuracy; mean over seeds",
}


def mteb_language(code: str) -> str:
    """Our ``amh_Ethi`` as MTEB writes it: ``amh-Ethi`` (ISO 639-3, ISO 15924)."""
    m = re.fullmatch(r"([a-z]{3})_([A-Z][a-z]{3})", code or "")
    if not m:
        raise ValueError(f"language code {code!r} is not ISO 639-3 + script (such as amh_Ethi), which MTEB files "
                         "need")  # fmt: skip
    return f"{m[1]}-{m[2]}"


def task_name(rec: dict) -> str:
    """The MTEB task a result belongs to: ``Tatoeba`` or a custom ``TranslitPPA.<task>`` (module docstring)."""
    if (rec["task"] == "tatoeba" and rec.get("source") == ENGLISH
            and not (rec.get("config") or {}).get("max_eval_examples")
            and mteb_language(rec["target"]) in MTEB_TATOEBA_LANGUAGES):  # fmt: skip
        return TATOEBA
    return CUSTOM_PREFIX + rec["task"]


def model_path_name(name: str) -> str:
    """mteb's folder name of a model name: ``org/name`` -> ``org__name``."""
    return name.replace("/", "__").replace(" ", "_")


def _mean_metrics(recs: list[dict]) -> dict[str, float]:
    """The mean over ``recs`` of every metric all of them have."""
    keys = [k for k in recs[0]["metrics"] if all(k in r["metrics"] for r in recs)]
    return {k: statistics.fmean(float(r["metrics"][k]) for r in recs) for k in keys}


def subset_entry(name: str, recs: list[dict]) -> dict[str, Any]:
    """The score entry of one (source, target) cell: ``recs`` are its records, one per seed."""
    first = recs[0]
    source, target = first.get("source") or ENGLISH, first["target"]
    metrics = _mean_metrics(recs)
    if name == TATOEBA:
        missing = [MINING_PREFIX + m for m in MINING_METRICS if MINING_PREFIX + m not in metrics]
        if missing:
            raise ValueError(
                f"the tatoeba result of {first['model']} for {target} lacks {', '.join(missing)} (written before "
                "translit-ppa computed MTEB's bitext-mining metrics); run the same `translit-ppa evaluate retrieval` "
                "command again, it computes them for the results that lack them"
            )
        entry: dict[str, Any] = {m: metrics[MINING_PREFIX + m] for m in MINING_METRICS}
        entry.update({k: v for k, v in metrics.items() if not k.startswith(MINING_PREFIX)})
        entry.update(main_score=entry["f1"], hf_subset=f"{target.split('_')[0]}-eng",
                     languages=[mteb_language(target), mteb_language(ENGLISH)])  # fmt: skip
        return entry
    main = DEFAULT_METRICS.get(first["task"], [None])[0]
    if main not in metrics:
        raise ValueError(f"the {first['task']} results of {first['model']} for {source} -> {target} lack "
                         f"{main!r}, the task's main metric")  # fmt: skip
    entry = {**metrics, "main_score": metrics[main], "hf_subset": f"{target}-{source}",
             "languages": [mteb_language(target), mteb_language(source)]}  # fmt: skip
    if any(r.get("seed") is not None for r in recs):
        entry["scores_per_experiment"] = [{"seed": r.get("seed"), **r["metrics"]}
                                          for r in sorted(recs, key=lambda r: (r.get("seed") is None, r.get("seed")))]
    return entry


def _timestamp(text: Any) -> float | None:
    """A record's ``time`` (``%Y-%m-%dT%H:%M:%S%z``) as a Unix timestamp, as mteb writes ``date``."""
    try:
        return datetime.datetime.strptime(str(text), "%Y-%m-%dT%H:%M:%S%z").timestamp() if text else None
    except ValueError:
        return None


def task_file(name: str, recs: list[dict]) -> dict[str, Any]:
    """The MTEB task file of one model's records of task ``name`` (one configuration)."""
    hashes = sorted({str(r.get("config_hash")) for r in recs})
    if len(hashes) > 1:
        raise ValueError(
            f"{recs[0]['model']} has {name} results from {len(hashes)} configurations ({', '.join(hashes)}: another "
            "data directory, view, layer, checkpoint content or limit); one MTEB file holds one. Report them from "
            "separate results files, or give the runs different model names"
        )
    cells: dict[tuple, list[dict]] = defaultdict(list)
    for r in recs:
        cells[(r.get("source"), r["target"])].append(r)
    entries = [subset_entry(name, cells[k]) for k in sorted(cells, key=lambda k: (str(k[0]), k[1]))]
    seconds = sum(float((r.get("details") or {}).get("seconds", 0.0)) for r in recs)
    seconds += sum({(r.get("source"), r.get("seed")): float((r.get("details") or {}).get("train_seconds", 0.0))
                    for r in recs}.values())  # fmt: skip
    first = recs[0]
    config = first.get("config") or {}
    content = config.get("content") or {}
    stamps = [t for t in (_timestamp(r.get("time")) for r in recs) if t is not None]
    custom = name != TATOEBA
    block = {
        "written_by": "translit-ppa report --format mteb",
        "custom_task": custom,
        "about": _ABOUT_CUSTOM.get(first["task"], f"custom task {first['task']}") if custom else _ABOUT_TATOEBA,
        "task": first["task"],
        "main_metric": ("f1" if not custom else DEFAULT_METRICS.get(first["task"], ["?"])[0]),
        "model": first["model"],
        "model_path": first.get("model_path"),
        "data_dir": config.get("data_dir"),
        "config_hash": hashes[0],
    }
    if "layer" in config:
        block["reading"] = {"layer": config["layer"], "pooling": config.get("pooling"),
                            "prompt": config.get("prompt", "")}  # fmt: skip
    return {
        "dataset_revision": f"translit-ppa-data-{content['data']}" if content.get("data") else "not available",
        "task_name": name,
        "mteb_version": None,
        "scores": {SPLIT: entries},
        "evaluation_time": round(seconds, 3) if seconds else None,
        "kg_co2_emissions": None,
        "date": max(stamps) if stamps else None,
        MARKER: block,
    }


def model_meta(name: str, revision: str, recs: list[dict]) -> dict[str, Any]:
    """``model_meta.json``: mteb's ModelMeta fields, unknown ones null (nothing is read from the model here)."""
    prompts = [bool((r.get("config") or {}).get("prompt")) for r in recs if "layer" in (r.get("config") or {})]
    return {
        "name": name, "revision": revision, "release_date": None, "languages": None, "n_parameters": None,
        "memory_usage_mb": None, "max_tokens": None, "embed_dim": None, "license": None, "open_weights": None,
        "public_training_code": None, "public_training_data": None, "framework": ["PyTorch"], "reference": None,
        "similarity_fn_name": "cosine", "use_instructions": any(prompts) if prompts else None,
        "training_datasets": None, "adapted_from": None, "superseded_by": None, "modalities": ["text"],
        "model_type": ["dense"], "citation": None, "contacts": None, "experiment_kwargs": None, "loader": None,
        "loader_kwargs": {},
    }  # fmt: skip


def build_mteb_results(records: Iterable[dict], names: dict[str, str] | None = None,
                       models: list[str] | None = None, tasks: list[str] | None = None) -> dict[str, dict]:  # fmt: skip
    """``relative path -> JSON object`` of every file: per model and revision a ``model_meta.json`` and one file per
    MTEB task, from the latest ``ok`` record of every cell (``models`` / ``tasks``: only these of ours).

    ``names`` maps our model names to MTEB names (``org/name``; default ``translit-ppa/<model>``)."""
    names = dict(names or {})
    bad = {k: v for k, v in names.items() if v.count("/") != 1 or not all(v.split("/"))}
    if bad:
        raise ValueError(f"MTEB model names are organisation/name, got {bad}")
    ok, failed = select_records(records)
    if failed:
        logger.warning("%d failed results are not written (see `translit-ppa report` for the list)", len(failed))
    groups: dict[tuple[str, str, str], list[dict]] = defaultdict(list)
    for r in ok:
        if (models and r["model"] not in models) or (tasks and r["task"] not in tasks):
            continue
        revision = ((r.get("config") or {}).get("content") or {}).get("model") or NO_REVISION
        groups[(r["model"], revision, task_name(r))].append(r)
    unknown = sorted(set(names) - {m for m, _, _ in groups})
    if unknown:
        raise ValueError(f"--mteb-name names models without results: {', '.join(unknown)}")
    if not groups:
        raise ValueError("no successful results to write" + (" for the chosen models and tasks" if models or tasks
                                                             else ""))  # fmt: skip
    out: dict[str, dict] = {}
    per_folder: dict[tuple[str, str], list[dict]] = defaultdict(list)
    for (model, revision, name), recs in sorted(groups.items()):
        mteb_name = names.get(model, f"{DEFAULT_ORG}/{model}")
        folder = f"{model_path_name(mteb_name)}/{revision}"
        out[f"{folder}/{name}.json"] = task_file(name, recs)
        per_folder[(mteb_name, revision)] += recs
    for (mteb_name, revision), recs in per_folder.items():
        out[f"{model_path_name(mteb_name)}/{revision}/{MODEL_META}"] = model_meta(mteb_name, revision, recs)
    return out


def _is_ours(path: Path) -> bool:
    try:
        return MARKER in json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError, TypeError):
        return False


def write_mteb_results(results: str | os.PathLike | list, out_dir: str | os.PathLike,
                       names: dict[str, str] | None = None, models: list[str] | None = None,
                       tasks: list[str] | None = None) -> list[Path]:  # fmt: skip
    """Write :func:`build_mteb_results` of the results file(s) under ``out_dir``; return the files written.

    A model folder that already holds task files (other than ours) or a ``model_meta.json`` without task files of
    ours is someone else's results: refused, nothing written."""
    from translit_plugin.core.files import atomic_write_json
    from translit_plugin.core.safe_output import UnsafeOutputError, check_file_output

    inputs = [results] if isinstance(results, (str, os.PathLike)) else list(results)
    files = build_mteb_results(read_records(inputs), names, models, tasks)
    out_dir = Path(out_dir)
    for folder in sorted({out_dir / Path(rel).parent for rel in files}):
        if not folder.is_dir():
            continue
        jsons = [p for p in folder.glob("*.json") if p.name != MODEL_META]
        foreign = [p.name for p in jsons if not _is_ours(p)]
        if foreign or ((folder / MODEL_META).exists() and not jsons):
            raise UnsafeOutputError(
                f"{folder} holds MTEB results this command did not write ({', '.join(foreign) or MODEL_META}); "
                "choose another --out-dir or another --mteb-name"
            )
    for rel in files:
        check_file_output(out_dir / rel, inputs, "MTEB result file")
    written = []
    for rel, obj in files.items():
        path = out_dir / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_json(path, obj, indent=2, ensure_ascii=False)
        written.append(path)
    return written
