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
    from translit_plugin.cli.embedding_args import add_embedding_arguments
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


def run(args: argparse.Namespace) -> int:
    from translit_plugin.evaluation.command import EvaluateRequest, evaluate

    a = args
    summary = evaluate(EvaluateRequest(
        task=a.task, models=a.models, data_dir=a.data_dir, output=a.output, dataset=a.dataset, prefix=a.prefix,
        sources=a.sources, targets=a.targets, langs_file=a.langs_file, langs_flag=a.langs_flag, seeds=a.seeds,
        view=a.view, layer=a.layer, pooling=a.pooling, prompt_name=a.prompt_name, embed_batch_size=a.embed_batch_size,
        embed_max_length=a.embed_max_length, max_epochs=a.max_epochs, lr=a.lr, batch_size=a.batch_size,
        grad_accum=a.grad_accum, max_length=a.max_length, patience=a.patience, eval_batch_size=a.eval_batch_size,
        select_metric=a.select_metric, max_train_examples=a.max_train_examples, max_eval_examples=a.max_eval_examples,
        device=a.device, cache_dir=a.cache_dir, assets_dir=a.assets_dir, progress=not a.no_progress,
    ))  # fmt: skip
    if summary.errors and not args.allow_failures:
        logger.error("%d result(s) failed (listed above; error records in %s): exit status 3 (--allow-failures for 0)",
                     len(summary.errors), args.output)  # fmt: skip
        return 3
    return 0
