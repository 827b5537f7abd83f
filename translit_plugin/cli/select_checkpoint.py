"""``translit-ppa select-checkpoint RUN_DIR``: pick a run's best checkpoint by Tatoeba top-10 (the paper's criterion).

Inputs: the training run directory (its ``checkpoint*.pt``) and a Tatoeba directory (``tatoeba.{L}-eng_Latn.{L}`` /
``.eng_Latn``). Scores each checkpoint by the mean over target languages of top-10 accuracy of target-language
queries against English candidates (where the model is read: its use.json, else the paper's layer 8, mean pooling;
``--view probe`` for the paper's view), caching per checkpoint in
``RUN_DIR/select_checkpoint_cache.json``. Prints the table and writes ``--output`` (default
``RUN_DIR/selected_checkpoint.json``) naming the best checkpoint.
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

logger = logging.getLogger(__name__)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from translit_plugin.cli.argtypes import POSITIVE
    from translit_plugin.cli.embedding_args import add_embedding_arguments

    parser.description = __doc__
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    parser.add_argument("run_dir", type=Path, help="training run directory with checkpoint*.pt")
    parser.add_argument("--data-dir", required=True, type=Path, help="Tatoeba directory")
    parser.add_argument("--model-dir", type=Path, default=None,
                        help="directory with dict.txt and sentencepiece.bpe.model if RUN_DIR lacks them")
    parser.add_argument("--pattern", default="checkpoint*.pt", help="checkpoint glob (default: %(default)s)")
    parser.add_argument("--prefix", default="tatoeba", help="retrieval file prefix (default: %(default)s)")
    parser.add_argument("--targets", nargs="+", default=None, help="languages (default: every one found)")
    add_embedding_arguments(parser)
    parser.add_argument("--max-eval-examples", type=POSITIVE, default=None, help="first N sentences per language")
    parser.add_argument("--cache", type=Path, default=None,
                        help="score cache (default: RUN_DIR/select_checkpoint_cache.json)")
    parser.add_argument("--output", type=Path, default=None, help="(default: RUN_DIR/selected_checkpoint.json)")
    parser.add_argument("--device", default=None, help="cpu / cuda (default: cuda if available)")
    parser.add_argument("--no-progress", action="store_true")


def run(args: argparse.Namespace) -> int:
    from translit_plugin.core.files import atomic_write_json
    from translit_plugin.evaluation.command import pooling_choice
    from translit_plugin.evaluation.models import default_device
    from translit_plugin.evaluation.report_files import check_selection_files
    from translit_plugin.evaluation.runner import EvalOptions
    from translit_plugin.evaluation.selection import CACHE_NAME, find_checkpoints, select_checkpoint

    if not args.run_dir.is_dir():
        raise FileNotFoundError(f"run directory not found: {args.run_dir}")
    if not args.data_dir.is_dir():
        raise FileNotFoundError(f"--data-dir {args.data_dir} is not a directory")
    path = args.output or args.run_dir / "selected_checkpoint.json"
    check_selection_files(path, args.cache or args.run_dir / CACHE_NAME,
                          [*find_checkpoints(args.run_dir, args.pattern), args.data_dir])
    opts = EvalOptions(task="tatoeba", data_dir=args.data_dir, targets=args.targets, prefix=args.prefix,
                       view=args.view, layer=args.layer, pooling=pooling_choice(args.pooling),
                       prompt_name=args.prompt_name, embed_batch_size=args.embed_batch_size,
                       max_eval_examples=args.max_eval_examples, device=args.device or default_device(),
                       progress=not args.no_progress)
    sel = select_checkpoint(args.run_dir, opts, model_dir=args.model_dir, cache_path=args.cache,
                            pattern=args.pattern)
    sys.stdout.write(sel.table())
    atomic_write_json(path, sel.to_dict(), indent=1)
    logger.info("best: %s (%.2f); written to %s", sel.best, 100 * sel.best_score, path)
    if sel.failed:
        logger.warning("%d checkpoint(s) could not be scored and were skipped: %s", len(sel.failed),
                       ", ".join(sel.failed))
    return 0

