"""``translit-ppa``: one subcommand per stage; each subcommand's module is imported only when it runs.

Every subcommand module exposes ``add_arguments(parser)`` and ``run(args) -> int``.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys

# name -> (module, one-line help). Modules are imported lazily so `translit-ppa --help` stays fast and a
# subcommand's heavy dependencies (uroman, transformers, seqeval, matplotlib) load only when needed.
COMMANDS: dict[str, tuple[str, str]] = {
    "convert": ("translit_plugin.cli.convert", "HF XLM-R/Glot500 checkpoint -> fairseq model directory"),
    "export-hf": ("translit_plugin.cli.export_hf", "fairseq checkpoint -> HF directory (safetensors + tokenizer)"),
    "prepare": ("translit_plugin.cli.prepare", "raw text -> sampled, transliterated, binarized pairs"),
    "build-start-model": (
        "translit_plugin.cli.build_start_model",
        "train a small sentencepiece + random XLM-R HF checkpoint (demo and tests)",
    ),
    "evaluate": ("translit_plugin.cli.evaluate", "retrieval / classification / tagging evaluation"),
    "select-checkpoint": ("translit_plugin.cli.select_checkpoint", "pick the best checkpoint by Tatoeba top-10"),
    "report": ("translit_plugin.cli.report", "aggregate evaluation results into paper-style tables"),
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="translit-ppa",
        description="Transliteration-based post-training alignment for multilingual encoders (fairseq plugin).",
    )
    parser.add_argument("--log-level", default="INFO", help="logging level (default: %(default)s)")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, (_module, help_text) in COMMANDS.items():
        sub.add_parser(name, help=help_text, add_help=False)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser()
    if not argv or argv[0] not in COMMANDS:
        args = parser.parse_args(argv)  # prints help / errors for unknown commands
        parser.print_help()
        return 2 if args.command is None else 0
    name, rest = argv[0], argv[1:]
    module_name, help_text = COMMANDS[name]
    module = importlib.import_module(module_name)
    sub = argparse.ArgumentParser(prog=f"translit-ppa {name}", description=help_text)
    sub.add_argument("--log-level", default="INFO", help="logging level (default: %(default)s)")
    module.add_arguments(sub)
    args = sub.parse_args(rest)
    logging.basicConfig(
        level=getattr(logging, str(args.log_level).upper(), logging.INFO),
        format="%(asctime)s | %(levelname)s | %(name)s | %(message)s",
        force=True,
    )
    return int(module.run(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
