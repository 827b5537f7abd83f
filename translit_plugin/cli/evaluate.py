"""``translit-ppa evaluate TASK``: evaluate models by the paper's protocol; results go to a resumable JSONL file.

Tasks and the data layout each reads (``--data-dir``):

- ``retrieval`` (``--dataset sr-b`` or ``tatoeba``): ``bible.{L}-eng_Latn.{L}`` / ``.eng_Latn`` (``tatoeba.`` prefix)
- ``taxi1500``: ``860_{L}_train.tsv``, ``{L}_dev.tsv``, ``{L}_test.tsv``
- ``sib200``: ``{L}/{train,dev,test}.tsv``
- ``ner``, ``pos``: ``{split}-{L}.tsv`` + ``labels.txt``

Output: one JSON line per (model, task, source, target, seed) in ``--output``; rerunning with the same options skips
what is done. Models: ``[NAME=]PATH`` with PATH a model directory, a fairseq checkpoint or an HF directory.
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

logger = logging.getLogger(__name__)

TASKS = ("retrieval", "taxi1500", "sib200", "ner", "pos")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from translit_plugin.cli.argtypes import POSITIVE, int_at_least, positive_float
    from translit_plugin.core.names import DEFAULT_MAX_LENGTH

    parser.description = __doc__
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    parser.add_argument("task", choices=TASKS, help="what to evaluate")
    parser.add_argument("--models", nargs="+", required=True, metavar="[NAME=]PATH",
                        help="models: model directory, fairseq checkpoint .pt or HF directory (converted on the fly)")
    parser.add_argument("--data-dir", required=True, type=Path, help="dataset directory (layout per task, see above)")
    parser.add_argument("--output", "-o", required=True, type=Path, help="results JSONL (appended; a rerun resumes)")
    parser.add_argument("--dataset", choices=("sr-b", "tatoeba"), default="sr-b",
                        help="retrieval dataset: file prefix bible. (sr-b) or tatoeba. (default: %(default)s)")
    parser.add_argument("--prefix", default=None, help="retrieval: override the file prefix (default from --dataset)")
    parser.add_argument("--sources", nargs="+", default=["eng_Latn"],
                        help="source languages (transfer / retrieval pivot) (default: %(default)s)")
    parser.add_argument("--targets", nargs="+", default=None, help="target languages (default: every language found)")
    parser.add_argument("--langs-file", type=Path, default=None,
                        help="restrict targets to a 'lang_Script<TAB>0|1' list (see --langs-flag)")
    parser.add_argument("--langs-flag", type=int, choices=(0, 1), default=None,
                        help="with --langs-file: keep only languages with this flag")
    parser.add_argument("--seeds", nargs="+", type=int, default=[42, 43, 44, 45, 46],
                        help="fine-tuning seeds (default: %(default)s); ignored for retrieval")
    g = parser.add_argument_group("embeddings (retrieval)")
    add_embedding_arguments(g)
    g.add_argument("--embed-max-length", type=int_at_least(3), default=DEFAULT_MAX_LENGTH,
                   help="tokens incl. <s>, </s> (default: %(default)s)")
    g = parser.add_argument_group("fine-tuning (defaults: the paper's per-task settings)")
    g.add_argument("--max-epochs", type=POSITIVE, default=None, help="taxi1500/sib200 40, ner 5, pos 10")
    g.add_argument("--lr", type=positive_float, default=None, help="classification 1e-5, tagging 2e-5")
    g.add_argument("--batch-size", type=POSITIVE, default=None, help="32")
    g.add_argument("--grad-accum", type=POSITIVE, default=None, help="classification 1, tagging 2")
    g.add_argument("--max-length", type=int_at_least(3), default=None, help="taxi1500 100, sib200 160, ner/pos 256")
    g.add_argument("--patience", type=POSITIVE, default=None, help="stop after N epochs without a better dev score")
    g.add_argument("--eval-batch-size", type=POSITIVE, default=64, help="(default: %(default)s)")
    g.add_argument("--select-metric", default="seqeval_f1", choices=("seqeval_f1", "token_accuracy", "token_macro_f1"),
                   help="tagging: source-dev metric for picking the epoch (default: %(default)s, the paper's)")
    g = parser.add_argument_group("limits for quick runs")
    g.add_argument("--max-train-examples", type=POSITIVE, default=None, help="use the first N training examples")
    g.add_argument("--max-eval-examples", type=POSITIVE, default=None,
                   help="use the first N dev/test/retrieval examples")
    parser.add_argument("--device", default=None, help="cpu / cuda (default: cuda if available)")
    parser.add_argument("--cache-dir", type=Path, default=None, help="where converted HF models are kept")
    parser.add_argument("--assets-dir", type=Path, default=None,
                        help="dict.txt + sentencepiece.bpe.model for checkpoints whose directory lacks them")
    parser.add_argument("--no-progress", action="store_true", help="no progress bars")
    parser.add_argument("--allow-failures", action="store_true",
                        help="exit with status 0 even if some results failed (they are error records in the results "
                        "file and listed at the end); by default any failed result gives exit status 3")
    parser.add_argument("--strict", action="store_true", help=argparse.SUPPRESS)  # the default now; kept accepted


def add_embedding_arguments(parser: argparse._ActionsContainer) -> None:
    """``--view``, ``--layer``, ``--pooling``, ``--prompt-name`` and ``--embed-batch-size``."""
    from translit_plugin.cli.argtypes import NONNEG, POSITIVE
    from translit_plugin.core.names import CLS, MEAN_WITH_SPECIAL

    parser.add_argument("--view", choices=("use", "probe"), default="use",
                        help="where sentence vectors are read: 'use' = the model's use setting (use.json, recorded "
                             "at conversion: multilingual-e5 is read at its last layer with the 'query: ' prompt; a "
                             "model without one is read like the probe), 'probe' = the paper's (layer 8, mean over "
                             "every token, no prompt) (default: %(default)s)")
    parser.add_argument("--layer", type=NONNEG, default=None,
                        help="hidden layer (0 = embeddings), overriding the view's")
    parser.add_argument("--pooling", choices=(MEAN_WITH_SPECIAL, CLS, "mean"), default=None,
                        help="mean over every token including <s> and </s>, or the <s> vector ('mean': deprecated "
                             "name of mean_with_special), overriding the view's")
    parser.add_argument("--prompt-name", default=None,
                        help="one of the model's prompts (e5: query, passage) put in front of every sentence; '' = "
                             "none (default: the view's: the model's default prompt in 'use', none in 'probe')")
    parser.add_argument("--embed-batch-size", type=POSITIVE, default=128, help="(default: %(default)s)")


def pooling_choice(name: str | None) -> str | None:
    """The ``--pooling`` value under its current name (``mean`` is translated, with a warning)."""
    from translit_plugin.hub.encoding import DEPRECATED_POOLINGS

    if name in DEPRECATED_POOLINGS:
        logger.warning("--pooling %s is deprecated: it is %s (same vectors)", name, DEPRECATED_POOLINGS[name])
        return DEPRECATED_POOLINGS[name]
    return name


def build_options(args: argparse.Namespace):
    """Translate parsed arguments into :class:`EvalOptions`."""
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


def run(args: argparse.Namespace) -> int:
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
                      lambda p: _is_results_file(first_line(p)), "a results file of translit-ppa evaluate",
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
    if summary.errors and not args.allow_failures:
        logger.error("%d result(s) failed (listed above; error records in %s): exit status 3 (--allow-failures for 0)",
                     len(summary.errors), args.output)  # fmt: skip
        return 3
    return 0


def _is_results_file(line: str) -> bool:
    import json

    try:
        rec = json.loads(line)
    except ValueError:
        return False
    return isinstance(rec, dict) and "model" in rec and "task" in rec
