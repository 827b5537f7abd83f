"""``translit-ppa trim-vocab``: a model directory cut down to the vocabulary a corpus uses.

Inputs: a model directory (``model.pt``, ``dict.txt``, ``sentencepiece.bpe.model``) and one or more corpora, each a
``translit-ppa prepare`` output directory (both sides are read from ``work/translit``, or from the ``data-bin`` when
``work/`` was deleted), a data-bin, a directory of ``{lang_Script}.txt`` files or a text file.  Raw text has no Latin
side: pass the transliterations too (e.g. ``--latn``-style files, or simply the prepare output).
Output: a model directory of the same kind plus ``trim.json`` (id map and sha256 of the full and trimmed files).
Every corpus line is checked to segment exactly as with the full model; hidden states on a few corpus lines are
compared with the full model's (must be equal).  Afterwards run ``translit-ppa prepare --model-dir OUT`` (on the same
prepare output directory only the binarization is redone), train with ``--finetune-from-model OUT/model.pt``, and
bring the result back to the full vocabulary with ``translit-ppa untrim``.
"""

from __future__ import annotations

import argparse


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("model_dir", help="full model directory (from `translit-ppa convert`)")
    parser.add_argument("corpus", nargs="+",
                        help="prepare output directory, data-bin, directory of {lang_Script}.txt files, or text file")
    parser.add_argument("-o", "--output", required=True, help="trimmed model directory to create")
    parser.add_argument("--check-lines", type=int, default=16,
                        help="corpus lines on which hidden states are compared with the full model (0 skips; "
                             "default: %(default)s)")
    parser.add_argument("--force", action="store_true", help="replace an existing output of this command")


def run(args: argparse.Namespace) -> int:
    from translit_plugin.trimming.trim import trim_model_dir

    # errors (TrimError: exit 2, TrimCheckError: 3, file errors: 2) become one line in the dispatcher (cli/__init__)
    rec = trim_model_dir(args.model_dir, args.corpus, args.output, force=args.force, check_lines=args.check_lines)
    print(f"wrote {args.output}: {rec['full']['rows']} -> {rec['trimmed']['rows']} rows "
          f"({rec['corpus_lines']} corpus lines, segmentation identical on all)")
    return 0
