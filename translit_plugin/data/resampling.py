"""Language resampling of the training pairs (``--lang-sampling-temperature``): a new weighted draw each epoch."""

from __future__ import annotations

import logging
import os

import numpy as np
from fairseq.data import FairseqDataset
from fairseq.data.resampling_dataset import ResamplingDataset

from translit_plugin.data.errors import MissingDataError
from translit_plugin.data.pair_dataset import temperature_sampling_weights

logger = logging.getLogger(__name__)


class LanguageResamplingDataset(ResamplingDataset):
    """fairseq's ``ResamplingDataset`` (a new weighted draw of pairs each epoch), made usable by fairseq's trainer.

    The base class stores its ``batch_by_size`` flag in an attribute of that name, which hides
    ``FairseqDataset.batch_by_size()``: fairseq's ``get_batch_iterator`` then calls a bool (``TypeError: 'bool' object
    is not callable``).  Here the flag is ``sort_by_length``, batching runs over the resampled indices (the base
    class would forward them to the wrapped dataset as if they were its own), and ``ordered_indices`` follows the
    task's ``--batch-order``: a permutation (``random``) or sorted by total length.
    """

    def __init__(self, dataset, weights, seed: int = 0, epoch: int = 1, sort_by_length: bool = False) -> None:
        super().__init__(dataset, weights=weights, replace=True, seed=seed, epoch=epoch)
        del self.batch_by_size  # the base class's flag; the method of that name is FairseqDataset's again
        self.sort_by_length = sort_by_length

    def ordered_indices(self) -> np.ndarray:
        """Called by fairseq under ``numpy_seed(seed + epoch)``: reproducible."""
        order = np.random.permutation(len(self))
        if not self.sort_by_length:
            return order
        return order[np.argsort(self.num_tokens_vec(order), kind="stable")]

    def batch_by_size(self, indices, max_tokens=None, max_sentences=None, required_batch_size_multiple=1):
        return FairseqDataset.batch_by_size(self, indices, max_tokens=max_tokens, max_sentences=max_sentences,
                                            required_batch_size_multiple=required_batch_size_multiple)

    def num_tokens_vec(self, indices: np.ndarray) -> np.ndarray:
        return self.dataset.num_tokens_vec(self._cur_indices.array[indices])

    def filter_indices_by_size(self, indices: np.ndarray, max_sizes):
        return indices, []


def resample_languages(dataset, lang: np.ndarray | None, temperature: float, *, data: str, seed: int, epoch: int,
                       sort_by_length: bool, lang_names: list[str] | None) -> LanguageResamplingDataset:
    """``dataset`` drawn anew each epoch so language k has probability ~ (n_k/N)^(1/T); ``data`` names the
    data-bin in the error for missing language ids."""
    if lang is None:
        raise MissingDataError(
            f"--lang-sampling-temperature {temperature} needs per-pair language ids "
            f"({os.path.join(data, 'train.lang.npy')}), written by `translit-ppa prepare` or "
            "`translit-ppa encode` (directory inputs or --lang); or use --lang-sampling-temperature 1"
        )
    weights, q = temperature_sampling_weights(lang, temperature)
    names = lang_names or [str(i) for i in range(max(q) + 1)]
    logger.info("language sampling (T=%g): %s", temperature,
                ", ".join(f"{names[k]}={p:.3f}" for k, p in sorted(q.items())))
    return LanguageResamplingDataset(dataset, weights=weights, seed=seed, epoch=epoch, sort_by_length=sort_by_length)
