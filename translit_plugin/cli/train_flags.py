"""``translit-ppa train-flags``: every flag of ``--task translit_align``, ``--criterion mlm_seq_tlm`` (per loss term)
and the ``translit_roberta`` architectures, with type, choices, default and help.

Read from the configs fairseq builds its parser from (``translit_plugin.flags``), so the list is what
``fairseq-train`` accepts; fairseq 0.12's ``fairseq-train --help`` shows none of these flags (it answers ``--help``
before it adds them).  Groups: ``task``, ``criterion`` (its own flags and every term), ``criterion.TERM`` or ``TERM``
(``mlm_orig``, ``mlm_latn``, ``tlm``, ``seq``, ``anchor``: one term), ``model``.
"""

from __future__ import annotations

import argparse
import json
import sys


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.description = __doc__
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    parser.add_argument("--format", choices=("text", "markdown", "json"), default="text",
                        help="output format (default: %(default)s); json: {\"groups\": [{name, title, flags: [{name, "
                             "dest, type, choices, default, required, help, sets}]}]}")
    parser.add_argument("--group", action="append", default=None, metavar="NAME",
                        help="only this group (repeatable): task, criterion, criterion.TERM or TERM (e.g. anchor), "
                             "model; default: all")
    parser.add_argument("--arch", default=None, metavar="ARCH",
                        help="architecture whose defaults the model group shows (translit_roberta_base, _large, "
                             "_tiny; default: translit_roberta_base)")


def run(args: argparse.Namespace) -> int:
    from translit_plugin.flags import DEFAULT_ARCH, flag_groups, format_markdown, format_text, select_groups

    groups = select_groups(flag_groups(args.arch or DEFAULT_ARCH), args.group)
    if args.format == "json":
        text = json.dumps({"groups": [g.as_dict() for g in groups]}, indent=2, ensure_ascii=False) + "\n"
    elif args.format == "markdown":
        text = format_markdown(groups)
    else:
        text = format_text(groups)
    sys.stdout.write(text)
    return 0
