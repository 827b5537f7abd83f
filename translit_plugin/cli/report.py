"""``translit-ppa report``: results JSONL file(s) -> paper-style tables (Markdown, LaTeX, CSV) and heatmaps, or
files in the MTEB results format.

Inputs: one or more files written by ``translit-ppa evaluate``. Outputs in ``--out-dir``: ``report.md`` (tables +
a "Missing" section listing failed and absent results), ``report.tex`` (booktabs), ``report.csv`` (long format:
task, metric, source, target, model, mean, std, n_seeds, best) and ``heatmap_{task}_{metric}.png``.

``--format mteb``: ``--out-dir`` is an MTEB results folder (e.g. CACHE/results for ``mteb.ResultCache(CACHE)``);
written: ``ORG__NAME/REVISION/TASK.json`` per task and ``model_meta.json``. Tatoeba results with English as the
source go to MTEB's ``Tatoeba`` task (main score: F1 of nearest-neighbour mining, as MTEB computes it); every other
task to a custom ``TranslitPPA.<task>`` (no MTEB counterpart; said in the file).
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

logger = logging.getLogger(__name__)


def _metric_override(text: str) -> tuple[str, list[str]]:
    task, sep, metrics = text.partition("=")
    if not sep or not metrics:
        raise argparse.ArgumentTypeError(f"expected TASK=METRIC[,METRIC], got {text!r}")
    return task, metrics.split(",")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.description = __doc__
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    parser.add_argument("results", nargs="+", type=Path, help="results JSONL file(s)")
    parser.add_argument("--out-dir", "-o", required=True, type=Path, help="output directory")
    parser.add_argument("--baseline", default=None, help="model name shown first (the unaligned start model)")
    parser.add_argument("--models", nargs="+", default=None, help="model column order")
    parser.add_argument("--tasks", nargs="+", default=None,
                        help="only these tasks (sr-b tatoeba taxi1500 sib200 ner pos)")
    parser.add_argument("--metric", action="append", type=_metric_override, default=[], metavar="TASK=METRIC[,...]",
                        help="metrics per task (default: sr-b/tatoeba tgt2src_top10, taxi1500/sib200 macro_f1, "
                             "ner seqeval_f1, pos seqeval_f1,token_accuracy)")
    parser.add_argument("--spread", action="store_true", help="show mean ± std over seeds")
    parser.add_argument("--include-source-in-average", action="store_true",
                        help="average over every target including the source language itself")
    parser.add_argument("--no-heatmaps", action="store_true", help="skip the PNG heatmaps")
    parser.add_argument("--format", choices=("paper", "mteb"), default="paper",
                        help="paper: tables and heatmaps (default); mteb: MTEB results files (--models and --tasks "
                             "then select what is written)")
    parser.add_argument("--mteb-name", action="append", type=_mteb_name, default=[], metavar="MODEL=ORG/NAME",
                        help="--format mteb: the MTEB name of a model (default translit-ppa/MODEL)")


def _mteb_name(text: str) -> tuple[str, str]:
    model, sep, name = text.partition("=")
    if not sep or not model or name.count("/") != 1 or not all(name.split("/")):
        raise argparse.ArgumentTypeError(f"expected MODEL=ORG/NAME, got {text!r}")
    return model, name


def run(args: argparse.Namespace) -> int:
    from translit_plugin.evaluation.report import write_report
    from translit_plugin.evaluation.report_files import check_report_files

    if args.format == "mteb":
        return _run_mteb(args)
    if args.mteb_name:
        raise ValueError("--mteb-name is for --format mteb")
    check_report_files(args.out_dir, args.results)
    paths = write_report(
        args.results, args.out_dir, baseline=args.baseline, model_order=args.models, metrics=dict(args.metric),
        tasks=args.tasks, spread=args.spread, include_self_in_average=args.include_source_in_average,
        heatmaps=not args.no_heatmaps,
    )
    for kind, p in paths.items():
        logger.info("%s: %s", kind, p)
    return 0


def _run_mteb(args: argparse.Namespace) -> int:
    from translit_plugin.evaluation.mteb_results import write_mteb_results
    from translit_plugin.evaluation.report_files import check_out_dir

    check_out_dir(args.out_dir)
    if args.metric or args.spread or args.baseline or args.include_source_in_average or args.no_heatmaps:
        raise ValueError("--metric, --spread, --baseline, --include-source-in-average and --no-heatmaps are for the "
                         "paper tables, not --format mteb")
    paths = write_mteb_results(args.results, args.out_dir, names=dict(args.mteb_name), models=args.models,
                               tasks=args.tasks)  # fmt: skip
    for p in paths:
        logger.info("MTEB file: %s", p)
    return 0
