"""What a line is: the contract every reader and writer of the package keeps.

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

import os
import unicodedata
from collections.abc import Iterator

_BOM = "\ufeff"


def to_single_line(text: str) -> str:
    """Make ``text`` one clean line: controls/separators/whitespace -> one space, stripped ("" if nothing is left),
    in Unicode NFC (what uroman and the tokenizers expect: decomposed Hangul, Arabic or Greek from macOS file names or
    scrapers would otherwise keep jamo or romanize differently)."""
    if text.isascii() and text.isprintable():
        return " ".join(text.split())
    text = unicodedata.normalize("NFC", text)
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
