"""Atomic writes: a file appears complete under its final name or not at all (written to a temporary sibling unique
to this process, then ``os.replace``d over the target)."""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any


def tmp_path(path: Path) -> Path:
    """A temporary sibling path unique to this process (atomic write: write it, then ``os.replace``)."""
    return path.with_name(f".{path.name}.tmp{os.getpid()}")


@contextlib.contextmanager
def _writing(path: Path, tmp: Path) -> Iterator[None]:
    """Around an atomic write: on any error remove ``tmp``; an ``OSError`` that names no file (a ``write()`` on a
    full disk) is raised again naming ``path``, so the one-line error says which file could not be written."""
    try:
        yield
    except BaseException as e:
        with contextlib.suppress(OSError):
            tmp.unlink()
        if isinstance(e, OSError) and e.filename is None and e.errno is not None:
            raise OSError(e.errno, e.strerror, str(path)) from e
        raise


def write_lines(path: Path, lines: Iterable[str]) -> int:
    """Atomically write ``lines`` (each must be single-line) with ``\\n`` ends; return the count."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = tmp_path(path)
    n = 0
    with _writing(path, tmp), open(tmp, "w", encoding="utf-8", newline="\n") as f:
        for line in lines:
            f.write(line)
            f.write("\n")
            n += 1
    os.replace(tmp, path)
    return n


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    """Write ``text`` (UTF-8, ``\\n`` line ends as given) to ``path`` atomically."""
    path = Path(path)
    tmp = tmp_path(path)
    with _writing(path, tmp), open(tmp, "w", encoding="utf-8", newline="\n") as f:
        f.write(text)
    os.replace(tmp, path)


def atomic_write_json(path: str | os.PathLike, obj: Any, **dump_kwargs: Any) -> None:
    """Write ``obj`` as JSON (``json.dumps(obj, **dump_kwargs)`` plus a final newline) to ``path`` atomically."""
    atomic_write_text(path, json.dumps(obj, **dump_kwargs) + "\n")
