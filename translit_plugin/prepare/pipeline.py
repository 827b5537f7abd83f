"""The ``prepare`` pipeline: clean -> sample -> transliterate + binarize (per chunk, parallel) -> merge -> verify.

:func:`run_prepare` is what ``translit-ppa prepare`` calls.  Every stage is skipped when its output is up to date
(see :mod:`translit_plugin.prepare.records`), so rerunning an interrupted command resumes it, and rerunning a finished
one only re-verifies and rewrites the manifest.  See the package docstring for the output layout.
"""

from __future__ import annotations

import gc
import logging
import math
import multiprocessing as mp
import re
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from translit_plugin.core.files import atomic_write_json
from translit_plugin.core.hashing import sha1_file, stable_key
from translit_plugin.core.names import DEFAULT_MAX_LENGTH, SIDES
from translit_plugin.prepare.chunks import (
    DROP_REASONS,
    ChunkSettings,
    ChunkTask,
    chunk_status,
    get_encoder,
    get_transliterator,
    process_chunk,
    process_run,
)
from translit_plugin.prepare.clean import CleanConfig, clean_language
from translit_plugin.prepare.content_check import ContentCheckConfig
from translit_plugin.prepare.groups import LanguageGroup, load_group
from translit_plugin.prepare.latn_check import LatnCheckConfig
from translit_plugin.prepare.records import read_done, write_done
from translit_plugin.prepare.sample import SPLITS, SampleConfig, chunk_name, sample_language
from translit_plugin.transliterate import DEFAULT_CACHE_SIZE, uroman_code, uroman_version

logger = logging.getLogger(__name__)

STAGES = ("clean", "sample", "transliterate", "merge", "verify")
_LANG_FILE = re.compile(r"^[a-z]{2,3}_[A-Z][a-z]{3}$")


class PrepareInputError(ValueError):
    """Inputs or options prepare cannot use as given (the message says which and what to do); exit status 2."""

    exit_code = 2


@dataclass
class PrepareConfig:
    """All options of ``translit-ppa prepare`` (the CLI maps its flags onto these fields one to one)."""

    input: Path
    model_dir: Path
    output: Path
    langs: list[str] | None = None  # default: every {lang_Script}.txt in input (or the group's languages)
    group: Path | None = None
    latn_input: Path | None = None  # given transliterations {lang_Script}.txt, line-aligned with input: no uroman
    clean: CleanConfig = field(default_factory=CleanConfig)
    sample: SampleConfig = field(default_factory=SampleConfig)
    sample_explicit: set[str] = field(default_factory=set)  # sampling fields set by the user: a group cannot override
    uroman_codes: dict[str, str | None] = field(default_factory=dict)  # overrides of the derived codes
    no_lang_code: bool = False  # call uroman without a language code (the paper's Perl setup)
    uroman_cache_size: int = DEFAULT_CACHE_SIZE
    max_length: int = DEFAULT_MAX_LENGTH  # tokens per sentence, <s> and </s> included (core.names)
    overlong: str = "truncate"
    workers: int = 1
    num_shards: int = 1
    shard_id: int = 0
    stop_after: str | None = None
    verify_samples: int = 1000
    verify_translit: int = 50
    progress: bool = True
    latn_check: LatnCheckConfig = field(default_factory=LatnCheckConfig)  # --latn-input pairs compared with uroman
    content_check: ContentCheckConfig = field(default_factory=ContentCheckConfig)  # --latn-input: every line
    allow_unknown_lang: bool = False  # accept codes that are not ISO 639-3 / ISO 15924 (with a warning)
    skip_unrecognized_files: bool = False  # skip (with a warning) input files not named {lang_Script}.txt
    allow_empty_lang: bool = False  # a language without usable lines is a warning, not an error


def discover_languages(input_dir: Path, wanted: list[str] | None, skip_unrecognized: bool = False) -> dict[str, Path]:
    """``{lang_Script: path}`` of the input files (``{lang_Script}.txt``), restricted to ``wanted`` if given.

    Without ``wanted``, any other (non-hidden) file in the directory is an error, or with ``skip_unrecognized`` a
    warning: a file named ``Greek.txt`` or ``ell_grek.txt`` must not silently drop a language."""
    if not input_dir.is_dir():
        raise FileNotFoundError(f"--input {input_dir} is not a directory of {{lang_Script}}.txt files")
    listed = [p for p in sorted(input_dir.iterdir()) if not p.name.startswith(".")]
    not_files = [p for p in listed if not p.is_file() and p.suffix == ".txt" and _LANG_FILE.match(p.stem)
                 and (wanted is None or p.stem in wanted)]
    if not_files:  # a language must not disappear from the run because its "file" is a folder or a broken link
        bad = not_files[0]
        what = "a dangling symlink" if bad.is_symlink() and not bad.exists() else "a directory" if bad.is_dir() \
            else "not a regular file"
        raise PrepareInputError(f"{bad} is named like a language file but is {what} (not a regular file); put "
                                "the language's text in a file of that name, or move it out of the folder"
                                + (f" (+{len(not_files) - 1} more: {', '.join(p.name for p in not_files[1:5])})"
                                   if len(not_files) > 1 else ""))
    entries = [p for p in listed if p.is_file()]
    found = {p.stem: p for p in entries if p.suffix == ".txt" and _LANG_FILE.match(p.stem)}
    if wanted is None:
        recognized = set(found.values())
        unrecognized = [p.name for p in entries if p not in recognized]
        if unrecognized:
            listed = ", ".join(unrecognized[:10]) + (f" (+{len(unrecognized) - 10} more)" if len(unrecognized) > 10
                                                     else "")
            msg = f"{input_dir}: {len(unrecognized)} file(s) not named {{lang_Script}}.txt: {listed}"
            if not skip_unrecognized:
                raise PrepareInputError(f"{msg}; rename them, move them away, or pass --skip-unrecognized-files to "
                                        "skip them")
            logger.warning("%s; skipped (--skip-unrecognized-files)", msg)
        if not found:
            raise FileNotFoundError(f"{input_dir}: no {{lang_Script}}.txt files (e.g. fas_Arab.txt)")
        return found
    missing = [lang for lang in wanted if lang not in found]
    if missing:
        raise FileNotFoundError(f"{input_dir}: no input file for {missing} (expected {input_dir / missing[0]}.txt)")
    return {lang: found[lang] for lang in wanted}


def model_files(model_dir: Path) -> tuple[Path, Path]:
    """``(sentencepiece.bpe.model, dict.txt)`` of a model directory; FileNotFoundError naming the missing one."""
    spm, dct = model_dir / "sentencepiece.bpe.model", model_dir / "dict.txt"
    for p in (spm, dct):
        if not p.is_file():
            raise FileNotFoundError(f"{p} not found: --model-dir must be a model directory made by `translit-ppa "
                                    "convert` (it holds sentencepiece.bpe.model and dict.txt)")
    return spm, dct


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


def _length_stats(hists: list[dict[str, int]]) -> dict[str, Any]:
    """Token statistics of stored lines (pieces + </s>) from sparse length histograms."""
    total: dict[int, int] = {}
    for h in hists:
        for k, v in h.items():
            total[int(k)] = total.get(int(k), 0) + v
    if not total:
        return {"lines": 0, "tokens": 0}
    lengths = np.array(sorted(total))
    counts = np.array([total[k] for k in lengths])
    cum = np.cumsum(counts)
    n = int(cum[-1])

    def pct(q: float) -> int:
        return int(lengths[np.searchsorted(cum, q * n)])

    return {"lines": n, "tokens": int((lengths * counts).sum()), "mean": float((lengths * counts).sum() / n),
            "min": int(lengths[0]), "p50": pct(0.5), "p95": pct(0.95), "max": int(lengths[-1])}


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


# ---------------------------------------------------------------------------------------------- the steps
@dataclass
class PrepareInputs:
    """What the options resolve to before any stage runs: input files, languages, uroman codes, sampling."""

    files: dict[str, Path]  # lang_Script -> input file
    langs: list[str]  # sorted: the order of langs.txt and of the data-bin
    lcodes: dict[str, str | None]  # uroman language code per language (None: no code)
    sample_cfg: SampleConfig  # the CLI's sampling, with the group's where the user set nothing
    group: LanguageGroup | None = None  # the parsed --group file
    code_warnings: list[str] = field(default_factory=list)  # codes accepted with --allow-unknown-lang


def check_options(cfg: PrepareConfig) -> None:
    """Refuse option values no stage can use (before anything is read or written)."""
    if cfg.stop_after is not None and cfg.stop_after not in STAGES:
        raise ValueError(f"stop_after must be one of {STAGES}")
    if not 0 <= cfg.shard_id < cfg.num_shards:
        raise ValueError(f"--shard-id {cfg.shard_id} must be in 0..{cfg.num_shards - 1} for --num-shards "
                         f"{cfg.num_shards}")
    if cfg.latn_input is not None and cfg.latn_input.resolve() == cfg.input.resolve():
        raise PrepareInputError(f"--latn-input {cfg.latn_input} is the --input folder itself: the Latin side would be "
                                "the original text; give the folder of its romanisations")


def check_sampling(sample: SampleConfig) -> None:
    """A sampling rule that keeps no sentence of any language is refused (it would prepare an empty data-bin)."""
    if sample.fraction == 0 and sample.min_sentences == 0:
        raise PrepareInputError("--sample-fraction 0 with --sample-min 0 samples no sentence of any language; give a "
                                "fraction in (0, 1] (paper: 0.1) or a --sample-min above 0")
    if sample.max_sentences == 0:
        raise PrepareInputError("--sample-max 0 samples no sentence of any language; give a cap above 0 or none")


def uroman_codes(cfg: PrepareConfig, langs: list[str], group: LanguageGroup | None) -> dict[str, str | None]:
    """Each language's uroman code: none with ``--no-lang-code``, else ``--uroman-code``, the group's, or derived."""
    lcodes: dict[str, str | None] = {}
    for lang in langs:
        if cfg.no_lang_code:
            lcodes[lang] = None
        elif lang in cfg.uroman_codes:
            lcodes[lang] = cfg.uroman_codes[lang]
        elif group and lang in group.uroman_codes:
            lcodes[lang] = group.uroman_codes[lang]
        else:
            lcodes[lang] = uroman_code(lang)
    return lcodes


def resolve_inputs(cfg: PrepareConfig) -> PrepareInputs:
    """Input files and languages (``--langs``, the group's, or every file), uroman codes (validated), sampling."""
    from translit_plugin.prepare.langcodes import validate_codes

    group = load_group(cfg.group) if cfg.group else None
    wanted = cfg.langs if cfg.langs is not None else (group.languages if group else None)
    files = discover_languages(cfg.input, wanted, cfg.skip_unrecognized_files)
    langs = sorted(files)
    sample_cfg = cfg.sample
    if group and group.sampling:
        from_group = {k: v for k, v in group.sampling.items() if k not in cfg.sample_explicit}
        sample_cfg = SampleConfig(**{**asdict(sample_cfg), **from_group})
    check_sampling(sample_cfg)
    stray = sorted(set(cfg.uroman_codes) - set(langs))
    if stray:
        raise PrepareInputError(f"--uroman-code for {', '.join(stray)}: not a language of this run "
                                f"({', '.join(langs)}); check the spelling (lang_Script, e.g. arz_Arab=ara) or drop "
                                "the flag")
    lcodes = uroman_codes(cfg, langs, group)
    code_warnings = validate_codes(files, lcodes, cfg.allow_unknown_lang)
    logger.info("prepare %d languages from %s into %s (uroman codes: %s)", len(langs), cfg.input, cfg.output, lcodes)
    return PrepareInputs(files=files, langs=langs, lcodes=lcodes, sample_cfg=sample_cfg, group=group,
                         code_warnings=code_warnings)


def clean_stage(cfg: PrepareConfig, inputs: PrepareInputs, work: Path) -> dict[str, dict]:
    """Stage 1 for every language: ``{lang: clean record}``."""
    latn_files = discover_languages(cfg.latn_input, inputs.langs) if cfg.latn_input else {}
    return {lang: clean_language(inputs.files[lang], work / "clean" / f"{lang}.txt", lang, cfg.clean, cfg.progress,
                                 latn_files.get(lang), cfg.latn_check, inputs.lcodes[lang], cfg.content_check)
            for lang in inputs.langs}


def check_not_empty(cfg: PrepareConfig, inputs: PrepareInputs, clean_records: dict[str, dict]) -> None:
    """A language without a usable line is an error, or with ``--allow-empty-lang`` a warning."""
    empty = [lang for lang in inputs.langs if clean_records[lang]["kept"] == 0]
    if not empty:
        return
    details = "; ".join(f"{inputs.files[lang]}: {_dropped(clean_records[lang])}" for lang in empty)
    msg = f"{len(empty)} language(s) without a usable line, they would get 0 pairs: {details}"
    if not cfg.allow_empty_lang:
        raise PrepareInputError(f"{msg}. Fix or remove the file(s), leave them out with --langs, or pass "
                                "--allow-empty-lang")
    logger.warning("%s (--allow-empty-lang)", msg)


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


def write_manifest(manifest: dict[str, Any], inputs: PrepareInputs, out: Path) -> None:
    """Stage 6: add the warnings and write ``OUTPUT/manifest.json``."""
    no_pairs = [lang for lang in inputs.langs if manifest["per_language"][lang]["train"]["pairs"] == 0]
    manifest["warnings"] = inputs.code_warnings + [f"{lang}: 0 training pairs" for lang in no_pairs]
    if no_pairs:
        logger.warning("%d language(s) have no training pairs: %s (see per_language in the manifest for why)",
                       len(no_pairs), ", ".join(no_pairs))
    atomic_write_json(out / "manifest.json", manifest, indent=2, ensure_ascii=False)


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
_PREPARE_NAMES = {"data-bin", "work", "manifest.json", "data-bin.done.json"}


def looks_like_prepare_output(out: Path) -> bool:
    """An output folder of ``prepare`` from before lock files: only its names, and its ``work/``."""
    from translit_plugin.core.safe_output import is_tmp_leftover

    names = {p.name for p in out.iterdir() if not is_tmp_leftover(p.name)}
    return names <= _PREPARE_NAMES and (out / "work").is_dir() and not (out / "work").is_symlink()


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


def _dropped(record: dict) -> str:
    """Why a clean record kept nothing, e.g. '12 lines: 10 empty, 2 too long'."""
    reasons = [f"{record[k]} {k.replace('_', ' ')}" for k in ("empty", "too_short", "too_long", "duplicate")
               if record.get(k)]
    return f"{record['input_lines']} lines" + (f": {', '.join(reasons)}" if reasons else "")


def _remove_stale_tmp(work: Path) -> None:
    """Leftovers of interrupted writes (``.name.tmpPID``); only called once every chunk is done."""
    for p in work.rglob(".*.tmp*"):
        if p.is_file():
            p.unlink()


def _language_entry(lang: str, inputs: PrepareInputs, clean: dict, sample: dict, tasks: list[ChunkTask],
                    records: dict) -> dict[str, Any]:
    """The manifest's ``per_language[lang]``: input, uroman code, cleaning and sampling counts, pairs per split."""
    entry: dict[str, Any] = {
        "input": str(inputs.files[lang]),
        "uroman_code": inputs.lcodes[lang],
        "clean": {k: clean[k] for k in ("input_lines", "empty", "too_short", "too_long", "duplicate", "modified",
                                        "invalid_utf8", "kept")},
        "sampled": sample["sampled"],
    }
    if clean.get("latn_check"):
        entry["latn_check"] = clean["latn_check"]
    if clean.get("content_check"):
        entry["content_check"] = clean["content_check"]
    for split in SPLITS:
        recs = [records[t.name] for t in tasks if t.lang == lang and t.split == split]
        entry[split] = {
            "sampled": sample[split],
            "pairs": sum(r["kept"] for r in recs),
            "dropped": {reason: sum(r["drops"][reason] for r in recs) for reason in DROP_REASONS},
            "truncated": {side: sum(r["truncated"][side] for r in recs) for side in SIDES},
            "unk_tokens": {side: sum(r["unk"][side] for r in recs) for side in SIDES},
            "tokens": {side: _length_stats([r["length_hist"][side] for r in recs]) for side in SIDES},
        }
    return entry


def build_manifest(cfg: PrepareConfig, inputs: PrepareInputs, clean_records: dict, sample_records: dict,
                   tasks: list[ChunkTask], records: dict, settings: ChunkSettings, verification: dict,
                   timings: dict) -> dict[str, Any]:
    """Counts per language and split, token statistics, uroman version and codes, options (``timings`` go to
    ``work/timings.json``, not here: the manifest is the same bytes for the same inputs and flags)."""
    langs = inputs.langs
    per_lang = {lang: _language_entry(lang, inputs, clean_records[lang], sample_records[lang], tasks, records)
                for lang in langs}
    totals = {split: {side: _length_stats([records[t.name]["length_hist"][side] for t in tasks if t.split == split])
                      for side in SIDES} for split in SPLITS}
    group = inputs.group
    return {
        "format": "translit-ppa prepare manifest v1",
        "data_bin": str(cfg.output / "data-bin"),
        "languages": langs,
        "pairs": {split: sum(per_lang[lang][split]["pairs"] for lang in langs) for split in SPLITS},
        "per_language": per_lang,
        "tokens": totals,
        "uroman": {"version": settings.uroman_version, "cache_size": settings.uroman_cache_size,
                   "codes": inputs.lcodes, "no_lang_code": cfg.no_lang_code},
        "latn_input": str(cfg.latn_input) if cfg.latn_input else None,  # given transliterations: uroman not used
        "model": {"model_dir": str(cfg.model_dir), "sentencepiece_sha1": settings.spm_sha1,
                  "dict_sha1": settings.dict_sha1, "vocab_size": get_encoder(settings).vocab_size},
        "options": {"clean": asdict(cfg.clean), "sample": asdict(inputs.sample_cfg), "max_length": cfg.max_length,
                    "overlong": cfg.overlong, "workers": cfg.workers, "group": group.path if group else None,
                    "chunks": len(tasks)},
        "verification": verification,  # no timings: the manifest's bytes depend on inputs and flags only
    }
