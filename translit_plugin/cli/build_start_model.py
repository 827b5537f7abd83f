"""``translit-ppa build-start-model``: sentencepiece on local text + a random XLM-R, saved as an HF checkpoint.

Inputs: one or more text files (one sentence per line).  Output: an HF model directory that ``translit-ppa convert``
takes like any Glot500 / XLM-R checkpoint.  For the offline demo and tests; real runs start from Glot500.
"""

from __future__ import annotations

import argparse
from pathlib import Path


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from translit_plugin.cli.argtypes import POSITIVE, int_at_least

    parser.add_argument("--text", nargs="+", required=True, help="text files (one sentence per line) for sentencepiece")
    parser.add_argument("--output", required=True, help="HF checkpoint directory to write")
    parser.add_argument("--vocab-size", type=int_at_least(8), default=8000,
                        help="sentencepiece pieces (default: %(default)s)")
    parser.add_argument("--layers", type=POSITIVE, default=2)
    parser.add_argument("--hidden", type=POSITIVE, default=64, help="hidden size (a multiple of --heads)")
    parser.add_argument("--heads", type=POSITIVE, default=4)
    parser.add_argument("--ffn", type=POSITIVE, default=128)
    parser.add_argument("--max-positions", type=int_at_least(3), default=512)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--force", action="store_true", help="overwrite an existing output directory")


def run(args: argparse.Namespace) -> int:
    import json

    from translit_plugin.core.safe_output import START_MODEL_MARKER, staged_dir
    from translit_plugin.start_model import build_random_xlmr, train_sentencepiece

    if args.hidden % args.heads:
        raise ValueError(f"--hidden {args.hidden} is not a multiple of --heads {args.heads}")
    out = Path(args.output)
    with staged_dir(out, args.force, args.text, START_MODEL_MARKER, "translit-ppa build-start-model") as tmp:
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
        (tmp / START_MODEL_MARKER).write_text(json.dumps(record, indent=2) + "\n", encoding="utf-8")
    print(f"wrote {out}")
    return 0
