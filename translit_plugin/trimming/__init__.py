"""Vocabulary trimming: a model directory cut down to the pieces a corpus uses, and back to the full vocabulary.

``trim_model_dir(MODEL_DIR, CORPORA, OUT)`` writes a normal model directory (``model.pt``, ``dict.txt``,
``sentencepiece.bpe.model``) plus ``trim.json``:

* **sentencepiece**: a new unigram model holding only the kept pieces, with their scores, in their original order,
  and the same normalizer.  Kept: every non-normal piece (``<unk>``, ``<s>``, ``</s>``, user-defined, byte, unused),
  every piece the full model produces on the corpus, and the normal pieces with the lowest and the highest score (the
  unigram encoder derives the unknown-character penalty and the user-defined bonus from those two scores, so they
  stay exactly as in the full model).  Viterbi over a lattice that still contains the full model's best path, plus
  only paths that score lower, returns the same path: the corpus segments identically.  This is checked on every
  corpus line (both forms of a raw line, see :func:`iter_corpus`), and trimming fails naming the first line that
  differs (possible only on an exact score tie).  Text outside the corpus is segmented with the remaining pieces
  (longer words fall back to shorter pieces or characters; a character no kept piece covers becomes ``<unk>``).
* **dict.txt** is rebuilt from the new sentencepiece model (:func:`translit_plugin.vocab.write_fairseq_dict`), so the
  hub, ``prepare``, the task and evaluation use the trimmed directory unchanged.
* **model.pt**: the vocabulary-sized tensors (``embed_tokens.weight``, the tied ``lm_head.weight``, ``lm_head.bias``)
  keep the rows of the kept ids, bit-identical (the four specials first, ``<mask>`` last); everything else is the
  full model's.  Hidden states on the corpus therefore equal the full model's; the MLM softmax runs over the kept
  pieces only.
* **trim.json**: the id map (``kept_ids[new fairseq id] = full fairseq id``), sha256 of the full and the trimmed
  ``model.pt`` / sentencepiece / ``dict.txt``, the corpora and counts.

``untrim(TRAINED, FULL_START_DIR, OUT)`` scatters a trained trimmed model's rows back into the full start model's
matrices (rows not kept stay bit-identical to the start model's), takes every other tensor from the trained model,
and writes a full-vocabulary model directory with the start model's tokenizer, ready for ``export-hf``.  The start
model must be the one trimmed (sha256 of ``model.pt`` and the sentencepiece model checked against ``trim.json``).

Memory: the full embedding matrix is loaded once (Glot500 1.2 GB, e5-small 384 MB); the trimmed and scattered
matrices are the only other vocabulary-sized tensors made.

Modules:

* :mod:`.plan`: which pieces to keep: the full model's tokenizer files, the corpora, the pieces they use
  (:func:`~.plan.kept_spm_ids`) and the kept fairseq ids.
* :mod:`.trim`: ``translit-ppa trim-vocab`` (:func:`~.trim.trim_model_dir`): the sentencepiece model, ``dict.txt`` and
  ``model.pt`` rewritten to the kept pieces, checked, and ``trim.json``.
* :mod:`.untrim`: ``translit-ppa untrim`` (:func:`~.untrim.untrim`).
"""

from __future__ import annotations

from pathlib import Path

from translit_plugin.core.names import TRIM_MARKER, UNTRIM_MARKER

TRIM_RECORD = TRIM_MARKER
UNTRIM_RECORD = UNTRIM_MARKER
TRIM_COMMAND = "translit-ppa trim-vocab"
UNTRIM_COMMAND = "translit-ppa untrim"
MODEL_FILES = ("model.pt", "dict.txt", "sentencepiece.bpe.model")
#: What a trimmed / untrimmed model directory may hold besides its record (``--force`` replaces nothing else)
TRIMMED_FILES = (*MODEL_FILES, "use.json")
UNTRIMMED_FILES = (*MODEL_FILES, "use.json")


class TrimError(ValueError):
    """An input that cannot be trimmed / untrimmed faithfully (the message says why and what to do)."""

    exit_code = 2  # bad input (the CLI's convention)


class TrimCheckError(TrimError):
    """A check on the trimmed model failed (segmentation or hidden states differ): nothing was written."""

    exit_code = 3


def check_model_dir(model_dir: Path) -> None:
    """``model_dir`` must be a model directory: ``model.pt``, ``dict.txt`` and ``sentencepiece.bpe.model``."""
    if not model_dir.is_dir():
        raise TrimError(f"{model_dir}: not a directory (expected a model directory with {', '.join(MODEL_FILES)})")
    missing = [f for f in MODEL_FILES if not (model_dir / f).is_file()]
    if missing:
        raise TrimError(f"{model_dir}: missing {', '.join(missing)}; pass a model directory written by "
                        "`translit-ppa convert` (or trim-vocab / untrim)")
