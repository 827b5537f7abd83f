"""Stage 1, clean: raw ``{lang_Script}.txt`` -> ``work/clean/{lang}.txt``, one clean single line per kept sentence.

Streams the input (memory does not grow with the file, except for ``dedupe``, which keeps an 8-byte hash per unique
line).  Each line is decoded and made single-line under the line contract of :mod:`translit_plugin.core.lines`;
then empty lines and lines longer than ``max_chars`` characters (they would stall uroman and be truncated anyway) are
dropped, and with ``dedupe`` exact repeats too.  Nothing is paired yet, so dropping here cannot misalign anything.
"""

from __future__ import annotations

import hashlib
import logging
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from translit_plugin.core.files import tmp_path
from translit_plugin.core.hashing import sha256_file, stable_key
from translit_plugin.core.lines import iter_raw_lines, to_single_line
from translit_plugin.prepare.records import read_done, write_done

if TYPE_CHECKING:
    from translit_plugin.prepare.content_check import ContentCheck, ContentCheckConfig
    from translit_plugin.prepare.latn_check import LatnCheckConfig, PairSample

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class CleanConfig:
    """Cleaning options (all part of the stage's up-to-date key)."""

    dedupe: bool = False  # drop exact duplicate lines within a language (keeps the first)
    max_chars: int = 10000  # drop longer lines (characters, after cleaning); 0 = no limit
    min_chars: int = 1  # drop shorter lines (characters, after cleaning)


COUNTS = ("input_lines", "empty", "too_short", "too_long", "duplicate", "modified", "invalid_utf8", "kept")


def clean_language(src: Path, out: Path, lang: str, cfg: CleanConfig, progress: bool = True,
                   latn_src: Path | None = None, latn_check: LatnCheckConfig | None = None,
                   lcode: str | None = None, content: ContentCheckConfig | None = None) -> dict[str, Any]:
    """Clean one language file (skipped when ``out`` is up to date); return the stage record with counts.

    With ``latn_src`` (a given transliteration, line i of it = line i of ``src``) both files are read in lockstep and
    each output line is ``original<TAB>latin``; a pair is dropped together, and files with different line counts
    raise :class:`~translit_plugin.prepare.chunks.AlignmentError` (e.g. a tool that split a line at U+2028).  With
    ``latn_check`` (a :class:`~translit_plugin.prepare.latn_check.LatnCheckConfig`) a sample of the pairs is compared
    with uroman (language code ``lcode``); a mismatch raises
    :class:`~translit_plugin.prepare.latn_check.LatnMismatchError`.  With ``content`` (on by default in ``prepare``)
    every pair is checked by :mod:`translit_plugin.prepare.content_check` (swapped, shifted or foreign lines raise
    :class:`~translit_plugin.prepare.content_check.LatnContentError`).

    Up to date means: same content (sha256) of the input files and same options; sizes and mtimes do not count.
    """
    check = latn_check if latn_src is not None and latn_check is not None and latn_check.lines != 0 else None
    if latn_src is not None:
        from translit_plugin.prepare.content_check import LatnContentError, same_text_error

        problem = same_text_error(str(src), str(latn_src), lang)
        if problem:
            raise LatnContentError(f"{lang}: {problem}")
    every_line = content if latn_src is not None and content is not None and content.enabled else None
    key = stable_key({"input": sha256_file(src), "latn": sha256_file(latn_src) if latn_src else None,
                      "cfg": cfg.__dict__, "latn_check": (check.__dict__, lcode) if check else None, "version": 2,
                      **({"content_check": every_line.__dict__} if every_line else {})})
    record = read_done(out, key)
    if record is not None:
        logger.info("clean %s: up to date (%d lines kept)", lang, record["kept"])
        return {**record, "skipped": True}
    sample = None
    if check is not None:
        from translit_plugin.prepare.latn_check import PairSample

        sample = PairSample(lang, check)
    lines = None
    if every_line is not None:
        from translit_plugin.prepare.content_check import ContentCheck

        lines = ContentCheck(lang, str(src), str(latn_src), every_line)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = tmp_path(out)
    counts = _write_clean(src, latn_src, tmp, lang, cfg, sample, progress, lines)
    checked = content_summary = None
    try:  # the uroman sample first (its message shows the lines), then every line
        if sample is not None:
            from translit_plugin.prepare.latn_check import check_sample

            checked = check_sample(lang, src, latn_src, sample, lcode, check)
        if lines is not None:
            content_summary = lines.finish()
    except Exception:
        tmp.unlink(missing_ok=True)
        raise
    os.replace(tmp, out)
    logger.info("clean %s: %d lines -> %d kept (%d empty, %d too long, %d duplicates, %d modified, %d with invalid "
                "UTF-8)", lang, counts["input_lines"], counts["kept"], counts["empty"], counts["too_long"],
                counts["duplicate"], counts["modified"], counts["invalid_utf8"])
    return write_done(out, key, {"lang": lang, "input": str(src), "latn_input": str(latn_src) if latn_src else None,
                                 "latn_check": checked,
                                 **({"content_check": content_summary} if content_summary else {}), **counts})


def _write_clean(src: Path, latn_src: Path | None, tmp: Path, lang: str, cfg: CleanConfig,
                 sample: PairSample | None, progress: bool, lines: ContentCheck | None = None) -> dict[str, int]:
    """Stream ``src`` (and ``latn_src``) into ``tmp``: the kept lines (``original<TAB>latin`` with a given
    transliteration, whose pairs also go to ``sample``); return the counts."""
    from tqdm import tqdm

    counts = dict.fromkeys(COUNTS, 0)
    seen: set[bytes] = set()
    total = os.path.getsize(src)
    with open(tmp, "w", encoding="utf-8", newline="\n") as f, tqdm(
        total=total, unit="B", unit_scale=True, desc=f"clean {lang}", disable=not progress, leave=False
    ) as bar:
        pending = 0
        for raw, latn in _line_pairs(src, latn_src):
            counts["input_lines"] += 1
            pending += len(raw) + 1
            if pending > (1 << 20):
                bar.update(min(pending, total - bar.n))
                pending = 0
            if "\ufffd" in raw:
                counts["invalid_utf8"] += 1
            line = to_single_line(raw)
            if line != raw.strip(" "):
                counts["modified"] += 1
            reason = _drop_reason(line, cfg, seen)
            if reason is not None:
                counts[reason] += 1
                continue
            f.write(line)
            if latn is not None:
                latn = to_single_line(latn)
                f.write("\t" + latn)
                if sample is not None:
                    sample.add(counts["input_lines"], line, latn)
                if lines is not None:
                    lines.add(counts["input_lines"], line, latn)
            f.write("\n")
            counts["kept"] += 1
        bar.update(total - bar.n)
    return counts


def _line_pairs(src: Path, latn_src: Path | None) -> Iterator[tuple[str, str | None]]:
    """Raw lines of ``src``, each with the raw line of the same number in ``latn_src`` (None without one);
    :class:`~translit_plugin.prepare.chunks.AlignmentError` when the two files have different line counts."""
    from translit_plugin.prepare.chunks import AlignmentError

    if latn_src is None:
        for raw in iter_raw_lines(src):
            yield raw, None
        return
    latn_lines = iter_raw_lines(latn_src)
    n = 0
    for raw in iter_raw_lines(src):
        latn = next(latn_lines, None)
        if latn is None:
            raise AlignmentError(f"{latn_src} has {n} lines, fewer than {src}; the transliteration must have exactly "
                                 "one line per input line (a tool that drops lines or splits/merges them at U+2028, "
                                 "CR, NEL... misaligns them)")
        n += 1
        yield raw, latn
    if next(latn_lines, None) is not None:
        extra = 1 + sum(1 for _ in latn_lines)
        raise AlignmentError(f"{latn_src} has {n + extra} lines, {src} has {n}; the transliteration must have one "
                             "line per input line")


def _drop_reason(line: str, cfg: CleanConfig, seen: set[bytes]) -> str | None:
    """Why a cleaned line is dropped (a key of the counts), or None to keep it (``seen``: digests kept so far)."""
    if not line:
        return "empty"
    if len(line) < cfg.min_chars:
        return "too_short"
    if cfg.max_chars and len(line) > cfg.max_chars:
        return "too_long"
    if cfg.dedupe:
        digest = hashlib.blake2b(line.encode("utf-8"), digest_size=8).digest()
        if digest in seen:
            return "duplicate"
        seen.add(digest)
    return None
