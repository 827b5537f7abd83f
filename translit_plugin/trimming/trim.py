"""``translit-ppa trim-vocab``: the model directory rewritten to the kept pieces (:func:`trim_model_dir`).

The sentencepiece model keeps the kept pieces with their scores, order and normalizer; ``dict.txt`` is rebuilt from
it; ``model.pt`` keeps the rows of the kept ids of its vocabulary-sized tensors.  Every corpus line must segment as in
the full model, and hidden states on the first corpus lines must be equal, or nothing is written.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import time
from collections.abc import Iterable
from pathlib import Path

import numpy as np
import torch

from translit_plugin.checkpoint_compat import load_fairseq_checkpoint
from translit_plugin.conversion import stamp
from translit_plugin.conversion.fairseq_model import verify_state_dict
from translit_plugin.conversion.keys import EMBED_KEY, HEAD_B_KEY, HEAD_W_KEY, VOCAB_KEYS
from translit_plugin.core.files import atomic_write_text
from translit_plugin.core.hashing import sha256_file
from translit_plugin.core.safe_output import check_not_input, check_replaceable_dir, staged_dir
from translit_plugin.core.use_settings import USE_FILE
from translit_plugin.vocab import load_spm, write_fairseq_dict

from . import TRIM_COMMAND, TRIM_RECORD, TRIMMED_FILES, TrimCheckError, TrimError
from .plan import (
    FullModel,
    corpus_sources,
    iter_corpus,
    keep_prompt_pieces,
    kept_fairseq_ids,
    kept_spm_ids,
    read_full_model,
    used_pieces,
)

logger = logging.getLogger(__name__)


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
    full = read_full_model(model_dir)
    check_not_input(out_dir, [model_dir, *corpora])
    check_replaceable_dir(out_dir, force, TRIM_RECORD, TRIM_COMMAND, TRIMMED_FILES)
    sources = corpus_sources(corpora, model_dir, full.dictionary)
    if {k for k, _ in sources} == {"text"}:
        logger.warning("the corpus is raw text only: pieces the Latin side (uroman output) needs are kept only if the "
                       "transliterations are among the corpora; pass the prepare output directory (or the "
                       "transliterated text) too, or prepare/training will segment the Latin side differently")
    used, n_lines = used_pieces(full, sources)
    prompt_pieces = keep_prompt_pieces(full, used)
    keep = kept_spm_ids(full.proto, used)
    kept_ids = kept_fairseq_ids(keep, full.n_rows)
    new_ckpt = _trimmed_checkpoint(full, kept_ids)

    with staged_dir(out_dir, force, [model_dir, *corpora], TRIM_RECORD, TRIM_COMMAND, TRIMMED_FILES) as tmp:
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


def _file_hashes(model_dir: Path) -> dict[str, str]:
    from translit_plugin.conversion.fairseq_model import checkpoint_content_sha256

    return {
        "model_sha256": sha256_file(model_dir / "model.pt"),
        "model_content_sha256": checkpoint_content_sha256(model_dir / "model.pt"),  # what untrim compares
        "sentencepiece_sha256": sha256_file(model_dir / "sentencepiece.bpe.model"),
        "dict_sha256": sha256_file(model_dir / "dict.txt"),
    }


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


def _trimmed_checkpoint(full: FullModel, kept_ids: np.ndarray) -> dict:
    """The full ``model.pt`` with only the rows ``kept_ids`` of its vocabulary-sized tensors, no optimizer state."""
    state = load_fairseq_checkpoint(full.dir / "model.pt")
    model_state = state["model"]
    emb = model_state[EMBED_KEY]
    if emb.shape[0] != full.n_rows:
        raise TrimError(f"{full.dir}/model.pt has {emb.shape[0]} embedding rows but dict.txt + <mask> gives "
                        f"{full.n_rows}")
    idx = torch.from_numpy(kept_ids)
    new_state = dict(model_state)
    new_emb = emb.index_select(0, idx)
    new_state[EMBED_KEY] = new_emb
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


def _check_segmentation(full: FullModel, sources: list[tuple[str, Path]], trimmed_sp, keep: np.ndarray) -> int:
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


def _check_hidden_states(full: FullModel, sources: list[tuple[str, Path]], tmp: Path,
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
