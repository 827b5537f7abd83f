"""One split of a data-bin, both sides: reading them, checking that they pair up, their lengths and language ids.

What the ``translit_align`` task calls from ``load_dataset`` (layout: the task's module docstring).  Errors the user has
to fix raise :class:`~translit_plugin.data.errors.TranslitDataError` with a one-line message.
"""

from __future__ import annotations

import itertools
import logging
import os

import numpy as np
from fairseq.data import ConcatDataset, data_utils, indexed_dataset

from translit_plugin.core.names import LATN, ORIG, SIDES
from translit_plugin.data import fingerprint
from translit_plugin.data.errors import MissingDataError, PairingError, TranslitDataError
from translit_plugin.data.pread_dataset import PreadIndexedDataset

logger = logging.getLogger(__name__)


def load_lang_names(data: str) -> list[str] | None:
    """``DATA/langs.txt``: the language names (id i = line i), or None without the file."""
    path = os.path.join(data, "langs.txt")
    if not os.path.isfile(path):
        return None
    with open(path, encoding="utf-8") as f:
        return [line.strip() for line in f if line.strip()]


def load_lang_ids(data: str, split: str, n: int, parts: int = 1,
                  lang_names: list[str] | None = None) -> np.ndarray | None:
    """``DATA/{split}.lang.npy`` (for a split in parts: ``{split}.lang.npy``, ``{split}1.lang.npy``, ...)."""
    paths = [os.path.join(data, f"{split}{k if k else ''}.lang.npy") for k in range(parts)]
    present = [os.path.isfile(p) for p in paths]
    if not any(present):
        return None
    if not all(present):
        missing = [p for p, ok in zip(paths, present) if not ok]
        raise TranslitDataError(f"{missing[0]} is missing while {paths[present.index(True)]} exists: give every "
                                f"part of split {split!r} its language ids, or none")
    arrays = []
    for path in paths:
        try:
            lang = np.load(path)  # kept in its stored (narrow) integer dtype; never unpickled
        except (ValueError, OSError, EOFError) as e:
            raise TranslitDataError(f"{path}: not a numpy array of language ids ({' '.join(str(e).split())}); "
                                    "re-run prepare (or encode), or delete it to train without "
                                    "language ids") from None
        if not np.issubdtype(lang.dtype, np.integer):
            raise TranslitDataError(f"{path}: language ids must be integers, found dtype {lang.dtype}; re-run "
                                    "prepare")
        if lang.ndim != 1:
            raise TranslitDataError(f"{path}: expected one language id per pair, found shape {lang.shape}")
        arrays.append(lang)
    lang = arrays[0] if parts == 1 else np.concatenate(arrays)
    path = paths[0] if parts == 1 else ", ".join(paths)
    if len(lang) != n:
        raise TranslitDataError(f"{path}: expected {n} language ids (one per pair), found shape {lang.shape}")
    if lang_names is not None and len(lang) and (lang.min() < 0 or lang.max() >= len(lang_names)):
        raise TranslitDataError(f"{path}: language ids outside 0..{len(lang_names) - 1} (langs.txt)")
    return lang


def load_side(data: str, side: str, split: str, combine: bool, dictionary):
    """One side of ``split`` -> ``(dataset, prefix, part prefixes)``; fairseq's mmap format is read with
    :class:`PreadIndexedDataset`, other formats through fairseq's loader."""
    prefix = os.path.join(data, side, split)
    if os.path.isfile(prefix + ".bin") and os.path.getsize(prefix + ".bin") == 0:
        raise TranslitDataError(
            f"split {split!r} is empty ({prefix}.bin has no sentences): prepare a non-empty {split} split or "
            + ("pass --disable-validation" if split != "train" else "check the input corpus")
        )
    if indexed_dataset.infer_dataset_impl(prefix) == "mmap":
        # fairseq's format, read without mapping it into the process (see translit_plugin/data/pread_dataset.py)
        parts, prefixes = [], []
        for k in itertools.count():
            path_k = prefix + (str(k) if k > 0 else "")
            if not PreadIndexedDataset.exists(path_k):
                break
            parts.append(PreadIndexedDataset(path_k))
            prefixes.append(path_k)
            logger.info("loaded %s sentences from %s", f"{len(parts[-1]):,}", path_k)
            if not combine:
                break
        dataset = parts[0] if len(parts) == 1 else ConcatDataset(parts)
    else:  # other fairseq formats (raw, lazy, cached) through fairseq's loader
        impl = indexed_dataset.infer_dataset_impl(prefix)
        # fairseq's "cached" reader needs a prefetch() no batch iterator here makes (KeyError: 0); the
        # "lazy" reader reads the same files item by item
        dataset = data_utils.load_indexed_dataset(prefix, dictionary, combine=combine,
                                                  dataset_impl="lazy" if impl == "cached" else impl)
        prefixes = [prefix]
    if dataset is None:
        raise MissingDataError(
            f"{prefix}.{{bin,idx}} not found: `translit-ppa prepare` writes {side}/{split}.bin/.idx under DATA "
            f"(split {split!r}; for no validation pass --disable-validation)"
        )
    return dataset, prefix, prefixes


def check_counts(split: str, orig, orig_path: str, orig_parts: list[str], latn, latn_path: str,
                 latn_parts: list[str]) -> None:
    """The two sides have the same parts and sentence counts, and are not empty."""
    if len(orig_parts) != len(latn_parts):
        raise PairingError(
            f"split {split!r}: orig has {len(orig_parts)} part(s) ({', '.join(orig_parts)}) but latn has "
            f"{len(latn_parts)} ({', '.join(latn_parts)}); binarize the same parts on both sides"
        )
    if len(orig) != len(latn):
        raise PairingError(
            f"{orig_path}.bin has {len(orig)} sentences but {latn_path}.bin has {len(latn)}: the sides must be "
            "line-aligned; re-run `translit-ppa prepare` so both are written from the same pairs"
        )
    if len(orig) == 0:
        raise TranslitDataError(
            f"split {split!r} is empty ({orig_path}.bin has no sentences): prepare a non-empty {split} split or "
            + ("pass --disable-validation" if split != "train" else "check the input corpus")
        )


def check_pairing(data: str, split: str, prefixes: dict[str, list[str]], datasets: dict,
                  checked: dict[str, tuple]) -> None:
    """Compare ``split`` with ``DATA/pairing.json`` (once per split and file state, remembered in ``checked``); warn
    when there is none, and refuse a split whose lengths look shifted by one line."""
    stamp = tuple((p, os.path.getsize(p + ".bin"), os.path.getmtime(p + ".bin"))
                  for side in SIDES for p in prefixes[side] if os.path.isfile(p + ".bin"))
    if checked.get(split) == stamp:
        return
    dict_paths = {side: os.path.join(data, side, "dict.txt") for side in SIDES}
    dict_paths = {side: p for side, p in dict_paths.items() if os.path.isfile(p)}
    parts = len(prefixes[ORIG])
    # a split stored in parts (train, train1, ...: fairseq's --combine) is recorded part by part
    unverified = []
    for k in range(parts):
        name = split if k == 0 else f"{split}{k}"
        status = fingerprint.check_split(data, name, {side: [prefixes[side][k]] for side in SIDES}, dict_paths,
                                         datasets if parts == 1 else None)
        if status != "verified":
            unverified.append((name, status))
    if not unverified:
        logger.info("%s: pairing verified against %s", split, fingerprint.pairing_path(data))
    else:
        corr = fingerprint.length_correlations(datasets[ORIG].sizes, datasets[LATN].sizes)
        if fingerprint.looks_shifted(corr):
            raise PairingError(
                f"split {split!r} looks shifted by one line: the lengths of orig line i agree with latn line i+-1 "
                f"(r={corr['shifted']:.2f}) far better than with latn line i (r={corr['aligned']:.2f}), and no "
                f"{fingerprint.FILENAME} entry verifies the pairing; rebuild both sides from the same lines "
                "(`translit-ppa encode` + fairseq-preprocess, or prepare), or pass --pairing-check counts"
            )
        for name, status in unverified:
            what = "not found" if status == "no file" else f"has no entry for split {name!r}"
            logger.warning(
                "%s %s: the pairing of orig/%s and latn/%s cannot be verified beyond equal sentence counts; write "
                "it with `translit-ppa encode` (fairseq-preprocess path) or re-run `translit-ppa prepare`",
                fingerprint.pairing_path(data), what, name, name,
            )
    checked[split] = stamp


def check_lengths(split: str, orig, latn, tokens_per_sample: int, long_sequences: str) -> None:
    """Warn about sentences without pieces; a side longer than ``--tokens-per-sample``: warn, or error with
    ``--long-sequences error``."""
    limit = tokens_per_sample - 1  # the binaries hold pieces + </s>; <s> is added by the pair dataset
    for side, ds in zip(SIDES, (orig, latn)):
        sizes = np.asarray(ds.sizes)
        too_long = np.flatnonzero(sizes > limit)
        empty = int((sizes <= 1).sum())
        if empty:
            logger.warning("%s/%s: %d sentences have no pieces (only </s>); prepare normally drops them",
                           side, split, empty)
        if len(too_long) == 0:
            continue
        lines = ", ".join(str(i + 1) for i in too_long[:10])
        msg = (f"{side}/{split}: {len(too_long)} sentences exceed --tokens-per-sample "
               f"{tokens_per_sample} (with <s> and </s>); lines {lines}"
               f"{' ...' if len(too_long) > 10 else ''}")
        if long_sequences == "error":
            raise TranslitDataError(msg + "; shorten them or pass --long-sequences truncate")
        logger.warning("%s; truncating them (reference behaviour)", msg)
