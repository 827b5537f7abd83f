"""``translit-ppa export-hf``: one of our fairseq checkpoints -> an HF directory that is what the source was.

Input: a checkpoint (``model.pt`` of a converted or ``untrim``-ed directory, or ``checkpoints/checkpoint_best.pt`` of a
training run) and the start model's sentencepiece file.  Output: ``config.json`` (the source's), ``model.safetensors``
(``XLMRobertaModel`` for a bare source whose LM head was never trained, else ``XLMRobertaForMaskedLM``), tokenizer
files that ``AutoModel`` / ``AutoTokenizer`` load offline, the sentence-transformers files when the model's use
setting can be expressed there, a model card (``README.md``) and ``translit_ppa_export.json`` (provenance and every
decision).  See :mod:`translit_plugin.conversion.fairseq_to_hf`.
"""

from __future__ import annotations

import argparse
import traceback
from pathlib import Path


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("checkpoint", help="fairseq checkpoint file (.pt)")
    parser.add_argument("output", help="HF directory to create")
    parser.add_argument("--spm", default=None, help="sentencepiece model (default: next to the checkpoint)")
    parser.add_argument("--start-dir", default=None, metavar="MODEL_DIR",
                        help="the model directory training started from (converted or trimmed; default: found from "
                        "untrim.json, conversion.json / trim.json next to the checkpoint, or the run's "
                        "--finetune-from-model); decides the architecture (a bare source stays bare unless its LM "
                        "head was trained) and the config (the source's)")  # fmt: skip
    parser.add_argument("--results", nargs="+", action="extend", default=[], metavar="FILE",
                        help="evaluation results for the model card (README.md): scripts/demo_eval.py's "
                        "demo_results.json and/or the JSON-lines output of translit-ppa evaluate (after the "
                        "positional arguments, or repeated)")  # fmt: skip
    parser.add_argument("--force", action="store_true", help="replace an existing output directory")
    parser.add_argument("--no-parity-check", action="store_true", help="skip running HF and fairseq side by side")


def run(args: argparse.Namespace) -> int:
    import pickle
    import zipfile

    from translit_plugin.conversion import ConversionError
    from translit_plugin.conversion.fairseq_to_hf import (
        EXPORT_COMMAND,
        EXPORT_MARKER,
        EXPORTED_FILES,
        export_fairseq_to_hf,
    )
    from translit_plugin.core.safe_output import check_not_input, check_replaceable_dir

    checkpoint = Path(args.checkpoint)
    if not checkpoint.is_file():
        raise FileNotFoundError(f"checkpoint not found: {checkpoint}" + (" (a directory; give the .pt file in it)"
                                                                         if checkpoint.is_dir() else ""))
    spm = Path(args.spm) if args.spm else checkpoint.parent / "sentencepiece.bpe.model"
    if not spm.is_file():
        raise FileNotFoundError(f"sentencepiece model not found: {spm}; pass --spm with the start model's "
                                "sentencepiece.bpe.model")
    # refuse an unsafe output before reading the checkpoint; export_fairseq_to_hf checks again when it writes
    check_not_input(args.output, [checkpoint, spm, *args.results])
    check_replaceable_dir(args.output, args.force, EXPORT_MARKER, EXPORT_COMMAND, EXPORTED_FILES)
    try:
        out = export_fairseq_to_hf(
            args.checkpoint, args.output, spm_model=args.spm, force=args.force, check_parity=not args.no_parity_check,
            start_dir=args.start_dir, results=args.results,
        )
    except ConversionError as e:
        e.exit_code = 3 if "parity check" in str(e) or "differs from the HF tokenizer" in str(e) else 2  # a check
        raise
    except (RuntimeError, EOFError, pickle.UnpicklingError, zipfile.BadZipFile) as e:
        frames = {f.name for f in traceback.extract_tb(e.__traceback__)}
        if frames & {"load_fairseq_checkpoint", "load_checkpoint_to_cpu"}:
            why = str(e).split(". ")[0]  # torch adds paragraphs of advice after the first sentence
            raise ValueError(f"cannot read checkpoint {checkpoint} ({type(e).__name__}: {why}); is it truncated or "
                             "not a fairseq checkpoint?") from e
        raise
    print(f"wrote {out}")
    return 0
