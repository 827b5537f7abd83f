"""``translit-ppa evaluate`` below its arguments: what the command line asked for (:class:`EvaluateRequest`), the
options it gives, the checks on the inputs and the results file (that one: :mod:`.report_files`), the grid run and its
summary.

Messages are logged under the command's logger name (``translit_plugin.cli.evaluate``), as they were when this lived
in the command's module; ``select-checkpoint`` reads ``--pooling`` through :func:`pooling_choice` too.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

logger = logging.getLogger("translit_plugin.cli.evaluate")


@dataclass(frozen=True, kw_only=True)
class EvaluateRequest:
    """The values of ``evaluate``'s options (:mod:`translit_plugin.cli.evaluate` builds it; its help gives their
    defaults).  ``None`` leaves a value to the data (``targets``: every language found), the task (the fine-tuning
    settings: the paper's) or the machine (``device``)."""

    task: str  # retrieval or a fine-tuning task (taxi1500, sib200, ner, pos)
    models: list[str]  # [NAME=]PATH
    data_dir: Path
    output: Path  # results JSONL, appended
    dataset: str  # retrieval: sr-b or tatoeba
    prefix: str | None
    sources: list[str]
    targets: list[str] | None
    langs_file: Path | None
    langs_flag: int | None
    seeds: list[int]
    # embeddings (retrieval)
    view: str
    layer: int | None
    pooling: str | None  # as given: a deprecated name is translated (with a warning) by :func:`pooling_choice`
    prompt_name: str | None
    embed_batch_size: int
    embed_max_length: int
    # fine-tuning
    max_epochs: int | None
    lr: float | None
    batch_size: int | None
    grad_accum: int | None
    max_length: int | None
    patience: int | None
    eval_batch_size: int
    select_metric: str
    # limits, machine, files
    max_train_examples: int | None
    max_eval_examples: int | None
    device: str | None
    cache_dir: Path | None
    assets_dir: Path | None
    progress: bool


def pooling_choice(name: str | None) -> str | None:
    """The ``--pooling`` value under its current name (``mean`` is translated, with a warning)."""
    from translit_plugin.hub.encoding import DEPRECATED_POOLINGS

    if name in DEPRECATED_POOLINGS:
        logger.warning("--pooling %s is deprecated: it is %s (same vectors)", name, DEPRECATED_POOLINGS[name])
        return DEPRECATED_POOLINGS[name]
    return name


def build_options(req: EvaluateRequest):
    """The :class:`EvalOptions` of a request."""
    from translit_plugin.evaluation.finetune import default_config
    from translit_plugin.evaluation.models import default_device
    from translit_plugin.evaluation.readers import read_language_list
    from translit_plugin.evaluation.runner import EvalOptions

    task = req.dataset if req.task == "retrieval" else req.task
    targets = req.targets
    if req.langs_file is not None:
        listed = read_language_list(req.langs_file, req.langs_flag)
        targets = [t for t in targets if t in listed] if targets else listed
    finetune = None
    if req.task != "retrieval":
        finetune = default_config(
            req.task, lr=req.lr, batch_size=req.batch_size, grad_accum=req.grad_accum, max_epochs=req.max_epochs,
            max_length=req.max_length, patience=req.patience, eval_batch_size=req.eval_batch_size,
        )
    return EvalOptions(
        task=task, data_dir=req.data_dir, sources=list(req.sources), targets=targets,
        seeds=list(req.seeds), prefix=req.prefix, view=req.view, layer=req.layer,
        pooling=pooling_choice(req.pooling), prompt_name=req.prompt_name,
        embed_batch_size=req.embed_batch_size, embed_max_length=req.embed_max_length, finetune=finetune,
        select_metric=req.select_metric, max_train_examples=req.max_train_examples,
        max_eval_examples=req.max_eval_examples, device=req.device or default_device(),
        progress=req.progress,
    )


def evaluate(req: EvaluateRequest):
    """Check the inputs and ``--output``, run the grid, log its summary; the :class:`GridSummary`.

    Raises :class:`EvalDataError` when nothing was evaluated (every result failed).
    """
    from translit_plugin.evaluation.models import parse_model_specs
    from translit_plugin.evaluation.readers import EvalDataError
    from translit_plugin.evaluation.report_files import check_results_file
    from translit_plugin.evaluation.results import ResultStore
    from translit_plugin.evaluation.runner import run_grid

    if not req.data_dir.is_dir():
        raise FileNotFoundError(f"--data-dir {req.data_dir} is not a directory")
    specs = parse_model_specs(req.models)
    check_results_file(req.output, [s.path for s in specs] + [req.data_dir, req.langs_file, req.assets_dir])
    opts = build_options(req)
    store = ResultStore(req.output)
    logger.info("evaluating %d model(s) on %s from %s; %d result(s) already in %s",
                len(specs), opts.task, req.data_dir, len(store), req.output)
    summary = run_grid(specs, opts, store, req.cache_dir, req.assets_dir)
    logger.info("%s: %d new result(s), %d already done, %d failed -> %s",
                opts.task, summary.ok, summary.done_before, len(summary.errors), req.output)
    for line in summary.errors:
        logger.warning("failed: %s", line)
    if summary.ok == 0 and summary.done_before == 0:
        raise EvalDataError(f"nothing was evaluated: all {len(summary.errors)} result(s) failed (listed above and "
                            f"as error records in {req.output})")
    return summary

