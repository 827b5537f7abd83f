"""From a checkpoint to a model, and a start checkpoint against the run.

:func:`load_model` is the one way from a fairseq checkpoint to a model (the hub's loader and the anchored term's
teacher use it), with the one embedding-rows check (:func:`check_embedding_rows`) that the task's start-checkpoint
check applies too.  The readers are memory-mapped (nothing loaded); the checks the task makes before fairseq loads the
start checkpoint: vocabulary (``dict.txt``, else ``conversion.json``'s fingerprints, else a warning), embedding rows,
architecture and tensor shapes, and the data a resumed ``checkpoint_last.pt`` was trained on.

Errors the user has to fix raise :class:`~translit_plugin.data.errors.TranslitDataError` naming both paths.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Callable

from fairseq.data import Dictionary

from translit_plugin.checkpoint_compat import load_fairseq_checkpoint, map_checkpoint
from translit_plugin.core.hashing import sha256_file
from translit_plugin.core.names import EMBED_KEY
from translit_plugin.data import fingerprint
from translit_plugin.data.errors import TranslitDataError
from translit_plugin.models.arch_flags import POSITIONS_KEY, as_flags, checkpoint_network, network
from translit_plugin.models.translit_roberta import TranslitRobertaModel

logger = logging.getLogger(__name__)


# ------------------------------------------------------------------------------------------------ checkpoint -> model
def check_embedding_rows(rows: int | None, entries: int, mismatch: Callable[[int, int], str],
                         error: type[Exception] = TranslitDataError) -> None:
    """The one embedding-rows check: a checkpoint fits a dictionary only with one token-embedding row per id
    (``<mask>`` included).  ``mismatch(rows, entries)`` is the caller's one-line message (its paths, its fix), raised
    as ``error``; ``rows`` None (unreadable here) passes."""
    if rows is not None and rows != entries:
        raise error(mismatch(rows, entries))


def load_model(path, dictionary, mismatch: Callable[[int, int], str], *, error: type[Exception] = ValueError,
               state: dict | None = None, check_state: Callable[[dict], None] | None = None):
    """The one way from a fairseq checkpoint to a model -> ``(model, state)``.

    Loads ``path`` (unless its loaded ``state`` is given), checks its embedding rows against ``dictionary``
    (:func:`check_embedding_rows` with the caller's ``mismatch`` message and ``error``), runs ``check_state(state)``
    when given, then builds the network ``state["cfg"].model`` describes over ``dictionary`` with the checkpoint's
    weights (strict).
    """
    if state is None:
        state = load_fairseq_checkpoint(path)
    check_embedding_rows(int(state["model"][EMBED_KEY].shape[0]), len(dictionary), mismatch, error)
    if check_state is not None:
        check_state(state)
    return TranslitRobertaModel.from_state(state, dictionary), state


# ---------------------------------------------------------------------------------------------------------- readers
def checkpoint_embedding_rows(path: str) -> int | None:
    """Number of token-embedding rows in a fairseq checkpoint, read lazily (memory-mapped), or None if unreadable."""
    try:
        state = map_checkpoint(path)
    except Exception as err:  # legacy (non-zip) format or an unreadable file: fairseq will report it
        logger.debug("could not memory-map %s (%s); skipping the vocabulary check", path, err)
        return None
    weights = (state.get("model") or {}).get(EMBED_KEY)
    return None if weights is None else int(weights.shape[0])


def checkpoint_shapes(path: str) -> dict[str, tuple[int, ...]] | None:
    """``{name: shape}`` of a fairseq checkpoint's model tensors (memory-mapped, nothing read), or None if
    unreadable (fairseq reports that when it loads the file)."""
    try:
        model = map_checkpoint(path).get("model") or {}
    except Exception as err:
        logger.debug("could not memory-map %s (%s); skipping the shape check", path, err)
        return None
    return {k: tuple(v.shape) for k, v in model.items() if hasattr(v, "shape")}


# ----------------------------------------------------------------------------------------------------------- checks
def check_architecture(path: str, model_cfg) -> None:
    """The run's model must be the start checkpoint's network: the same sizes, activation and LayerNorm epsilon.

    Sizes that differ would fail later with a shape error; an epsilon that differs (multilingual-e5: 1e-12, fairseq's
    default: 1e-5) would load silently and change every hidden state, so both are refused here with the flags to pass.
    """
    try:
        theirs = checkpoint_network(path)
    except Exception as err:  # unreadable here: fairseq reports it when it loads the file
        logger.debug("could not read %s (%s); skipping the architecture check", path, err)
        return
    ours = network(model_cfg)
    differ = {name: value for name, value in theirs.items() if name in ours and ours[name] != value}
    if differ:
        what = ", ".join(f"{n} {t} (this run: {ours[n]})" for n, t in differ.items())
        raise TranslitDataError(
            f"{path} is a different network than this run builds: {what}; add {' '.join(as_flags(differ))} (all of "
            f"them: `python -m translit_plugin.models.arch_flags {path}`)"
        )


def check_checkpoint_shapes(path: str, checkpoint: dict, model) -> None:
    """Every tensor ``checkpoint`` (``{name: tensor or shape}``) shares with ``model`` must have its shape; else one
    line naming the flag to set (``--max-positions`` for the position table) before fairseq fails to load it."""
    ours = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    theirs = {k: tuple(getattr(v, "shape", v)) for k, v in checkpoint.items()}
    differ = sorted(k for k in theirs.keys() & ours.keys() if theirs[k] != ours[k])
    if not differ:
        return
    if POSITIONS_KEY in differ:
        pad = getattr(model.encoder.sentence_encoder.embed_tokens, "padding_idx", 1)
        offset = pad + 1  # learned positions start after the padding id: 514 rows = 512 positions
        have, build = theirs[POSITIONS_KEY][0] - offset, ours[POSITIONS_KEY][0] - offset
        raise TranslitDataError(
            f"{path} has {have} positions ({theirs[POSITIONS_KEY][0]} rows of {POSITIONS_KEY}) but this run builds "
            f"{build}: add --max-positions {have} (--tokens-per-sample may stay at or below {have})"
        )
    shown = "; ".join(f"{k} {list(theirs[k])} (this run: {list(ours[k])})" for k in differ[:3])
    raise TranslitDataError(
        f"{path} is a different network than this run builds ({len(differ)} tensors differ: {shown}"
        f"{' ...' if len(differ) > 3 else ''}); add the flags `python -m translit_plugin.models.arch_flags {path}` "
        "prints"
    )


def check_start_checkpoint(path: str, dictionary: Dictionary, data: str, data_dict: str, model_cfg=None,
                           model=None) -> None:
    """Fail early, with both paths named, when start checkpoint ``path``'s vocabulary is not ``dictionary`` (the
    data's ``data_dict`` + ``<mask>``, of data-bin ``data``), or (given ``model_cfg``, the run's model config) when
    its architecture differs from the run's, or (given ``model``, the network the run built) when any of its tensors
    has another shape (positions, sizes, layers)."""
    if not os.path.isfile(path):
        return  # fairseq reports a missing file itself
    model_dict = os.path.join(os.path.dirname(os.path.abspath(path)), "dict.txt")
    if os.path.isfile(model_dict) and os.path.abspath(model_dict) != os.path.abspath(data_dict):
        theirs = Dictionary.load(model_dict).symbols
        if theirs != dictionary.symbols[: len(theirs)] or len(theirs) + 1 != len(dictionary):
            first = next(
                (i for i, (a, b) in enumerate(zip(theirs, dictionary.symbols)) if a != b),
                min(len(theirs), len(dictionary.symbols)),
            )
            raise TranslitDataError(
                f"dictionary mismatch: {model_dict} (the model's) and {data_dict} (the data's) differ from "
                f"entry {first} on; binarize the data with the model's dictionary (`translit-ppa prepare "
                "--model-dir MODEL_DIR`)"
            )
    if model_cfg is not None:
        check_architecture(path, model_cfg)
    rows = checkpoint_embedding_rows(path)
    check_embedding_rows(rows, len(dictionary), lambda rows, ids: (
        f"{path} has {rows} embedding rows but {data_dict} + <mask> gives {ids} ids: the "
        "data was binarized with a different vocabulary than the model's; re-run `translit-ppa prepare` "
        "with this model's dict.txt"
    ))
    if model is not None:
        shapes = checkpoint_shapes(path)
        if shapes is not None:
            check_checkpoint_shapes(path, shapes, model)
    if not os.path.isfile(model_dict):
        check_vocabulary_record(path, data, data_dict, rows)


def check_vocabulary_record(path: str, data: str, data_dict: str, rows: int | None) -> None:
    """A start checkpoint without ``dict.txt`` next to it: compare the fingerprints its directory's
    ``conversion.json`` records (``dict_sha256``, ``sentencepiece_sha256``) with the data's; else warn."""
    model_dir = os.path.dirname(os.path.abspath(path))
    conversion = os.path.join(model_dir, "conversion.json")
    record: dict = {}
    if os.path.isfile(conversion):
        try:
            with open(conversion, encoding="utf-8") as f:
                record = json.load(f)
        except (OSError, ValueError):
            record = {}
    pairing = fingerprint.read_pairing(data) or {}
    data_dicts = {sha256_file(data_dict), pairing.get("dictionary", {}).get("dict_sha256")}
    fix = ("put the model's dict.txt next to the checkpoint, or binarize the data with the model's dictionary "
           "(`translit-ppa prepare/encode --model-dir MODEL_DIR`)")
    theirs = record.get("dict_sha256")
    if isinstance(theirs, str):
        if theirs not in data_dicts:
            raise TranslitDataError(f"dictionary mismatch: {conversion} records dict.txt sha256 {theirs[:12]}..., "
                                    f"the data's {data_dict} differs; {fix}")
        return
    theirs, ours = record.get("sentencepiece_sha256"), pairing.get("sentencepiece_sha256")
    if isinstance(theirs, str) and isinstance(ours, str):
        if theirs != ours:
            raise TranslitDataError(
                f"vocabulary mismatch: {conversion} records sentencepiece sha256 {theirs[:12]}... but "
                f"{fingerprint.pairing_path(data)} records {ours[:12]}... (the data was encoded with another "
                f"model's sentencepiece and dict.txt); {fix}"
            )
        return
    logger.warning(
        "cannot verify that %s has the data's vocabulary: no dict.txt next to it%s; only the embedding size (%s "
        "rows) matches %s + <mask>; %s",
        path, " and its conversion.json records no fingerprint comparable with the data's" if record else
        " nor a conversion.json", rows if rows is not None else "?", data_dict,
        "put the model's dict.txt next to the checkpoint to check it",
    )


def recorded_data_identity(path: str) -> dict | None:
    """The data identity a checkpoint records (``task_state["translit_data"]``), or None; raises if unreadable."""
    return (map_checkpoint(path).get("task_state") or {}).get(fingerprint.IDENTITY_KEY)
