"""``translit-ppa evaluate`` below its arguments: the options from the parsed arguments, the checks on the inputs
and the results file, the grid run and its summary.

Messages are logged under the command's logger name (``translit_plugin.cli.evaluate``), as they were when this lived
in the command's module; ``select-checkpoint`` reads ``--pooling`` through :func:`pooling_choice` too.
"""

from __future__ import annotations

import json
import logging

logger = logging.getLogger("translit_plugin.cli.evaluate")


def pooling_choice(name: str | None) -> str | None:
    """The ``--pooling`` value under its current name (``mean`` is translated, with a warning)."""
    from translit_plugin.hub.encoding import DEPRECATED_POOLINGS

    if name in DEPRECATED_POOLINGS:
        logger.warning("--pooling %s is deprecated: it is %s (same vectors)", name, DEPRECATED_POOLINGS[name])
        return DEPRECATED_POOLINGS[name]
    return name


def build_options(args):
    """Translate the parsed arguments of ``evaluate`` into :class:`EvalOptions`."""
    from translit_plugin.evaluation.finetune import default_config
    from translit_plugin.evaluation.models import default_device
    from translit_plugin.evaluation.readers import read_language_list
    from translit_plugin.evaluation.runner import EvalOptions

    task = args.dataset if args.task == "retrieval" else args.task
    targets = args.targets
    if args.langs_file is not None:
        listed = read_language_list(args.langs_file, args.langs_flag)
        targets = [t for t in targets if t in listed] if targets else listed
    finetune = None
    if args.task != "retrieval":
        finetune = default_config(
            args.task, lr=args.lr, batch_size=args.batch_size, grad_accum=args.grad_accum, max_epochs=args.max_epochs,
            max_length=args.max_length, patience=args.patience, eval_batch_size=args.eval_batch_size,
        )
    return EvalOptions(
        task=task, data_dir=args.data_dir, sources=list(args.sources), targets=targets,
        seeds=list(args.seeds), prefix=args.prefix, view=args.view, layer=args.layer,
        pooling=pooling_choice(args.pooling), prompt_name=args.prompt_name,
        embed_batch_size=args.embed_batch_size, embed_max_length=args.embed_max_length, finetune=finetune,
        select_metric=args.select_metric, max_train_examples=args.max_train_examples,
        max_eval_examples=args.max_eval_examples, device=args.device or default_device(),
        progress=not args.no_progress,
    )


def evaluate(args):
    """Check the inputs and ``--output``, run the grid, log its summary; the :class:`GridSummary`.

    Raises :class:`EvalDataError` when nothing was evaluated (every result failed).
    """
    from translit_plugin.core.safe_output import check_file_output, first_line
    from translit_plugin.evaluation.models import parse_model_specs
    from translit_plugin.evaluation.readers import EvalDataError
    from translit_plugin.evaluation.results import ResultStore
    from translit_plugin.evaluation.runner import run_grid

    if not args.data_dir.is_dir():
        raise FileNotFoundError(f"--data-dir {args.data_dir} is not a directory")
    specs = parse_model_specs(args.models)
    # results are appended: never to a model, a dataset file, or a file that is not a results JSONL
    check_file_output(args.output, [s.path for s in specs] + [args.data_dir, args.langs_file, args.assets_dir], "-o",
                      lambda p: is_results_file(first_line(p)), "a results file of translit-ppa evaluate",
                      allow_inside=False)
    opts = build_options(args)
    store = ResultStore(args.output)
    logger.info("evaluating %d model(s) on %s from %s; %d result(s) already in %s",
                len(specs), opts.task, args.data_dir, len(store), args.output)
    summary = run_grid(specs, opts, store, args.cache_dir, args.assets_dir)
    logger.info("%s: %d new result(s), %d already done, %d failed -> %s",
                opts.task, summary.ok, summary.done_before, len(summary.errors), args.output)
    for line in summary.errors:
        logger.warning("failed: %s", line)
    if summary.ok == 0 and summary.done_before == 0:
        raise EvalDataError(f"nothing was evaluated: all {len(summary.errors)} result(s) failed (listed above and "
                            f"as error records in {args.output})")
    return summary


def is_results_file(line: str) -> bool:
    """``line`` (a file's first) is a record of ``translit-ppa evaluate``."""
    try:
        rec = json.loads(line)
    except ValueError:
        return False
    return isinstance(rec, dict) and "model" in rec and "task" in rec
