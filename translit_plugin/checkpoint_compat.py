"""Load fairseq checkpoints on torch >= 2.6 without switching weights-only loading off.

torch >= 2.6 unpickles with ``weights_only=True`` by default and refuses every global it does not know; fairseq's
``checkpoint_utils`` calls ``torch.load`` without ``weights_only``, so ``--restore-file`` and hub loading fail on
``argparse.Namespace``.  Instead of ``TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD=1`` (which makes every ``torch.load`` in the
process a full unpickler), we allow-list exactly the plain-data classes that fairseq writes into its checkpoints:
``argparse.Namespace`` (legacy args), the OmegaConf containers of ``cfg``, the numpy scalar/dtype types that
fairseq's meters and data iterators store, and the index record (``_TensorPlaceholder``) with which multi-process
runs broadcast a loaded checkpoint between ranks.  None of them runs code on unpickling.

Trust model: a checkpoint from an unknown source that needs *other* globals still fails to load, with torch's error
naming the global.  Loading such a file with ``weights_only=False`` executes arbitrary code: only do it for files you
would run as a program.
"""

from __future__ import annotations

import argparse
import collections
import contextlib
import logging
import os
import typing
from collections.abc import Iterator
from pathlib import Path

logger = logging.getLogger(__name__)

_INSTALLED = False


def fairseq_checkpoint_globals() -> list:
    """The classes (plain data, no code) that fairseq checkpoints pickle."""
    import numpy as np
    from omegaconf import DictConfig, ListConfig
    from omegaconf.base import ContainerMetadata, Metadata
    from omegaconf.nodes import AnyNode, BooleanNode, EnumNode, FloatNode, IntegerNode, StringNode

    allowed: list = [
        argparse.Namespace,
        collections.defaultdict,
        collections.OrderedDict,
        typing.Any,
        dict,
        list,
        int,
        float,
        str,
        bool,
        DictConfig,
        ListConfig,
        ContainerMetadata,
        Metadata,
        AnyNode,
        BooleanNode,
        EnumNode,
        FloatNode,
        IntegerNode,
        StringNode,
        np.dtype,
        np.ndarray,
        np.core.multiarray.scalar if hasattr(np, "core") else np._core.multiarray.scalar,
        np._core.multiarray._reconstruct,
    ]
    # multi-process runs broadcast the loaded state between ranks with tensors swapped for this index record
    from fairseq.distributed.utils import _TensorPlaceholder

    allowed.append(_TensorPlaceholder)
    # numpy >= 1.25 pickles dtypes by their concrete class (numpy.dtypes.Float64DType, ...)
    allowed += [getattr(np.dtypes, n) for n in dir(np.dtypes) if n.endswith("DType")]
    return allowed


def install() -> None:
    """Allow-list the fairseq checkpoint globals for ``torch.load(weights_only=True)`` (idempotent)."""
    global _INSTALLED
    if _INSTALLED:
        return
    import torch

    if hasattr(torch.serialization, "add_safe_globals"):
        torch.serialization.add_safe_globals(fairseq_checkpoint_globals())
    _INSTALLED = True


def load_fairseq_checkpoint(path: str | os.PathLike) -> dict:
    """``checkpoint_utils.load_checkpoint_to_cpu`` (fairseq's reading, config upgrade included) with the allow-list
    installed; a missing file is a ``FileNotFoundError`` naming it."""
    from fairseq import checkpoint_utils

    install()
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint not found: {path}")
    with unreadable_as_error(path):
        return checkpoint_utils.load_checkpoint_to_cpu(str(path))


def map_checkpoint(path: str | os.PathLike) -> dict:
    """A fairseq checkpoint's raw contents with the tensors memory-mapped (read only when touched), for a quick look
    at its config or one tensor's shape; weights-only loading with the allow-list installed."""
    import torch

    install()
    with unreadable_as_error(path):
        return torch.load(path, map_location="cpu", mmap=True)


class CheckpointReadError(ValueError):
    """A checkpoint file that cannot be read (truncated, not a torch file, or pickling globals outside the
    allow-list); the message names the file (``translit-ppa``: exit 2, one line)."""


@contextlib.contextmanager
def unreadable_as_error(path: str | os.PathLike) -> Iterator[None]:
    """Turn torch's and pickle's errors for an unreadable file into one :class:`CheckpointReadError` naming it
    (torch's first line kept: for a refused global it names the global)."""
    import pickle
    import zipfile

    try:
        yield
    except (RuntimeError, EOFError, pickle.UnpicklingError, zipfile.BadZipFile) as e:
        why = " ".join(str(e).split()).split(". ")[0]  # torch adds paragraphs of advice after the first sentence
        raise CheckpointReadError(
            f"cannot read checkpoint {path} ({type(e).__name__}: {why}); it is truncated, not a fairseq checkpoint, "
            "or needs classes outside the allow-list: copy it again or save it again"
        ) from e
