"""``translit-ppa encode``: (original, Latin) text -> the sentencepiece piece files ``fairseq-preprocess`` binarizes.

The pipeline (inputs, outputs, resumption, the rules a pair is kept by) is :mod:`translit_plugin.prepare.encode_job`;
this module is its command line.
"""

from __future__ import annotations

import argparse
import logging
import os
from pathlib import Path

from translit_plugin.core.names import DEFAULT_MAX_LENGTH

logger = logging.getLogger(__name__)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from translit_plugin.cli.prepare_args import add_check_arguments, add_max_length
    from translit_plugin.prepare.clean import CleanConfig

    parser.description = __doc__.split("\n\n")[0]
    parser.add_argument("--model-dir", type=Path, required=True,
                        help="model directory with sentencepiece.bpe.model and dict.txt (from `translit-ppa convert`)")
    parser.add_argument("--orig", type=Path, required=True,
                        help="original text: a directory of {lang_Script}.txt files, or one file")
    parser.add_argument("--latn", type=Path, required=True,
                        help="its transliteration, line-aligned: a directory with the same file names, or one file "
                        "(`translit-ppa transliterate` writes it)")
    parser.add_argument("--split", required=True, help="split name: output files are OUT/SPLIT.orig and OUT/SPLIT.latn")
    parser.add_argument("--output", type=Path, required=True, help="directory for the piece files")
    parser.add_argument("--data-bin", type=Path, required=True,
                        help="the data-bin the two fairseq-preprocess runs will write into (DATA/orig, DATA/latn): "
                        "pairing.json and language ids go here")
    parser.add_argument("--lang", default=None, help="lang_Script of single-file inputs (for language ids)")
    parser.add_argument("--langs", default=None, help="comma-separated lang_Script codes (directories; default: all)")
    add_max_length(parser, DEFAULT_MAX_LENGTH)
    parser.add_argument("--overlong", choices=("truncate", "drop"), default="truncate",
                        help="longer lines: truncate (paper) or drop the pair (default: %(default)s)")
    parser.add_argument("--max-chars", type=int, default=CleanConfig.max_chars,
                        help="drop pairs whose original is longer than this many characters, as prepare; 0 = no "
                        "limit (default: %(default)s)")
    add_check_arguments(parser)
    parser.add_argument("--workers", type=int, default=min(4, os.cpu_count() or 1),
                        help="languages encoded in parallel (default: %(default)s)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")


def run(args: argparse.Namespace) -> int:
    from translit_plugin.cli.prepare import warn_deprecated
    from translit_plugin.prepare.chunks import AlignmentError
    from translit_plugin.prepare.encode_job import check_configs, encode_split, pair_inputs, preprocess_hint

    warn_deprecated(args)
    langs = [x for x in args.langs.split(",") if x] if args.langs else None
    pairs = pair_inputs(args.orig, args.latn, args.lang, langs)
    checks = check_configs(args.content_check == "on", args.latn_check, args.latn_min_similarity)
    try:
        encode_split(pairs, args.split, args.model_dir, args.output, args.data_bin, max_length=args.max_length,
                     overlong=args.overlong, max_chars=args.max_chars, workers=args.workers,
                     progress=not args.no_progress, checks=checks)
    except AlignmentError as e:
        logger.error("alignment check failed: %s", e)
        return 3
    logger.info("next: %s", preprocess_hint(args.split, args.model_dir, args.output, args.data_bin))
    return 0
