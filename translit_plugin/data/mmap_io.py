"""Page-cache warm-up of a data-bin file through one small reusable buffer.

fairseq's ``MMapIndexedDataset`` warms the OS page cache by reading its ``.idx`` and ``.bin`` files with
``stream.read(100 MiB)``: every chunk is a fresh 100 MiB ``bytes`` object, a transient resident spike as large as the
file (up to 100 MiB per file) in every process that opens it.  :func:`warmup_file` reads the same bytes through one
reusable 1 MiB buffer: the same pages end up cached, the resident cost stays at 1 MiB whatever the corpus size.
:class:`~translit_plugin.data.pread_dataset.PreadIndexedDataset` (the task's reader) warms up with it.
"""

from __future__ import annotations

import os

WARMUP_BUFFER_BYTES = 1 << 20


def warmup_file(path: str | os.PathLike, buffer_bytes: int = WARMUP_BUFFER_BYTES) -> int:
    """Read ``path`` once through a reusable buffer (so its pages are in the OS cache); return the bytes read."""
    buf = bytearray(buffer_bytes)
    total = 0
    with open(path, "rb", buffering=0) as f:
        while n := f.readinto(buf):
            total += n
    return total
