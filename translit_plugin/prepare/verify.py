"""Stage 5, verify: prove the final ``data-bin`` is pair-aligned, or fail loudly.

Checks: (1) ``orig``, ``latn`` and ``{split}.lang.npy`` have the same number of lines, equal to the sum of kept pairs
over the chunk records; (2) for sampled pair indices (random, plus the first and last pair of a sample of chunks),
the stored ``orig[i]`` and ``latn[i]`` equal a fresh encoding of the TSV record that index maps to, and its language
id is that chunk's language; (3) for a few of them, a fresh uroman run on the original text gives the stored Latin
text.  Any mismatch raises :class:`~translit_plugin.prepare.chunks.AlignmentError` naming split, index, language and
files.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from translit_plugin.core.names import LATN, ORIG, SIDES
from translit_plugin.prepare.chunks import AlignmentError, ChunkSettings, ChunkTask, get_encoder, kept_lines

if TYPE_CHECKING:
    from translit_plugin.transliterate import Transliterator

logger = logging.getLogger(__name__)


def verify_split(data_bin: Path, split: str, tasks: list[ChunkTask], records: dict[str, dict[str, Any]],
                 langs: list[str], settings: ChunkSettings, n_samples: int, n_translit: int, seed: int,
                 transliterator: Transliterator | None = None) -> dict[str, Any]:
    """Verify one split; return a summary (counts and how many pairs were checked)."""
    from fairseq.data.indexed_dataset import MMapIndexedDataset

    expected = sum(records[t.name]["kept"] for t in tasks)
    if expected == 0:
        present = [p for p in (data_bin / ORIG / f"{split}.bin", data_bin / f"{split}.lang.npy") if p.exists()]
        if present:
            raise AlignmentError(f"{data_bin}/{split}: chunk records say 0 pairs but {present} exist")
        return {"pairs": 0, "checked": 0, "checked_translit": 0}
    datasets = {side: MMapIndexedDataset(str(data_bin / side / split)) for side in SIDES}
    lang_ids = np.load(data_bin / f"{split}.lang.npy")
    counts = {side: len(ds) for side, ds in datasets.items()} | {"lang": len(lang_ids)}
    if len(set(counts.values())) != 1 or expected != counts[ORIG]:
        raise AlignmentError(f"{data_bin}/{split}: line counts differ: {counts}, chunk records say {expected} pairs")

    starts = np.cumsum([0] + [records[t.name]["kept"] for t in tasks])
    ordered, retranslit = _picks(split, tasks, records, starts, n_samples, n_translit, seed)
    encoder = get_encoder(settings)
    by_task: dict[int, list[int]] = {}
    for i in ordered:
        by_task.setdefault(int(np.searchsorted(starts, i, side="right") - 1), []).append(i)
    checked = checked_translit = 0
    for ti, indices in by_task.items():
        task = tasks[ti]
        rec = records[task.name]
        tsv_lines = Path(task.tsv).read_text(encoding="utf-8").split("\n")[:-1]
        kept = kept_lines(rec)
        if len(kept) != rec["kept"]:
            raise AlignmentError(f"{task.name}: its record lists {len(kept)} kept pairs and says {rec['kept']}")
        for i in indices:
            line_no = kept[i - int(starts[ti])]
            orig, latn = tsv_lines[line_no].split("\t")
            where = f"{split} pair {i} ({task.lang}, {task.tsv}:{line_no + 1})"
            if langs[int(lang_ids[i])] != task.lang:
                raise AlignmentError(f"{where}: language id says {langs[int(lang_ids[i])]}")
            for side, text in ((ORIG, orig), (LATN, latn)):
                stored = np.asarray(datasets[side][i], dtype=np.int64)
                fresh = encoder.encode(text)
                if fresh.ids is None or not np.array_equal(stored, fresh.ids.astype(np.int64)):
                    raise AlignmentError(
                        f"{where}: stored {side} line decodes to {encoder.decode(stored)!r} but the pair's {side} "
                        f"text is {text!r}; the data-bin is misaligned. Delete {data_bin} and rerun prepare"
                    )
            if transliterator is not None and i in retranslit and not task.external:
                again = transliterator.transliterate(orig, task.lcode)
                if again != latn:
                    raise AlignmentError(f"{where}: uroman gives {again!r} for {orig!r}, stored Latin is {latn!r}")
                checked_translit += 1
            checked += 1
    logger.info("verify %s: %d pairs, %d checked (%d re-transliterated): aligned", split, expected, checked,
                checked_translit)
    return {"pairs": int(expected), "checked": checked, "checked_translit": checked_translit}


def _picks(split: str, tasks: list[ChunkTask], records: dict[str, dict[str, Any]], starts: np.ndarray,
           n_samples: int, n_translit: int, seed: int) -> tuple[list[int], set[int]]:
    """The pair indices to check (random ones, plus the first and last of up to 100 chunks), sorted, and those of
    them to re-transliterate; seeded by ``(seed, len(split))``."""
    expected = int(starts[-1])
    rng = np.random.default_rng([seed, len(split)])
    picks = set(rng.choice(expected, size=min(n_samples, expected), replace=False).tolist())
    boundary_tasks = [i for i, t in enumerate(tasks) if records[t.name]["kept"]]
    if len(boundary_tasks) > 100:
        boundary_tasks = sorted(rng.choice(boundary_tasks, size=100, replace=False).tolist())
    for ti in boundary_tasks:
        picks.update({int(starts[ti]), int(starts[ti + 1] - 1)})
    ordered = sorted(picks)
    retranslit = set(rng.choice(ordered, size=min(n_translit, len(ordered)), replace=False).tolist())
    return ordered, retranslit
