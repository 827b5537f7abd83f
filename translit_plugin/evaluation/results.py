"""Results store: one JSON object per line, appended and flushed as each result is known, so a rerun resumes.

A record::

    {"model": "aligned", "model_path": "...", "task": "sr-b", "source": "eng_Latn", "target": "amh_Ethi",
     "seed": null, "status": "ok", "metrics": {"tgt2src_top10": 0.61, ...}, "config": {...},
     "config_hash": "3f2a...", "details": {...}, "versions": {...}, "time": "2024-..."}

``status`` is ``"ok"`` or ``"error"`` (then ``error`` holds the message). A result is identified by
:func:`record_key` (model, task, source, target, seed, config hash); the latest record of a key wins, and only ``ok``
records count as done, so errors are retried on the next run. A line cut short by an interruption is skipped with a
warning.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import platform
import time
from collections.abc import Iterable
from pathlib import Path

logger = logging.getLogger(__name__)

Key = tuple


def config_hash(config: dict) -> str:
    """Stable short hash of the settings that change a result."""
    blob = json.dumps(config, sort_keys=True, default=str)
    return hashlib.sha256(blob.encode("utf-8")).hexdigest()[:12]


_HASHES: dict[tuple, str] = {}


def _file_sha256(path: Path) -> str:
    """sha256 of a file, remembered for this process by (path, size, mtime)."""
    from translit_plugin.core.hashing import sha256_file

    st = path.stat()
    key = (str(path.resolve()), st.st_size, st.st_mtime_ns)
    if key not in _HASHES:
        _HASHES[key] = sha256_file(path)
    return _HASHES[key]


def path_fingerprint(path: str | os.PathLike) -> str:
    """Content of a model: the sha256 of a checkpoint file, or of every regular file at the top of a directory
    (weights, dictionary, tokenizer, ``use.json``), names included.  A changed file gives another fingerprint, so
    results of the old content are not reused."""
    path = Path(path)
    if path.is_file():
        return _file_sha256(path)[:16]
    if not path.is_dir():
        return "missing"
    parts = [f"{f.name}:{_file_sha256(f)}" for f in sorted(path.iterdir()) if f.is_file()]
    return hashlib.sha256("\n".join(parts).encode()).hexdigest()[:16]


def data_fingerprint(opts) -> str:
    """Content of the dataset files an evaluation can read, hashed with their relative paths: for retrieval the
    ``{prefix}.*`` files of ``opts.data_dir``, otherwise every regular file under it."""
    root = Path(opts.data_dir)
    if not root.is_dir():
        return "missing"
    prefix = getattr(opts, "file_prefix", None) if opts.task in ("sr-b", "tatoeba") else None
    files = sorted(root.glob(f"{prefix}.*")) if prefix else sorted(root.rglob("*"))
    parts = [f"{f.relative_to(root)}:{_file_sha256(f)}" for f in files if f.is_file()]
    return hashlib.sha256("\n".join(parts).encode()).hexdigest()[:16]


def record_key(rec: dict) -> Key:
    """Identity of a result: ``(model, task, source, target, seed, config_hash)``."""
    return (rec["model"], rec["task"], rec.get("source"), rec["target"], rec.get("seed"), rec.get("config_hash"))


def make_key(model: str, task: str, source: str | None, target: str, seed: int | None, config: dict) -> Key:
    """The :func:`record_key` a record with these fields and ``config`` will have."""
    return (model, task, source, target, seed, config_hash(config))


def versions() -> dict[str, str]:
    """Versions of the software that produced a result."""
    out = {"python": platform.python_version()}
    for name in ("translit_plugin", "torch", "fairseq", "transformers", "seqeval", "numpy"):
        try:
            mod = __import__(name)
            out[name] = str(getattr(mod, "__version__", "unknown"))
        except Exception:  # noqa: BLE001 - a missing optional package is simply not listed
            continue
    return out


def read_records(paths: str | os.PathLike | Iterable[str | os.PathLike]) -> list[dict]:
    """All records of one or more JSONL files, in file order; unreadable lines are skipped with a warning."""
    if isinstance(paths, (str, os.PathLike)):
        paths = [paths]
    records = []
    for path in map(Path, paths):
        if not path.is_file():
            raise FileNotFoundError(f"results file not found: {path}")
        with open(path, encoding="utf-8") as f:
            for lineno, line in enumerate(f, start=1):
                if not line.strip():
                    continue
                try:
                    rec = json.loads(line)
                    record_key(rec)
                except (json.JSONDecodeError, KeyError, TypeError) as e:
                    logger.warning(
                        "%s:%d: skipping an unreadable result line (%s); it will be recomputed", path, lineno, e
                    )
                    continue
                records.append(rec)
    return records


def latest(records: Iterable[dict]) -> dict[Key, dict]:
    """The last record of every key."""
    out: dict[Key, dict] = {}
    for rec in records:
        out[record_key(rec)] = rec
    return out


class ResultStore:
    """Append-only JSONL file of results with a view of what is already done."""

    def __init__(self, path: str | os.PathLike) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._records: dict[Key, dict] = latest(read_records(self.path)) if self.path.is_file() else {}
        self._repair_tail()
        self._versions = versions()

    def _repair_tail(self) -> None:
        # An interrupted write can leave a last line without "\n"; the next append would glue onto it.
        if self.path.is_file() and self.path.stat().st_size > 0:
            with open(self.path, "rb+") as f:
                f.seek(-1, os.SEEK_END)
                if f.read(1) != b"\n":
                    f.write(b"\n")

    def __len__(self) -> int:
        return len(self._records)

    def is_done(self, key: Key) -> bool:
        rec = self._records.get(key)
        return rec is not None and rec.get("status") == "ok"

    def get(self, key: Key) -> dict | None:
        return self._records.get(key)

    def records(self) -> list[dict]:
        return list(self._records.values())

    def add(self, rec: dict) -> dict:
        """Complete ``rec`` (config hash, versions, time), append it, flush it to disk and return it."""
        rec = dict(rec)
        rec.setdefault("config", {})
        rec["config_hash"] = config_hash(rec["config"])
        rec.setdefault("status", "ok")
        rec.setdefault("versions", self._versions)
        rec.setdefault("time", time.strftime("%Y-%m-%dT%H:%M:%S%z"))
        line = json.dumps(rec, ensure_ascii=False, sort_keys=False, default=str)
        with open(self.path, "a", encoding="utf-8") as f:
            f.write(line + "\n")
            f.flush()
            os.fsync(f.fileno())
        self._records[record_key(rec)] = rec
        return rec
