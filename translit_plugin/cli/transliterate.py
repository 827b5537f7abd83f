"""``translit-ppa transliterate``: raw text -> its uroman Latin transliteration, line for line (no sampling, no ids).

The pipeline (line contract, chunks, resumption) is :mod:`translit_plugin.prepare.transliterate_job`; this module is
its command line.
"""

from __future__ import annotations

import argparse
import logging
import os
from pathlib import Path

from translit_plugin.transliterate import DEFAULT_CACHE_SIZE

logger = logging.getLogger(__name__)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from translit_plugin.prepare.clean import CleanConfig
    from translit_plugin.prepare.sample import SampleConfig

    parser.description = __doc__.split("\n\n")[0]
    parser.add_argument("--input", type=Path, required=True, help="directory of {lang_Script}.txt files, or one file")
    parser.add_argument("--output", type=Path, required=True,
                        help="output directory (same file names), or output file when --input is a file")
    parser.add_argument("--lang", default=None,
                        help="lang_Script of a single --input file (default: the file name, e.g. fas_Arab.txt)")
    parser.add_argument("--langs", default=None, help="comma-separated lang_Script codes to do (default: all)")
    parser.add_argument("--uroman-code", action="append", default=[], metavar="LANG=CODE",
                        help="override the uroman code derived from lang_Script (repeatable; CODE 'none' = no code)")
    parser.add_argument("--no-lang-code", action="store_true",
                        help="call uroman without language codes (like the paper's Perl uroman call)")
    parser.add_argument("--uroman-cache-size", type=int, default=DEFAULT_CACHE_SIZE,
                        help="uroman token cache entries, 0 = off (default: %(default)s, as prepare)")
    parser.add_argument("--max-chars", type=int, default=CleanConfig.max_chars,
                        help="lines longer than this (after cleaning) get an empty transliteration, as prepare drops "
                        "them; 0 = no limit (default: %(default)s)")
    parser.add_argument("--chunk-size", type=int, default=SampleConfig.chunk_size,
                        help="lines per chunk: the unit of parallelism and resumption (default: %(default)s)")
    parser.add_argument("--workers", type=int, default=min(4, os.cpu_count() or 1),
                        help="worker processes (default: %(default)s)")
    parser.add_argument("--work-dir", type=Path, default=None,
                        help="resumable chunk outputs and records (default: OUTPUT/.work, or OUTPUT.work when OUTPUT "
                        "is a file)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")


def run(args: argparse.Namespace) -> int:
    from translit_plugin.prepare.transliterate_job import (
        input_files,
        output_paths,
        parse_uroman_codes,
        transliterate_files,
        uroman_codes_for,
    )

    langs = [x for x in args.langs.split(",") if x] if args.langs else None
    files = input_files(args.input, args.lang, langs)
    outputs, work = output_paths(args.input, args.output, files, args.work_dir)
    lcodes = uroman_codes_for(files, parse_uroman_codes(args.uroman_code), args.no_lang_code)
    logger.info("transliterate %d language(s) from %s into %s (uroman codes: %s)", len(files), args.input,
                args.output, lcodes)
    transliterate_files(files, outputs, work, lcodes, max_chars=args.max_chars, cache_size=args.uroman_cache_size,
                        chunk_size=args.chunk_size, workers=args.workers, progress=not args.no_progress)
    return 0
