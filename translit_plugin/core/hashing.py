"""Content hashes of files: the one implementation behind conversion records, trim records, pairing fingerprints and
prepare's up-to-date decisions (stdlib only, so tools that do not need fairseq can use it)."""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterable
from typing import Any


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


def sha1_file(path: str | os.PathLike) -> str:
    """SHA-1 of one file's bytes (the keys of prepare's stage records)."""
    h = hashlib.sha1()
    with open(path, "rb") as f:
        while block := f.read(1 << 20):
            h.update(block)
    return h.hexdigest()


def stable_key(obj: Any) -> str:
    """Hash of a JSON-serialisable object: the "up to date" key of a stage output."""
    return hashlib.sha1(json.dumps(obj, sort_keys=True, default=str).encode("utf-8")).hexdigest()
