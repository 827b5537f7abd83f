"""The side hash of a data-bin: what ``DATA/pairing.json`` (:mod:`translit_plugin.data.fingerprint`) records and
checks, computed from token ids as they are emitted (:class:`SideHasher`) or read back from ``.bin`` / ``.idx`` files
(:func:`side_fingerprint`), and the dictionary's record (:func:`dictionary_record`).

A side hash covers the sequence of token-id sequences exactly as stored (each line is ``pieces + </s>``): it is
``sha256("{sentences}:{tokens}:{sha256 of the lengths as int32 LE}:{sha256 of all ids as int32 LE}")``, so it does not
depend on the ``.bin`` dtype (uint16 or int32) and can be computed by streaming.  ``pair_sha256`` ties the two sides
of a split together.  ``vocab_sha256`` hashes the loaded symbol list (``"\\n".join(symbols)`` as UTF-8), so a
``dict.txt`` rewritten by ``fairseq-preprocess`` with other count columns still matches.
"""

from __future__ import annotations

import hashlib
import os
import struct
from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np

from translit_plugin.core.hashing import sha256_file
from translit_plugin.core.names import LATN, ORIG
from translit_plugin.data.errors import PairingError

_BLOCK_ITEMS = 1 << 22  # ids per read when hashing a .bin (16 MiB as int32)


# ------------------------------------------------------------------------------------------------------- hashing
class SideHasher:
    """Streaming hash of one side: feed sentences (:meth:`add`) or whole arrays (:meth:`add_arrays`) in order."""

    def __init__(self) -> None:
        self._sizes = hashlib.sha256()
        self._ids = hashlib.sha256()
        self.sentences = 0
        self.tokens = 0

    def add(self, ids: Sequence[int] | np.ndarray) -> None:
        a = np.asarray(ids).astype("<i4", copy=False)
        self._sizes.update(struct.pack("<i", len(a)))
        self._ids.update(a.tobytes())
        self.sentences += 1
        self.tokens += len(a)

    def add_sizes(self, sizes: np.ndarray) -> None:
        self._sizes.update(np.asarray(sizes).astype("<i4", copy=False).tobytes())
        self.sentences += len(sizes)

    def add_ids(self, ids: np.ndarray) -> None:
        self._ids.update(np.asarray(ids).astype("<i4", copy=False).tobytes())
        self.tokens += len(ids)

    def result(self) -> dict[str, Any]:
        digest = f"{self.sentences}:{self.tokens}:{self._sizes.hexdigest()}:{self._ids.hexdigest()}"
        return {"sentences": self.sentences, "tokens": self.tokens,
                "sha256": hashlib.sha256(digest.encode("ascii")).hexdigest()}


def split_entry(orig: dict[str, Any], latn: dict[str, Any]) -> dict[str, Any]:
    """The ``splits[split]`` record from the two side results (:meth:`SideHasher.result`)."""
    if orig["sentences"] != latn["sentences"]:
        raise PairingError(f"the sides have {orig['sentences']} and {latn['sentences']} sentences; they cannot pair")
    pair = hashlib.sha256((orig["sha256"] + latn["sha256"]).encode("ascii")).hexdigest()
    return {"pairs": orig["sentences"], ORIG: orig, LATN: latn, "pair_sha256": pair}


def vocab_sha256(symbols: Iterable[str]) -> str:
    return hashlib.sha256("\n".join(symbols).encode("utf-8")).hexdigest()


def dictionary_record(dict_path: str | os.PathLike) -> dict[str, Any]:
    """``{"dict_sha256", "vocab_sha256", "size"}`` of a ``dict.txt`` (loaded with fairseq's ``Dictionary``)."""
    from fairseq.data import Dictionary

    d = Dictionary.load(str(dict_path))
    return {"dict_sha256": sha256_file(dict_path), "vocab_sha256": vocab_sha256(d.symbols), "size": len(d)}


# ------------------------------------------------------------------------------------------- reading a data-bin
def mmap_header(idx_path: str) -> tuple[np.dtype, int, int] | None:
    """(token dtype, sentences, header bytes) of a fairseq mmap ``.idx``, or None if it is another format."""
    from fairseq.data import indexed_dataset

    magic = indexed_dataset.MMapIndexedDataset.Index._HDR_MAGIC
    header_len = len(magic) + 8 + 1 + 8
    with open(idx_path, "rb") as f:
        header = f.read(header_len)
    if len(header) < header_len or header[: len(magic)] != magic:
        return None
    code = header[len(magic) + 8]
    (n,) = struct.unpack_from("<Q", header, len(magic) + 9)
    return np.dtype(indexed_dataset._code_to_dtype[code]), int(n), header_len


def _hash_mmap_prefix(hasher: SideHasher, prefix: str) -> bool:
    """Feed one mmap-format prefix into ``hasher``; False when ``prefix`` is not in the mmap format."""
    idx_path, bin_path = prefix + ".idx", prefix + ".bin"
    head = mmap_header(idx_path)
    if head is None:
        return False
    dtype, n, offset = head
    if n == 0:
        return True
    sizes = np.fromfile(idx_path, dtype="<i4", count=n, offset=offset)
    pointers = np.fromfile(idx_path, dtype="<i8", count=n, offset=offset + 4 * n)
    if len(sizes) != n or len(pointers) != n:
        raise PairingError(f"{idx_path}: truncated index ({n} sentences announced); rebuild this data-bin")
    expected = np.zeros(n, dtype=np.int64)
    np.cumsum(sizes[:-1].astype(np.int64) * dtype.itemsize, out=expected[1:])
    total = int(sizes.astype(np.int64).sum())
    if os.path.getsize(bin_path) < total * dtype.itemsize:
        raise PairingError(f"{bin_path}: {os.path.getsize(bin_path)} bytes, its index needs "
                           f"{total * dtype.itemsize}; the .bin is truncated or belongs to another .idx; rebuild it")
    hasher.add_sizes(sizes)
    if np.array_equal(pointers, expected):  # contiguous (what fairseq's builders write): stream the file
        with open(bin_path, "rb") as f:
            left = total
            while left:
                count = min(left, _BLOCK_ITEMS)
                block = np.fromfile(f, dtype=dtype, count=count)
                if len(block) != count:
                    raise PairingError(f"{bin_path}: short read; the file changed while it was read")
                hasher.add_ids(block)
                left -= count
    else:  # any other layout: sentence by sentence
        with open(bin_path, "rb") as f:
            for p, s in zip(pointers.tolist(), sizes.tolist()):
                f.seek(p)
                hasher.add_ids(np.fromfile(f, dtype=dtype, count=s))
    return True


def side_fingerprint(prefixes: Sequence[str], dataset: Any = None) -> dict[str, Any]:
    """Side hash of the concatenation of ``prefixes`` (mmap format read directly; other formats through ``dataset``,
    the loaded fairseq dataset of the same prefixes, item by item)."""
    hasher = SideHasher()
    if all(_hash_mmap_prefix(hasher, p) for p in prefixes):
        return hasher.result()
    if dataset is None:
        raise PairingError(f"{prefixes[0]}: not in fairseq's mmap format and no dataset given to read it")
    hasher = SideHasher()
    for i in range(len(dataset)):
        hasher.add(dataset[i].numpy())
    return hasher.result()
