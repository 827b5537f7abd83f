"""prepare's ``OUTPUT/manifest.json``: counts per language and split, token statistics, uroman version and codes,
options and verification (:func:`build_manifest`), and its warnings (:func:`write_manifest`)."""

from __future__ import annotations

import logging
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np

from translit_plugin.core.files import atomic_write_json
from translit_plugin.core.names import SIDES
from translit_plugin.prepare.chunks import DROP_REASONS, ChunkSettings, ChunkTask, get_encoder
from translit_plugin.prepare.config import PrepareConfig
from translit_plugin.prepare.inputs import PrepareInputs
from translit_plugin.prepare.sample import SPLITS

logger = logging.getLogger(__name__)

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


def write_manifest(manifest: dict[str, Any], inputs: PrepareInputs, out: Path) -> None:
    """Stage 6: add the warnings and write ``OUTPUT/manifest.json``."""
    no_pairs = [lang for lang in inputs.langs if manifest["per_language"][lang]["train"]["pairs"] == 0]
    manifest["warnings"] = inputs.code_warnings + [f"{lang}: 0 training pairs" for lang in no_pairs]
    if no_pairs:
        logger.warning("%d language(s) have no training pairs: %s (see per_language in the manifest for why)",
                       len(no_pairs), ", ".join(no_pairs))
    atomic_write_json(out / "manifest.json", manifest, indent=2, ensure_ascii=False)
