"""``PreadIndexedDataset``: fairseq's ``mmap`` data-bin format read with positioned reads instead of a memory map.

fairseq's ``MMapIndexedDataset`` maps the ``.idx`` and ``.bin`` files into the process, so every page a training run
touches stays in the process's resident set: over an epoch the whole data-bin (gigabytes at the paper's corpus sizes)
is added to the RSS of the trainer and of every data worker, and already the first shuffled batch maps megabytes
around the few pointers it reads.  This reader keeps the file format (``fairseq-preprocess`` and
``translit-ppa prepare`` write it unchanged) and reads each sentence with two ``os.pread`` calls (its pointer in the
``.idx``, its ids in the ``.bin``): the OS page cache still holds the data, but nothing is mapped into the process, so
its memory no longer grows with the corpus as training reads it.  Only the per-sentence size array (4 bytes per
sentence, needed for batching) is mapped.

The descriptors are positional (no shared file offset), so forked data workers use them safely; pickling (spawned
workers) reopens the files.  A sentence whose bytes are missing (a truncated ``.bin``) raises an error naming the file
and the line instead of returning a short sentence.
"""

from __future__ import annotations

import logging
import os
import struct

import numpy as np
import torch
from fairseq.data import FairseqDataset, indexed_dataset

from translit_plugin.data.errors import TranslitDataError
from translit_plugin.data.mmap_io import warmup_file

logger = logging.getLogger(__name__)

_MAGIC = indexed_dataset.MMapIndexedDataset.Index._HDR_MAGIC
_HEADER = len(_MAGIC) + 8 + 1 + 8  # magic, version (<Q), dtype code (<B), number of sentences (<Q)


class PreadIndexedDataset(FairseqDataset):
    """Sentences of a fairseq ``mmap``-format data-bin prefix (``PREFIX.idx`` + ``PREFIX.bin``), as int64 tensors.

    Args:
        prefix: path without the ``.idx``/``.bin`` suffix.
        warmup: read both files once at open through a 1 MiB buffer so their pages are in the OS cache (what
            fairseq's reader does, without its file-sized buffer).
    """

    def __init__(self, prefix: str, warmup: bool = True) -> None:
        super().__init__()
        self._warmup = warmup
        self._open(prefix)

    def _open(self, prefix: str) -> None:
        self.prefix = prefix
        self.idx_path = indexed_dataset.index_file_path(prefix)
        self.bin_path = indexed_dataset.data_file_path(prefix)
        with open(self.idx_path, "rb") as f:
            header = f.read(_HEADER)
        # the errors are TranslitDataError (a ValueError): under fairseq-train, one line and exit 2
        if len(header) < _HEADER or header[: len(_MAGIC)] != _MAGIC:
            raise TranslitDataError(f"{self.idx_path}: not a fairseq mmap index (bad magic); was it written "
                                    "with --dataset-impl mmap (the default of fairseq-preprocess and translit-ppa "
                                    "prepare)?")
        (version,) = struct.unpack_from("<Q", header, len(_MAGIC))
        if version != 1:
            raise TranslitDataError(f"{self.idx_path}: index version {version}, this reader knows version 1")
        code = header[len(_MAGIC) + 8]
        if code not in indexed_dataset._code_to_dtype:
            raise TranslitDataError(f"{self.idx_path}: unknown token dtype code {code}")
        self.dtype = np.dtype(indexed_dataset._code_to_dtype[code])
        (self._len,) = struct.unpack_from("<Q", header, len(_MAGIC) + 9)
        self._pointer_offset = _HEADER + 4 * self._len
        expected = self._pointer_offset + 8 * self._len
        actual = os.path.getsize(self.idx_path)
        if actual < expected:
            raise TranslitDataError(f"{self.idx_path}: {actual} bytes, but {self._len} sentences need {expected}; the "
                                    "index is truncated (re-run the binarization)")
        if self._warmup:
            warmup_file(self.idx_path)
            warmup_file(self.bin_path)
        self._sizes = (np.memmap(self.idx_path, dtype=np.int32, mode="r", offset=_HEADER, shape=(self._len,))
                       if self._len else np.zeros(0, dtype=np.int32))
        self._bin_size = os.path.getsize(self.bin_path)
        self._idx_fd = os.open(self.idx_path, os.O_RDONLY)
        self._bin_fd = os.open(self.bin_path, os.O_RDONLY)

    def _close(self) -> None:
        for name in ("_idx_fd", "_bin_fd"):
            fd = self.__dict__.pop(name, None)
            if fd is not None:
                try:
                    os.close(fd)
                except OSError:
                    pass

    def __del__(self) -> None:
        self._close()

    def __getstate__(self) -> dict:
        return {"prefix": self.prefix, "warmup": False}

    def __setstate__(self, state: dict) -> None:
        self._warmup = state["warmup"]
        self._open(state["prefix"])

    # --------------------------------------------------------------------------------------------------- access
    def __len__(self) -> int:
        return self._len

    @property
    def sizes(self) -> np.ndarray:
        return self._sizes

    def num_tokens(self, index: int) -> int:
        return int(self._sizes[index])

    def size(self, index: int) -> int:
        return int(self._sizes[index])

    @property
    def supports_prefetch(self) -> bool:
        return False

    def __getitem__(self, index: int) -> torch.Tensor:
        i = int(index)
        if not 0 <= i < self._len:
            raise IndexError(f"{self.prefix}: sentence {i} of {self._len}")
        (pointer,) = struct.unpack("<q", os.pread(self._idx_fd, 8, self._pointer_offset + 8 * i))
        count = int(self._sizes[i])
        nbytes = count * self.dtype.itemsize
        data = os.pread(self._bin_fd, nbytes, pointer) if nbytes else b""
        if len(data) != nbytes:
            raise TranslitDataError(f"{self.bin_path}: line {i + 1} needs bytes {pointer}..{pointer + nbytes} but the "
                                    f"file has {self._bin_size}; the .bin is truncated or does not belong to "
                                    f"{self.idx_path}")
        return torch.from_numpy(np.frombuffer(data, dtype=self.dtype).astype(np.int64))

    @staticmethod
    def exists(prefix: str) -> bool:
        return indexed_dataset.MMapIndexedDataset.exists(prefix)
