"""The options of ``prepare`` and ``encode``: prepare's option groups, and what the two share (``--max-length`` with
its deprecated alias ``--max-tokens``, and the ``N|all`` count of ``--latn-check``)."""

from __future__ import annotations

import argparse
import os
from pathlib import Path


class _DeprecatedAlias(argparse.Action):
    """An old flag name: stores into the new flag's destination and notes its use (``warn_deprecated`` in
    :mod:`translit_plugin.cli.prepare` says so)."""

    def __call__(self, parser, namespace, values, option_string=None) -> None:
        setattr(namespace, self.dest, values)
        used = getattr(namespace, "deprecated_flags", [])
        namespace.deprecated_flags = used if option_string in used else [*used, option_string]


def add_max_length(group: argparse._ActionsContainer, default: int) -> None:
    """``--max-length`` (the length budget of :mod:`translit_plugin.core.names`) and its old name ``--max-tokens``,
    still accepted but hidden from the help (fairseq's ``--max-tokens`` is a batching flag, not a length)."""
    from translit_plugin.cli.argtypes import int_at_least

    group.add_argument("--max-length", type=int_at_least(3), default=default,
                       help="longest sequence incl. <s> and </s>; longer lines keep their first pieces and </s> "
                       "(default: %(default)s)")
    group.add_argument("--max-tokens", dest="max_length", type=int_at_least(3), default=argparse.SUPPRESS,
                       action=_DeprecatedAlias, help=argparse.SUPPRESS)


def latn_lines(text: str) -> int | None:
    """``--latn-check``: a count of pairs, or ``all`` (None)."""
    if text.lower() == "all":
        return None
    from translit_plugin.cli.argtypes import NONNEG

    return NONNEG(text)


def add_prepare_arguments(parser: argparse.ArgumentParser) -> None:
    """Every option of ``prepare``, in its help's groups."""
    from translit_plugin.cli.argtypes import NONNEG, POSITIVE, float_in
    from translit_plugin.prepare.clean import CleanConfig
    from translit_plugin.prepare.config import STAGES, PrepareConfig
    from translit_plugin.prepare.latn_check import LatnCheckConfig
    from translit_plugin.prepare.sample import SampleConfig

    c, s, p, lc = CleanConfig(), SampleConfig(), PrepareConfig(Path(), Path(), Path()), LatnCheckConfig()
    io = parser.add_argument_group("inputs and outputs")
    io.add_argument("--input", type=Path, required=True, help="directory of {lang_Script}.txt files")
    io.add_argument("--model-dir", type=Path, required=True,
                    help="model directory (sentencepiece.bpe.model + dict.txt), e.g. from `translit-ppa convert`")
    io.add_argument("--output", type=Path, required=True, help="output directory (data-bin/, manifest.json, work/)")
    io.add_argument("--group", type=Path, default=None,
                    help="language-group file (examples/groups/*.json): languages, uroman codes, sampling")
    io.add_argument("--langs", default=None, help="comma-separated lang_Script codes to prepare (default: all/group)")
    io.add_argument("--allow-unknown-lang", action="store_true",
                    help="accept language/script codes that are not ISO 639-3 / ISO 15924 (used as they are)")
    io.add_argument("--skip-unrecognized-files", action="store_true",
                    help="skip (with a warning) files in --input not named {lang_Script}.txt instead of failing")
    io.add_argument("--allow-empty-lang", action="store_true",
                    help="a language without usable lines is a warning (0 pairs), not an error")

    cl = parser.add_argument_group("cleaning")
    cl.add_argument("--dedupe", action="store_true", help="drop exact duplicate lines per language")
    cl.add_argument("--max-chars", type=NONNEG, default=c.max_chars,
                    help="drop lines longer than this many characters; 0 = no limit (default: %(default)s)")
    cl.add_argument("--min-chars", type=NONNEG, default=c.min_chars, help="drop shorter lines (default: %(default)s)")

    sa = parser.add_argument_group("sampling (paper: max(10%%, 10k) per language; these flags override a --group's)")
    sa.add_argument("--sample-fraction", type=float_in(0, 1), default=None, help=f"(default: {s.fraction})")
    sa.add_argument("--sample-min", type=NONNEG, default=None, help=f"(default: {s.min_sentences})")
    sa.add_argument("--sample-max", type=POSITIVE, default=None, help="optional cap per language")
    sa.add_argument("--seed", type=int, default=s.seed, help="(default: %(default)s)")
    sa.add_argument("--valid-size", type=NONNEG, default=s.valid_size,
                    help="validation sentences per language (default: %(default)s) ...")
    sa.add_argument("--valid-max-fraction", type=float_in(0, 1, high_open=True), default=s.valid_max_fraction,
                    help="... but at most this share of its sample (default: %(default)s)")
    sa.add_argument("--chunk-size", type=POSITIVE, default=s.chunk_size,
                    help="sentences per work chunk: the unit of parallelism, resumption and sharding "
                    "(default: %(default)s)")

    tr = parser.add_argument_group("transliteration (uroman)")
    tr.add_argument("--latn-input", type=Path, default=None,
                    help="use given transliterations instead of uroman: a directory of {lang_Script}.txt, line i = "
                    "transliteration of line i of the --input file (e.g. the Perl uroman the paper used)")
    tr.add_argument("--latn-check", type=latn_lines, default=lc.lines, metavar="N|all",
                    help="with --latn-input: pairs per language whose Latin side is compared with uroman (0 = no "
                    f"check, all = every pair) (default: {lc.lines})")
    tr.add_argument("--latn-min-similarity", type=float_in(0, 1), default=lc.min_similarity,
                    help="with --latn-input: fail when a checked pair's similarity to uroman (0-1, character-level) is "
                    "below this (default: %(default)s)")
    tr.add_argument("--content-check", choices=("on", "off"), default="on",
                    help="with --latn-input: check every line against a cheap romanisation of its original (swapped, "
                    "shifted or foreign lines fail; README, 'Checking given romanisations') (default: %(default)s)")
    tr.add_argument("--uroman-code", action="append", default=[], metavar="LANG=CODE",
                    help="override the uroman code derived from lang_Script (repeatable; CODE 'none' = no code)")
    tr.add_argument("--no-lang-code", action="store_true",
                    help="call uroman without language codes (like the paper's Perl uroman call)")
    tr.add_argument("--uroman-cache-size", type=NONNEG, default=p.uroman_cache_size,
                    help="uroman token cache entries, 0 = off (default: %(default)s, uroman's CLI default)")

    en = parser.add_argument_group("encoding")
    add_max_length(en, p.max_length)
    en.add_argument("--overlong", choices=("truncate", "drop"), default=p.overlong,
                    help="longer pairs: truncate the long side (paper) or drop the pair (default: %(default)s)")

    ru = parser.add_argument_group("execution")
    ru.add_argument("--workers", type=POSITIVE, default=min(4, os.cpu_count() or 1),
                    help="worker processes for transliteration + binarization (default: %(default)s)")
    ru.add_argument("--num-shards", type=POSITIVE, default=1, help="split the chunks over N array jobs")
    ru.add_argument("--shard-id", type=NONNEG, default=0, help="which shard this job processes (0-based)")
    ru.add_argument("--stop-after", choices=STAGES, default=None, help="stop after this stage")
    ru.add_argument("--verify-samples", type=NONNEG, default=p.verify_samples,
                    help="random pairs per split re-encoded and compared (default: %(default)s)")
    ru.add_argument("--verify-translit", type=NONNEG, default=p.verify_translit,
                    help="of those, pairs re-transliterated and compared (default: %(default)s)")
    ru.add_argument("--no-progress", action="store_true", help="no progress bars")


def add_check_arguments(parser: argparse.ArgumentParser) -> None:
    """``encode``'s checks that ``--latn`` is the romanisation of ``--orig`` line for line (README, 'Checking given
    romanisations'); ``prepare`` has the same three options, for ``--latn-input``, in its transliteration group."""
    from translit_plugin.cli.argtypes import float_in
    from translit_plugin.prepare.latn_check import LatnCheckConfig

    lc = LatnCheckConfig()
    parser.add_argument("--content-check", choices=("on", "off"), default="on",
                        help="check every line of --latn against a cheap romanisation of its --orig line (swapped, "
                        "shifted or foreign lines fail) (default: %(default)s)")
    parser.add_argument("--latn-check", type=latn_lines, default=lc.lines, metavar="N|all",
                        help="pairs per language also compared with uroman's own romanisation (0 = none, all = every "
                        f"pair) (default: {lc.lines})")
    parser.add_argument("--latn-min-similarity", type=float_in(0, 1), default=lc.min_similarity,
                        help="fail when a compared pair's similarity to uroman (0-1) is below this "
                        "(default: %(default)s)")
