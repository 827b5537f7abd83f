"""Checkpoint selection by the paper's criterion: mean Tatoeba top-10 retrieval accuracy (target -> English).

Every ``checkpoint*.pt`` of a training run is scored once; scores are cached in a JSON file keyed by the checkpoint's
fingerprint (size, mtime and a hash of its first and last MiB) and the evaluation settings, so re-running after more
checkpoints were written only evaluates the new ones.  A checkpoint that cannot be loaded or scored (truncated by a
full disk, still being written) is recorded with its error and skipped; the others are still compared.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import statistics
from dataclasses import dataclass, field
from pathlib import Path

from translit_plugin.core.files import atomic_write_json

from .readers import ENGLISH

logger = logging.getLogger(__name__)

CACHE_NAME = "select_checkpoint_cache.json"
_CHUNK = 1 << 20


def checkpoint_fingerprint(path: str | os.PathLike) -> str:
    """Cheap identity of a checkpoint file: size, mtime and sha256 of its first and last MiB."""
    path = Path(path)
    st = path.stat()
    h = hashlib.sha256(f"{st.st_size}:{st.st_mtime_ns}".encode())
    with open(path, "rb") as f:
        h.update(f.read(_CHUNK))
        if st.st_size > _CHUNK:
            f.seek(max(_CHUNK, st.st_size - _CHUNK))
            h.update(f.read(_CHUNK))
    return h.hexdigest()[:20]


def _natural_key(p: Path) -> list:
    return [int(x) if x.isdigit() else x for x in re.split(r"(\d+)", p.name)]


def find_checkpoints(run_dir: str | os.PathLike, pattern: str = "checkpoint*.pt") -> list[Path]:
    """Checkpoint files of a run (symlinks and ``checkpoint_best``/``_last`` copies included), in natural order."""
    found = sorted((p for p in Path(run_dir).glob(pattern) if p.is_file()), key=_natural_key)
    if not found:
        raise FileNotFoundError(f"no {pattern} files in {run_dir}")
    return found


@dataclass
class Selection:
    """The chosen checkpoint and every checkpoint's score (or its error)."""

    best: Path
    best_score: float
    scores: dict[str, dict]  # checkpoint name -> {"score": mean top-10, "per_language": {...}, "fingerprint": ...}
    failed: dict[str, str] = field(default_factory=dict)  # checkpoint name -> why it could not be scored

    def to_dict(self) -> dict:
        return {"best": str(self.best), "best_score": self.best_score, "checkpoints": self.scores,
                "failed": self.failed}

    def table(self) -> str:
        """Every checkpoint's mean top-10 (x100), the best marked, then the failed ones with why."""
        width = max(len(n) for n in [*self.scores, *self.failed])
        lines = [f"{'checkpoint':<{width}}  mean tatoeba top-10\n"]
        for name, s in self.scores.items():
            mark = "  <- best" if name == self.best.name else ""
            lines.append(f"{name:<{width}}  {100 * s['score']:6.2f}{mark}\n")
        for name, msg in self.failed.items():
            lines.append(f"{name:<{width}}  failed: {msg}\n")
        return "".join(lines)


class SelectionError(ValueError):
    """No checkpoint of the run could be scored (exit status 3)."""

    exit_code = 3


def _load_cache(path: Path) -> dict:
    if not path.is_file():
        return {}
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError:
        logger.warning("%s is not valid JSON; ignoring the cache", path)
        return {}


def _save_cache(path: Path, cache: dict) -> None:
    atomic_write_json(path, cache, indent=1, sort_keys=True)


def score_hub(hub, data_dir, targets: list[str], opts, reading: dict | None = None) -> dict[str, float]:
    """Tatoeba ``tgt2src_top10`` per target language for one loaded model (English candidates), its vectors read
    as ``reading`` says (default: ``opts.reading(hub)``: the model's use setting unless the options say otherwise)."""
    from translit_plugin.hub.encoding import embed_sentences

    from .readers import read_retrieval_pair
    from .retrieval import topk_accuracy

    reading = reading or opts.reading(hub)
    scores = {}
    for lang in targets:
        lines, eng = read_retrieval_pair(data_dir, lang, opts.file_prefix, opts.max_eval_examples)
        kw = dict(layer=reading["layer"], pooling=reading["pooling"], prompt=reading["prompt"],
                  batch_size=opts.embed_batch_size, max_length=opts.embed_max_length, device=opts.device,
                  progress=opts.progress)
        tgt = embed_sentences(hub, lines, desc=f"embed {lang}", **kw)
        src = embed_sentences(hub, eng, desc=f"embed {lang}:{ENGLISH}", **kw)
        scores[lang] = topk_accuracy(tgt, src, ks=(10,))["top10"]
    return scores


def select_checkpoint(
    run_dir: str | os.PathLike,
    opts,
    model_dir: str | os.PathLike | None = None,
    cache_path: str | os.PathLike | None = None,
    pattern: str = "checkpoint*.pt",
) -> Selection:
    """Score every checkpoint of ``run_dir`` on Tatoeba (``opts``: an ``EvalOptions``) and pick the best.

    ``model_dir`` holds ``dict.txt`` / ``sentencepiece.bpe.model`` when the run directory does not.
    """
    from translit_plugin.core.use_settings import PROBE, USE_VIEW, find_use_setting
    from translit_plugin.hub import from_pretrained

    from .results import config_hash, data_fingerprint
    from .runner import RECORDED_POOLING, retrieval_targets

    run_dir = Path(run_dir)
    cache_path = Path(cache_path) if cache_path else run_dir / CACHE_NAME
    cache = _load_cache(cache_path)
    targets = retrieval_targets(opts)
    # where the vectors are read: the run's use setting (use.json of the model directory / run directory) or the
    # probe, with the options on top; it keys the cache, so a cached score of another reading is not reused
    use = find_use_setting(model_dir, run_dir)
    view = use if opts.view == USE_VIEW else PROBE
    settings = {"data_dir": str(Path(opts.data_dir).resolve()), "targets": targets, "prefix": opts.file_prefix,
                "layer": opts.layer if opts.layer is not None else view.layer,
                "pooling": opts.recorded_pooling if opts.pooling else RECORDED_POOLING.get(view.pooling, view.pooling),
                "max_length": opts.embed_max_length, "max_eval_examples": opts.max_eval_examples,
                "data": data_fingerprint(opts)}  # fmt: skip
    prompt = (use.prompt_text(opts.prompt_name) if opts.prompt_name else "") if opts.prompt_name is not None \
        else (use.prompt_text() if opts.view == USE_VIEW else "")
    if prompt:
        settings["prompt"] = prompt
    chash = config_hash(settings)
    scores: dict[str, dict] = {}
    failed: dict[str, str] = {}
    for ckpt in find_checkpoints(run_dir, pattern):
        fp = checkpoint_fingerprint(ckpt)
        entry = cache.get(fp, {}).get(chash)
        if entry is None:
            logger.info("scoring %s on %d %s languages", ckpt.name, len(targets), opts.file_prefix)
            try:
                hub = from_pretrained(str(model_dir or run_dir), checkpoint_file=str(ckpt.resolve()))
                hub.eval()
                if opts.device:
                    hub.to(opts.device)
                per_lang = score_hub(hub, opts.data_dir, targets, opts,
                                     {**opts.reading(hub), "prompt": prompt})  # fmt: skip
                del hub
            except Exception as e:  # noqa: BLE001 - one broken checkpoint must not stop the selection
                failed[ckpt.name] = " ".join(f"{type(e).__name__}: {e}".split()).split(". ")[0]  # torch's advice
                logger.error("%s: could not be scored, skipped (%s)", ckpt, failed[ckpt.name])
                logger.debug("traceback of %s", ckpt, exc_info=True)
                continue
            entry = {"score": statistics.fmean(per_lang.values()), "per_language": per_lang}
            cache.setdefault(fp, {})[chash] = {**entry, "checkpoint": ckpt.name, "settings": settings}
            _save_cache(cache_path, cache)
        else:
            logger.info("%s: cached score %.4f", ckpt.name, entry["score"])
        scores[ckpt.name] = {"score": entry["score"], "per_language": entry["per_language"], "fingerprint": fp}
    if not scores:
        raise SelectionError(f"{run_dir}: none of the {len(failed)} checkpoint(s) could be scored: "
                             + "; ".join(f"{n}: {msg}" for n, msg in failed.items()))
    best_name = max(scores, key=lambda n: scores[n]["score"])  # first of equal scores (earliest) wins
    return Selection(run_dir / best_name, scores[best_name]["score"], scores, failed)
