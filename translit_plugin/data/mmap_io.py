"""Memory-bounded page-cache warm-up for fairseq's memory-mapped datasets.

``fairseq.data.indexed_dataset.MMapIndexedDataset`` warms the OS page cache by reading its ``.idx`` and ``.bin`` files
with ``stream.read(100 MiB)``: every chunk is a fresh 100 MiB ``bytes`` object, so opening a data-bin costs a transient
resident spike as large as the file (up to 100 MiB per file), which grows with the corpus and repeats in every process
that opens it.  :func:`bounded_mmap_warmup` swaps in a warm-up that reads the same bytes through one reusable 1 MiB
buffer: the same pages end up cached, the resident cost stays at 1 MiB whatever the corpus size.
:class:`~translit_plugin.data.pread_dataset.PreadIndexedDataset` (the task's reader) warms up with :func:`warmup_file`;
:func:`bounded_mmap_warmup` serves code that still opens data-bins through fairseq's own reader (the data-loading
benchmark's baseline).
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator

from fairseq.data import indexed_dataset

WARMUP_BUFFER_BYTES = 1 << 20


def warmup_file(path: str | os.PathLike, buffer_bytes: int = WARMUP_BUFFER_BYTES) -> int:
    """Read ``path`` once through a reusable buffer (so its pages are in the OS cache); return the bytes read."""
    buf = bytearray(buffer_bytes)
    total = 0
    with open(path, "rb", buffering=0) as f:
        while n := f.readinto(buf):
            total += n
    return total


@contextlib.contextmanager
def bounded_mmap_warmup() -> Iterator[None]:
    """Within the block, fairseq's mmap datasets warm the page cache with :func:`warmup_file`."""
    original = indexed_dataset._warmup_mmap_file
    indexed_dataset._warmup_mmap_file = warmup_file
    try:
        yield
    finally:
        indexed_dataset._warmup_mmap_file = original

