"""Sentencepiece <-> fairseq vocabulary: the id layout XLM-R / Glot500 use in both HF and fairseq.

HF ``XLMRobertaTokenizer`` ids: ``<s>``=0, ``<pad>``=1, ``</s>``=2, ``<unk>``=3, a sentencepiece piece with spm id
``i >= 3`` gets ``i + 1`` (``fairseq_offset`` = 1), and ``<mask>`` is the last id.  fairseq's ``Dictionary`` gives the
same ids when ``dict.txt`` lists the spm pieces ``3 .. N-1`` in spm order and the task appends ``<mask>``.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import TYPE_CHECKING

from translit_plugin.core.files import write_lines

if TYPE_CHECKING:
    import numpy as np

logger = logging.getLogger(__name__)

#: Number of fairseq special symbols that precede the dictionary entries (<s>, <pad>, </s>, <unk>).
NUM_SPECIALS = 4
#: spm ids 0..2 are <unk>, <s>, </s> (control symbols); the first real piece is spm id 3.
SPM_FIRST_PIECE = 3


def load_spm(path: str | os.PathLike):
    """Load a sentencepiece model (imported lazily: fairseq loading the plugin must not need it)."""
    import sentencepiece as spm

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"sentencepiece model not found: {path}")
    sp = spm.SentencePieceProcessor()
    try:
        sp.Load(str(path))
    except (RuntimeError, OSError) as e:  # sentencepiece: "could not parse ModelProto from ..."
        raise ValueError(f"{path}: not a sentencepiece model ({' '.join(str(e).split())}); copy the model's "
                         "sentencepiece.bpe.model again") from None
    return sp


def spm_pieces(sp) -> list[str]:
    """The pieces that ``dict.txt`` lists, in spm id order (spm ids 3..N-1)."""
    ids = (sp.IdToPiece(i) for i in range(SPM_FIRST_PIECE, sp.GetPieceSize()))
    return list(ids)


def write_fairseq_dict(spm_model: str | os.PathLike, out_path: str | os.PathLike) -> int:
    """Write ``dict.txt`` for ``spm_model`` so fairseq ids equal HF XLM-R ids; return the number of lines.

    Each line is ``piece count``; the count column is unused by fairseq at load time, we write the spm id so the
    order is self-documenting.  Pieces never contain ASCII spaces (sentencepiece writes U+2581 for a space).
    """
    sp = load_spm(spm_model)
    if sp.IdToPiece(0) != "<unk>" or not sp.IsControl(1) or not sp.IsControl(2):
        raise ValueError(
            f"{spm_model}: expected the XLM-R sentencepiece layout (id 0 = <unk>, ids 1, 2 = <s>, </s> control "
            "symbols); this model differs, so HF and fairseq ids would not line up"
        )
    pieces = spm_pieces(sp)
    for i, piece in enumerate(pieces, start=SPM_FIRST_PIECE):
        # Dictionary.add_from_file splits "piece count" at the last ASCII space and reads lines on \n / \r;
        # other Unicode whitespace inside a piece is harmless (ids are mapped piece -> index, never re-split).
        if any(c in piece for c in " \n\r"):
            raise ValueError(f"{spm_model}: piece {i} {piece!r} has a space or newline; dict.txt cannot hold it")
    return write_lines(Path(out_path), (f"{piece} {i}" for i, piece in enumerate(pieces, start=SPM_FIRST_PIECE)))


def expected_vocab_size(spm_model_or_sp) -> int:
    """Size of the embedding matrix for this spm model: 4 specials + pieces 3..N-1 + ``<mask>``."""
    sp = load_spm(spm_model_or_sp) if isinstance(spm_model_or_sp, (str, os.PathLike)) else spm_model_or_sp
    return NUM_SPECIALS + (sp.GetPieceSize() - SPM_FIRST_PIECE) + 1


def build_id_map(sp, dictionary) -> np.ndarray:
    """Map every spm id to the fairseq dictionary id of its piece (int64 array of length ``sp.GetPieceSize()``).

    Encoding through ids (``id_map[sp.EncodeAsIds(text)]``) avoids the text round trip ``" ".join(pieces)`` ->
    ``Dictionary.encode_line``, which splits on any Unicode whitespace (U+2028, U+0085, ...) that a piece may keep,
    and so can silently change the token sequence.  spm's control ids map to fairseq's specials.
    """
    import numpy as np

    id_map = np.empty(sp.GetPieceSize(), dtype=np.int64)
    id_map[0] = dictionary.unk()
    id_map[1] = dictionary.bos()
    id_map[2] = dictionary.eos()
    unk = dictionary.unk()
    missing = 0
    for i in range(SPM_FIRST_PIECE, sp.GetPieceSize()):
        idx = dictionary.index(sp.IdToPiece(i))
        missing += idx == unk
        id_map[i] = idx
    if missing:
        # every dict.txt we write lists all pieces of its sentencepiece model: these two belong to different
        # vocabularies (e.g. a trimmed model's dict.txt with the full model's sentencepiece file), and encoding would
        # silently turn those pieces into <unk>
        example = next(sp.IdToPiece(i) for i in range(SPM_FIRST_PIECE, sp.GetPieceSize())
                       if id_map[i] == unk and sp.IdToPiece(i) != "<unk>")  # fmt: skip
        raise ValueError(
            f"{missing} of the sentencepiece model's {sp.GetPieceSize() - SPM_FIRST_PIECE} pieces (e.g. {example!r}) "
            "are not in the dictionary: the sentencepiece model and dict.txt belong to different vocabularies (a "
            "trimmed model needs its own sentencepiece.bpe.model and dict.txt)"
        )
    return id_map


def encode_ids(sp, id_map, text: str, add_bos: bool = True, add_eos: bool = True) -> list[int]:
    """Encode ``text`` into fairseq ids ``[<s>] pieces [</s>]`` exactly as HF's XLM-R tokenizer numbers them."""
    ids = id_map[sp.EncodeAsIds(text)].tolist()
    if add_bos:
        ids.insert(0, 0)
    if add_eos:
        ids.append(2)
    return ids
