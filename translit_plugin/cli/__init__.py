"""``translit-ppa``: one subcommand per stage; each subcommand's module is imported only when it runs.

Every subcommand module exposes ``add_arguments(parser)`` and ``run(args) -> int``.

Errors: every expected failure is one line on stderr, ``translit-ppa COMMAND: error: WHAT``, and an exit status:
2 for usage and bad input (missing or malformed files, unsafe output paths, unknown language codes), 3 for failed
checks (alignment, parity, verification).  Only unexpected exception types (bugs) print a traceback (status 1);
``--debug`` (before or after the command) prints the traceback of every error.
"""

from __future__ import annotations

import argparse
import errno
import importlib
import logging
import sys
import traceback

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
    "transliterate": ("translit_plugin.cli.transliterate", "raw text -> uroman Latin text, line for line"),
    "encode": ("translit_plugin.cli.encode", "original + Latin text -> piece files for fairseq-preprocess"),
    "trim-vocab": ("translit_plugin.cli.trim_vocab", "model directory -> one with only the pieces a corpus uses"),
    "untrim": ("translit_plugin.cli.untrim", "model trained on a trimmed vocabulary -> the full start vocabulary"),
    "train-flags": (
        "translit_plugin.cli.train_flags",
        "every fairseq-train flag of the task, the criterion (per loss term) and the model, with default and help",
    ),
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="translit-ppa",
        description="Transliteration-based post-training alignment for multilingual encoders (fairseq plugin).",
    )
    parser.add_argument("--log-level", default="INFO", help="logging level (default: %(default)s)")
    parser.add_argument("--debug", action="store_true", help="print the full traceback of any error")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, (_module, help_text) in COMMANDS.items():
        sub.add_parser(name, help=help_text, add_help=False)
    return parser


USAGE_ERROR = 2  # bad usage or input: missing/malformed files, unsafe output paths, unknown codes
CHECK_FAILED = 3  # a check failed: alignment, parity, verification


def exit_code_for(e: BaseException) -> int | None:
    """The exit status of an expected error, or None for an unexpected one (a bug: show the traceback).

    Our own error classes say it with an ``exit_code`` attribute; file-system errors and ``ValueError`` (the type of
    every "this input is wrong" error raised in the package, e.g. ``ConversionError``, ``EvalDataError``) are bad
    input.
    """
    code = getattr(e, "exit_code", None)
    if isinstance(code, int):
        return code
    from translit_plugin.core.safe_output import UnsafeOutputError

    if isinstance(e, (OSError, ValueError, UnsafeOutputError)):
        return USAGE_ERROR
    return None


def one_line(e: BaseException) -> str:
    """An exception as one line: its message with line breaks folded (the type name if it has no message)."""
    text = " ".join(str(e).split()) or type(e).__name__
    if isinstance(e, KeyError):
        text = f"missing key {text}"
    return text


#: errno values that mean "the disk (or quota) is full": the message names where and what to do
_FULL = {errno.ENOSPC, errno.EDQUOT, errno.EFBIG}
#: argument names under which the commands take what they write
_OUTPUT_ARGS = ("output", "out", "output_dir", "out_dir", "save_dir")


def describe_error(e: BaseException, command: str, args: argparse.Namespace | None = None) -> str:
    """The one line printed for an expected error; a file-system error also says which file (the one the error
    names, else the command's output) and, when the disk is full, what to do."""
    text = one_line(e)
    if not isinstance(e, OSError) or e.errno is None:
        return text
    path = e.filename
    if path is None and args is not None:
        path = next((getattr(args, a) for a in _OUTPUT_ARGS if getattr(args, a, None)), None)
    where = f" while writing {path}" if path is not None and e.filename is None else ""
    if e.errno in _FULL:
        target = path if path is not None else "the output"
        return (f"{e.strerror or text}{where or (': ' + str(path) if path else '')} (translit-ppa {command}): free "
                f"space on the file system of {target} (or choose an output on another one) and run the command "
                "again")
    return text + where


def _split_global(argv: list[str]) -> tuple[list[str], list[str]]:
    """Options given before the command (``--debug``, ``--log-level X``) and the rest."""
    glob: list[str] = []
    i = 0
    while i < len(argv) and argv[i].startswith("-") and argv[i] not in ("-h", "--help"):
        if argv[i] == "--log-level" and i + 1 < len(argv):
            glob += argv[i : i + 2]
            i += 2
        elif argv[i] == "--debug" or argv[i].startswith("--log-level="):
            glob.append(argv[i])
            i += 1
        else:
            break
    return glob, argv[i:]


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser()
    glob, argv = _split_global(argv)
    if not argv or argv[0] not in COMMANDS:
        args = parser.parse_args(glob + argv)  # prints help / errors for unknown commands
        parser.print_help()
        return 2 if args.command is None else 0
    name, rest = argv[0], argv[1:]
    module_name, help_text = COMMANDS[name]
    module = importlib.import_module(module_name)
    sub = argparse.ArgumentParser(prog=f"translit-ppa {name}", description=help_text)
    sub.add_argument("--log-level", default="INFO", help="logging level (default: %(default)s)")
    sub.add_argument("--debug", action="store_true", help="print the full traceback of any error")
    module.add_arguments(sub)
    args = sub.parse_args(glob + rest)
    logging.basicConfig(
        level=getattr(logging, str(args.log_level).upper(), logging.INFO),
        format="%(asctime)s | %(levelname)s | %(name)s | %(message)s",
        force=True,
    )
    try:
        return int(module.run(args) or 0)
    except KeyboardInterrupt:
        print(f"translit-ppa {name}: interrupted", file=sys.stderr)
        return 130
    except Exception as e:  # noqa: BLE001 - the one place every error of a command ends up
        code = exit_code_for(e)
        if args.debug or code is None:
            traceback.print_exc()
        if code is None:
            print(f"translit-ppa {name}: internal error: {type(e).__name__}: {one_line(e).rstrip('.')}. This is a "
                  "bug; please report it with the traceback above", file=sys.stderr)
            return 1
        print(f"translit-ppa {name}: error: {describe_error(e, name, args)}", file=sys.stderr)
        return code


if __name__ == "__main__":
    sys.exit(main())
