"""prepare's chunk plan and its run: every chunk of every language (:func:`build_plan`), transliterated and
binarized where not yet up to date, in this process or in a pool of forked workers over runs of one language's
consecutive chunks (:func:`run_chunks`; the pool and the runs: :mod:`translit_plugin.prepare.parallel`)."""

from __future__ import annotations

import logging
from pathlib import Path

from translit_plugin.prepare.chunks import (
    ChunkSettings,
    ChunkTask,
    chunk_status,
    get_encoder,
    get_transliterator,
    process_run,
)
from translit_plugin.prepare.parallel import plan_runs, run_parallel
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

    def collect(run: list[dict], bar) -> None:
        for rec in run:
            records[f"{rec['lang']}/{chunk_name(rec['split'], rec['index'])}"] = rec
            bar.update(rec["lines"])

    runs = plan_runs(pending, workers)
    run_parallel(process_run, [(run, settings) for run in runs], workers, progress_bar, collect)
    return records
