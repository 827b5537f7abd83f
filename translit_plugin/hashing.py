"""Content hashes of files: the one implementation behind conversion records, trim records, pairing fingerprints and
prepare's up-to-date decisions (stdlib only, so tools that do not need fairseq can use it)."""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterable


def sha256_files(paths: Iterable[str | os.PathLike], chunk: int = 1 << 22) -> str:
    """One SHA-256 over the given files' bytes, in order (read in ``chunk``-byte blocks, never whole)."""
    h = hashlib.sha256()
    for path in paths:
        with open(path, "rb") as f:
            while block := f.read(chunk):
                h.update(block)
    return h.hexdigest()


def sha256_file(path: str | os.PathLike) -> str:
    """SHA-256 of one file's bytes (what decides "up to date", never size or mtime, which an in-place edit keeps)."""
    return sha256_files([path])
