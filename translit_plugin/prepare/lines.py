"""What a line is, and small file helpers shared by the prepare stages.

**Line contract.**  A raw input line is a ``\\n``-terminated byte sequence (a final line without ``\\n`` counts too).
It is decoded as UTF-8 with invalid bytes replaced by U+FFFD (the same replacement uroman's own file reader makes), a
trailing ``\\r`` (CRLF files) is dropped, and then :func:`to_single_line` turns *every* character that any consumer
might treat as a line break or that has no business inside a line into a plain space: CR, VT, FF, FS/GS/RS/US, NEL
(U+0085), U+2028, U+2029, NUL and all other C0/C1 controls, and all Unicode whitespace (NBSP, U+3000, ...).  Runs of
spaces collapse to one; leading/trailing spaces go; a BOM goes.  After that, Python's ``str.splitlines``, text-mode
``open`` (universal newlines, what ``fairseq-preprocess`` and uroman's file reader use), fairseq's ``tokenize_line``
(``\\s+``) and ``bytes.split(b"\\n")`` all see exactly one line with the same content, so no later stage can split or
merge lines differently.  Every intermediate text file is written with ``\\n`` line ends only.
"""

from __future__ import annotations

import hashlib
import json
import os
import unicodedata
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

_BOM = "\ufeff"


def to_single_line(text: str) -> str:
    """Make ``text`` one clean line: controls/separators/whitespace -> one space, stripped ("" if nothing is left)."""
    if text.isascii() and text.isprintable():
        return " ".join(text.split())
    out = []
    for ch in text:
        if ch == _BOM:
            continue
        if ch.isspace() or unicodedata.category(ch) in ("Cc", "Zl", "Zp"):
            out.append(" ")
        else:
            out.append(ch)
    return " ".join("".join(out).split())


def is_single_line(text: str) -> bool:
    """True when ``text`` is already in the form :func:`to_single_line` produces."""
    return text == to_single_line(text)


def iter_raw_lines(path: str | os.PathLike) -> Iterator[str]:
    """Decoded lines of a raw text file under the line contract (not yet made single-line)."""
    with open(path, "rb") as f:
        for raw in f:  # binary iteration splits on b"\n" only
            if raw.endswith(b"\n"):
                raw = raw[:-1]
            if raw.endswith(b"\r"):
                raw = raw[:-1]
            yield raw.decode("utf-8", errors="replace")


def iter_lines(path: str | os.PathLike) -> Iterator[str]:
    """Lines of an intermediate file written by this package (``\\n`` only, valid UTF-8, no line end returned)."""
    with open(path, encoding="utf-8", newline="\n") as f:
        for line in f:
            yield line[:-1] if line.endswith("\n") else line


def count_lines(path: str | os.PathLike) -> int:
    """Number of ``\\n``-terminated lines (plus a final unterminated one)."""
    n, last = 0, b"\n"
    with open(path, "rb") as f:
        while block := f.read(1 << 20):
            n += block.count(b"\n")
            last = block[-1:]
    return n + (last != b"\n")


def tmp_path(path: Path) -> Path:
    """A temporary sibling path unique to this process (atomic write: write it, then ``os.replace``)."""
    return path.with_name(f".{path.name}.tmp{os.getpid()}")


def write_lines(path: Path, lines: Iterable[str]) -> int:
    """Atomically write ``lines`` (each must be single-line) with ``\\n`` ends; return the count."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = tmp_path(path)
    n = 0
    with open(tmp, "w", encoding="utf-8", newline="\n") as f:
        for line in lines:
            f.write(line)
            f.write("\n")
            n += 1
    os.replace(tmp, path)
    return n


def sha1_file(path: str | os.PathLike) -> str:
    h = hashlib.sha1()
    with open(path, "rb") as f:
        while block := f.read(1 << 20):
            h.update(block)
    return h.hexdigest()


def file_stamp(path: str | os.PathLike) -> dict[str, Any]:
    """Cheap identity of an input file (path, size, mtime): changes when the file is replaced or edited."""
    st = os.stat(path)
    return {"path": str(Path(path).resolve()), "size": st.st_size, "mtime_ns": st.st_mtime_ns}


def stable_key(obj: Any) -> str:
    """Hash of a JSON-serialisable object: the "up to date" key of a stage output."""
    return hashlib.sha1(json.dumps(obj, sort_keys=True, default=str).encode("utf-8")).hexdigest()


def done_path(output: Path) -> Path:
    return output.with_name(output.name + ".done.json")


def read_done(output: Path, key: str, marker: Path | None = None) -> dict[str, Any] | None:
    """The stage record of ``output`` if it exists, matches ``key`` and the output is still there; else None.

    ``marker`` overrides where the record lives (default: ``output`` + ``.done.json``)."""
    marker = marker or done_path(output)
    if not marker.is_file() or not output.exists():
        return None
    try:
        record = json.loads(marker.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError):
        return None
    return record if record.get("key") == key else None


def write_done(output: Path, key: str, record: dict[str, Any], marker: Path | None = None) -> dict[str, Any]:
    """Mark ``output`` as up to date for ``key`` (written last, atomically, after the output itself)."""
    record = {**record, "key": key}
    marker = marker or done_path(output)
    tmp = tmp_path(marker)
    tmp.write_text(json.dumps(record, sort_keys=True) + "\n", encoding="utf-8")
    os.replace(tmp, marker)
    return record
