"""Stage 2, sample: pick each language's sentences (the paper's rule by default), split train/valid, write chunks.

The paper's rule: per language, 10% of the available sentences or at least 10k, whichever is larger (capped by what
exists).  Selection is uniform without replacement, seeded by ``(seed, language)``, and the chosen lines keep their
corpus order.  A slice of them (``valid_size``, at most ``valid_max_fraction`` of the sample) becomes the validation
set.  Output: ``work/sample/{lang}/{split}-{k:05d}.txt`` chunks of at most ``chunk_size`` lines (the unit of
transliteration work, resumption and sharding); the stage record lists the chunk sizes.  Memory: the chosen line
numbers (8 bytes per sampled sentence); the text itself is streamed.
"""

from __future__ import annotations

import logging
import math
import os
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from translit_plugin.core.files import tmp_path
from translit_plugin.core.hashing import stable_key
from translit_plugin.core.lines import iter_lines
from translit_plugin.prepare.records import read_done, write_done

logger = logging.getLogger(__name__)

SPLITS = ("train", "valid")


@dataclass(frozen=True)
class SampleConfig:
    """Sampling options (all part of the stage's up-to-date key)."""

    fraction: float = 0.1  # paper: 10% of the sentences ...
    min_sentences: int = 10000  # ... or at least 10k
    max_sentences: int | None = None  # optional cap
    seed: int = 1
    valid_size: int = 1000  # validation sentences per language ...
    valid_max_fraction: float = 0.05  # ... but at most this share of the language's sample
    chunk_size: int = 5000


def sample_size(n: int, cfg: SampleConfig) -> int:
    """How many of ``n`` available sentences to take: ``min(n, max(ceil(fraction * n), min_sentences))``, capped."""
    k = min(n, max(math.ceil(cfg.fraction * n), cfg.min_sentences))
    if cfg.max_sentences is not None:
        k = min(k, cfg.max_sentences)
    return k


def valid_count(k: int, cfg: SampleConfig) -> int:
    """Validation sentences out of a language's ``k`` sampled ones."""
    return min(cfg.valid_size, int(cfg.valid_max_fraction * k))


def choose(n: int, lang: str, cfg: SampleConfig) -> tuple[np.ndarray, np.ndarray]:
    """Sorted line numbers (0-based, in the cleaned file) of the train and valid sentences of ``lang``."""
    k = sample_size(n, cfg)
    # Seed from (seed, language) so adding or removing a language does not change the others' samples.
    rng = np.random.default_rng([cfg.seed, zlib.crc32(lang.encode("utf-8"))])
    chosen = np.sort(rng.choice(n, size=k, replace=False)) if k < n else np.arange(n)
    v = valid_count(k, cfg)
    is_valid = np.zeros(k, dtype=bool)
    is_valid[rng.choice(k, size=v, replace=False)] = True
    return chosen[~is_valid], chosen[is_valid]


def chunk_name(split: str, index: int) -> str:
    """``{split}-{index:05d}``: a chunk's file name without extension."""
    return f"{split}-{index:05d}"


def sample_language(clean_file: Path, clean_record: dict[str, Any], out_dir: Path, lang: str, cfg: SampleConfig,
                    progress: bool = True) -> dict[str, Any]:
    """Write the chunks of one language (skipped when up to date); return the record with the chunk sizes."""
    from tqdm import tqdm

    key = stable_key({"clean": clean_record["key"], "cfg": cfg.__dict__, "version": 1})
    record = read_done(out_dir, key)
    if record is not None:
        logger.info("sample %s: up to date", lang)
        return {**record, "skipped": True}
    n = clean_record["kept"]
    train_idx, valid_idx = choose(n, lang, cfg)
    membership = np.zeros(n, dtype=np.int8)  # 0 = not sampled, 1 = train, 2 = valid
    membership[train_idx] = 1
    membership[valid_idx] = 2
    out_dir.mkdir(parents=True, exist_ok=True)
    writers: dict[str, Any] = {}
    chunks: dict[str, list[int]] = {split: [] for split in SPLITS}

    def write(split: str, line: str) -> None:
        sizes = chunks[split]
        if not sizes or sizes[-1] == cfg.chunk_size:
            if split in writers:
                _close(writers.pop(split))
            path = out_dir / f"{chunk_name(split, len(sizes))}.txt"
            writers[split] = (open(tmp_path(path), "w", encoding="utf-8", newline="\n"), path)
            sizes.append(0)
        writers[split][0].write(line + "\n")
        sizes[-1] += 1

    seen = 0
    for i, line in enumerate(tqdm(iter_lines(clean_file), total=n, desc=f"sample {lang}", disable=not progress,
                                  leave=False, mininterval=1.0)):
        seen += 1
        if i < n and membership[i]:
            write(SPLITS[membership[i] - 1], line)
    for handle in writers.values():
        _close(handle)
    if seen != n:
        raise RuntimeError(f"{clean_file}: {seen} lines, its clean record says {n}; delete work/clean and rerun")
    record = {"lang": lang, "clean_lines": n, "sampled": int(len(train_idx) + len(valid_idx)),
              "train": int(len(train_idx)), "valid": int(len(valid_idx)), "chunks": chunks}
    logger.info("sample %s: %d of %d sentences (train %d, valid %d) in %d chunks", lang, record["sampled"], n,
                record["train"], record["valid"], sum(len(c) for c in chunks.values()))
    return write_done(out_dir, key, record)


def _close(handle: tuple) -> None:
    """Close a chunk's temporary file and move it into place."""
    f, path = handle
    tmp = f.name
    f.close()
    os.replace(tmp, path)
