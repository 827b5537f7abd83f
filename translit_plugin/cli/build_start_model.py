"""``translit-ppa build-start-model``: sentencepiece on local text + a random XLM-R, saved as an HF checkpoint.

Inputs: one or more text files (one sentence per line).  Output: an HF model directory that ``translit-ppa convert``
takes like any Glot500 / XLM-R checkpoint.  For the offline demo and tests; real runs start from Glot500.
"""

from __future__ import annotations

import argparse
from pathlib import Path


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from translit_plugin.cli.argtypes import POSITIVE, int_at_least
    from translit_plugin.core.names import DEFAULT_MAX_LENGTH

    parser.add_argument("--text", nargs="+", required=True, help="text files (one sentence per line) for sentencepiece")
    parser.add_argument("--output", required=True, help="HF checkpoint directory to write")
    parser.add_argument("--vocab-size", type=int_at_least(8), default=8000,
                        help="sentencepiece pieces (default: %(default)s)")
    parser.add_argument("--layers", type=POSITIVE, default=2, help="transformer layers (default: %(default)s)")
    parser.add_argument("--hidden", type=POSITIVE, default=64,
                        help="hidden size, a multiple of --heads (default: %(default)s)")
    parser.add_argument("--heads", type=POSITIVE, default=4, help="attention heads (default: %(default)s)")
    parser.add_argument("--ffn", type=POSITIVE, default=128, help="feed-forward size (default: %(default)s)")
    parser.add_argument("--max-positions", type=int_at_least(3), default=DEFAULT_MAX_LENGTH,
                        help="longest input in tokens, <s> and </s> included (default: %(default)s)")
    parser.add_argument("--seed", type=int, default=0,
                        help="seed of the sentencepiece training and the weights (default: %(default)s)")
    parser.add_argument("--force", action="store_true", help="replace an existing output of this command")


def run(args: argparse.Namespace) -> int:
    from translit_plugin.conversion.start_model import (
        START_MODEL_COMMAND,
        START_MODEL_FILES,
        START_MODEL_MARKER,
        build_random_xlmr,
        train_sentencepiece,
    )
    from translit_plugin.core.files import atomic_write_json
    from translit_plugin.core.safe_output import staged_dir

    if args.hidden % args.heads:
        raise ValueError(f"--hidden {args.hidden} is not a multiple of --heads {args.heads}")
    out = Path(args.output)
    with staged_dir(out, args.force, args.text, START_MODEL_MARKER, START_MODEL_COMMAND, START_MODEL_FILES) as tmp:
        try:
            spm_path = train_sentencepiece(args.text, tmp / "sentencepiece.bpe.model", args.vocab_size, seed=args.seed)
        except RuntimeError as e:  # sentencepiece reports bad settings for the text as RuntimeError
            msg = " ".join(str(e).split()).split("] ", 1)[-1]
            raise ValueError(f"sentencepiece training on {', '.join(args.text)} failed: {msg}") from e
        build_random_xlmr(
            spm_path, tmp, args.layers, args.hidden, args.heads, args.ffn, args.max_positions, seed=args.seed
        )
        record = {k: getattr(args, k) for k in ("text", "vocab_size", "layers", "hidden", "heads", "ffn",
                                                "max_positions", "seed")}
        atomic_write_json(tmp / START_MODEL_MARKER, record, indent=2)
    print(f"wrote {out}")
    return 0
