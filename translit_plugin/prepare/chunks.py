"""Per-chunk work: transliterate a chunk of sampled lines, then encode and binarize its pairs.

A *chunk* is one file ``work/sample/{lang}/{split}-{k:05d}.txt`` (at most ``chunk_size`` cleaned lines).  Each chunk
goes through two resumable steps (:mod:`translit_plugin.prepare.records`), each writing its output atomically and
then a ``.done.json`` record whose key hashes everything the output depends on:

1. ``work/translit/{lang}/{split}-{k:05d}.tsv``: one record ``original<TAB>latin`` per input line, same order, same
   count (the Latin side may be empty).  A pair lives in one record from here on, so the two sides cannot drift.
2. ``work/bin/{lang}/{split}-{k:05d}.{orig,latn}.{bin,idx}``: the kept pairs binarized with fairseq's mmap builder,
   and the ``.done.json`` record listing which TSV lines were dropped and why, and token statistics.

A pair is dropped on both sides together when the Latin side is empty, when either side encodes to nothing, or when
either side is over-long under ``overlong="drop"``.  Before binarizing, the TSV is checked against its chunk line by
line (count, one TAB per record, identical original text); any difference raises :class:`AlignmentError`.
"""

from __future__ import annotations

import logging
import os
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from translit_plugin.core.files import tmp_path
from translit_plugin.core.hashing import sha1_file
from translit_plugin.core.lines import iter_lines, to_single_line
from translit_plugin.core.names import LATN, ORIG, SIDES
from translit_plugin.prepare.records import read_done, step_key, write_done

if TYPE_CHECKING:
    from translit_plugin.prepare.encode import SideEncoder
    from translit_plugin.transliterate import Transliterator

logger = logging.getLogger(__name__)

DROP_REASONS = ("empty_translit", "empty_encoding", "overlong")


class AlignmentError(RuntimeError):
    """Raised whenever the original and Latin sides could stop being line-aligned."""

    exit_code = 3  # `translit-ppa`: a failed check


@dataclass(frozen=True)
class ChunkTask:
    """Paths and language of one chunk (see the module docstring)."""

    lang: str
    split: str
    index: int
    n_lines: int
    src: str  # work/sample/{lang}/{split}-{k}.txt
    tsv: str  # work/translit/{lang}/{split}-{k}.tsv
    bin_prefix: str  # work/bin/{lang}/{split}-{k}: + ".orig.bin", ".latn.idx", ".json"
    lcode: str | None
    external: bool = False  # chunk lines are "original<TAB>latin" from --latn-input: no uroman

    @property
    def name(self) -> str:
        return f"{self.lang}/{self.split}-{self.index:05d}"

    def bin_output(self) -> Path:
        """The last file binarization writes; its presence plus the record means the step is complete."""
        return Path(self.bin_prefix + ".latn.idx")

    def bin_marker(self) -> Path:
        return Path(self.bin_prefix + ".done.json")

    def bin_files(self) -> list[Path]:
        """Every file binarization writes (:meth:`bin_output` last)."""
        return [Path(f"{self.bin_prefix}.{side}{ext}") for side in SIDES for ext in (".bin", ".idx")]


@dataclass(frozen=True)
class ChunkSettings:
    """Everything a worker needs besides the task (picklable; also part of the up-to-date keys)."""

    spm_model: str
    dict_path: str
    spm_sha1: str
    dict_sha1: str
    max_length: int
    overlong: str
    uroman_cache_size: int
    uroman_version: str


# Per-process state: one uroman and one encoder per worker, loaded on first use (or inherited through fork).
_STATE: dict[str, Any] = {}


def get_transliterator(settings: ChunkSettings) -> Transliterator:
    """This process's uroman (loaded on first use, or inherited through fork)."""
    from translit_plugin.transliterate import Transliterator

    tr = _STATE.get("translit")
    if tr is None or tr.cache_size != settings.uroman_cache_size:
        tr = _STATE["translit"] = Transliterator(cache_size=settings.uroman_cache_size)
    return tr


def get_encoder(settings: ChunkSettings) -> SideEncoder:
    """This process's encoder for ``settings`` (loaded on first use, or inherited through fork)."""
    from translit_plugin.prepare.encode import SideEncoder

    key = (settings.spm_model, settings.dict_path, settings.max_length, settings.overlong)
    if _STATE.get("encoder_key") != key:
        _STATE["encoder"] = SideEncoder(settings.spm_model, settings.dict_path, settings.max_length, settings.overlong)
        _STATE["encoder_key"] = key
    return _STATE["encoder"]


def translit_key(task: ChunkTask, settings: ChunkSettings, src_sha1: str) -> str:
    """The key of step 1 (:func:`~translit_plugin.prepare.records.step_key`): the chunk's content and uroman."""
    return step_key({"step": "prepare.translit", "src": src_sha1, "lcode": task.lcode, "external": task.external,
                     "uroman": None if task.external else settings.uroman_version,
                     "cache_size": settings.uroman_cache_size})


def bin_key(translit_record: dict[str, Any], settings: ChunkSettings) -> str:
    """The key of step 2: the TSV (its record's key and content) and the encoding settings."""
    return step_key({"step": "prepare.bin", "tsv": translit_record["key"], "tsv_sha1": translit_record["sha1"],
                     "spm": settings.spm_sha1, "dict": settings.dict_sha1, "max_length": settings.max_length,
                     "overlong": settings.overlong})


def chunk_status(task: ChunkTask, settings: ChunkSettings) -> tuple[dict | None, dict | None]:
    """(translit record, bin record) when up to date, else None for that step."""
    tsv = Path(task.tsv)
    t_rec = read_done(tsv, translit_key(task, settings, sha1_file(task.src)))
    if t_rec is None:
        return None, None
    return t_rec, read_done(task.bin_output(), bin_key(t_rec, settings), task.bin_marker())


def transliterate_chunk(task: ChunkTask, settings: ChunkSettings) -> dict[str, Any]:
    """Step 1 (skipped when up to date): write the chunk's ``original<TAB>latin`` TSV; return its record."""
    tsv = Path(task.tsv)
    key = translit_key(task, settings, sha1_file(task.src))
    record = read_done(tsv, key)
    if record is not None:
        return record
    lines = list(iter_lines(task.src))
    if len(lines) != task.n_lines:
        raise AlignmentError(f"{task.src}: {len(lines)} lines, the sample plan says {task.n_lines}; rerun sampling")
    if task.external:  # given transliterations (cleaned together with their original lines)
        lines, latin = zip(*(line.split("\t", 1) for line in lines)) if lines else ((), ())
        lines, latin = list(lines), [to_single_line(x) for x in latin]
    else:
        latin = get_transliterator(settings).transliterate_lines(lines, task.lcode)
    if len(latin) != len(lines):
        raise AlignmentError(f"{task.name}: transliteration returned {len(latin)} lines for {len(lines)}")
    tsv.parent.mkdir(parents=True, exist_ok=True)
    tmp = tmp_path(tsv)
    with open(tmp, "w", encoding="utf-8", newline="\n") as f:
        for orig, latn in zip(lines, latin, strict=True):
            if "\t" in latn or "\n" in latn:  # to_single_line guarantees neither; keep the TSV unambiguous anyway
                raise AlignmentError(f"{task.name}: transliteration of {orig!r} is not a single line: {latn!r}")
            f.write(f"{orig}\t{latn}\n")
    os.replace(tmp, tsv)
    return write_done(tsv, key, {"lines": len(lines), "sha1": sha1_file(tsv), "lang": task.lang, "lcode": task.lcode})


def read_pairs(task: ChunkTask, translit_record: dict[str, Any]) -> list[tuple[str, str]]:
    """The TSV records of a chunk, checked against the chunk's original lines (raises :class:`AlignmentError`)."""
    pairs: list[tuple[str, str]] = []
    src_lines = iter_lines(task.src)
    for i, record in enumerate(iter_lines(task.tsv)):
        parts = record.split("\t")
        if len(parts) != 2:
            raise AlignmentError(f"{task.tsv}:{i + 1}: expected 'original<TAB>latin', found {len(parts) - 1} TABs; "
                                 "delete the file and its .done.json and rerun")
        src = next(src_lines, None)
        if task.external and src is not None:
            src = src.split("\t", 1)[0]
        if src != parts[0]:
            raise AlignmentError(f"{task.tsv}:{i + 1}: original text {parts[0]!r} differs from {task.src}:{i + 1} "
                                 f"({src!r}); the pairs would shift. Delete the TSV and its .done.json and rerun")
        pairs.append((parts[0], parts[1]))
    if next(src_lines, None) is not None or len(pairs) != translit_record["lines"]:
        raise AlignmentError(f"{task.tsv}: {len(pairs)} records for {task.n_lines} lines in {task.src}; the "
                             "transliteration side is short. Delete the TSV and its .done.json and rerun")
    return pairs


def binarize_chunk(task: ChunkTask, settings: ChunkSettings, translit_record: dict[str, Any]) -> dict[str, Any]:
    """Step 2 (skipped when up to date): encode both sides, drop pairs together, binarize; return the record."""
    from fairseq.data import indexed_dataset

    key = bin_key(translit_record, settings)
    record = read_done(task.bin_output(), key, task.bin_marker())
    if record is not None:
        return record
    import torch

    encoder = get_encoder(settings)
    pairs = read_pairs(task, translit_record)
    task.bin_output().parent.mkdir(parents=True, exist_ok=True)
    tmp_prefix = {side: str(tmp_path(Path(f"{task.bin_prefix}.{side}"))) for side in SIDES}
    builders = {side: indexed_dataset.make_builder(tmp_prefix[side] + ".bin", impl="mmap",
                                                   vocab_size=encoder.vocab_size) for side in SIDES}
    kept = 0
    dropped: list[int] = []  # TSV line numbers of dropped pairs (few; the kept ones are the complement)
    drops = dict.fromkeys(DROP_REASONS, 0)
    hist = {side: np.zeros(settings.max_length + 1, dtype=np.int64) for side in SIDES}
    truncated = dict.fromkeys(SIDES, 0)
    unk = dict.fromkeys(SIDES, 0)
    for i, (orig, latn) in enumerate(pairs):
        if not latn:
            drops["empty_translit"] += 1
            dropped.append(i)
            continue
        enc = {ORIG: encoder.encode(orig), LATN: encoder.encode(latn)}
        reason = next((e.drop_reason for e in enc.values() if e.drop_reason is not None), None)
        if reason is not None:
            drops[reason] += 1
            dropped.append(i)
            continue
        for side, e in enc.items():
            builders[side].add_item(torch.from_numpy(e.ids))
            hist[side][len(e.ids)] += 1
            truncated[side] += int(e.truncated)
            unk[side] += e.n_unk
        kept += 1
    for side in SIDES:
        builders[side].finalize(tmp_prefix[side] + ".idx")
        for ext in (".bin", ".idx"):
            os.replace(tmp_prefix[side] + ext, f"{task.bin_prefix}.{side}{ext}")
    record = {
        "lang": task.lang,
        "split": task.split,
        "index": task.index,
        "lines": len(pairs),
        "kept": kept,
        "dropped_lines": dropped,
        "drops": drops,
        "truncated": truncated,
        "unk": unk,
        # length histograms of the stored lines (pieces + </s>), index = length
        "length_hist": {side: _sparse(hist[side]) for side in SIDES},
        "task": asdict(task),
    }
    return write_done(task.bin_output(), key, record, task.bin_marker(), task.bin_files())


def _sparse(hist: np.ndarray) -> dict[str, int]:
    nz = np.nonzero(hist)[0]
    return {str(int(i)): int(hist[i]) for i in nz}


def process_chunk(args: tuple[ChunkTask, ChunkSettings]) -> dict[str, Any]:
    """Both steps for one chunk (the unit of work of a worker process); returns the bin record."""
    task, settings = args
    t_rec = transliterate_chunk(task, settings)
    return binarize_chunk(task, settings, t_rec)


def kept_lines(record: dict[str, Any]) -> list[int]:
    """TSV line numbers (0-based) of the pairs a chunk kept, in stored order."""
    dropped = set(record["dropped_lines"])
    return [i for i in range(record["lines"]) if i not in dropped]


def process_run(args: tuple[list[ChunkTask], ChunkSettings]) -> list[dict[str, Any]]:
    """Several chunks in order in one worker (see :func:`translit_plugin.prepare.parallel.plan_runs`)."""
    tasks, settings = args
    return [process_chunk((task, settings)) for task in tasks]
