"""``translit-ppa prepare``: raw monolingual text -> sampled, uroman-transliterated, binarized (orig, latn) pairs.

Inputs: ``--input DIR`` of ``{lang_Script}.txt`` files (one sentence per line), ``--model-dir`` (``dict.txt`` +
``sentencepiece.bpe.model``), optionally ``--group examples/groups/NAME.json``.  Output: ``--output OUT`` with
``OUT/data-bin/{orig,latn}/{train,valid}.{bin,idx}``, ``dict.txt`` per side, ``OUT/data-bin/{train,valid}.lang.npy``,
``OUT/data-bin/langs.txt`` and ``OUT/manifest.json`` (layout: :mod:`translit_plugin.prepare`).

Rerunning the same command resumes an interrupted run.  For an array job: run once with ``--stop-after sample``,
then one job per shard with ``--num-shards N --shard-id K``, then the plain command once more to merge and verify.
"""

from __future__ import annotations

import argparse
import logging
import os
from pathlib import Path

logger = logging.getLogger(__name__)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from translit_plugin.prepare.clean import CleanConfig
    from translit_plugin.prepare.pipeline import STAGES, PrepareConfig
    from translit_plugin.prepare.sample import SampleConfig

    c, s, p = CleanConfig(), SampleConfig(), PrepareConfig(Path(), Path(), Path())
    parser.description = __doc__.split("\n\n")[0]
    io = parser.add_argument_group("inputs and outputs")
    io.add_argument("--input", type=Path, required=True, help="directory of {lang_Script}.txt files")
    io.add_argument("--model-dir", type=Path, required=True,
                    help="model directory (sentencepiece.bpe.model + dict.txt), e.g. from `translit-ppa convert`")
    io.add_argument("--output", type=Path, required=True, help="output directory (data-bin/, manifest.json, work/)")
    io.add_argument("--group", type=Path, default=None,
                    help="language-group file (examples/groups/*.json): languages, uroman codes, sampling")
    io.add_argument("--langs", default=None, help="comma-separated lang_Script codes to prepare (default: all/group)")

    cl = parser.add_argument_group("cleaning")
    cl.add_argument("--dedupe", action="store_true", help="drop exact duplicate lines per language")
    cl.add_argument("--max-chars", type=int, default=c.max_chars,
                    help="drop lines longer than this many characters; 0 = no limit (default: %(default)s)")
    cl.add_argument("--min-chars", type=int, default=c.min_chars, help="drop shorter lines (default: %(default)s)")

    sa = parser.add_argument_group("sampling (paper: max(10%%, 10k) per language; these flags override a --group's)")
    sa.add_argument("--sample-fraction", type=float, default=None, help=f"(default: {s.fraction})")
    sa.add_argument("--sample-min", type=int, default=None, help=f"(default: {s.min_sentences})")
    sa.add_argument("--sample-max", type=int, default=None, help="optional cap per language")
    sa.add_argument("--seed", type=int, default=s.seed, help="(default: %(default)s)")
    sa.add_argument("--valid-size", type=int, default=s.valid_size,
                    help="validation sentences per language (default: %(default)s) ...")
    sa.add_argument("--valid-max-fraction", type=float, default=s.valid_max_fraction,
                    help="... but at most this share of its sample (default: %(default)s)")
    sa.add_argument("--chunk-size", type=int, default=s.chunk_size,
                    help="sentences per work chunk: the unit of parallelism, resumption and sharding "
                    "(default: %(default)s)")

    tr = parser.add_argument_group("transliteration (uroman)")
    tr.add_argument("--latn-input", type=Path, default=None,
                    help="use given transliterations instead of uroman: a directory of {lang_Script}.txt, line i = "
                    "transliteration of line i of the --input file (e.g. the Perl uroman the paper used)")
    tr.add_argument("--uroman-code", action="append", default=[], metavar="LANG=CODE",
                    help="override the uroman code derived from lang_Script (repeatable; CODE 'none' = no code)")
    tr.add_argument("--no-lang-code", action="store_true",
                    help="call uroman without language codes (like the paper's Perl uroman call)")
    tr.add_argument("--uroman-cache-size", type=int, default=p.uroman_cache_size,
                    help="uroman token cache entries, 0 = off (default: %(default)s, uroman's CLI default)")

    en = parser.add_argument_group("encoding")
    en.add_argument("--max-tokens", type=int, default=p.max_tokens,
                    help="max sequence length incl. <s> and </s> (default: %(default)s)")
    en.add_argument("--overlong", choices=("truncate", "drop"), default=p.overlong,
                    help="longer pairs: truncate the long side (paper) or drop the pair (default: %(default)s)")

    ru = parser.add_argument_group("execution")
    ru.add_argument("--workers", type=int, default=min(4, os.cpu_count() or 1),
                    help="worker processes for transliteration + binarization (default: %(default)s)")
    ru.add_argument("--num-shards", type=int, default=1, help="split the chunks over N array jobs")
    ru.add_argument("--shard-id", type=int, default=0, help="which shard this job processes (0-based)")
    ru.add_argument("--stop-after", choices=STAGES, default=None, help="stop after this stage")
    ru.add_argument("--verify-samples", type=int, default=p.verify_samples,
                    help="random pairs per split re-encoded and compared (default: %(default)s)")
    ru.add_argument("--verify-translit", type=int, default=p.verify_translit,
                    help="of those, pairs re-transliterated and compared (default: %(default)s)")
    ru.add_argument("--no-progress", action="store_true", help="no progress bars")


def _parse_codes(items: list[str]) -> dict[str, str | None]:
    codes: dict[str, str | None] = {}
    for item in items:
        if "=" not in item:
            raise SystemExit(f"--uroman-code {item!r}: expected LANG=CODE, e.g. arz_Arab=ara")
        lang, code = item.split("=", 1)
        codes[lang] = None if code.lower() in ("", "none") else code
    return codes


def run(args: argparse.Namespace) -> int:
    from translit_plugin.prepare.chunks import AlignmentError
    from translit_plugin.prepare.clean import CleanConfig
    from translit_plugin.prepare.pipeline import PrepareConfig, run_prepare
    from translit_plugin.prepare.sample import SampleConfig

    given = {"fraction": args.sample_fraction, "min_sentences": args.sample_min, "max_sentences": args.sample_max}
    explicit = {k: v for k, v in given.items() if v is not None}
    cfg = PrepareConfig(
        input=args.input,
        model_dir=args.model_dir,
        output=args.output,
        langs=[x for x in args.langs.split(",") if x] if args.langs else None,
        group=args.group,
        latn_input=args.latn_input,
        clean=CleanConfig(dedupe=args.dedupe, max_chars=args.max_chars, min_chars=args.min_chars),
        sample=SampleConfig(seed=args.seed, valid_size=args.valid_size, valid_max_fraction=args.valid_max_fraction,
                            chunk_size=args.chunk_size, **explicit),
        sample_explicit=set(explicit),
        uroman_codes=_parse_codes(args.uroman_code),
        no_lang_code=args.no_lang_code,
        uroman_cache_size=args.uroman_cache_size,
        max_tokens=args.max_tokens,
        overlong=args.overlong,
        workers=args.workers,
        num_shards=args.num_shards,
        shard_id=args.shard_id,
        stop_after=args.stop_after,
        verify_samples=args.verify_samples,
        verify_translit=args.verify_translit,
        progress=not args.no_progress,
    )
    try:
        run_prepare(cfg)
    except AlignmentError as e:
        logger.error("alignment check failed: %s", e)
        return 3
    return 0
