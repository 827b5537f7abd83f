"""Resumable steps: the one mechanism behind every "skip what is up to date" of ``prepare`` (its stages and chunks),
``transliterate`` (its chunks and languages) and ``encode`` (its languages).

A *step* writes some outputs from some inputs under some settings.  Its *key* (:func:`step_key`) is a stable hash of
a JSON-able description of those inputs (content hashes, or :func:`file_stamp`) and settings.  Its *record* (a JSON
file, ``<output>.done.json`` unless the step names another place, :func:`done_path`) is written last and atomically,
after every output, in one shape for every step::

    {"format": RECORD_FORMAT, "key": "<step key>", "outputs": ["<path>", ...], ...the step's own stats}

(output paths relative to the record's folder when inside it, else absolute).  A record is trusted
(:func:`read_record`) only when it has this shape and format, its key matches, and every output it names still exists;
anything else (no record, an unreadable one, another key, or a record of an older version of this package, which had
another shape) means: recompute.  A record never leads to deleting anything.

Which files and folders are ours is a separate question from what is up to date: :func:`record_names` (a record of
this or an older version names this file: it may be overwritten) and :func:`looks_written_here` (a folder from before
lock files holds only what a command writes).

The line contract itself lives in :mod:`translit_plugin.core.lines`.
"""

from __future__ import annotations

import fnmatch
import json
import os
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from translit_plugin.core.files import atomic_write_json
from translit_plugin.core.hashing import stable_key

RECORD_FORMAT = 2  # 1: records without "format" and "outputs" (never trusted, so recomputed)
RECORD_SUFFIX = ".done.json"

PathLike = str | os.PathLike


def file_stamp(path: PathLike) -> dict[str, Any]:
    """Cheap identity of an input file (path, size, mtime): changes when the file is replaced or edited."""
    st = os.stat(path)
    return {"path": str(Path(path).resolve()), "size": st.st_size, "mtime_ns": st.st_mtime_ns}


def step_key(spec: dict[str, Any], inputs: Iterable[PathLike] = ()) -> str:
    """The key of a step: a stable hash of ``spec`` (JSON-able: content hashes, settings) and of the
    :func:`file_stamp` of each of ``inputs``."""
    return stable_key({"record_format": RECORD_FORMAT, "step": spec, "inputs": [file_stamp(p) for p in inputs]})


def done_path(output: Path) -> Path:
    """Where the record of ``output`` lives unless its step says otherwise: ``<output>.done.json``."""
    return output.with_name(output.name + RECORD_SUFFIX)


def _stored(path: PathLike, folder: Path) -> str:
    path = Path(path)
    try:
        return str(path.relative_to(folder))
    except ValueError:
        return str(path.resolve())


def _load(marker: Path) -> dict[str, Any] | None:
    try:
        record = json.loads(Path(marker).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return record if isinstance(record, dict) else None


def read_record(marker: Path, key: str) -> dict[str, Any] | None:
    """The record at ``marker`` when it has this version's shape, its key is ``key`` and every output it names still
    exists; else None (recompute)."""
    record = _load(marker)
    if record is None or record.get("format") != RECORD_FORMAT or record.get("key") != key:
        return None
    outputs = record.get("outputs")
    if not isinstance(outputs, list) or not outputs or not all(isinstance(p, str) for p in outputs):
        return None
    folder = Path(marker).parent
    return record if all((folder / p).exists() for p in outputs) else None


def write_record(marker: Path, key: str, outputs: Sequence[PathLike], stats: dict[str, Any]) -> dict[str, Any]:
    """Record that ``outputs`` (all written already) are up to date for ``key``, with the step's ``stats``; written
    last and atomically.  Returns the record as :func:`read_record` will read it."""
    if not outputs:
        raise ValueError(f"{marker}: a record names at least one output")
    folder = Path(marker).parent
    record = {**stats, "format": RECORD_FORMAT, "key": key, "outputs": [_stored(p, folder) for p in outputs]}
    atomic_write_json(marker, record, sort_keys=True)
    return record


def read_done(output: Path, key: str, marker: Path | None = None) -> dict[str, Any] | None:
    """The record of ``output`` (at ``marker``, default :func:`done_path`) if it is trusted (:func:`read_record`)
    and ``output`` is there; else None."""
    record = read_record(marker or done_path(output), key)
    return record if record is not None and Path(output).exists() else None


def write_done(output: Path, key: str, record: dict[str, Any], marker: Path | None = None,
               outputs: Sequence[PathLike] | None = None) -> dict[str, Any]:
    """Mark ``output`` (and the other ``outputs`` of its step, default just ``output``) up to date for ``key``, with
    the stats ``record``; the record goes to ``marker`` (default :func:`done_path`), last and atomically."""
    return write_record(marker or done_path(output), key, outputs or [output], record)


def record_names(marker: Path, output: Path) -> bool:
    """Whether the record at ``marker`` names ``output`` as one of its outputs: ``output`` is a file this tool wrote.
    Records of older versions count too (their ``"output"`` field): being ours carries over, unlike being up to
    date."""
    record = _load(marker)
    if record is None:
        return False
    named = record.get("outputs") if record.get("format") == RECORD_FORMAT else [record.get("output")]
    if not isinstance(named, list):
        return False
    folder, target = Path(marker).parent, Path(output).resolve()
    return any(isinstance(p, str) and (folder / p).resolve() == target for p in named)


def looks_written_here(folder: Path, files: Sequence[str] = (f"*{RECORD_SUFFIX}",), dirs: Sequence[str] = ("*",),
                       need: str = f"*{RECORD_SUFFIX}") -> bool:
    """Whether ``folder`` (written before lock files) holds only what a command writes there: leftovers of atomic
    writes aside, every entry is a file matching one of ``files`` or a folder (no link) matching one of ``dirs``,
    and one entry matches ``need``.  The defaults describe a work folder of records and chunk folders."""
    from translit_plugin.core.safe_output import is_tmp_leftover

    entries = [p for p in folder.iterdir() if not is_tmp_leftover(p.name)]

    def allowed(p: Path) -> bool:
        if p.is_symlink():
            return p.is_file() and any(fnmatch.fnmatchcase(p.name, pat) for pat in files)
        patterns = dirs if p.is_dir() else files if p.is_file() else ()
        return any(fnmatch.fnmatchcase(p.name, pat) for pat in patterns)

    return any(fnmatch.fnmatchcase(p.name, need) for p in entries) and all(allowed(p) for p in entries)
