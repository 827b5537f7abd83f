"""Pairing fingerprint of a data-bin: ``DATA/pairing.json``, written with the data, checked before training.

Counts alone do not prove that line i of ``DATA/orig`` and line i of ``DATA/latn`` are one pair: a Latin side taken
from another split of the same size, or shifted by one line with one line added, has the right count.  So whoever
writes a data-bin records what the two sides hold, and the ``translit_align`` task recomputes it from the ``.bin`` /
``.idx`` files and refuses a mismatch (:func:`check_split`).  Writers: ``translit-ppa encode`` (from the token ids it
emits, which ``fairseq-preprocess`` then binarizes) and ``translit-ppa prepare`` (from its merged data-bin).

File format (JSON, keys sorted, so the same data gives the same bytes whoever wrote it)::

    {
      "format": "translit-ppa pairing v1",
      "dictionary": {"dict_sha256": <sha256 of the dict.txt bytes the ids come from>,
                     "vocab_sha256": <sha256 of its symbols as fairseq's Dictionary loads them, see vocab_sha256>,
                     "size": <len(Dictionary)>},
      "sentencepiece_sha256": <sha256 of sentencepiece.bpe.model, or null>,
      "splits": {
        "train": {"pairs": N,
                  "orig": {"sentences": N, "tokens": T, "sha256": <side hash>},
                  "latn": {"sentences": N, "tokens": T', "sha256": <side hash>},
                  "pair_sha256": sha256(orig side hash + latn side hash)},
        "valid": {...}
      }
    }

The side hash and how it is computed: :mod:`translit_plugin.data.side_hash` (its names are importable from here too).

A training run records in its checkpoints what it learnt from (:func:`data_identity`: the dictionary, the train
split's hashes, the sentencepiece model), compared on resume (:func:`identity_differences`) and when a checkpoint is
loaded with a model directory's files (:func:`check_recorded_vocabulary`).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from translit_plugin.core.files import atomic_write_json
from translit_plugin.core.hashing import sha256_file
from translit_plugin.core.names import ORIG, SIDES
from translit_plugin.data.errors import PairingError
from translit_plugin.data.side_hash import SideHasher as SideHasher  # re-exported: prepare's encode hashes with it
from translit_plugin.data.side_hash import dictionary_record, mmap_header, side_fingerprint, split_entry, vocab_sha256

logger = logging.getLogger(__name__)

FILENAME = "pairing.json"
FORMAT = "translit-ppa pairing v1"


# ------------------------------------------------------------------------------------------ the pairing file
def pairing_path(data_bin: str | os.PathLike) -> Path:
    return Path(data_bin) / FILENAME


def read_pairing(data_bin: str | os.PathLike) -> dict[str, Any] | None:
    """The parsed ``DATA/pairing.json``, None when there is none; :class:`PairingError` when it is not one."""
    path = pairing_path(data_bin)
    if not path.is_file():
        return None
    try:
        record = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise PairingError(f"{path} is unreadable ({e}); delete it and re-run `translit-ppa encode` (or prepare)") \
            from None
    if not isinstance(record, dict) or record.get("format") != FORMAT or not isinstance(record.get("splits"), dict):
        raise PairingError(f"{path} is not a {FORMAT!r} file; delete it and re-run `translit-ppa encode` (or prepare)")
    return record


def write_pairing(data_bin: str | os.PathLike, splits: dict[str, dict[str, Any]], dict_path: str | os.PathLike,
                  spm_path: str | os.PathLike | None) -> Path:
    """Record ``splits`` (``{split: split_entry(...)}``) in ``DATA/pairing.json``, keeping the other splits' entries
    when they were made with the same dictionary and sentencepiece model (else they are dropped, with a warning)."""
    data_bin = Path(data_bin)
    dictionary = dictionary_record(dict_path)
    spm = sha256_file(spm_path) if spm_path is not None else None
    try:
        old = read_pairing(data_bin)
    except PairingError:
        old = None
    kept: dict[str, Any] = {}
    if old is not None:
        same = (old.get("dictionary", {}).get("vocab_sha256") == dictionary["vocab_sha256"]
                and old.get("sentencepiece_sha256") == spm)
        others = {k: v for k, v in old["splits"].items() if k not in splits}
        if same:
            kept = others
        elif others:
            logger.warning("%s: dropping the entries of %s, recorded with another dictionary or sentencepiece model",
                           pairing_path(data_bin), sorted(others))
    record = {"format": FORMAT, "dictionary": dictionary, "sentencepiece_sha256": spm,
              "splits": {**kept, **splits}}
    data_bin.mkdir(parents=True, exist_ok=True)
    path = pairing_path(data_bin)
    atomic_write_json(path, record, indent=2, sort_keys=True)
    return path


def write_data_bin_fingerprint(data_bin: str | os.PathLike, dict_path: str | os.PathLike,
                               spm_path: str | os.PathLike | None = None,
                               splits: Sequence[str] = ("train", "valid")) -> Path:
    """Compute the fingerprint of every split present in ``DATA/{orig,latn}`` from its ``.bin``/``.idx`` and write
    ``DATA/pairing.json`` (what ``translit-ppa prepare`` calls at its manifest stage)."""
    data_bin = Path(data_bin)
    entries = {}
    for split in splits:
        prefixes = {side: str(data_bin / side / split) for side in SIDES}
        if not all(os.path.isfile(p + ".idx") and os.path.isfile(p + ".bin") for p in prefixes.values()):
            continue
        entries[split] = split_entry(*(side_fingerprint([prefixes[side]]) for side in SIDES))
    return write_pairing(data_bin, entries, dict_path, spm_path)


# ------------------------------------------------------------------------------------------------ the check
def check_split(data_bin: str | os.PathLike, split: str, prefixes: dict[str, Sequence[str]],
                dict_paths: dict[str, str], datasets: dict[str, Any] | None = None) -> str:
    """Compare split ``split`` of a data-bin with ``DATA/pairing.json``; raise :class:`PairingError` on a mismatch.

    ``prefixes[side]``: the ``.bin``/``.idx`` prefixes the task loaded for that side (several when combined);
    ``dict_paths[side]``: the ``dict.txt`` of each side that exists.  Returns ``"verified"``, ``"no file"`` or
    ``"no entry"`` (the last two mean the pairing could not be verified; the caller warns).
    """
    record = read_pairing(data_bin)
    path = pairing_path(data_bin)
    if record is None:
        return "no file"
    entry = record["splits"].get(split)
    if entry is None:
        return "no entry"
    want_vocab = record.get("dictionary", {}).get("vocab_sha256")
    for side, dpath in dict_paths.items():
        from fairseq.data import Dictionary

        if want_vocab is not None and vocab_sha256(Dictionary.load(dpath).symbols) != want_vocab:
            raise PairingError(
                f"{dpath} is not the dictionary recorded in {path}: side {side!r} was binarized with another "
                "dictionary; binarize both sides with the model's dict.txt (fairseq-preprocess --srcdict "
                "MODEL/dict.txt) after `translit-ppa encode` with that model"
            )
    got = {side: side_fingerprint(prefixes[side], (datasets or {}).get(side)) for side in SIDES}
    pairs = int(entry.get("pairs", -1))
    wrong = [side for side in SIDES if got[side]["sha256"] != entry.get(side, {}).get("sha256")]
    if not wrong:
        return "verified"
    where = {side: f"{prefixes[side][0]}.{{bin,idx}}" for side in SIDES}
    if len(wrong) == 2:
        counts = ", ".join(f"{side} {got[side]['sentences']}" for side in SIDES)
        raise PairingError(
            f"split {split!r}: neither side matches {path} ({pairs} pairs recorded; found {counts} sentences): the "
            f"data-bin and its pairing record come from different runs; re-run `translit-ppa encode --split {split}` "
            "and both fairseq-preprocess runs on its output (or re-run prepare)"
        )
    side = wrong[0]
    other = SIDES[1 - SIDES.index(side)]
    n = got[side]["sentences"]
    what = (f"{n} sentences where {pairs} are recorded" if n != pairs else
            f"{n} sentences as recorded, but other token ids ({got[side]['tokens']} tokens, "
            f"{entry[side].get('tokens')} recorded)")
    raise PairingError(
        f"split {split!r}, side {side!r}: {where[side]} does not hold the lines recorded in {path} ({what}; the "
        f"{other} side matches): it was built from other lines (another split, a file shifted by a line, another "
        f"model); rebuild DATA/{side} from the {split}.{side} file `translit-ppa encode --split {split}` wrote "
        "(fairseq-preprocess --only-source --srcdict MODEL/dict.txt)"
    )


# ---------------------------------------------------------------------------------- without a fingerprint
def length_correlations(orig_sizes: np.ndarray, latn_sizes: np.ndarray) -> dict[str, float] | None:
    """Pearson correlations of the log sentence lengths of the two sides: line i with line i (``aligned``), and
    shifted by one line either way (``shifted``: the larger).  None when there are too few lines or no variance.

    A sentence and its transliteration have strongly correlated lengths (0.62 on the demo corpus), neighbouring
    sentences weakly (0.23); so a side shifted by one line shows up as ``shifted`` well above ``aligned``.
    """
    n = min(len(orig_sizes), len(latn_sizes))
    if n < 50:
        return None
    o = np.log(np.asarray(orig_sizes[:n], dtype=np.float64))
    la = np.log(np.asarray(latn_sizes[:n], dtype=np.float64))
    if o.std() == 0 or la.std() == 0:
        return None

    def corr(a: np.ndarray, b: np.ndarray) -> float:
        return float(np.corrcoef(a, b)[0, 1]) if a.std() > 0 and b.std() > 0 else 0.0

    return {"aligned": corr(o, la), "shifted": max(corr(o[:-1], la[1:]), corr(o[1:], la[:-1]))}


def looks_shifted(corr: dict[str, float] | None, margin: float = 0.2) -> bool:
    """True when line i's length agrees clearly better with a neighbouring line of the other side than with line i."""
    return corr is not None and corr["shifted"] > 0.3 and corr["shifted"] > corr["aligned"] + margin



# ------------------------------------------------------------------------ what a checkpoint was trained on
IDENTITY_KEY = "translit_data"  # the key of :func:`data_identity` in a checkpoint's ``task_state``
#: compared on resume (not the sentencepiece model: the same one may have been copied or converted again)
_COMPARED = ("vocab_sha256", "rows", "train_pair_sha256", "train_lengths_sha256")


def data_identity(data_bin: str | os.PathLike, start_checkpoints: Sequence[str] = (),
                  rows: int | None = None) -> dict[str, Any]:
    """What a training run on ``data_bin`` learns from, as plain data for its checkpoints' ``task_state``:
    ``vocab_sha256`` of ``DATA/orig/dict.txt`` (:func:`vocab_sha256` of its symbols), ``rows`` (embedding rows, with
    ``<mask>``), ``train_pair_sha256`` (``pairing.json``'s train entry, None without one) and
    ``sentencepiece_sha256`` (the start model directory's ``sentencepiece.bpe.model``, else what ``pairing.json``
    records, else None)."""
    data_bin = Path(data_bin)
    dict_path = data_bin / ORIG / "dict.txt"
    if not dict_path.is_file():
        dict_path = data_bin / "dict.txt"
    from fairseq.data import Dictionary

    try:
        pairing = read_pairing(data_bin) or {}
    except PairingError:
        pairing = {}
    spm = pairing.get("sentencepiece_sha256")
    for start in start_checkpoints:
        candidate = Path(start).resolve().parent / "sentencepiece.bpe.model"
        if candidate.is_file():
            spm = sha256_file(candidate)
            break
    train = pairing.get("splits", {}).get("train") or {}
    return {"data": str(data_bin), "vocab_sha256": vocab_sha256(Dictionary.load(str(dict_path)).symbols),
            "rows": rows, "train_pair_sha256": train.get("pair_sha256"),
            "train_lengths_sha256": _train_lengths_sha256(data_bin), "sentencepiece_sha256": spm}


def _train_lengths_sha256(data_bin: Path) -> str | None:
    """sha256 of the sentence lengths of both sides' train split (read from the ``.idx`` files alone, 4 bytes a
    sentence): tells data-bins apart without a ``pairing.json``; None for other formats or a missing split."""
    h = hashlib.sha256()
    for side in SIDES:
        idx = str(data_bin / side / "train.idx")
        try:
            head = mmap_header(idx) if os.path.isfile(idx) else None
        except (OSError, KeyError):
            head = None
        if head is None:
            return None
        _dtype, n, offset = head
        sizes = np.fromfile(idx, dtype="<i4", count=n, offset=offset) if n else np.zeros(0, dtype="<i4")
        h.update(f"{side}:{len(sizes)}:".encode("ascii") + sizes.tobytes())
    return h.hexdigest()


def identity_differences(recorded: Any, current: dict[str, Any]) -> list[str]:
    """The fields of two :func:`data_identity` records that both set and that differ (none for a checkpoint that
    recorded nothing: written before the record existed, or by another task)."""
    if not isinstance(recorded, dict):
        return []
    names = {"vocab_sha256": "the dictionary", "rows": "the vocabulary size", "train_pair_sha256": "the train split",
             "train_lengths_sha256": "the train split's sentence lengths"}
    return [names[k] for k in _COMPARED if recorded.get(k) is not None and current.get(k) is not None
            and recorded[k] != current[k]]  # fmt: skip


def check_recorded_vocabulary(state: dict, dict_path: str | os.PathLike, spm_path: str | os.PathLike,
                              checkpoint: str | os.PathLike) -> None:
    """A checkpoint that recorded its training vocabulary (:data:`IDENTITY_KEY`) loaded with a ``dict.txt`` or
    sentencepiece model of the same size but other content: ``ValueError`` naming the file.  Checked only when the
    checkpoint's embedding rows are the recorded ones (an untrimmed or re-trimmed model carries a stale record)."""
    from translit_plugin.core.names import EMBED_KEY

    recorded = (state.get("task_state") or {}).get(IDENTITY_KEY)
    if not isinstance(recorded, dict) or recorded.get("rows") != int(state["model"][EMBED_KEY].shape[0]):
        return
    from fairseq.data import Dictionary

    fix = "pass the dictionary and sentencepiece model of the model directory training started from"
    want = recorded.get("vocab_sha256")
    if want and vocab_sha256(Dictionary.load(str(dict_path)).symbols) != want:
        raise ValueError(f"{dict_path} is not the dictionary {checkpoint} was trained with (same size, other pieces "
                         f"or order); {fix}")
    want = recorded.get("sentencepiece_sha256")
    if want and sha256_file(spm_path) != want:
        raise ValueError(f"{spm_path} is not the sentencepiece model {checkpoint} was trained with (it segments "
                         f"text differently); {fix}")
