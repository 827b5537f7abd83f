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

logger = logging.getLogger(__name__)


def warn_deprecated(args: argparse.Namespace) -> None:
    """One warning per deprecated flag the command line used (noted by :mod:`translit_plugin.cli.prepare_args`;
    ``encode`` warns through this too)."""
    for flag in getattr(args, "deprecated_flags", []):
        logger.warning("%s is deprecated, use --max-length (same meaning)", flag)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from translit_plugin.cli.prepare_args import add_prepare_arguments

    parser.description = __doc__.split("\n\n")[0]
    add_prepare_arguments(parser)


def run(args: argparse.Namespace) -> int:
    from translit_plugin.prepare.options import config_from_options
    from translit_plugin.prepare.pipeline import run_prepare

    warn_deprecated(args)
    run_prepare(config_from_options(args))  # errors: one line and exit status 2 (bad input) / 3 (failed check)
    return 0
