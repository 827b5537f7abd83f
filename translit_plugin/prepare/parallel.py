"""The one way the pipelines run their steps in parallel: ``prepare``'s chunks, ``transliterate``'s chunks and
``encode``'s languages go through :func:`run_parallel` (in this process with one worker, else in a pool of forked
workers), grouped by :func:`plan_runs` where a worker should see one language's consecutive chunks.  Whether a step
needs to run at all is the business of :mod:`translit_plugin.prepare.records`."""

from __future__ import annotations

import gc
import math
import multiprocessing as mp
from collections.abc import Callable, Iterable
from typing import Any, Protocol, TypeVar

T = TypeVar("T")


class Chunk(Protocol):
    lang: str
    n_lines: int


C = TypeVar("C", bound=Chunk)


def pool_context() -> mp.context.BaseContext:
    """The multiprocessing context for worker pools (fork where available)."""
    # fork shares the already loaded uroman tables with the workers (copy-on-write) and starts instantly.
    return mp.get_context("fork" if "fork" in mp.get_all_start_methods() else "spawn")


def plan_runs(pending: list[C], workers: int) -> list[list[C]]:
    """Group chunks into runs of consecutive chunks of one language, largest runs first (with one worker: every chunk
    its own run, in order, since nothing runs beside it).

    A worker processes a run in one go, so its uroman token cache sees a whole stretch of one language (two workers
    that each see every other chunk of a language spend ~20% more CPU than one, on the demo corpus).  Runs hold at
    most ``ceil(n_chunks / (4 * workers))`` chunks, so there are enough of them to balance the load; ordering them
    largest first (LPT scheduling) keeps the last worker from finishing long after the others.
    """
    if workers <= 1:
        return [[task] for task in pending]
    limit = max(1, math.ceil(len(pending) / (4 * workers)))
    runs: list[list[C]] = []
    for task in pending:
        if runs and runs[-1][-1].lang == task.lang and len(runs[-1]) < limit:
            runs[-1].append(task)
        else:
            runs.append([task])
    return sorted(runs, key=lambda run: -sum(t.n_lines for t in run))


def run_parallel(fn: Callable[[Any], T], items: Iterable[Any], workers: int, progress_bar: Callable[[], Any],
                 on_result: Callable[[T, Any], None], ordered: bool = False) -> None:
    """``on_result(fn(item), bar)`` for every item, as results arrive; ``bar`` is ``progress_bar()`` (a tqdm).

    With ``workers <= 1`` everything runs here, in order. Otherwise ``fn`` runs in ``workers`` forked processes
    (results in completion order, or in item order with ``ordered``): the pool is forked before the progress bar
    exists, so no tqdm monitor thread is running at fork time, and ``gc.freeze()`` keeps the workers' garbage
    collector off the inherited tables (uroman's, the sentencepiece model) instead of touching, and so copying, every
    page of them. The pool is closed and joined, so the workers exit normally and are reaped."""
    if workers <= 1:
        with progress_bar() as bar:
            for item in items:
                on_result(fn(item), bar)
        return
    gc.freeze()
    try:
        with pool_context().Pool(workers) as pool, progress_bar() as bar:
            results = (pool.imap if ordered else pool.imap_unordered)(fn, items, chunksize=1)
            for result in results:
                on_result(result, bar)
            pool.close()
            pool.join()
    finally:
        gc.unfreeze()
