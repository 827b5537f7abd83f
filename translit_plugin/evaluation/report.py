"""Aggregate results files into the paper's tables and heatmaps.

Layout (one table per task and metric): rows = target languages + ``Average``; columns = source language (headed
by its script, e.g. ``Arab (fas_Arab)``) x model (baseline first). A cell is the mean over seeds (x 100), optionally
``mean ± std``; the best model of each (row, source) is marked. ``Average`` is taken over the targets every model of
that column group has, per seed, then averaged over seeds (so its spread is the spread of per-seed averages); by
default the source's own test set is left out of the average (zero-shot transfer only).

Also lists what is missing: ``error`` records and (model, task, source, target, seed) combinations that other models
or seeds have but this one lacks.
"""

from __future__ import annotations

import csv
import io
import logging
import math
import os
import statistics
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from translit_plugin.core.files import atomic_write_text

logger = logging.getLogger(__name__)

TASK_TITLES = {"sr-b": "SR-B", "tatoeba": "Tatoeba", "taxi1500": "Taxi1500", "sib200": "SIB-200", "ner": "NER",
               "pos": "POS"}
TASK_ORDER = list(TASK_TITLES)
#: Metrics reported per task by default (first = the paper's number).
DEFAULT_METRICS: dict[str, list[str]] = {
    "sr-b": ["tgt2src_top10"],
    "tatoeba": ["tgt2src_top10"],
    "taxi1500": ["macro_f1"],
    "sib200": ["macro_f1"],
    "ner": ["seqeval_f1"],
    "pos": ["seqeval_f1", "token_accuracy"],
}
METRIC_TITLES = {
    "tgt2src_top10": "top-10 acc., target->source",
    "src2tgt_top10": "top-10 acc., source->target",
    "tgt2src_top1": "top-1 acc., target->source",
    "macro_f1": "macro-F1",
    "seqeval_f1": "seqeval F1",
    "token_accuracy": "token accuracy",
    "token_macro_f1": "token macro-F1",
}
AVERAGE = "Average"


def script_of(lang: str) -> str:
    """``fas_Arab`` -> ``Arab``."""
    return lang.rsplit("_", 1)[-1] if "_" in lang else lang


@dataclass
class Block:
    """One table: a task and metric with its cells ``(target, source, model) -> per-seed values``."""

    task: str
    metric: str
    sources: list[str]
    models: list[str]
    targets: list[str]
    values: dict[tuple[str, str, str], dict] = field(default_factory=dict)  # -> {seed: value}

    @property
    def title(self) -> str:
        m = METRIC_TITLES.get(self.metric, self.metric)
        if self.task == "pos" and self.metric.startswith("seqeval"):
            m += " (paper-compatible; seqeval chunk quirk)"
        return f"{TASK_TITLES.get(self.task, self.task)}: {m}"


@dataclass
class Cell:
    mean: float | None
    std: float | None
    n: int
    best: bool = False


def _order_models(models: Iterable[str], baseline: str | None, order: Sequence[str] | None) -> list[str]:
    models = list(dict.fromkeys(models))
    if order:
        unknown = [m for m in order if m not in models]
        if unknown:
            logger.warning("models %s are in --models but in no result", unknown)
        models = [m for m in order if m in models] + [m for m in models if m not in order]
    if baseline:
        if baseline not in models:
            raise ValueError(f"baseline model {baseline!r} not found in the results (models: {models})")
        models = [baseline] + [m for m in models if m != baseline]
    return models


def _source_key(s: str) -> tuple:
    return (s != "eng_Latn", s)


def select_records(records: Iterable[dict]) -> tuple[list[dict], list[dict]]:
    """Latest ``ok`` record per (model, task, source, target, seed), and ``error`` records never fixed since."""
    ok: dict[tuple, dict] = {}
    err: dict[tuple, dict] = {}
    hashes: dict[tuple, set] = defaultdict(set)
    for rec in records:
        k = (rec["model"], rec["task"], rec.get("source"), rec["target"], rec.get("seed"))
        if rec.get("status", "ok") == "ok":
            if k not in ok or str(rec.get("time", "")) >= str(ok[k].get("time", "")):
                ok[k] = rec
            err.pop(k, None)
            hashes[(rec["model"], rec["task"])].add(rec.get("config_hash"))
        elif k not in ok:
            err[k] = rec
    for (model, task), hs in hashes.items():
        if len(hs) > 1:
            logger.warning("%s / %s: results from %d different configurations; the latest per cell is used",
                           model, task, len(hs))
    return list(ok.values()), list(err.values())


def build_blocks(
    records: Iterable[dict],
    metrics: dict[str, list[str]] | None = None,
    baseline: str | None = None,
    model_order: Sequence[str] | None = None,
    tasks: Sequence[str] | None = None,
) -> list[Block]:
    """Group ``ok`` records into one :class:`Block` per (task, metric)."""
    ok, _ = select_records(records)
    metrics = {**DEFAULT_METRICS, **(metrics or {})}
    by_task: dict[str, list[dict]] = defaultdict(list)
    for rec in ok:
        by_task[rec["task"]].append(rec)
    order = [t for t in TASK_ORDER if t in by_task] + sorted(t for t in by_task if t not in TASK_ORDER)
    if tasks:
        order = [t for t in order if t in tasks]
    blocks = []
    all_models = _order_models((r["model"] for r in ok), baseline, model_order)
    for task in order:
        recs = by_task[task]
        models = [m for m in all_models if any(r["model"] == m for r in recs)]
        sources = sorted({r["source"] for r in recs}, key=_source_key)
        targets = sorted({r["target"] for r in recs})
        for metric in metrics.get(task, []):
            block = Block(task, metric, sources, models, targets)
            for r in recs:
                if metric in r.get("metrics", {}):
                    block.values.setdefault((r["target"], r["source"], r["model"]), {})[r.get("seed")] = float(
                        r["metrics"][metric]
                    )
            if block.values:
                blocks.append(block)
            else:
                logger.warning("no %s values for task %s", metric, task)
    return blocks


def _mean_std(values: Sequence[float]) -> tuple[float | None, float | None]:
    if not values:
        return None, None
    return statistics.fmean(values), (statistics.stdev(values) if len(values) > 1 else 0.0)


def block_cells(block: Block, include_self_in_average: bool = False) -> tuple[dict, dict]:
    """``cells[(row, source, model)] -> Cell`` (rows = targets + Average) and ``avg_targets[source] -> n targets``."""
    cells: dict[tuple[str, str, str], Cell] = {}
    avg_targets: dict[str, list[str]] = {}
    for (target, source, model), by_seed in block.values.items():
        mean, std = _mean_std(list(by_seed.values()))
        cells[(target, source, model)] = Cell(mean, std, len(by_seed))
    for source in block.sources:
        common = [
            t for t in block.targets
            if (include_self_in_average or t != source)
            and all((t, source, m) in block.values for m in block.models)
        ]
        avg_targets[source] = common
        for model in block.models:
            if not common:
                continue
            seeds = set.intersection(*(set(block.values[(t, source, model)]) for t in common))
            per_seed = [statistics.fmean(block.values[(t, source, model)][s] for t in common) for s in seeds]
            if not per_seed:  # seeds do not line up across targets: average the per-target means
                per_seed = [statistics.fmean(cells[(t, source, model)].mean for t in common)]
            mean, std = _mean_std(per_seed)
            cells[(AVERAGE, source, model)] = Cell(mean, std, len(per_seed))
    for row in block.targets + [AVERAGE]:
        for source in block.sources:
            present = [cells[(row, source, m)] for m in block.models if (row, source, m) in cells]
            if len(present) > 1:
                top = max(c.mean for c in present)
                for c in present:
                    c.best = math.isclose(c.mean, top, rel_tol=0, abs_tol=1e-12)
    return cells, avg_targets


def _fmt(cell: Cell | None, spread: bool, scale: float, digits: int) -> str:
    if cell is None or cell.mean is None:
        return "–"
    s = f"{cell.mean * scale:.{digits}f}"
    if spread and cell.n > 1:
        s += f" ± {cell.std * scale:.{digits}f}"
    return s


def _headers(block: Block) -> list[str]:
    return [f"{script_of(s)} ({s}) {m}" for s in block.sources for m in block.models]


def to_markdown(block: Block, spread: bool = False, scale: float = 100.0, digits: int = 1,
                include_self_in_average: bool = False) -> str:
    """One Markdown table (best per row and source in bold)."""
    cells, avg_targets = block_cells(block, include_self_in_average)
    cols = [(s, m) for s in block.sources for m in block.models]
    lines = [f"### {block.title}", "", "| target | " + " | ".join(_headers(block)) + " |",
             "|---|" + "---:|" * len(cols)]
    for row in block.targets + [AVERAGE]:
        out = []
        for s, m in cols:
            c = cells.get((row, s, m))
            txt = _fmt(c, spread, scale, digits)
            out.append(f"**{txt}**" if c is not None and c.best else txt)
        name = f"**{row}**" if row == AVERAGE else row
        lines.append(f"| {name} | " + " | ".join(out) + " |")
    notes = [f"{s}: {len(ts)} targets" for s, ts in avg_targets.items()]
    lines += ["", f"Average over the targets every model has ({'; '.join(notes)}"
              f"{'' if include_self_in_average else '; source language excluded'}). "
              f"Values x{scale:g}, mean over seeds{' ± std' if spread else ''}; best in bold.", ""]
    return "\n".join(lines)


def _tex_escape(s: str) -> str:
    return s.replace("\\", r"\textbackslash{}").replace("_", r"\_").replace("%", r"\%").replace("&", r"\&")


def to_latex(block: Block, spread: bool = False, scale: float = 100.0, digits: int = 1,
             include_self_in_average: bool = False) -> str:
    """One LaTeX ``table`` (booktabs) with a multicolumn header per source script."""
    cells, _ = block_cells(block, include_self_in_average)
    nm = len(block.models)
    lines = [r"\begin{table}[t]", r"\centering", r"\small",
             r"\begin{tabular}{l" + ("r" * nm) * len(block.sources) + "}", r"\toprule"]
    lines.append(" & " + " & ".join(
        rf"\multicolumn{{{nm}}}{{c}}{{{_tex_escape(script_of(s))} ({_tex_escape(s)})}}" for s in block.sources
    ) + r" \\")
    rules = " ".join(rf"\cmidrule(lr){{{2 + i * nm}-{1 + (i + 1) * nm}}}" for i in range(len(block.sources)))
    lines.append(rules)
    lines.append("target & " + " & ".join(_tex_escape(m) for _ in block.sources for m in block.models) + r" \\")
    lines.append(r"\midrule")
    for row in block.targets + [AVERAGE]:
        if row == AVERAGE:
            lines.append(r"\midrule")
        out = []
        for s in block.sources:
            for m in block.models:
                c = cells.get((row, s, m))
                txt = _fmt(c, spread, scale, digits).replace("±", r"$\pm$").replace("–", "--")
                out.append(rf"\textbf{{{txt}}}" if c is not None and c.best else txt)
        lines.append(_tex_escape(row) + " & " + " & ".join(out) + r" \\")
    lines += [r"\bottomrule", r"\end{tabular}", rf"\caption{{{_tex_escape(block.title)}}}", r"\end{table}", ""]
    return "\n".join(lines)


def write_csv(blocks: Sequence[Block], path: str | os.PathLike, include_self_in_average: bool = False) -> None:
    """Long-format CSV: task, metric, source, source_script, target, model, mean, std, n_seeds, best."""
    f = io.StringIO(newline="")
    w = csv.writer(f)
    w.writerow(["task", "metric", "source", "source_script", "target", "model", "mean", "std", "n_seeds", "best"])
    for b in blocks:
        cells, _ = block_cells(b, include_self_in_average)
        for row in b.targets + [AVERAGE]:
            for s in b.sources:
                for m in b.models:
                    c = cells.get((row, s, m))
                    if c is not None:
                        w.writerow([b.task, b.metric, s, script_of(s), row, m, f"{c.mean:.6f}",
                                    f"{c.std:.6f}", c.n, int(c.best)])
    atomic_write_text(path, f.getvalue())


def heatmap(block: Block, path: str | os.PathLike, scale: float = 100.0) -> None:
    """Source x target heatmap of the seed means, one panel per model (+ last minus first model)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    cells, _ = block_cells(block, include_self_in_average=True)
    mats = []
    for m in block.models:
        a = np.full((len(block.sources), len(block.targets)), np.nan)
        for i, s in enumerate(block.sources):
            for j, t in enumerate(block.targets):
                c = cells.get((t, s, m))
                if c is not None:
                    a[i, j] = c.mean * scale
        mats.append((m, a, "viridis"))
    if len(mats) > 1:
        mats.append((f"{block.models[-1]} - {block.models[0]}", mats[-1][1] - mats[0][1], "RdBu"))
    fig_w = max(4.0, 0.45 * len(block.targets) + 2.0)
    fig, axes = plt.subplots(len(mats), 1, figsize=(fig_w, (0.45 * len(block.sources) + 1.3) * len(mats)),
                             squeeze=False)
    for ax, (title, a, cmap) in zip(axes[:, 0], mats):
        kw = {}
        if cmap == "RdBu" and np.isfinite(a).any():
            lim = float(np.nanmax(np.abs(a))) or 1.0
            kw = dict(vmin=-lim, vmax=lim)
        im = ax.imshow(a, cmap=cmap, aspect="auto", **kw)
        ax.set_title(title, fontsize=9)
        ax.set_yticks(range(len(block.sources)), block.sources, fontsize=7)
        ax.set_xticks(range(len(block.targets)), block.targets, rotation=60, ha="right", fontsize=7)
        for i in range(a.shape[0]):
            for j in range(a.shape[1]):
                if np.isfinite(a[i, j]):
                    level = float(im.norm(a[i, j]))  # 0..1 position on the colour map
                    light = level > 0.6 if cmap == "viridis" else abs(level - 0.5) < 0.3
                    ax.text(j, i, f"{a[i, j]:.0f}", ha="center", va="center", fontsize=6,
                            color="k" if light else "w")
        fig.colorbar(im, ax=ax, fraction=0.03)
    fig.suptitle(block.title, fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def missing_entries(records: Iterable[dict]) -> list[str]:
    """Human-readable lines: error records, and cells other models / seeds have but a model lacks."""
    records = list(records)
    ok, err = select_records(records)
    lines = []
    order = lambda r: (r["task"], r["model"], str(r.get("source")), r["target"], str(r.get("seed")))
    for rec in sorted(err, key=order):
        lines.append(f"{rec['task']} {rec['model']} {rec.get('source')} -> {rec['target']} seed={rec.get('seed')}: "
                     f"ERROR {rec.get('error', '')}")
    have = {(r["model"], r["task"], r.get("source"), r["target"], r.get("seed")) for r in ok}
    failed = {(r["model"], r["task"], r.get("source"), r["target"], r.get("seed")) for r in err}
    by_task: dict[str, list[dict]] = defaultdict(list)
    for r in ok + err:
        by_task[r["task"]].append(r)
    for task, recs in sorted(by_task.items()):
        models = sorted({r["model"] for r in recs})
        sources = sorted({r.get("source") for r in recs}, key=lambda s: _source_key(str(s)))
        targets = sorted({r["target"] for r in recs})
        seeds = sorted({r.get("seed") for r in recs}, key=lambda s: (s is None, s))
        for m in models:
            for s in sources:
                for t in targets:
                    if t == s:
                        continue
                    for seed in seeds:
                        k = (m, task, s, t, seed)
                        if k not in have and k not in failed:
                            lines.append(f"{task} {m} {s} -> {t} seed={seed}: not run")
    return lines


def write_report(
    results: Sequence[str | os.PathLike],
    out_dir: str | os.PathLike,
    baseline: str | None = None,
    model_order: Sequence[str] | None = None,
    metrics: dict[str, list[str]] | None = None,
    tasks: Sequence[str] | None = None,
    spread: bool = False,
    include_self_in_average: bool = False,
    heatmaps: bool = True,
) -> dict[str, Path]:
    """Write ``report.md``, ``report.tex``, ``report.csv`` and ``heatmap_{task}_{metric}.png``; return the paths."""
    from .results import read_records

    records = read_records(results)
    if not records:
        raise ValueError(f"no results in {', '.join(map(str, results))}")
    blocks = build_blocks(records, metrics, baseline, model_order, tasks)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = {"markdown": out / "report.md", "latex": out / "report.tex", "csv": out / "report.csv"}
    missing = missing_entries(records)
    md = ["# Evaluation report", "", f"Results: {', '.join(map(str, results))}", ""]
    md += [to_markdown(b, spread, include_self_in_average=include_self_in_average) for b in blocks]
    md += ["## Missing", ""] + ([f"- {x}" for x in missing] if missing else ["Nothing is missing."]) + [""]
    atomic_write_text(paths["markdown"], "\n".join(md))
    tex = ["% generated by translit-ppa report; needs \\usepackage{booktabs}"]
    tex += [to_latex(b, spread, include_self_in_average=include_self_in_average) for b in blocks]
    atomic_write_text(paths["latex"], "\n".join(tex))
    write_csv(blocks, paths["csv"], include_self_in_average)
    if heatmaps:
        for b in blocks:
            p = out / f"heatmap_{b.task}_{b.metric}.png"
            heatmap(b, p)
            paths[f"heatmap_{b.task}_{b.metric}"] = p
    if missing:
        logger.warning("%d result(s) missing or failed; listed under 'Missing' in %s", len(missing), paths["markdown"])
    return paths
