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
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from translit_plugin.checkpoint_compat import load_fairseq_checkpoint
from translit_plugin.core.files import atomic_write_json, atomic_write_text
from translit_plugin.core.hashing import sha256_file
from translit_plugin.core.safe_output import (
    TRIM_MARKER,
    UNTRIM_MARKER,
    check_not_input,
    check_replaceable_dir,
    staged_dir,
)
from translit_plugin.core.use_settings import USE_FILE, read_use_setting
from translit_plugin.vocab import NUM_SPECIALS, SPM_FIRST_PIECE, expected_vocab_size, load_spm, write_fairseq_dict

from . import stamp
from .fairseq_model import num_updates, verify_state_dict
from .keys import EMB_KEY, HEAD_B_KEY, HEAD_W_KEY, VOCAB_KEYS

logger = logging.getLogger(__name__)

TRIM_RECORD = TRIM_MARKER
UNTRIM_RECORD = UNTRIM_MARKER
TRIM_COMMAND = "translit-ppa trim-vocab"
UNTRIM_COMMAND = "translit-ppa untrim"
MODEL_FILES = ("model.pt", "dict.txt", "sentencepiece.bpe.model")


class TrimError(ValueError):
    """An input that cannot be trimmed / untrimmed faithfully (the message says why and what to do)."""

    exit_code = 2  # bad input (the CLI's convention)


class TrimCheckError(TrimError):
    """A check on the trimmed model failed (segmentation or hidden states differ): nothing was written."""

    exit_code = 3


# ------------------------------------------------------------------------------------------------------- helpers
def _file_hashes(model_dir: Path) -> dict[str, str]:
    from .fairseq_model import checkpoint_content_sha256

    return {
        "model_sha256": sha256_file(model_dir / "model.pt"),
        "model_content_sha256": checkpoint_content_sha256(model_dir / "model.pt"),  # what untrim compares
        "sentencepiece_sha256": sha256_file(model_dir / "sentencepiece.bpe.model"),
        "dict_sha256": sha256_file(model_dir / "dict.txt"),
    }


def _check_model_dir(model_dir: Path) -> None:
    if not model_dir.is_dir():
        raise TrimError(f"{model_dir}: not a directory (expected a model directory with {', '.join(MODEL_FILES)})")
    missing = [f for f in MODEL_FILES if not (model_dir / f).is_file()]
    if missing:
        raise TrimError(f"{model_dir}: missing {', '.join(missing)}; pass a model directory written by "
                        "`translit-ppa convert` (or trim-vocab / untrim)")


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


def trimmed_proto(proto, keep: np.ndarray):
    """A copy of ``proto`` holding only the pieces ``keep`` (sorted spm ids), same scores, order and normalizer."""
    from sentencepiece import sentencepiece_model_pb2 as pb2

    new = pb2.ModelProto()
    new.CopyFrom(proto)
    del new.pieces[:]
    new.pieces.extend(proto.pieces[int(i)] for i in keep)
    new.trainer_spec.vocab_size = len(keep)
    position = {int(old): new_id for new_id, old in enumerate(keep)}
    for name in ("unk_id", "bos_id", "eos_id", "pad_id"):
        old = getattr(proto.trainer_spec, name)
        if old >= 0:
            setattr(new.trainer_spec, name, position[old])
    return new


def _varint(data: bytes, pos: int) -> tuple[int, int]:
    value = shift = 0
    while True:
        b = data[pos]
        pos += 1
        value |= (b & 0x7F) << shift
        shift += 7
        if not b & 0x80:
            return value, pos


def serialize_without_self_test(proto) -> bytes:
    """``proto`` serialized without ``self_test_data`` (ModelProto field 4).  Its samples hold the full model's
    segmentations, which spm re-checks on load; the ``sentencepiece_model_pb2`` bundled with some sentencepiece
    versions does not declare the field, so it is kept as an unknown field and has to be cut at the wire level."""
    data = proto.SerializeToString()
    out, pos = bytearray(), 0
    while pos < len(data):
        start = pos
        key, pos = _varint(data, pos)
        wire = key & 7
        if wire == 0:
            _, pos = _varint(data, pos)
        elif wire == 1:
            pos += 8
        elif wire == 2:
            length, pos = _varint(data, pos)
            pos += length
        elif wire == 5:
            pos += 4
        else:
            raise TrimError(f"unexpected protobuf wire type {wire} in the sentencepiece model")
        if key >> 3 != 4:
            out += data[start:pos]
    return bytes(out)


# ---------------------------------------------------------------------------------------------------------- trim
@dataclass
class _FullModel:
    """The model directory to trim: its sentencepiece model (parsed and loaded) and fairseq dictionary."""

    dir: Path
    proto: Any
    sp: Any
    dictionary: Any

    @property
    def n_rows(self) -> int:
        return len(self.dictionary) + 1  # + <mask>


def trim_model_dir(
    model_dir: str | os.PathLike,
    corpora: Iterable[str | os.PathLike],
    out_dir: str | os.PathLike,
    force: bool = False,
    check_lines: int = 16,
) -> dict:
    """Trim ``model_dir`` to the pieces ``corpora`` use; write ``out_dir``; return the trim record."""
    model_dir, out_dir = Path(model_dir), Path(out_dir)
    corpora = [Path(c) for c in corpora]
    full = _read_full_model(model_dir)
    check_not_input(out_dir, [model_dir, *corpora])
    check_replaceable_dir(out_dir, force, TRIM_RECORD, TRIM_COMMAND)
    sources = corpus_sources(corpora, model_dir, full.dictionary)
    if {k for k, _ in sources} == {"text"}:
        logger.warning("the corpus is raw text only: pieces the Latin side (uroman output) needs are kept only if the "
                       "transliterations are among the corpora; pass the prepare output directory (or the "
                       "transliterated text) too, or prepare/training will segment the Latin side differently")
    used, n_lines = _used_pieces(full, sources)
    prompt_pieces = _keep_prompt_pieces(full, used)
    keep = kept_spm_ids(full.proto, used)
    kept_ids = _kept_fairseq_ids(keep, full.n_rows)
    new_ckpt = _trimmed_checkpoint(full, kept_ids)

    with staged_dir(out_dir, force, [model_dir, *corpora], TRIM_RECORD, TRIM_COMMAND) as tmp:
        trimmed_sp = _write_trimmed(tmp, trimmed_proto(full.proto, keep), new_ckpt, len(keep))
        del new_ckpt
        n_checked = _check_segmentation(full, sources, trimmed_sp, keep)
        hidden_diff = _check_hidden_states(full, sources, tmp, check_lines)
        record = {
            "format": 1,
            "full": {"model_dir": str(model_dir.resolve()), "rows": full.n_rows, "pieces": full.sp.GetPieceSize(),
                     **_file_hashes(model_dir)},
            "trimmed": {"rows": len(kept_ids), "pieces": len(keep), **_file_hashes(tmp)},
            "corpora": [str(c.resolve()) for c in corpora],
            "corpus_files": len(sources),
            "corpus_lines": n_lines,
            "pieces_used_by_corpus": int(used.sum()),
            "segmentation_verified_lines": n_checked,
            "hidden_states_checked_lines": check_lines if hidden_diff is not None else 0,
            "hidden_states_max_abs_diff": hidden_diff,
            "kept_ids_note": "kept_ids[new fairseq id] = fairseq id in the full model (<s> <pad> </s> <unk> first, "
                             "<mask> last); the same rows of embed_tokens / lm_head.weight / lm_head.bias",
            "kept_ids": kept_ids.tolist(),
            **stamp(),
        }
        if prompt_pieces is not None:
            record["prompt_pieces_kept"] = prompt_pieces
            shutil.copyfile(model_dir / USE_FILE, tmp / USE_FILE)
        _write_trim_record(tmp / TRIM_RECORD, record)
    logger.info("trimmed %s -> %s: %d -> %d rows", model_dir, out_dir, full.n_rows, len(kept_ids))
    return record


def _read_full_model(model_dir: Path) -> _FullModel:
    """The model directory's tokenizer files, checked: a unigram sentencepiece model and its own ``dict.txt``."""
    _check_model_dir(model_dir)
    spm_path = model_dir / "sentencepiece.bpe.model"
    proto = _load_proto(spm_path)
    if proto.trainer_spec.model_type != proto.trainer_spec.UNIGRAM:
        raise TrimError(f"{spm_path}: model type {proto.trainer_spec.ModelType.Name(proto.trainer_spec.model_type)} "
                        "is not unigram; trimming keeps the segmentation only for unigram models (XLM-R, Glot500, e5)")
    sp = load_spm(spm_path)
    dictionary = _load_dictionary(model_dir / "dict.txt")
    _check_layout(model_dir, sp, dictionary)
    return _FullModel(model_dir, proto, sp, dictionary)


def _used_pieces(full: _FullModel, sources: list[tuple[str, Path]]) -> tuple[np.ndarray, int]:
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


def _keep_prompt_pieces(full: _FullModel, used: np.ndarray) -> int | None:
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


def _kept_fairseq_ids(keep: np.ndarray, n_rows: int) -> np.ndarray:
    """Fairseq ids of the kept spm ids: 4 specials, then dict entries (spm id i >= 3 -> fairseq id i + 1), <mask>."""
    kept_pieces = keep[keep >= SPM_FIRST_PIECE]
    return np.concatenate([np.arange(NUM_SPECIALS), kept_pieces + (NUM_SPECIALS - SPM_FIRST_PIECE),
                           [n_rows - 1]]).astype(np.int64)


def _trimmed_checkpoint(full: _FullModel, kept_ids: np.ndarray) -> dict:
    """The full ``model.pt`` with only the rows ``kept_ids`` of its vocabulary-sized tensors, no optimizer state."""
    state = load_fairseq_checkpoint(full.dir / "model.pt")
    model_state = state["model"]
    emb = model_state[EMB_KEY]
    if emb.shape[0] != full.n_rows:
        raise TrimError(f"{full.dir}/model.pt has {emb.shape[0]} embedding rows but dict.txt + <mask> gives "
                        f"{full.n_rows}")
    idx = torch.from_numpy(kept_ids)
    new_state = dict(model_state)
    new_emb = emb.index_select(0, idx)
    new_state[EMB_KEY] = new_emb
    if HEAD_W_KEY in model_state:
        head = model_state[HEAD_W_KEY]
        new_state[HEAD_W_KEY] = new_emb if head is emb or torch.equal(head, emb) else head.index_select(0, idx)
        del head
    if HEAD_B_KEY in model_state:
        new_state[HEAD_B_KEY] = model_state[HEAD_B_KEY].index_select(0, idx)
    others = [k for k, v in model_state.items() if k not in VOCAB_KEYS and torch.is_tensor(v) and v.dim() > 0
              and v.shape[0] == full.n_rows]
    if others:
        raise TrimError(f"{full.dir}/model.pt: vocabulary-sized tensors this tool does not know: {others}")
    del state["model"], model_state, emb  # the full matrix is no longer needed
    verify_state_dict(state["cfg"], new_state)
    new_ckpt = dict(state)
    new_ckpt["model"] = new_state
    new_ckpt["last_optimizer_state"] = None  # a converted model has none; a trained one's would be full-sized
    return new_ckpt


def _write_trimmed(tmp: Path, proto, new_ckpt: dict, n_pieces: int):
    """Write the trimmed sentencepiece model, ``dict.txt`` and ``model.pt``; return the loaded sentencepiece model."""
    (tmp / "sentencepiece.bpe.model").write_bytes(serialize_without_self_test(proto))
    write_fairseq_dict(tmp / "sentencepiece.bpe.model", tmp / "dict.txt")
    torch.save(new_ckpt, tmp / "model.pt")
    trimmed_sp = load_spm(tmp / "sentencepiece.bpe.model")
    if trimmed_sp.GetPieceSize() != n_pieces:
        raise TrimError(f"trimmed sentencepiece model has {trimmed_sp.GetPieceSize()} pieces, expected {n_pieces}")
    return trimmed_sp


def _check_segmentation(full: _FullModel, sources: list[tuple[str, Path]], trimmed_sp, keep: np.ndarray) -> int:
    """Pass 2: every corpus line segments identically (mapped back to full spm ids); return the lines checked."""
    t0 = time.time()
    full_of_new = keep.astype(np.int64)
    n_checked = 0
    for item in iter_corpus(sources, full.dictionary, full.sp):
        full_ids = full.sp.EncodeAsIds(item.text)
        new_ids = trimmed_sp.EncodeAsIds(item.text)
        if len(full_ids) != len(new_ids) or (full_of_new[new_ids] != full_ids).any():
            raise TrimCheckError(
                f"{item.where}: the trimmed model segments this line differently from the full model "
                f"({full.sp.IdToPiece(full_ids)[:20]} vs {trimmed_sp.IdToPiece(new_ids)[:20]}); this happens only "
                "on an exact tie of segmentation scores. Nothing was written"
            )
        n_checked += 1
    logger.info("segmentation identical on all %d corpus lines (%.1fs)", n_checked, time.time() - t0)
    return n_checked


def _check_hidden_states(full: _FullModel, sources: list[tuple[str, Path]], tmp: Path,
                         check_lines: int) -> float | None:  # fmt: skip
    """Hidden states of the first ``check_lines`` non-empty corpus lines must equal the full model's (None: skipped)."""
    if check_lines <= 0:
        return None
    samples = []
    for item in iter_corpus(sources, full.dictionary, full.sp):
        if item.text.strip():
            samples.append(item.text)
        if len(samples) >= check_lines:
            break
    hidden_diff = compare_hidden_states(full.dir, tmp, samples)
    if hidden_diff != 0.0:
        raise TrimCheckError(f"hidden states of the trimmed model differ from the full model's by {hidden_diff:.3g} "
                             "on corpus lines; nothing was written")
    return hidden_diff


def _write_trim_record(path: Path, record: dict) -> None:
    """``trim.json``, indented, with the (long) ``kept_ids`` list on one line."""
    head = json.dumps({k: v for k, v in record.items() if k != "kept_ids"}, indent=1)
    text = head[:-2] + ',\n "kept_ids": ' + json.dumps(record["kept_ids"], separators=(",", ":")) + "\n}\n"
    atomic_write_text(path, text)


def compare_hidden_states(full_dir: Path, trimmed_dir: Path, sentences: list[str]) -> float:
    """Max abs difference of every hidden state (padding positions included) between two model directories on
    ``sentences`` (each tokenized by its own directory's tokenizer)."""
    from translit_plugin.hub import from_pretrained

    if not sentences:
        return 0.0
    states = []
    for d in (full_dir, trimmed_dir):
        hub = from_pretrained(str(d)).eval()
        with torch.no_grad():
            tokens = hub.batch_encode(sentences)
            states.append(hub.extract_features(tokens, return_all_hiddens=True))
        del hub
    return max((a - b).abs().max().item() for a, b in zip(*states))


# --------------------------------------------------------------------------------------------------------- untrim
def _find_trim_record(trained: Path, cfg, record_path: str | os.PathLike | None) -> Path:
    candidates = [Path(record_path)] if record_path else []
    if not record_path:
        candidates.append(trained.parent / TRIM_RECORD)
        ft = getattr(getattr(cfg, "checkpoint", None), "finetune_from_model", None) if cfg is not None else None
        if ft:
            candidates.append(Path(str(ft)).parent / TRIM_RECORD)
    for c in candidates:
        if c.is_file():
            return c
    raise TrimError(f"{TRIM_RECORD} not found (looked at {', '.join(str(c) for c in candidates)}); pass "
                    f"--trim-record TRIMMED_MODEL_DIR/{TRIM_RECORD}")


def untrim(
    trained: str | os.PathLike,
    full_dir: str | os.PathLike,
    out_dir: str | os.PathLike,
    trim_record: str | os.PathLike | None = None,
    force: bool = False,
) -> Path:
    """Scatter a trained trimmed model back into the full start model; write a full-vocabulary model directory.

    ``trained``: a trimmed model directory (its ``model.pt``) or a training checkpoint (``checkpoint_best.pt``) of a
    run started from one.  ``trim.json`` is looked up next to it, then next to the run's ``--finetune-from-model``,
    or given as ``trim_record``.
    """
    trained, full_dir, out_dir = Path(trained), Path(full_dir), Path(out_dir)
    ckpt = trained / "model.pt" if trained.is_dir() else trained
    if not ckpt.is_file():
        raise TrimError(f"{ckpt}: no such checkpoint")
    _check_model_dir(full_dir)
    state = load_fairseq_checkpoint(ckpt)
    record_path = _find_trim_record(ckpt, state.get("cfg"), trim_record)
    check_not_input(out_dir, [ckpt, full_dir, record_path])
    check_replaceable_dir(out_dir, force, UNTRIM_RECORD, UNTRIM_COMMAND)
    record = json.loads(record_path.read_text(encoding="utf-8"))
    kept = torch.tensor(record["kept_ids"], dtype=torch.long)
    start_sha = _check_start_model(full_dir, record["full"], record_path)
    new_state = _scattered_state(ckpt, state["model"], full_dir, record["full"]["rows"], record_path, kept)
    verify_state_dict(state["cfg"], new_state)
    new_ckpt = dict(state)
    new_ckpt["model"] = new_state
    new_ckpt["last_optimizer_state"] = None  # the trimmed run's Adam state has the trimmed shapes

    with staged_dir(out_dir, force, [ckpt, full_dir, record_path], UNTRIM_RECORD, UNTRIM_COMMAND) as tmp:
        torch.save(new_ckpt, tmp / "model.pt")
        shutil.copyfile(full_dir / "sentencepiece.bpe.model", tmp / "sentencepiece.bpe.model")
        shutil.copyfile(full_dir / "dict.txt", tmp / "dict.txt")
        if (full_dir / USE_FILE).is_file():  # the trained model is read where the start model is
            shutil.copyfile(full_dir / USE_FILE, tmp / USE_FILE)
        out_record = {
            "format": 1,
            "trained_checkpoint": str(ckpt.resolve()),
            "trained_sha256": sha256_file(ckpt),
            "trim_record": str(record_path.resolve()),
            "start_model_dir": str(full_dir.resolve()),
            "start_model_sha256": start_sha,
            "rows": int(new_state[EMB_KEY].shape[0]),
            "rows_from_trained": len(kept),
            "num_updates": num_updates(state),
            "model_sha256": sha256_file(tmp / "model.pt"),
            **stamp(),
        }
        atomic_write_json(tmp / UNTRIM_RECORD, out_record, indent=2)
    logger.info("untrimmed %s -> %s: %d trained rows into %d", ckpt, out_dir, len(kept), out_record["rows"])
    return out_dir


def _check_start_model(full_dir: Path, want: dict, record_path: Path) -> str:
    """The start model must be the one that was trimmed: the same weights (content hash of the state tensors; the
    file's bytes also hold paths, e.g. of another conversion of the same model) and the same sentencepiece model;
    return the model file's sha256."""
    from .fairseq_model import checkpoint_content_sha256

    model_sha = sha256_file(full_dir / "model.pt")
    got = {"sentencepiece_sha256": sha256_file(full_dir / "sentencepiece.bpe.model")}
    if model_sha != want["model_sha256"]:  # the same file needs no second look; another one, its tensors
        key = "model_content_sha256" if "model_content_sha256" in want else "model_sha256"  # older records
        got[key] = checkpoint_content_sha256(full_dir / "model.pt") if key != "model_sha256" else model_sha
    wrong = [k for k in got if got[k] != want[k]]
    if wrong:
        raise TrimError(
            f"{full_dir} is not the model {record_path} was trimmed from ({', '.join(wrong)} differ: expected "
            f"{', '.join(want[k][:12] for k in wrong)}..., got {', '.join(got[k][:12] for k in wrong)}...; trimmed "
            f"from {want.get('model_dir')}). Pass that start model directory"
        )
    return model_sha


def _scattered_state(ckpt: Path, trained_state: dict[str, torch.Tensor], full_dir: Path, full_rows: int,
                     record_path: Path, kept: torch.Tensor) -> dict[str, torch.Tensor]:  # fmt: skip
    """The trained tensors, with the vocabulary-sized ones scattered into the start model's full matrices."""
    t_emb = trained_state[EMB_KEY]
    if t_emb.shape[0] != len(kept):
        raise TrimError(f"{ckpt} has {t_emb.shape[0]} embedding rows but {record_path} kept {len(kept)}: the "
                        "checkpoint was not trained from that trimmed model")
    full_state = load_fairseq_checkpoint(full_dir / "model.pt")["model"]
    f_emb = full_state[EMB_KEY]
    if f_emb.shape[0] != full_rows:
        raise TrimError(f"{full_dir}/model.pt has {f_emb.shape[0]} rows, {record_path} says {full_rows}")
    shape_diff = [k for k in trained_state if k not in VOCAB_KEYS and k in full_state
                  and tuple(trained_state[k].shape) != tuple(full_state[k].shape)]
    if shape_diff or set(trained_state) - set(full_state) - set(VOCAB_KEYS):
        raise TrimError(f"{ckpt} and {full_dir}/model.pt have different architectures (tensors {shape_diff[:5]}, "
                        f"extra {sorted(set(trained_state) - set(full_state))[:5]})")

    def scatter(full_t: torch.Tensor, trained_t: torch.Tensor) -> torch.Tensor:
        out = full_t.clone()  # rows not kept: the start model's, bit for bit
        out.index_copy_(0, kept, trained_t.to(full_t.dtype))
        return out

    new_state = dict(trained_state)
    new_emb = scatter(f_emb, t_emb)
    new_state[EMB_KEY] = new_emb
    if HEAD_W_KEY in trained_state:
        t_head = trained_state[HEAD_W_KEY]
        tied = t_head is t_emb or torch.equal(t_head, t_emb)
        new_state[HEAD_W_KEY] = new_emb if tied else scatter(full_state.get(HEAD_W_KEY, f_emb), t_head)
    if HEAD_B_KEY in trained_state:
        new_state[HEAD_B_KEY] = scatter(full_state[HEAD_B_KEY], trained_state[HEAD_B_KEY])
    return new_state
