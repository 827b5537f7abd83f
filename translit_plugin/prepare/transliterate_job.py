"""The pipeline of ``translit-ppa transliterate``: raw text -> its uroman Latin transliteration, line for line
(no sampling, no ids).

The first step of the ``fairseq-preprocess`` path (README, "With fairseq-preprocess"): ``--input DIR`` of
``{lang_Script}.txt`` files (or one file and ``--lang``) -> ``--output DIR/{lang_Script}.txt`` (or one file); line i
of the output is the transliteration of line i of the input, always (an empty input line, or one longer than
``--max-chars`` characters, gives an empty line; ``translit-ppa encode`` then drops that pair).

Each line is read under prepare's line contract (:mod:`translit_plugin.core.lines`: split on ``\\n`` only, invalid
UTF-8 replaced, then made one clean line) and romanized with uroman and the language's code, exactly as ``prepare``
does (:class:`translit_plugin.transliterate.Transliterator`), so the same lines give the same Latin text.

Resumable and parallel like ``prepare``: each language is cut into chunks of ``--chunk-size`` lines (by byte offset,
nothing copied), ``--workers`` processes romanize chunks (uroman loaded once, shared through fork), each chunk is
written atomically under ``WORK/{lang}/`` with a record of what it depends on, and each finished language gets its
record ``WORK/{lang}.done.json`` (:mod:`translit_plugin.prepare.records`); a rerun skips finished chunks and
finished languages, and the result is the same whatever the worker count or interruptions.  ``WORK`` is
``OUTPUT/.work`` (``OUTPUT.work`` for a single file) unless ``--work-dir`` says otherwise; chunk files are deleted once
their language is assembled.

The command line is :mod:`translit_plugin.cli.transliterate`.
"""

from __future__ import annotations

import logging
import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from translit_plugin.prepare.records import looks_written_here, read_done, record_names, step_key, write_done
from translit_plugin.transliterate import DEFAULT_CACHE_SIZE

logger = logging.getLogger(__name__)

FORMAT = 1
_STATE: dict[str, Any] = {}


@dataclass(frozen=True)
class Job:
    """One chunk: ``n_lines`` lines of ``src`` starting at byte ``start`` -> ``out``."""

    lang: str
    index: int
    src: str
    start: int
    n_lines: int
    out: str
    lcode: str | None
    max_chars: int
    cache_size: int
    input_key: str  # stable key of the input file (path, size, mtime)


def decode_raw(raw: bytes) -> str:
    """One raw line as :func:`translit_plugin.core.lines.iter_raw_lines` decodes it."""
    if raw.endswith(b"\n"):
        raw = raw[:-1]
    if raw.endswith(b"\r"):
        raw = raw[:-1]
    return raw.decode("utf-8", errors="replace")


def input_files(path: Path, lang: str | None, langs: list[str] | None) -> dict[str, Path]:
    """``{lang_Script: file}`` for a directory of ``{lang_Script}.txt`` files or a single file."""
    from translit_plugin.prepare.inputs import discover_languages

    if path.is_dir():
        if lang is not None:
            raise SystemExit(f"--lang {lang}: only for a single --input file; {path} is a directory")
        return discover_languages(path, langs)
    if not path.is_file():
        raise SystemExit(f"--input {path}: no such file or directory")
    return {lang or path.stem: path}


def chunk_offsets(path: Path, chunk_size: int) -> tuple[list[tuple[int, int]], int]:
    """``[(byte offset, lines)]`` of the chunks of ``path`` and its line count (lines split on ``\\n`` only)."""
    chunks: list[tuple[int, int]] = []
    pos, n, start, in_chunk = 0, 0, 0, 0
    with open(path, "rb") as f:
        for raw in f:
            if in_chunk == 0:
                start = pos
            pos += len(raw)
            n += 1
            in_chunk += 1
            if in_chunk == chunk_size:
                chunks.append((start, in_chunk))
                in_chunk = 0
    if in_chunk:
        chunks.append((start, in_chunk))
    return chunks, n


def _transliterator(cache_size: int):
    from translit_plugin.transliterate import Transliterator

    tr = _STATE.get("translit")
    if tr is None or tr.cache_size != cache_size:
        tr = _STATE["translit"] = Transliterator(cache_size=cache_size)
    return tr


def job_key(job: Job) -> str:
    """The key of one chunk (:func:`~translit_plugin.prepare.records.step_key`)."""
    from translit_plugin.transliterate import uroman_version

    return step_key({"step": "transliterate.chunk", "format": FORMAT, "input": job.input_key, "start": job.start,
                     "n": job.n_lines, "lcode": job.lcode, "max_chars": job.max_chars, "cache": job.cache_size,
                     "uroman": uroman_version()})


def language_key(input_key: str, lcode: str | None, max_chars: int, cache_size: int) -> str:
    """The key of one language's output (its chunks assembled)."""
    from translit_plugin.transliterate import uroman_version

    return step_key({"step": "transliterate.language", "format": FORMAT, "input": input_key, "lcode": lcode,
                     "max_chars": max_chars, "cache": cache_size, "uroman": uroman_version()})


def language_record(work: Path, lang: str) -> Path:
    """Where the record of one language's output lives: ``WORK/{lang}.done.json``."""
    return work / f"{lang}.done.json"


def run_job(job: Job) -> int:
    """Romanize one chunk (skipped when up to date); return its line count."""
    from translit_plugin.core.files import write_lines
    from translit_plugin.core.lines import to_single_line

    out = Path(job.out)
    key = job_key(job)
    if read_done(out, key) is not None:
        return job.n_lines
    tr = _transliterator(job.cache_size)

    def lines():
        with open(job.src, "rb") as f:
            f.seek(job.start)
            for _ in range(job.n_lines):
                raw = f.readline()
                line = to_single_line(decode_raw(raw))
                if not line or (job.max_chars and len(line) > job.max_chars):
                    yield ""
                else:
                    yield tr.transliterate(line, job.lcode)

    n = write_lines(out, lines())
    if n != job.n_lines:  # the input changed under us
        raise RuntimeError(f"{job.src}: chunk {job.index} has {n} lines, expected {job.n_lines}; rerun")
    write_done(out, key, {"lines": n, "lang": job.lang})
    return n


def run_jobs(jobs: list[Job], workers: int, progress: bool) -> None:
    from tqdm import tqdm

    from translit_plugin.prepare.parallel import plan_runs, run_parallel

    pending = [job for job in jobs if read_done(Path(job.out), job_key(job)) is None]
    logger.info("transliterate: %d chunks, %d up to date, %d to do (%d lines) with %d worker(s)", len(jobs),
                len(jobs) - len(pending), len(pending), sum(j.n_lines for j in pending), workers)
    if not pending:
        return
    _transliterator(pending[0].cache_size)  # load once; forked workers inherit it
    total = sum(j.n_lines for j in pending)
    # consecutive chunks of one language per worker: uroman's cache hits
    runs = plan_runs(pending, workers)
    run_parallel(_run_many, runs, workers,
                 lambda: tqdm(total=total, unit="line", desc="transliterate", disable=not progress),
                 lambda n, bar: bar.update(n))


def _run_many(jobs: list[Job]) -> int:
    return sum(run_job(job) for job in jobs)


COMMAND = "transliterate"


def check_outputs(files: dict[str, Path], outputs: dict[str, Path], work: Path) -> None:
    """Refuse (nothing written) an output that is an input, a directory, or an existing file this command did not
    write (its record in ``work`` names it), and a work folder that is or contains an input."""
    from translit_plugin.core.safe_output import check_file_output, check_not_input

    inputs = list(files.values())
    check_not_input(work, inputs, "--work-dir", allow_inside=True)
    for lang, out in outputs.items():
        check_file_output(out, inputs, "--output", lambda p, lang=lang: record_names(language_record(work, lang), p),
                          f"a transliteration translit-ppa {COMMAND} wrote (no record of it in {work})")


def transliterate_files(files: dict[str, Path], outputs: dict[str, Path], work: Path, lcodes: dict[str, str | None],
                        max_chars: int = 10000, cache_size: int = DEFAULT_CACHE_SIZE, chunk_size: int = 5000,
                        workers: int = 1, progress: bool = True) -> dict[str, dict[str, Any]]:
    """Transliterate each ``files[lang]`` into ``outputs[lang]`` (resumable, see the module docstring).

    Writes over no file it did not write (:func:`check_outputs`); ``work`` is held by this run and must be this
    command's (:func:`translit_plugin.core.safe_output.held_output_dir`)."""
    from translit_plugin.core.safe_output import check_own_folder, held_output_dir

    if chunk_size < 1:
        raise SystemExit(f"--chunk-size {chunk_size}: must be >= 1")
    check_own_folder(work, COMMAND, looks_written_here)  # before lock files: language records and chunk folders
    check_outputs(files, outputs, work)
    with held_output_dir(work, COMMAND, looks_written_here):
        check_outputs(files, outputs, work)  # again, now that no other run can write meanwhile
        return _transliterate_held(files, outputs, work, lcodes, max_chars, cache_size, chunk_size, workers,
                                   progress)


def _transliterate_held(files: dict[str, Path], outputs: dict[str, Path], work: Path,
                        lcodes: dict[str, str | None], max_chars: int, cache_size: int, chunk_size: int,
                        workers: int, progress: bool) -> dict[str, dict[str, Any]]:
    from translit_plugin.core.hashing import stable_key
    from translit_plugin.prepare.records import file_stamp

    records: dict[str, dict[str, Any]] = {}
    plans: dict[str, tuple[str, list[Job], int]] = {}
    jobs: list[Job] = []
    for lang, src in files.items():
        input_key = stable_key(file_stamp(src))
        final_key = language_key(input_key, lcodes[lang], max_chars, cache_size)
        done = read_done(outputs[lang], final_key, language_record(work, lang))
        if done is not None:
            logger.info("transliterate %s: up to date (%d lines)", lang, done["lines"])
            records[lang] = done
            continue
        chunks, n = chunk_offsets(src, chunk_size)
        lang_jobs = [Job(lang=lang, index=k, src=str(src), start=start, n_lines=count,
                         out=str(work / lang / f"{k:05d}.txt"), lcode=lcodes[lang], max_chars=max_chars,
                         cache_size=cache_size, input_key=input_key) for k, (start, count) in enumerate(chunks)]
        plans[lang] = (final_key, lang_jobs, n)
        jobs += lang_jobs
    run_jobs(jobs, workers, progress)
    for lang, (final_key, lang_jobs, n) in plans.items():
        records[lang] = _assemble(lang, files[lang], outputs[lang], work, final_key, lang_jobs, n, lcodes[lang])
    return records


def _assemble(lang: str, src: Path, out: Path, work: Path, key: str, jobs: list[Job], n: int,
              lcode: str | None) -> dict[str, Any]:
    """Concatenate one language's chunks into ``out`` (atomically), record it, delete the chunks."""
    from translit_plugin.core.files import tmp_path
    from translit_plugin.core.lines import count_lines
    from translit_plugin.transliterate import uroman_version

    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = tmp_path(out)
    with open(tmp, "wb") as f:
        for job in jobs:
            with open(job.out, "rb") as part:
                shutil.copyfileobj(part, f)
    got = count_lines(tmp)
    if got != n:
        raise RuntimeError(f"{out}: {got} lines assembled for {n} input lines; delete {work} and rerun")
    os.replace(tmp, out)
    record = write_done(out, key, {"lang": lang, "input": str(src), "lines": n, "uroman_code": lcode,
                                   "uroman_version": uroman_version()}, language_record(work, lang))
    shutil.rmtree(work / lang, ignore_errors=True)
    logger.info("transliterate %s: %d lines -> %s", lang, n, out)
    return record


def parse_uroman_codes(items: list[str]) -> dict[str, str | None]:
    """``{lang_Script: uroman code}`` from ``--uroman-code LANG=CODE`` values (CODE empty or ``none``: no code);
    :class:`~translit_plugin.prepare.config.PrepareInputError` for an item without ``=`` (``prepare`` and
    ``transliterate`` take the same flag)."""
    from translit_plugin.prepare.config import PrepareInputError

    codes: dict[str, str | None] = {}
    for item in items:
        if "=" not in item:
            raise PrepareInputError(f"--uroman-code {item!r}: expected LANG=CODE, e.g. arz_Arab=ara")
        lang, code = item.split("=", 1)
        codes[lang] = None if code.lower() in ("", "none") else code
    return codes


def uroman_codes_for(files: dict[str, Path], overrides: dict[str, str | None],
                     no_lang_code: bool = False) -> dict[str, str | None]:
    """The uroman code of each language of ``files``: None for all with ``no_lang_code``, else ``overrides[lang]``
    (:func:`parse_uroman_codes`) or the code derived from ``lang_Script``; an
    override for a language not in ``files`` is refused (a misspelt language would silently keep its derived code)."""
    from translit_plugin.transliterate import uroman_code

    stray = sorted(set(overrides) - set(files))
    if stray:
        raise SystemExit(f"--uroman-code for {', '.join(stray)}: not a language of this run ({', '.join(files)}); "
                         "check the spelling (lang_Script, e.g. arz_Arab=ara) or drop the flag")
    lcodes: dict[str, str | None] = {}
    for lang in files:
        if no_lang_code:
            lcodes[lang] = None
        elif lang in overrides:
            lcodes[lang] = overrides[lang]
        else:
            lcodes[lang] = uroman_code(lang)
    return lcodes


def output_paths(input_path: Path, output: Path, files: dict[str, Path],
                 work_dir: Path | None = None) -> tuple[dict[str, Path], Path]:
    """``({lang: output file}, work folder)``: ``OUTPUT/{lang}.txt`` and ``OUTPUT/.work`` for a directory, ``OUTPUT``
    and ``OUTPUT.work`` for a single file (``work_dir`` overrides the work folder); refuses overwriting an input."""
    single = input_path.is_file()
    outputs = {lang: (output if single else output / f"{lang}.txt") for lang in files}
    work = work_dir or (Path(str(output) + ".work") if single else output / ".work")
    for lang, src in files.items():
        if outputs[lang].resolve() == src.resolve():
            raise SystemExit(f"--output {output}: would overwrite the input {src}; choose another directory")
    return outputs, work
