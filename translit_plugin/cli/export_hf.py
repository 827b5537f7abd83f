"""``translit-ppa export-hf``: one of our fairseq checkpoints -> an HF ``XLMRobertaForMaskedLM`` directory.

Input: a checkpoint (``model.pt`` of a converted directory, or ``checkpoints/checkpoint_best.pt`` of a training run)
and the start model's sentencepiece file.  Output: ``config.json``, ``model.safetensors``, tokenizer files that
``AutoModelForMaskedLM`` / ``AutoTokenizer`` load offline, and ``translit_ppa_export.json`` (provenance).
"""

from __future__ import annotations

import argparse
import sys


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("checkpoint", help="fairseq checkpoint file (.pt)")
    parser.add_argument("output", help="HF directory to create")
    parser.add_argument("--spm", default=None, help="sentencepiece model (default: next to the checkpoint)")
    parser.add_argument("--force", action="store_true", help="replace an existing output directory")
    parser.add_argument("--no-parity-check", action="store_true", help="skip running HF and fairseq side by side")


def run(args: argparse.Namespace) -> int:
    from translit_plugin.convert import ConversionError, export_fairseq_to_hf

    try:
        out = export_fairseq_to_hf(
            args.checkpoint, args.output, spm_model=args.spm, force=args.force, check_parity=not args.no_parity_check
        )
    except (ConversionError, FileExistsError, FileNotFoundError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    print(f"wrote {out}")
    return 0
