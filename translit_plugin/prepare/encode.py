"""Sentencepiece + fairseq dictionary encoding of one side, exactly as the hub and ``fairseq-preprocess`` do it.

``sp.EncodeAsPieces(line)`` -> ``dictionary.encode_line(" ".join(pieces), append_eos=True, add_if_not_exist=False)``:
the stored line is ``pieces + </s>`` (the task prepends ``<s>``).  Over-long lines are truncated like the HF tokenizer
truncates (:func:`truncate_keep_eos`: the first ``max_length - 2`` pieces, then ``</s>``; with the task's ``<s>`` the
model sees at most ``max_length`` tokens, see :mod:`translit_plugin.core.names`) or dropped, per ``overlong``.

The one home of "how pieces are encoded": :class:`SideEncoder` encodes a side for ``prepare`` (its chunks and its
verification) and for ``translit-ppa encode`` (:mod:`translit_plugin.prepare.encode_pairs`, one language of
(original, Latin) pairs into piece files, assembled by :mod:`translit_plugin.prepare.encode_job`).
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from translit_plugin.core.names import DEFAULT_MAX_LENGTH, truncate_keep_eos

logger = logging.getLogger(__name__)

OVERLONG_CHOICES = ("truncate", "drop")


@dataclass
class Encoded:
    """One encoded side: ``ids`` (``pieces + </s>``, int32), or None and a ``drop_reason``; truncation; unk count."""

    ids: np.ndarray | None
    truncated: bool = False
    n_unk: int = 0
    drop_reason: str | None = None


class SideEncoder:
    """Encode text with a model directory's ``sentencepiece.bpe.model`` and ``dict.txt``.

    Args:
        spm_model: path of the sentencepiece model.
        dict_path: path of fairseq's ``dict.txt`` for that model (see :mod:`translit_plugin.vocab`).
        max_length: longest sequence the model will see, ``<s>`` and ``</s>`` included (the paper: 512).
        overlong: ``"truncate"`` (paper) or ``"drop"`` lines longer than ``max_length``.
    """

    def __init__(self, spm_model: str | os.PathLike, dict_path: str | os.PathLike,
                 max_length: int = DEFAULT_MAX_LENGTH, overlong: str = "truncate") -> None:
        from fairseq.data import Dictionary

        from translit_plugin.vocab import load_spm

        if overlong not in OVERLONG_CHOICES:
            raise ValueError(f"overlong must be one of {OVERLONG_CHOICES}, not {overlong!r}")
        if max_length < 3:
            raise ValueError(f"max_length must be >= 3 (<s>, one piece, </s>), not {max_length}")
        self.sp = load_spm(spm_model)
        self.dictionary = Dictionary.load(str(dict_path))
        self.max_length = int(max_length)
        self.overlong = overlong
        self.eos = self.dictionary.eos()
        self.unk = self.dictionary.unk()
        self.vocab_size = len(self.dictionary)
        self.spm_model = Path(spm_model)
        self.dict_path = Path(dict_path)

    def pieces(self, text: str) -> list[str]:
        return self.sp.EncodeAsPieces(text)

    def encode(self, text: str) -> Encoded:
        """``pieces + </s>`` for ``text``; ``ids`` is None when nothing is left ("empty_encoding") or the line is
        over-long under ``overlong="drop"`` ("overlong")."""
        pieces = self.pieces(text)
        ids = self.dictionary.encode_line(" ".join(pieces), append_eos=True, add_if_not_exist=False).numpy()
        if len(ids) <= 1:
            return Encoded(ids=None, drop_reason="empty_encoding")
        limit = self.max_length - 1  # room for the <s> the task prepends
        truncated = len(ids) > limit
        if truncated:
            if self.overlong == "drop":
                return Encoded(ids=None, truncated=True, drop_reason="overlong")
            ids = truncate_keep_eos(ids, limit)
        ids = ids.astype(np.int32, copy=False)
        return Encoded(ids=ids, truncated=truncated, n_unk=int((ids == self.unk).sum()))

    def decode(self, ids: np.ndarray) -> str:
        """Text of stored ids (``</s>`` dropped): the inverse used by verification and tests."""
        pieces = [self.dictionary[int(i)] for i in ids if int(i) != self.eos]
        return self.sp.DecodePieces(pieces)
