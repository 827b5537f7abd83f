"""The ``prepare`` pipeline: clean -> sample -> transliterate + binarize (per chunk, parallel) -> merge -> verify.

:func:`run_prepare` is what ``translit-ppa prepare`` calls.  Every stage is skipped when its output is up to date
(see :mod:`translit_plugin.prepare.records`), so rerunning an interrupted command resumes it, and rerunning a finished
one only re-verifies and rewrites the manifest.  See the package docstring for the output layout.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from translit_plugin.core.files import atomic_write_json
from translit_plugin.core.hashing import sha1_file, stable_key
from translit_plugin.prepare.chunk_plan import build_plan, run_chunks
from translit_plugin.prepare.chunks import ChunkSettings, ChunkTask, chunk_status, get_encoder, get_transliterator
from translit_plugin.prepare.clean import clean_language
from translit_plugin.prepare.config import PrepareConfig
from translit_plugin.prepare.inputs import (
    PrepareInputs,
    check_not_empty,
    check_options,
    discover_languages,
    model_files,
    resolve_inputs,
)
from translit_plugin.prepare.manifest import build_manifest, write_manifest
from translit_plugin.prepare.records import looks_written_here, read_done, write_done
from translit_plugin.prepare.sample import SPLITS, sample_language
from translit_plugin.transliterate import uroman_version

__all__ = ["PrepareConfig", "run_prepare"]  # PrepareConfig: re-exported, the one import a caller of run_prepare needs

logger = logging.getLogger(__name__)

def clean_stage(cfg: PrepareConfig, inputs: PrepareInputs, work: Path) -> dict[str, dict]:
    """Stage 1 for every language: ``{lang: clean record}``."""
    latn_files = discover_languages(cfg.latn_input, inputs.langs) if cfg.latn_input else {}
    return {lang: clean_language(inputs.files[lang], work / "clean" / f"{lang}.txt", lang, cfg.clean, cfg.progress,
                                 latn_files.get(lang), cfg.latn_check, inputs.lcodes[lang], cfg.content_check)
            for lang in inputs.langs}


def sample_stage(cfg: PrepareConfig, inputs: PrepareInputs, work: Path,
                 clean_records: dict[str, dict]) -> dict[str, dict]:
    """Stage 2 for every language: ``{lang: sample record}`` (chunk sizes per split)."""
    return {lang: sample_language(work / "clean" / f"{lang}.txt", clean_records[lang], work / "sample" / lang, lang,
                                  inputs.sample_cfg, cfg.progress) for lang in inputs.langs}


def chunk_settings(cfg: PrepareConfig, spm_model: Path, dict_path: Path) -> ChunkSettings:
    """What every chunk's transliteration and binarization depend on (model files and their hashes, options)."""
    return ChunkSettings(spm_model=str(spm_model), dict_path=str(dict_path), spm_sha1=sha1_file(spm_model),
                         dict_sha1=sha1_file(dict_path), max_length=cfg.max_length, overlong=cfg.overlong,
                         uroman_cache_size=cfg.uroman_cache_size, uroman_version=uroman_version())


def shard_summary(cfg: PrepareConfig, tasks: list[ChunkTask], settings: ChunkSettings, done: int) -> dict[str, Any]:
    """After one shard's chunks: how many chunks of all shards are left (shards never merge)."""
    # Two shards finishing together would race on the merge; the plain command merges afterwards.
    todo = sum(chunk_status(task, settings)[1] is None for task in tasks)
    logger.info("shard %d/%d done (%d chunks); %d chunks of all shards still to do. When every shard has finished, "
                "run the same command without --num-shards/--shard-id to merge and verify.", cfg.shard_id,
                cfg.num_shards, done, todo)
    return {"stopped_after": "transliterate", "shard_id": cfg.shard_id, "num_shards": cfg.num_shards,
            "chunks_left": todo}


def merge_stage(cfg: PrepareConfig, langs: list[str], tasks: list[ChunkTask], records: dict[str, dict],
                settings: ChunkSettings, dict_path: Path) -> dict[str, int]:
    """Stage 4 (skipped when the data-bin is up to date): ``{split: pairs}``."""
    from translit_plugin.prepare.merge import merge_split, write_dictionaries

    data_bin, work = cfg.output / "data-bin", cfg.output / "work"
    encoder = get_encoder(settings)
    merge_key = stable_key({"chunks": [records[task.name]["key"] for task in tasks], "langs": langs,
                            "dict": settings.dict_sha1})
    merged = read_done(data_bin, merge_key)
    if merged is not None:
        logger.info("merge: data-bin up to date (%s)", merged["pairs"])
        return merged["pairs"]
    write_dictionaries(data_bin, dict_path, langs)
    pairs = {split: merge_split(data_bin, split, [t for t in tasks if t.split == split], records, langs,
                                encoder.vocab_size, cfg.progress) for split in SPLITS}
    write_done(data_bin, merge_key, {"pairs": pairs})
    _remove_stale_tmp(work)
    return pairs


def verify_stage(cfg: PrepareConfig, langs: list[str], tasks: list[ChunkTask], records: dict[str, dict],
                 settings: ChunkSettings) -> dict[str, dict]:
    """Stage 5: ``{split: verification summary}``; raises on any misalignment."""
    from translit_plugin.prepare.verify import verify_split

    transliterator = get_transliterator(settings) if cfg.verify_translit > 0 and not cfg.latn_input else None
    return {split: verify_split(cfg.output / "data-bin", split, [t for t in tasks if t.split == split], records,
                                langs, settings, cfg.verify_samples, cfg.verify_translit, cfg.sample.seed,
                                transliterator) for split in SPLITS}


class _Timer:
    """``with timer("stage"):`` records the block's seconds in ``timer.timings["stage"]``."""

    def __init__(self) -> None:
        self.start = time.time()
        self.timings: dict[str, float] = {}

    @contextmanager
    def __call__(self, name: str) -> Iterator[None]:
        t = time.time()
        yield
        self.timings[name] = time.time() - t


PREPARE_COMMAND = "prepare"


def looks_like_prepare_output(out: Path) -> bool:
    """An output folder of ``prepare`` from before lock files: only its names, and its ``work/``."""
    return looks_written_here(out, files=("manifest.json", "data-bin.done.json"), dirs=("data-bin", "work"),
                              need="work")


def run_prepare(cfg: PrepareConfig) -> dict[str, Any]:
    """Run the pipeline; return the manifest (also written to ``OUTPUT/manifest.json`` after a full run).

    ``OUTPUT`` is held by this run (:func:`translit_plugin.core.safe_output.held_output_dir`; shard jobs share it)
    and must be prepare's own: a folder holding anything else is refused before anything is written."""
    from translit_plugin.core.safe_output import check_not_input, held_output_dir

    check_options(cfg)
    check_not_input(cfg.output, [cfg.input, cfg.model_dir, cfg.latn_input, cfg.group], what="--output")
    model_files(cfg.model_dir)
    inputs = resolve_inputs(cfg)  # refuses bad inputs before the output folder is made
    with held_output_dir(cfg.output, PREPARE_COMMAND, legacy=looks_like_prepare_output, shared=cfg.num_shards > 1):
        return _run_prepare_held(cfg, inputs)


def _run_prepare_held(cfg: PrepareConfig, inputs: PrepareInputs) -> dict[str, Any]:
    timer = _Timer()
    work, data_bin = cfg.output / "work", cfg.output / "data-bin"
    spm_model, dict_path = model_files(cfg.model_dir)
    langs = inputs.langs

    with timer("clean"):
        clean_records = clean_stage(cfg, inputs, work)
    check_not_empty(cfg, inputs, clean_records)
    if cfg.stop_after == "clean":
        return {"stopped_after": "clean", "clean": clean_records}

    with timer("sample"):
        sample_records = sample_stage(cfg, inputs, work, clean_records)
    if cfg.stop_after == "sample":
        return {"stopped_after": "sample", "sample": sample_records}

    settings = chunk_settings(cfg, spm_model, dict_path)
    tasks = build_plan(langs, sample_records, inputs.lcodes, work, external=cfg.latn_input is not None)
    mine = [task for i, task in enumerate(tasks) if i % cfg.num_shards == cfg.shard_id]
    with timer("transliterate_binarize"):
        records = run_chunks(mine, settings, cfg.workers, cfg.progress)
    if cfg.num_shards > 1:
        return shard_summary(cfg, tasks, settings, len(mine))
    if cfg.stop_after == "transliterate":
        return {"stopped_after": "transliterate", "chunks": len(records)}

    with timer("merge"):
        pairs = merge_stage(cfg, langs, tasks, records, settings, dict_path)
    if cfg.stop_after == "merge":
        return {"stopped_after": "merge", "pairs": pairs}

    with timer("verify"):
        verification = verify_stage(cfg, langs, tasks, records, settings)
    timer.timings["total"] = time.time() - timer.start

    from translit_plugin.data.fingerprint import write_data_bin_fingerprint  # DATA/pairing.json, checked by the task
    write_data_bin_fingerprint(data_bin, dict_path, spm_model, SPLITS)
    manifest = build_manifest(cfg, inputs, clean_records, sample_records, tasks, records, settings, verification,
                              timer.timings)
    write_manifest(manifest, inputs, cfg.output)
    atomic_write_json(work / "timings.json", {k: round(v, 3) for k, v in timer.timings.items()}, indent=2)
    logger.info("prepared %s: train %d pairs, valid %d pairs (%.1f s)", data_bin, manifest["pairs"]["train"],
                manifest["pairs"]["valid"], timer.timings["total"])
    return manifest


def _remove_stale_tmp(work: Path) -> None:
    """Leftovers of interrupted writes (``.name.tmpPID``); only called once every chunk is done."""
    for p in work.rglob(".*.tmp*"):
        if p.is_file():
            p.unlink()
