"""``translit-ppa untrim``: a model trained on a trimmed vocabulary -> the full start model's vocabulary.

Inputs: the trained model (a training checkpoint such as ``checkpoints/checkpoint_best.pt``, or a trimmed model
directory) and the full start model directory it was trimmed from (checked by sha256 against ``trim.json``, which is
found next to the checkpoint, next to the run's ``--finetune-from-model``, or given with ``--trim-record``).
Output: a full-vocabulary model directory (``model.pt``, the start model's ``dict.txt`` and sentencepiece model,
``untrim.json``): the trained rows are written into the start model's embedding / LM-head matrices, every other row is
the start model's, bit for bit; all other tensors are the trained ones.  Then: ``translit-ppa export-hf OUT/model.pt
HF_OUT``.
"""

from __future__ import annotations

import argparse


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("trained", help="trained checkpoint (.pt) or trimmed model directory")
    parser.add_argument("full_model_dir", help="the full start model directory that was trimmed")
    parser.add_argument("output", help="full-vocabulary model directory to create")
    parser.add_argument("--trim-record", default=None, help="trim.json of the trimmed model (default: found)")
    parser.add_argument("--force", action="store_true", help="replace an existing output of this command")


def run(args: argparse.Namespace) -> int:
    from translit_plugin.trimming.untrim import untrim

    # errors become one line with their exit status in the dispatcher (cli/__init__)
    out = untrim(args.trained, args.full_model_dir, args.output, trim_record=args.trim_record, force=args.force)
    print(f"wrote {out}; next: translit-ppa export-hf {out}/model.pt HF_OUT")
    return 0
