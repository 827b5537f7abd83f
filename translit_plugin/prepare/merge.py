"""Stage 4, merge: concatenate the chunk binaries, in plan order, into the final ``data-bin`` (see the package doc).

Plan order = languages in ``langs.txt`` order, then chunk index; the same order for ``orig`` and ``latn`` and for the
language ids, so line ``i`` of every output belongs to the same pair.  Uses fairseq's
``MMapIndexedDatasetBuilder.merge_file_`` (what ``fairseq-preprocess --workers`` does with its per-worker parts).
"""

from __future__ import annotations

import logging
import os
import shutil
from pathlib import Path
from typing import Any

import numpy as np

from translit_plugin.core.files import atomic_write_text, tmp_path
from translit_plugin.core.names import SIDES
from translit_plugin.prepare.chunks import ChunkTask

logger = logging.getLogger(__name__)


def merge_split(data_bin: Path, split: str, tasks: list[ChunkTask], records: dict[str, dict[str, Any]],
                langs: list[str], vocab_size: int, progress: bool = True) -> int:
    """Write ``{orig,latn}/{split}.{bin,idx}`` and ``{split}.lang.npy``; return the number of pairs.

    A split without pairs gets no files at all (fairseq cannot memory-map an empty ``.bin``); stale ones are removed.
    A merge that fails leaves no partial (``.SPLIT.tmpPID.*``) file behind.
    """
    if sum(records[task.name]["kept"] for task in tasks) == 0:
        logger.warning("%s: no pairs; writing no %s files (train with --disable-validation if it is valid)", split,
                       split)
        for path in [data_bin / side / f"{split}{ext}" for side in SIDES for ext in (".bin", ".idx")] + [
            data_bin / f"{split}.lang.npy"
        ]:
            path.unlink(missing_ok=True)
        return 0

    lang_index = {lang: i for i, lang in enumerate(langs)}
    lang_dtype = np.int16 if len(langs) < 2**15 else np.int32
    tmp = {side: str(tmp_path(data_bin / side / split)) for side in SIDES}
    for side in SIDES:
        (data_bin / side).mkdir(parents=True, exist_ok=True)
    lang_tmp = tmp_path(data_bin / f"{split}.lang.npy")
    try:
        return _merge_into(tmp, lang_tmp, data_bin, split, tasks, records, lang_index, lang_dtype, vocab_size,
                           progress)
    except BaseException:  # a failed or interrupted merge leaves no partial file in the data-bin
        for path in [Path(tmp[side] + ext) for side in SIDES for ext in (".bin", ".idx")] + [lang_tmp]:
            path.unlink(missing_ok=True)
        raise


def _merge_into(tmp: dict[str, str], lang_tmp: Path, data_bin: Path, split: str, tasks: list[ChunkTask],
                records: dict[str, dict[str, Any]], lang_index: dict[str, int], lang_dtype: type, vocab_size: int,
                progress: bool) -> int:
    """:func:`merge_split`'s writing: each side into ``tmp[side]`` + ``.bin``/``.idx``, then moved into place."""
    from fairseq.data import indexed_dataset
    from tqdm import tqdm

    parts: list[np.ndarray] = []
    builders = {side: indexed_dataset.make_builder(tmp[side] + ".bin", impl="mmap", vocab_size=vocab_size)
                for side in SIDES}
    total = 0
    for task in tqdm(tasks, desc=f"merge {split}", unit="chunk", disable=not progress, leave=False):
        rec = records[task.name]
        for side in SIDES:
            builders[side].merge_file_(f"{task.bin_prefix}.{side}")
        parts.append(np.full(rec["kept"], lang_index[task.lang], dtype=lang_dtype))
        total += rec["kept"]
    for side in SIDES:
        builders[side].finalize(tmp[side] + ".idx")
    lang_ids = np.concatenate(parts) if parts else np.zeros(0, dtype=lang_dtype)
    with open(lang_tmp, "wb") as f:
        np.save(f, lang_ids)
    for side in SIDES:
        for ext in (".bin", ".idx"):
            os.replace(tmp[side] + ext, str(data_bin / side / split) + ext)
    os.replace(lang_tmp, data_bin / f"{split}.lang.npy")
    return total


def write_dictionaries(data_bin: Path, dict_path: Path, langs: list[str]) -> None:
    """Copy the model's ``dict.txt`` next to each side and write ``langs.txt`` (line i = name of language id i)."""
    for side in SIDES:
        (data_bin / side).mkdir(parents=True, exist_ok=True)
        target = data_bin / side / "dict.txt"
        tmp = tmp_path(target)
        shutil.copyfile(dict_path, tmp)
        os.replace(tmp, target)
    atomic_write_text(data_bin / "langs.txt", "".join(f"{lang}\n" for lang in langs))
