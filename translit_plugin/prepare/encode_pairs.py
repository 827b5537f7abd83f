"""One language of ``translit-ppa encode``: a pair of line-aligned files -> piece text and raw id files, resumable
(one step of :mod:`translit_plugin.prepare.records`).

Pairs are read in lockstep under prepare's line contract (:mod:`translit_plugin.core.lines`), dropped on both sides
together under prepare's rules, and encoded by prepare's :class:`~translit_plugin.prepare.encode.SideEncoder` (the
one home of how pieces are encoded); :mod:`translit_plugin.prepare.encode_job` assembles the languages of a split.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from translit_plugin.core.names import LATN, ORIG, SIDES
from translit_plugin.prepare.encode import SideEncoder

FORMAT = 1  # of encode_language's records
DROP_REASONS = ("empty", "too_long", "empty_translit", "empty_encoding", "overlong")
_WHITESPACE = re.compile(r"\s")  # what fairseq's tokenize_line splits on


@dataclass(frozen=True)
class LangJob:
    lang: str
    orig: str
    latn: str
    prefix: str  # OUT/.work/{split}/{lang}: + ".orig.txt", ".orig.ids", ".orig.sizes", ... + ".done.json"
    spm_model: str
    dict_path: str
    model_key: str
    max_length: int
    overlong: str
    max_chars: int
    content_check: Any = None  # ContentCheckConfig: every line of --latn against its original (None: off)
    latn_check: Any = None  # LatnCheckConfig: a sample compared with uroman (None: off)
    lcode: str | None = None  # uroman code for that comparison


def job_key(job: LangJob) -> str:
    """The key of one language (:func:`~translit_plugin.prepare.records.step_key`): both input files' stamps, the
    model, the options and the checks."""
    from translit_plugin.prepare.records import step_key

    return step_key({"step": "encode.language", "format": FORMAT, "model": job.model_key,
                     "max_length": job.max_length, "overlong": job.overlong, "max_chars": job.max_chars,
                     **({"checks": [c.__dict__ if c else None for c in (job.content_check, job.latn_check)]
                         + [job.lcode]} if job.content_check or job.latn_check else {})},
                    inputs=[job.orig, job.latn])


def record_path(job: LangJob) -> Path:
    """Where the record of one language's piece files lives: ``prefix + ".done.json"``."""
    return Path(job.prefix + ".done.json")


def piece_paths(job: LangJob) -> dict[str, Path]:
    """``{"orig.txt": ..., "orig.ids": ..., "orig.sizes": ..., "latn.txt": ...}``: one language's piece files."""
    p = job.prefix
    return {f"{side}.{kind}": Path(f"{p}.{side}.{kind}") for side in SIDES for kind in ("txt", "ids", "sizes")}


def _encoder(job: LangJob) -> SideEncoder:
    return SideEncoder(job.spm_model, job.dict_path, job.max_length, job.overlong)


def _pairs_of(job: LangJob) -> Iterator[tuple[int, str, str]]:
    """``(line number, original, Latin)`` of each input line pair, both made single-line (the line contract);
    :class:`~translit_plugin.prepare.chunks.AlignmentError` when the two files have different line counts."""
    from translit_plugin.core.lines import iter_raw_lines, to_single_line
    from translit_plugin.prepare.chunks import AlignmentError

    latn_lines = iter_raw_lines(job.latn)
    n = 0
    for n, raw in enumerate(iter_raw_lines(job.orig), start=1):
        raw_latn = next(latn_lines, None)
        if raw_latn is None:
            raise AlignmentError(f"{job.latn} has {n - 1} lines, fewer than {job.orig}; the transliteration "
                                 "must have exactly one line per original line (a shift would misalign pairs)")
        yield n, to_single_line(raw), to_single_line(raw_latn)
    if next(latn_lines, None) is not None:
        extra = 1 + sum(1 for _ in latn_lines)
        raise AlignmentError(f"{job.latn} has {n + extra} lines, {job.orig} has {n}; the transliteration must "
                             "have exactly one line per original line")


def _encode_pair(job: LangJob, enc, text: dict[str, str]) -> tuple[str | None, dict[str, Any]]:
    """``(why the pair is dropped, or None; both sides encoded when they were)`` under prepare's rules."""
    if not text[ORIG]:
        return "empty", {}
    if job.max_chars and len(text[ORIG]) > job.max_chars:
        return "too_long", {}
    if not text[LATN]:
        return "empty_translit", {}
    encoded = {side: enc.encode(text[side]) for side in SIDES}
    return next((e.drop_reason for e in encoded.values() if e.drop_reason is not None), None), encoded


def _write_side(handles: dict[str, Any], job: LangJob, enc, side: str, text: str, ids: np.ndarray, n: int) -> None:
    """One kept side: its pieces (as many as ``ids`` holds) to the text file, ``ids`` and its length to the raw files;
    refuses pieces that fairseq-preprocess would not map one to one onto these ids."""
    from translit_plugin.prepare.chunks import AlignmentError

    pieces = enc.pieces(text)
    whole = len(pieces) + 1  # pieces + </s> before truncation
    if (len(ids) != min(whole, job.max_length - 1)) or not all(pieces) or _WHITESPACE.search("".join(pieces)):
        raise AlignmentError(f"{job.orig if side == ORIG else job.latn}:{n}: the pieces of this line do not map one "
                             f"to one onto ids ({pieces!r}); fairseq-preprocess would encode it differently from "
                             "prepare")
    handles[f"{side}.txt"].write(" ".join(pieces[: len(ids) - 1]) + "\n")
    handles[f"{side}.ids"].write(ids.astype("<i4", copy=False).tobytes())
    handles[f"{side}.sizes"].write(np.array([len(ids)], dtype="<i4").tobytes())


def encode_language(job: LangJob) -> dict[str, Any]:
    """Encode one language's pairs into piece text + raw id files (skipped when up to date); return the record."""
    from translit_plugin.core.files import tmp_path
    from translit_plugin.prepare.records import read_record, write_record

    paths = piece_paths(job)
    key = job_key(job)
    record = read_record(record_path(job), key)  # trusted only while every piece file is there
    if record is not None:
        return record
    enc = _encoder(job)
    Path(job.prefix).parent.mkdir(parents=True, exist_ok=True)
    tmps = {name: tmp_path(path) for name, path in paths.items()}
    handles = {name: open(tmps[name], "w", encoding="utf-8", newline="\n") if name.endswith("txt")
               else open(tmps[name], "wb") for name in paths}
    drops = dict.fromkeys(DROP_REASONS, 0)
    dropped: list[int] = []
    truncated = dict.fromkeys(SIDES, 0)
    n = kept = 0
    content, sample = _checks(job)
    try:
        for n, orig, latn in _pairs_of(job):
            text = {ORIG: orig, LATN: latn}
            if content is not None:
                content.add(n, orig, latn)
            if sample is not None and orig and latn:
                sample.add(n, orig, latn)
            reason, encoded = _encode_pair(job, enc, text)
            if reason is not None:
                drops[reason] += 1
                dropped.append(n)
                continue
            for side in SIDES:
                _write_side(handles, job, enc, side, text[side], encoded[side].ids, n)
                truncated[side] += int(encoded[side].truncated)
            kept += 1
        checked = _finish_checks(job, content, sample)
    except BaseException:
        for h in handles.values():
            h.close()
        for tmp in tmps.values():
            tmp.unlink(missing_ok=True)
        raise
    for h in handles.values():
        h.close()
    for name, path in paths.items():
        os.replace(tmps[name], path)
    return write_record(record_path(job), key, list(paths.values()),
                        {"lang": job.lang, "orig": job.orig, "latn": job.latn, "lines": n, "kept": kept, "drops": drops,
                         "dropped_lines": dropped, "truncated": truncated, **checked})


def _checks(job: LangJob) -> tuple[Any, Any]:
    """The every-line check and the uroman sample of one language (None where off)."""
    content = sample = None
    if job.content_check is not None:
        from translit_plugin.prepare.content_check import ContentCheck

        content = ContentCheck(job.lang, job.orig, job.latn, job.content_check)
    if job.latn_check is not None:
        from translit_plugin.prepare.latn_check import PairSample

        sample = PairSample(job.lang, job.latn_check)
    return content, sample


def _finish_checks(job: LangJob, content: Any, sample: Any) -> dict[str, Any]:
    """Results of both checks for the record; raises (exit status 3) naming the file and lines that fail."""
    out: dict[str, Any] = {}
    if sample is not None and sample.items:  # the uroman sample first (its message shows the lines), then every line
        from translit_plugin.prepare.latn_check import check_sample

        out["latn_check"] = check_sample(job.lang, Path(job.orig), Path(job.latn), sample, job.lcode, job.latn_check)
    if content is not None:
        out["content_check"] = content.finish()
    return out
