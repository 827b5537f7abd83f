"""The evaluation grid behind ``translit-ppa evaluate``: models x sources x seeds x targets, resumable.

Every (model, task, source, target, seed) result is appended to the results file as soon as it is known; a rerun
skips what is already done with the same configuration. A problem with one language (missing or empty file,
malformed lines, an unknown label) becomes an ``error`` record for that language and the grid goes on; the report
lists those records.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from translit_plugin.core.names import DEFAULT_LAYER, DEFAULT_MAX_LENGTH, MEAN_WITH_SPECIAL
from translit_plugin.core.use_settings import USE_VIEW

from .finetune import FinetuneConfig
from .metrics import MINING_METRICS, MINING_PREFIX
from .readers import ENGLISH, EvalDataError
from .results import ResultStore, data_fingerprint, make_key, path_fingerprint

logger = logging.getLogger(__name__)

RETRIEVAL_TASKS = {"sr-b": "bible", "tatoeba": "tatoeba"}
CLASSIFICATION_TASKS = ("taxi1500", "sib200")
TAGGING_TASKS = ("ner", "pos")
#: How results files and selection caches record a pooling whose name changed, so files written before the
#: rename keep their keys (a rerun still skips what they hold).
RECORDED_POOLING = {MEAN_WITH_SPECIAL: "mean"}


@dataclass
class EvalOptions:
    """What to evaluate and how (one task)."""

    task: str
    data_dir: Path
    sources: list[str] = field(default_factory=lambda: [ENGLISH])
    targets: list[str] | None = None  # None: every language found in data_dir
    seeds: list[int] = field(default_factory=lambda: [42, 43, 44, 45, 46])
    # retrieval
    prefix: str | None = None  # file prefix; default from the task (bible / tatoeba)
    view: str = USE_VIEW  # where vectors are read: the model's use.json ("use") or the paper's probe ("probe")
    layer: int | None = None  # these three override the view's
    pooling: str | None = None
    prompt_name: str | None = None  # a name of the model's prompts; "" = none
    embed_batch_size: int = 128
    embed_max_length: int = DEFAULT_MAX_LENGTH
    ks: tuple[int, ...] = (1, 5, 10)
    # fine-tuning
    finetune: FinetuneConfig | None = None
    select_metric: str = "seqeval_f1"  # tagging: dev metric for early stopping
    max_train_examples: int | None = None
    max_eval_examples: int | None = None
    device: str | None = None
    progress: bool = True

    def reading(self, hub) -> dict:
        """Where this evaluation reads ``hub``'s vectors: ``{"layer", "pooling", "prompt"}`` from the view (the
        model's ``use.json`` or the probe) with the explicit options on top."""
        return reading_of(hub, self.view, self.layer, self.pooling, self.prompt_name)

    def result_config(self, model_path: str, reading: dict | None = None, fingerprints: dict | None = None) -> dict:
        """The settings that change a result (they key the results file): ``reading`` (where vectors are read),
        and ``fingerprints`` (the content of the model and the data files: a changed file is a new result)."""
        cfg = {"model_path": model_path, "data_dir": str(Path(self.data_dir).resolve()),
               "max_eval_examples": self.max_eval_examples}
        if fingerprints:
            cfg["content"] = fingerprints
        if self.task in RETRIEVAL_TASKS:
            reading = reading or {"layer": self.layer if self.layer is not None else DEFAULT_LAYER,
                                  "pooling": self.pooling or MEAN_WITH_SPECIAL, "prompt": ""}  # fmt: skip
            cfg.update(prefix=self.file_prefix, layer=reading["layer"],
                       pooling=RECORDED_POOLING.get(reading["pooling"], reading["pooling"]),
                       max_length=self.embed_max_length, ks=list(self.ks))  # fmt: skip
            if reading["prompt"]:  # absent without a prompt: keys of results written before prompts stay valid
                cfg["prompt"] = reading["prompt"]
        else:
            ft = self.finetune.to_dict()
            ft.pop("eval_batch_size")
            cfg.update(finetune=ft, max_train_examples=self.max_train_examples)
            if self.task in TAGGING_TASKS:
                cfg["select_metric"] = self.select_metric
        return cfg

    @property
    def recorded_pooling(self) -> str:
        """The pooling's name in results files and selection caches (see :data:`RECORDED_POOLING`)."""
        pooling = self.pooling or MEAN_WITH_SPECIAL
        return RECORDED_POOLING.get(pooling, pooling)

    @property
    def file_prefix(self) -> str:
        return self.prefix or RETRIEVAL_TASKS[self.task]


def reading_of(hub, view: str = USE_VIEW, layer: int | None = None, pooling: str | None = None,
               prompt_name: str | None = None) -> dict:  # fmt: skip
    """``{"layer": int, "pooling": str, "prompt": str}``: the view's setting of ``hub`` with the given overrides."""
    from translit_plugin.core.names import check_layer

    setting = hub.view(view)
    if prompt_name is not None:
        prompt = hub.use.prompt_text(prompt_name) if prompt_name else ""
    else:
        prompt = setting.prompt_text() if view == USE_VIEW else ""
    return {
        "layer": setting.layer_index(hub.num_layers) if layer is None else check_layer(layer, hub.num_layers),
        "pooling": pooling or setting.pooling,
        "prompt": prompt,
    }


@dataclass
class GridSummary:
    """Counts of one run of the grid."""

    done_before: int = 0
    ok: int = 0
    errors: list[str] = field(default_factory=list)

    def merge(self, other: GridSummary) -> None:
        self.done_before += other.done_before
        self.ok += other.ok
        self.errors.extend(other.errors)


def _error_message(e: BaseException) -> str:
    if isinstance(e, (EvalDataError, FileNotFoundError)):
        return str(e)
    return f"{type(e).__name__}: {e}"


def _record(model: str, task: str, source: str | None, target: str, seed: int | None, config: dict, **rest) -> dict:
    return {"model": model, "task": task, "source": source, "target": target, "seed": seed, "config": config, **rest}


def _fail(store: ResultStore, summary: GridSummary, base: dict, e: BaseException) -> None:
    msg = _error_message(e)
    if isinstance(e, (EvalDataError, OSError, ValueError, RuntimeError)):  # bad data, files, memory: one line
        logger.error("%s %s -> %s: %s", base["task"], base["source"], base["target"], msg)
        logger.debug("traceback", exc_info=e)
    else:  # an unexpected type is a bug: keep its traceback
        logger.exception("%s %s -> %s failed", base["task"], base["source"], base["target"])
    store.add({**base, "status": "error", "error": msg, "metrics": {}})
    where = f"{base['model']} {base['task']} {base['source']}->{base['target']} seed={base['seed']}"
    summary.errors.append(f"{where}: {msg}")


# ----------------------------------------------------------------------------------------------------------------
# Retrieval


def retrieval_targets(opts: EvalOptions) -> list[str]:
    from .readers import discover_retrieval_languages

    if opts.targets:
        return [t for t in opts.targets if t != ENGLISH]
    found = discover_retrieval_languages(opts.data_dir, opts.file_prefix)
    if not found:
        raise EvalDataError(
            f"no {opts.file_prefix}.{{L}}-{ENGLISH}.{{L}} files in {opts.data_dir}; check --data-dir and the task"
        )
    return found


def run_retrieval(
    model_name: str,
    model_path: str,
    embed: Callable[[list[str], str], object],
    opts: EvalOptions,
    store: ResultStore,
    reading: dict | None = None,
    fingerprints: dict | None = None,
) -> GridSummary:
    """Retrieval for every (source, target) pair: ``embed(sentences, cache_tag) -> N x C tensor`` (its vectors
    read as ``reading`` says, which keys the results with the content ``fingerprints``)."""
    from .readers import read_retrieval_pair
    from .retrieval import align_by_english, bidirectional_scores, mining_scores

    summary = GridSummary()
    config = opts.result_config(model_path, reading, fingerprints)
    targets = retrieval_targets(opts)
    pairs: dict[str, tuple[list[str], list[str]]] = {}

    def pair(lang: str) -> tuple[list[str], list[str]]:
        if lang not in pairs:
            pairs[lang] = read_retrieval_pair(opts.data_dir, lang, opts.file_prefix, opts.max_eval_examples)
        return pairs[lang]

    for source in opts.sources:
        for target in targets:
            if target == source:
                continue
            base = _record(model_name, opts.task, source, target, None, config, model_path=model_path)
            key = make_key(model_name, opts.task, source, target, None, config)
            # a record written before the mining metrics existed lacks them: it is computed again
            done = store.get(key) if store.is_done(key) else None
            if done is not None and all(MINING_PREFIX + m in done.get("metrics", {}) for m in MINING_METRICS):
                summary.done_before += 1
                continue
            t0 = time.time()
            try:
                tgt_lines, tgt_eng = pair(target)
                if source == ENGLISH:
                    src_emb = embed(tgt_eng, f"{target}:{ENGLISH}")
                    tgt_emb = embed(tgt_lines, f"{target}:{target}")
                    details = {"n": len(tgt_lines), "pivot": "own English side"}
                else:
                    src_lines, src_eng = pair(source)
                    al = align_by_english(src_eng, tgt_eng, source, target)
                    src_emb = embed(src_lines, f"{source}:{source}")[al.src_idx]
                    tgt_emb = embed(tgt_lines, f"{target}:{target}")[al.tgt_idx]
                    details = {"n": len(al), "english_sides": al.how}
                metrics = bidirectional_scores(src_emb, tgt_emb, opts.ks)
                metrics.update({MINING_PREFIX + m: v for m, v in mining_scores(tgt_emb, src_emb).items()})
            except Exception as e:  # noqa: BLE001 - one language's failure must not stop the grid
                _fail(store, summary, base, e)
                continue
            details["seconds"] = round(time.time() - t0, 3)
            store.add({**base, "metrics": metrics, "details": details})
            summary.ok += 1
            logger.info("%s %s %s->%s: top10 %.4f (tgt->src) / %.4f (src->tgt)", model_name, opts.task, source,
                        target, metrics.get("tgt2src_top10", float("nan")), metrics.get("src2tgt_top10", float("nan")))
    return summary


def hub_embedder(hub, opts: EvalOptions, reading: dict | None = None) -> Callable[[list[str], str], object]:
    """``embed(sentences, cache_tag)`` over a hub model, read as ``reading`` says (default: ``opts.reading(hub)``),
    with an in-memory cache per tag."""
    from translit_plugin.hub.encoding import embed_sentences

    cache: dict[str, object] = {}
    reading = reading or opts.reading(hub)

    def embed(sentences: list[str], tag: str):
        if tag not in cache:
            cache[tag] = embed_sentences(
                hub, sentences, layer=reading["layer"], pooling=reading["pooling"], prompt=reading["prompt"],
                batch_size=opts.embed_batch_size, max_length=opts.embed_max_length, device=opts.device,
                progress=opts.progress, desc=f"embed {tag}",
            )
        return cache[tag]

    return embed


# ----------------------------------------------------------------------------------------------------------------
# Fine-tuned tasks


def finetune_languages(opts: EvalOptions) -> list[str]:
    from .readers import discover_classification_languages, discover_tagging_languages

    if opts.targets:
        return list(opts.targets)
    if opts.task in CLASSIFICATION_TASKS:
        found = discover_classification_languages(opts.data_dir, opts.task)
    else:
        found = discover_tagging_languages(opts.data_dir)
    if not found:
        raise EvalDataError(f"no {opts.task} files found in {opts.data_dir}; check --data-dir and the task")
    return found


def _read(opts: EvalOptions, lang: str, split: str, labels: Sequence[str] | None, limit: int | None):
    from .readers import check_labels, read_classification, read_tagging, tagging_path

    if opts.task in CLASSIFICATION_TASKS:
        data = read_classification(opts.task, opts.data_dir, lang, split, limit)
        if labels is not None:
            check_labels(data, labels, "labels of the source training set")
        return data
    return read_tagging(tagging_path(opts.data_dir, lang, split), opts.task, labels, limit)


def run_finetune(
    model_name: str,
    model_path: str,
    hub,
    opts: EvalOptions,
    store: ResultStore,
    fingerprints: dict | None = None,
) -> GridSummary:
    """Fine-tune on each source with each seed, then score every pending target's test split."""
    from .finetune import SequenceClassifier, TokenClassifier, restore, snapshot
    from .metrics import classification_scores, tagging_scores
    from .readers import read_label_list

    summary = GridSummary()
    config = opts.result_config(model_path, fingerprints=fingerprints)
    targets = finetune_languages(opts)
    pristine = snapshot(hub.model)
    tagging = opts.task in TAGGING_TASKS
    for source in opts.sources:
        for seed in opts.seeds:
            pending = []
            for target in targets:
                if store.is_done(make_key(model_name, opts.task, source, target, seed, config)):
                    summary.done_before += 1
                else:
                    pending.append(target)
            if not pending:
                continue
            bases = {t: _record(model_name, opts.task, source, t, seed, config, model_path=model_path)
                     for t in pending}
            t0 = time.time()
            try:
                if tagging:
                    labels = read_label_list(opts.data_dir)
                    train = _read(opts, source, "train", labels, opts.max_train_examples)
                    dev = _read(opts, source, "dev", labels, opts.max_eval_examples)
                    clf = TokenClassifier(hub, labels, opts.finetune, opts.device, opts.select_metric)
                else:
                    train = _read(opts, source, "train", None, opts.max_train_examples)
                    labels = sorted(set(train.labels))
                    dev = _read(opts, source, "dev", labels, opts.max_eval_examples)
                    clf = SequenceClassifier(hub, labels, opts.finetune, opts.device)
                restore(hub.model, pristine)
                result = clf.fit(train, dev, seed, desc=f"{model_name} {opts.task} {source} seed {seed}")
            except Exception as e:  # noqa: BLE001 - a broken source fails its own runs only
                for t in pending:
                    _fail(store, summary, bases[t], EvalDataError(f"source {source}: {_error_message(e)}"))
                restore(hub.model, pristine)
                continue
            train_seconds = round(time.time() - t0, 3)
            for target in pending:
                t1 = time.time()
                try:
                    test = _read(opts, target, "test", labels, opts.max_eval_examples)
                    preds = clf.predict(test)
                    metrics = (tagging_scores(opts.task, test.labels, preds) if tagging
                               else classification_scores(test.labels, preds))
                except Exception as e:  # noqa: BLE001
                    _fail(store, summary, bases[target], e)
                    continue
                details = {"n_test": len(test), "n_train": len(train), "n_dev": len(dev),
                           "best_epoch": result.best_epoch, "epochs_run": result.epochs_run,
                           "best_dev": result.best_dev, "train_seconds": train_seconds,
                           "seconds": round(time.time() - t1, 3), "warnings": train.warnings + test.warnings}
                store.add({**bases[target], "metrics": metrics, "details": details})
                summary.ok += 1
                main = "macro_f1" if not tagging else "seqeval_f1"
                logger.info("%s %s %s->%s seed %d: %s %.4f", model_name, opts.task, source, target, seed, main,
                            metrics[main])
            restore(hub.model, pristine)
    return summary


def run_grid(model_specs, opts: EvalOptions, store: ResultStore, cache_dir=None, assets_dir=None) -> GridSummary:
    """Evaluate every model of ``model_specs`` on ``opts.task``; load each model only if something is pending."""
    from .models import load_hub

    summary = GridSummary()
    for spec in model_specs:
        hub = None
        try:
            hub = load_hub(spec, cache_dir, opts.device, assets_dir)
        except Exception as e:  # noqa: BLE001 - report a broken model, go on with the others
            msg = " ".join(_error_message(e).split())
            logger.error("could not load model %s from %s (%s); its results are skipped", spec.name, spec.path, msg)
            logger.debug("traceback", exc_info=e)
            summary.errors.append(f"{spec.name}: could not load {spec.path}: {msg}")
            continue
        fingerprints = {"model": path_fingerprint(spec.path), "data": data_fingerprint(opts)}
        if opts.task in RETRIEVAL_TASKS:
            try:
                reading = opts.reading(hub)
            except ValueError as e:
                summary.errors.append(f"{spec.name}: {e}")
                logger.error("%s: %s", spec.name, e)
                continue
            logger.info("%s: vectors read at layer %d, %s, prompt %r (view %s)", spec.name, reading["layer"],
                        reading["pooling"], reading["prompt"], opts.view)  # fmt: skip
            part = run_retrieval(spec.name, str(spec.path), hub_embedder(hub, opts, reading), opts, store, reading,
                                 fingerprints)  # fmt: skip
        else:
            part = run_finetune(spec.name, str(spec.path), hub, opts, store, fingerprints)
        summary.merge(part)
        del hub
    return summary
