"""Which pieces to keep: the full model's tokenizer files, the corpora, the pieces the full model produces on them.

Kept: every non-normal piece, every piece the full model produces on the corpus (both forms of a raw line, see
:func:`iter_corpus`; the ids stored in a data-bin), the pieces of the use-setting prompts, and the normal pieces with
the lowest and the highest score (:func:`kept_spm_ids`).
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from translit_plugin.core.use_settings import read_use_setting
from translit_plugin.vocab import NUM_SPECIALS, SPM_FIRST_PIECE, expected_vocab_size, load_spm

from . import TrimError, check_model_dir

logger = logging.getLogger(__name__)


# ------------------------------------------------------------------------------------------------ the full model
def _load_proto(path: Path):
    from sentencepiece import sentencepiece_model_pb2 as pb2

    m = pb2.ModelProto()
    m.ParseFromString(Path(path).read_bytes())
    return m


def _load_dictionary(path: Path):
    from fairseq.data import Dictionary

    return Dictionary.load(str(path))


def _check_layout(model_dir: Path, sp, dictionary) -> None:
    """dict.txt must be the one :func:`write_fairseq_dict` writes for this sentencepiece model."""
    entries = expected_vocab_size(sp) - 1  # dict.txt does not list <mask>
    if len(dictionary) != entries:
        raise TrimError(f"{model_dir}/dict.txt has {len(dictionary)} entries but its sentencepiece model gives "
                        f"{entries}: the files do not belong together")
    symbols = dictionary.symbols[NUM_SPECIALS:]
    for i, sym in enumerate(symbols):
        if sym != sp.IdToPiece(i + SPM_FIRST_PIECE):
            raise TrimError(f"{model_dir}/dict.txt entry {i + NUM_SPECIALS} is {sym!r} but sentencepiece id "
                            f"{i + SPM_FIRST_PIECE} is {sp.IdToPiece(i + SPM_FIRST_PIECE)!r}; rebuild dict.txt")


@dataclass
class FullModel:
    """The model directory to trim: its sentencepiece model (parsed and loaded) and fairseq dictionary."""

    dir: Path
    proto: Any
    sp: Any
    dictionary: Any

    @property
    def n_rows(self) -> int:
        return len(self.dictionary) + 1  # + <mask>


def read_full_model(model_dir: Path) -> FullModel:
    """The model directory's tokenizer files, checked: a unigram sentencepiece model and its own ``dict.txt``."""
    check_model_dir(model_dir)
    spm_path = model_dir / "sentencepiece.bpe.model"
    proto = _load_proto(spm_path)
    if proto.trainer_spec.model_type != proto.trainer_spec.UNIGRAM:
        raise TrimError(f"{spm_path}: model type {proto.trainer_spec.ModelType.Name(proto.trainer_spec.model_type)} "
                        "is not unigram; trimming keeps the segmentation only for unigram models (XLM-R, Glot500, e5)")
    sp = load_spm(spm_path)
    dictionary = _load_dictionary(model_dir / "dict.txt")
    _check_layout(model_dir, sp, dictionary)
    return FullModel(model_dir, proto, sp, dictionary)


# -------------------------------------------------------------------------------------------------------- corpora
@dataclass
class CorpusText:
    """One line to keep the pieces of and to verify on: ``source:line`` names it in errors."""

    text: str
    where: str


def _iter_text_file(path: Path) -> Iterator[CorpusText]:
    """A raw text file: each line as ``prepare`` cleans it and, when different, as given (what the hub sees)."""
    from translit_plugin.core.lines import iter_raw_lines, to_single_line

    for i, raw in enumerate(iter_raw_lines(path), start=1):
        clean = to_single_line(raw)
        yield CorpusText(clean, f"{path}:{i}")
        if raw != clean:
            yield CorpusText(raw, f"{path}:{i} (as given)")


def _iter_tsv(path: Path) -> Iterator[CorpusText]:
    """``prepare``'s ``work/translit/LANG/*.tsv``: ``original<TAB>latin`` per line, both sides."""
    from translit_plugin.core.lines import iter_lines

    for i, rec in enumerate(iter_lines(path), start=1):
        orig, _, latn = rec.partition("\t")
        yield CorpusText(orig, f"{path}:{i} (original)")
        yield CorpusText(latn, f"{path}:{i} (Latin)")


def _data_bin_of(path: Path) -> Path | None:
    for cand in (path / "data-bin", path):
        if (cand / "orig" / "dict.txt").is_file():
            return cand
    return None


def _iter_data_bin(data_bin: Path, dictionary, sp) -> Iterator[CorpusText]:
    """Lines of a data-bin decoded back to (normalized) text through the full dictionary."""
    from fairseq.data.indexed_dataset import MMapIndexedDataset

    eos = dictionary.eos()
    for side in ("orig", "latn"):
        for split in ("train", "valid"):
            prefix = data_bin / side / split
            if not Path(str(prefix) + ".bin").is_file():
                continue
            ds = MMapIndexedDataset(str(prefix))
            for i in range(len(ds)):
                ids = ds[i].tolist()
                pieces = [dictionary[t] for t in ids if t != eos]
                yield CorpusText(sp.DecodePieces(pieces), f"{prefix}.bin line {i + 1}")


def _data_bin_ids(data_bin: Path, n_rows: int) -> np.ndarray:
    """Bool mask over fairseq ids: which ids occur in the data-bin's ``.bin`` files (read in blocks)."""
    from fairseq.data.indexed_dataset import MMapIndexedDataset

    used = np.zeros(n_rows, dtype=bool)
    for side in ("orig", "latn"):
        for split in ("train", "valid"):
            prefix = data_bin / side / split
            if not Path(str(prefix) + ".bin").is_file():
                continue
            dtype = MMapIndexedDataset.Index(str(prefix) + ".idx").dtype
            data = np.memmap(str(prefix) + ".bin", dtype=dtype, mode="r")
            for start in range(0, len(data), 1 << 24):
                block = np.asarray(data[start:start + (1 << 24)], dtype=np.int64)
                if block.size and (block.max() >= n_rows or block.min() < 0):
                    raise TrimError(f"{prefix}.bin holds id {int(block.max())}, beyond the model's {n_rows} rows: "
                                    "the data was prepared for another vocabulary")
                used[block] = True
            del data
    return used


def corpus_sources(corpora: Iterable[str | os.PathLike], full_dir: Path, dictionary) -> list[tuple[str, Path]]:
    """Classify each corpus path: ``("tsv", file)``, ``("text", file)`` or ``("data-bin", dir)``."""
    out: list[tuple[str, Path]] = []
    for c in corpora:
        path = Path(c)
        if path.is_file():
            out.append(("tsv" if path.suffix == ".tsv" else "text", path))
            continue
        if not path.is_dir():
            raise TrimError(f"corpus {path}: no such file or directory")
        data_bin = _data_bin_of(path)
        tsvs = sorted((path / "work" / "translit").glob("*/*.tsv"))
        if tsvs:  # the text of both sides: valid whatever model the data-bin was binarized with
            out += [("tsv", t) for t in tsvs]
        elif data_bin is not None:  # ids: only meaningful in the full model's dictionary
            theirs = _load_dictionary(data_bin / "orig" / "dict.txt").symbols
            if theirs != dictionary.symbols:
                first = next((i for i, (a, b) in enumerate(zip(theirs, dictionary.symbols)) if a != b),
                             min(len(theirs), len(dictionary.symbols)))
                raise TrimError(f"{data_bin}/orig/dict.txt differs from {full_dir}/dict.txt from entry {first} on: "
                                "this data-bin was prepared for another model; trim with the model it was prepared "
                                "for, or pass the prepare output directory with its work/ (text) instead")
            out.append(("data-bin", data_bin))
        else:
            texts = sorted(path.glob("*.txt"))
            if not texts:
                raise TrimError(f"corpus {path}: no *.txt files, no prepare output (work/translit/*/*.tsv) and no "
                                "data-bin (orig/dict.txt)")
            out += [("text", t) for t in texts]
    if not out:
        raise TrimError("no corpus given")
    return out


def iter_corpus(sources: list[tuple[str, Path]], dictionary, sp) -> Iterator[CorpusText]:
    for kind, path in sources:
        if kind == "tsv":
            yield from _iter_tsv(path)
        elif kind == "text":
            yield from _iter_text_file(path)
        else:
            yield from _iter_data_bin(path, dictionary, sp)


# ---------------------------------------------------------------------------------------------------- sentencepiece
def kept_spm_ids(proto, used: np.ndarray) -> np.ndarray:
    """Sorted spm ids to keep: ``used`` (bool over spm ids), every non-normal piece, the min- and max-score normal
    pieces (the unigram encoder's unknown penalty and user-defined bonus derive from them)."""
    normal = proto.SentencePiece.Type.NORMAL
    types = np.fromiter((p.type for p in proto.pieces), dtype=np.int64, count=len(proto.pieces))
    scores = np.fromiter((p.score for p in proto.pieces), dtype=np.float64, count=len(proto.pieces))
    keep = used.copy()
    keep[: SPM_FIRST_PIECE] = True
    keep |= types != normal
    is_normal = np.flatnonzero(types == normal)
    if is_normal.size:
        keep[is_normal[np.argmin(scores[is_normal])]] = True
        keep[is_normal[np.argmax(scores[is_normal])]] = True
    return np.flatnonzero(keep)


def used_pieces(full: FullModel, sources: list[tuple[str, Path]]) -> tuple[np.ndarray, int]:
    """Pass 1: which spm ids the full model produces on every corpus line (+ ids stored in data-bins); line count."""
    t0 = time.time()
    n_spm = full.sp.GetPieceSize()
    used = np.zeros(n_spm, dtype=bool)
    n_lines = 0
    for item in iter_corpus(sources, full.dictionary, full.sp):
        ids = full.sp.EncodeAsIds(item.text)
        if ids:
            used[ids] = True
        n_lines += 1
    for kind, path in sources:
        if kind == "data-bin":
            fs_used = _data_bin_ids(path, full.n_rows)
            fs_ids = np.flatnonzero(fs_used[NUM_SPECIALS:full.n_rows - 1]) + SPM_FIRST_PIECE
            used[fs_ids] = True
    logger.info("corpus: %d lines from %d sources use %d of %d pieces (%.1fs)", n_lines, len(sources),
                int(used.sum()), n_spm, time.time() - t0)
    return used, n_lines


def keep_prompt_pieces(full: FullModel, used: np.ndarray) -> int | None:
    """Mark the pieces of the model's use-setting prompts (``use.json``) as used, so the trimmed model reads its
    prompts as the full one does; the number of prompt pieces, or None without ``use.json``."""
    setting = read_use_setting(full.dir)
    if setting is None:
        return None
    n = 0
    for text in setting.prompts.values():
        ids = full.sp.EncodeAsIds(text)
        used[ids] = True
        n += len(ids)
    return n


def kept_fairseq_ids(keep: np.ndarray, n_rows: int) -> np.ndarray:
    """Fairseq ids of the kept spm ids: 4 specials, then dict entries (spm id i >= 3 -> fairseq id i + 1), <mask>."""
    kept_pieces = keep[keep >= SPM_FIRST_PIECE]
    return np.concatenate([np.arange(NUM_SPECIALS), kept_pieces + (NUM_SPECIALS - SPM_FIRST_PIECE),
                           [n_rows - 1]]).astype(np.int64)
