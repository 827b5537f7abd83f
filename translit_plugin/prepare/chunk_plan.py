"""prepare's chunk plan and its run: every chunk of every language (:func:`build_plan`), transliterated and
binarized where not yet up to date, in this process or in a pool of forked workers over runs of one language's
consecutive chunks (:func:`run_chunks`, :func:`plan_runs`)."""

from __future__ import annotations

import gc
import logging
import math
import multiprocessing as mp
from pathlib import Path

from translit_plugin.prepare.chunks import (
    ChunkSettings,
    ChunkTask,
    chunk_status,
    get_encoder,
    get_transliterator,
    process_chunk,
    process_run,
)
from translit_plugin.prepare.sample import SPLITS, chunk_name

logger = logging.getLogger(__name__)

def build_plan(langs: list[str], sample_records: dict[str, dict], lcodes: dict[str, str | None], work: Path,
               external: bool = False) -> list[ChunkTask]:
    """All chunks in plan order: languages in ``langs.txt`` order, then split, then chunk index."""
    tasks = []
    for lang in langs:
        for split in SPLITS:
            for k, n in enumerate(sample_records[lang]["chunks"][split]):
                name = chunk_name(split, k)
                tasks.append(ChunkTask(lang=lang, split=split, index=k, n_lines=n,
                                       src=str(work / "sample" / lang / f"{name}.txt"),
                                       tsv=str(work / "translit" / lang / f"{name}.tsv"),
                                       bin_prefix=str(work / "bin" / lang / name), lcode=lcodes[lang],
                                       external=external))
    return tasks


def pool_context() -> mp.context.BaseContext:
    """The multiprocessing context for worker pools (fork where available)."""
    # fork shares the already loaded uroman tables with the workers (copy-on-write) and starts instantly.
    return mp.get_context("fork" if "fork" in mp.get_all_start_methods() else "spawn")


def plan_runs(pending: list[ChunkTask], workers: int) -> list[list[ChunkTask]]:
    """Group chunks into runs of consecutive chunks of one language, largest runs first.

    A worker processes a run in one go, so its uroman token cache sees a whole stretch of one language (two workers
    that each see every other chunk of a language spend ~20% more CPU than one, on the demo corpus).  Runs hold at
    most ``ceil(n_chunks / (4 * workers))`` chunks, so there are enough of them to balance the load; ordering them
    largest first (LPT scheduling) keeps the last worker from finishing long after the others.
    """
    limit = max(1, math.ceil(len(pending) / (4 * workers)))
    runs: list[list[ChunkTask]] = []
    for task in pending:
        if runs and runs[-1][-1].lang == task.lang and len(runs[-1]) < limit:
            runs[-1].append(task)
        else:
            runs.append([task])
    return sorted(runs, key=lambda run: -sum(t.n_lines for t in run))


def run_chunks(tasks: list[ChunkTask], settings: ChunkSettings, workers: int, progress: bool) -> dict[str, dict]:
    """Transliterate + binarize every chunk not yet up to date; return ``{chunk name: bin record}`` for all."""
    from tqdm import tqdm

    records: dict[str, dict] = {}
    pending: list[ChunkTask] = []
    need_uroman = False
    for task in tasks:
        t_rec, b_rec = chunk_status(task, settings)
        if b_rec is not None:
            records[task.name] = b_rec
        else:
            pending.append(task)
            need_uroman |= t_rec is None and not task.external
    logger.info("transliterate+binarize: %d chunks, %d up to date, %d to do (%d sentences) with %d worker(s)",
                len(tasks), len(records), len(pending), sum(t.n_lines for t in pending), workers)
    if not pending:
        return records
    # Load once in this process: used directly with one worker, inherited by forked workers otherwise.
    if need_uroman:
        get_transliterator(settings)
    get_encoder(settings)
    total = sum(t.n_lines for t in pending)

    def progress_bar():
        return tqdm(total=total, unit="sent", desc="transliterate+binarize", disable=not progress, smoothing=0.05)

    def collect(results, bar) -> None:
        for run in results:
            for rec in run:
                records[f"{rec['lang']}/{chunk_name(rec['split'], rec['index'])}"] = rec
                bar.update(rec["lines"])

    if workers <= 1:
        with progress_bar() as bar:
            collect(([process_chunk((task, settings))] for task in pending), bar)
    else:
        # The pool is forked before the progress bar exists, so no tqdm monitor thread is running at fork time.
        # gc.freeze(): the workers' garbage collector then leaves the inherited uroman tables alone instead of
        # touching (and so copying) every page of them.
        gc.freeze()
        try:
            runs = plan_runs(pending, workers)
            with pool_context().Pool(workers) as pool, progress_bar() as bar:
                collect(pool.imap_unordered(process_run, [(run, settings) for run in runs], chunksize=1), bar)
                pool.close()  # let the workers exit normally (and be reaped) instead of terminate()
                pool.join()
        finally:
            gc.unfreeze()
    return records
