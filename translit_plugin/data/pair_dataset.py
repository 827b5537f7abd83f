"""``TranslitPairDataset``: (original, Latin) sentence pairs -> masked original, masked Latin and masked TLM streams.

Input: two line-aligned fairseq datasets (``DATA/orig/<split>`` and ``DATA/latn/<split>``), each line
``pieces + </s>`` as ``fairseq-preprocess`` writes it.  For pair ``i`` the dataset builds, deterministically from
``(seed, epoch, i)``:

* ``orig``: ``<s> o </s>`` truncated to ``max_positions`` (keeping the final ``</s>``, as the HF tokenizer does),
  masked (:func:`translit_plugin.method.masking.mask_tokens`);
* ``latn``: the same for the transliteration;
* ``tlm``: the unmasked sides concatenated in a random order, ``<s> A </s> B </s>`` (the reference drops B's ``<s>``),
  cut to ``max_positions``, then masked independently of the two single streams.  Positions continue through B by
  default; with ``tlm_reset_positions`` B's tokens get the positions they would have in B alone (``<s>`` at
  ``padding_idx + 1``, so B's first piece at ``padding_idx + 2``).

Each stream is masked with its own draws, so the three streams of one pair are independent maskings, as in the
reference.  Batching sizes account for all three streams (``num_tokens = len(orig) + len(latn) + len(tlm)``).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np
import torch
from fairseq.data import FairseqDataset, data_utils

from translit_plugin.core.names import LATN, ORIG, TLM, truncate_keep_eos
from translit_plugin.method.masking import mask_tokens

logger = logging.getLogger(__name__)

STREAMS = (ORIG, LATN, TLM)
_CHUNK = 1 << 16  # pairs per chunk when building the per-pair size array (small temporaries)


@dataclass
class MaskingConfig:
    """MLM masking settings shared by the three streams (see :func:`translit_plugin.method.masking.mask_tokens`)."""

    mask_prob: float = 0.15
    leave_unmasked_prob: float = 0.1
    random_token_prob: float = 0.1
    sampling: str = "bernoulli"


class TranslitPairDataset(FairseqDataset):
    """Paired original/Latin sentences with per-pair masking and TLM concatenation (see module docstring).

    Args:
        orig, latn: line-aligned datasets of 1-D LongTensors ``pieces + </s>`` with a ``sizes`` array.
        dictionary: the fairseq dictionary (``<mask>`` already added).
        mask_idx: id of ``<mask>``.
        seed: base seed; item ``i`` of epoch ``e`` uses ``np.random.default_rng([seed, e, i])``.
        max_positions: longest sequence the model takes (``<s>`` and ``</s>`` included).
        masking: :class:`MaskingConfig`.
        tlm_order: ``"random"`` (reference: a fair coin per pair and epoch), ``"orig_first"`` or ``"latn_first"``.
        tlm_reset_positions: give B its own positions (reference ablation) instead of continuing them.
        lang: optional ``(N,)`` int array of per-pair language ids (returned in the batch as ``lang``).
        shuffle: shuffle before sorting by length in :meth:`ordered_indices` (training; ``batch_order="length"``).
        batch_order: ``"random"`` (reference: uniformly random batches, drawn anew each epoch) or ``"length"``
            (sorted by total length: less padding, homogeneous batches).
        name: for messages (e.g. ``"train"``).
    """

    def __init__(
        self,
        orig: FairseqDataset,
        latn: FairseqDataset,
        dictionary,
        mask_idx: int,
        seed: int,
        max_positions: int,
        masking: MaskingConfig | None = None,
        tlm_order: str = "random",
        tlm_reset_positions: bool = False,
        lang: np.ndarray | None = None,
        shuffle: bool = True,
        batch_order: str = "random",
        name: str = "",
    ) -> None:
        super().__init__()
        if len(orig) != len(latn):
            raise ValueError(
                f"{name}: the original side has {len(orig)} sentences but the Latin side has {len(latn)}; the two "
                "binaries must be line-aligned (re-run `translit-ppa prepare` so both are written together)"
            )
        if lang is not None and len(lang) != len(orig):
            raise ValueError(f"{name}: {len(lang)} language ids for {len(orig)} pairs; they must match line by line")
        if batch_order not in ("random", "length"):
            raise ValueError(f"unknown batch_order {batch_order!r} (random or length)")
        if tlm_order not in ("random", "orig_first", "latn_first"):
            raise ValueError(f"unknown tlm_order {tlm_order!r}")
        if max_positions < 3:
            raise ValueError(f"max_positions must be >= 3 (<s> x </s>), got {max_positions}")
        self.orig, self.latn, self.lang = orig, latn, lang
        self.dictionary = dictionary
        self.bos, self.eos, self.pad = dictionary.bos(), dictionary.eos(), dictionary.pad()
        self.mask_idx = mask_idx
        self.seed = seed
        self.max_positions = max_positions
        self.masking = masking or MaskingConfig()
        self.tlm_order = tlm_order
        self.tlm_reset_positions = tlm_reset_positions
        self.shuffle = shuffle
        self.batch_order = batch_order
        self.epoch = 1
        # Random replacements come from the non-special ids: a drawn <pad> would change fairseq's attention mask.
        self.random_low = dictionary.nspecial
        self.random_high = len(dictionary)

        # Per-pair batching sizes, built in chunks into the narrowest unsigned dtype (uint16 while 3 * max_positions
        # fits): at the paper's 15.8M pairs per group this is 32 MB instead of five int64 arrays (0.6 GB).  The stream
        # lengths themselves are derived on demand from the two sides' (memory-mapped) size arrays.
        n = len(orig)
        self._size_dtype = np.uint16 if 3 * max_positions <= np.iinfo(np.uint16).max else np.uint32
        self._num_tokens = np.empty(n, dtype=self._size_dtype)
        for start in range(0, n, _CHUNK):
            o, l_, t = self._lengths(slice(start, start + _CHUNK))
            self._num_tokens[start: start + _CHUNK] = o + l_ + t

    def _lengths(self, index) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Stream lengths (``orig``, ``latn``, ``tlm``; ``<s>`` included, cut to ``max_positions``) of ``index`` (a
        slice or an index array) as int32 arrays."""
        o = np.minimum(np.asarray(self.orig.sizes[index], dtype=np.int32) + 1, self.max_positions)
        l_ = np.minimum(np.asarray(self.latn.sizes[index], dtype=np.int32) + 1, self.max_positions)
        return o, l_, np.minimum(o + l_ - 1, self.max_positions)

    def stream_lengths(self, indices: np.ndarray | None = None) -> dict[str, np.ndarray]:
        """Lengths of the three streams of ``indices`` (default: every pair), ``<s>``/``</s>`` included."""
        o, l_, t = self._lengths(slice(None) if indices is None else np.asarray(indices))
        return {ORIG: o, LATN: l_, TLM: t}

    # -------------------------------------------------------------------------------------------- fairseq plumbing
    @property
    def sizes(self) -> np.ndarray:
        """Total tokens of the three streams per pair (what batching counts); narrow unsigned dtype."""
        return self._num_tokens

    def __len__(self) -> int:
        return len(self.orig)

    def num_tokens(self, index: int) -> int:
        return int(self._num_tokens[index])

    def num_tokens_vec(self, indices: np.ndarray) -> np.ndarray:
        return self._num_tokens[indices]  # narrow dtype; fairseq's batch_by_size casts it to int64 itself

    def size(self, index: int) -> int:
        """Longest stream of pair ``index``: always TLM, since ``min(o + l - 1, P) >= max(o, l)`` for ``l, o >= 1``."""
        return int(self._lengths([index])[2][0])

    def filter_indices_by_size(self, indices: np.ndarray, max_sizes) -> tuple[np.ndarray, list]:
        """Drop pairs whose longest stream exceeds ``max_sizes``: none when ``max_sizes >= max_positions``, since every
        stream is cut to ``max_positions`` at load (the common case; then no per-pair array is allocated)."""
        if not isinstance(max_sizes, (int, float, np.integer)) or max_sizes >= self.max_positions:
            return indices, []
        too_long = self._lengths(indices)[2] > max_sizes  # the TLM stream is the longest (see size)
        return indices[~too_long], indices[too_long].tolist()

    def ordered_indices(self) -> np.ndarray:
        """The order fairseq cuts into batches (called under ``numpy_seed(seed + epoch)``).

        ``random`` (default): a permutation, so every batch is a uniform draw of pairs, as in the reference code's
        Trainer; a fresh one every epoch, and a seeded one for validation too (the data-bin lists languages one after
        the other, so file order would give monolingual validation batches).  ``length``: shuffled (training), then
        stably sorted by total length: little padding, but every in-batch negative of SEQ then has the positive's
        length, and on the demo the retrieval SEQ trains for ends far lower (``benchmarks/RESULTS.md``).
        """
        if self.batch_order == "random":
            return np.random.permutation(len(self))
        order = np.random.permutation(len(self)) if self.shuffle else np.arange(len(self))
        by_length = np.argsort(self._num_tokens[order], kind="stable")  # radix sort on the narrow sizes
        # order[by_length], gathered in place ('clip' does no overlap buffering; each slot is read before written)
        return np.take(order, by_length, out=by_length, mode="clip")

    @property
    def can_reuse_epoch_itr_across_epochs(self) -> bool:
        # random order: new batches every epoch (fairseq rebuilds them when the iterator is not reused); length
        # order: the batches do not change with the epoch (masks do, through set_epoch)
        return self.batch_order == "length"

    def set_epoch(self, epoch: int) -> None:
        super().set_epoch(epoch)
        self.epoch = epoch

    @property
    def supports_prefetch(self) -> bool:
        return False

    # ------------------------------------------------------------------------------------------------------ items
    def _with_bos(self, tokens: torch.Tensor) -> np.ndarray:
        """``pieces + </s>`` -> ``<s> pieces </s>`` cut to ``max_positions`` keeping the final ``</s>``."""
        return truncate_keep_eos(np.concatenate([[self.bos], tokens.numpy().astype(np.int64)]), self.max_positions)

    def _mask(self, ids: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        maskable = (ids != self.bos) & (ids != self.eos) & (ids != self.pad)
        m = self.masking
        masked, selected = mask_tokens(
            ids,
            rng,
            maskable=maskable,
            mask_idx=self.mask_idx,
            random_low=self.random_low,
            random_high=self.random_high,
            mask_prob=m.mask_prob,
            leave_unmasked_prob=m.leave_unmasked_prob,
            random_token_prob=m.random_token_prob,
            sampling=m.sampling,
        )
        target = np.where(selected, ids, self.pad)
        return masked, target

    def __getitem__(self, index: int) -> dict:
        rng = np.random.default_rng([self.seed, self.epoch, index])
        orig = self._with_bos(self.orig[index])
        latn = self._with_bos(self.latn[index])
        orig_in, orig_tgt = self._mask(orig, rng)
        latn_in, latn_tgt = self._mask(latn, rng)

        coin = rng.random()  # always drawn, so the other draws do not depend on tlm_order
        latn_first = self.tlm_order == "latn_first" or (self.tlm_order == "random" and coin < 0.5)
        first, second = (latn, orig) if latn_first else (orig, latn)
        tlm = np.concatenate([first, second[1:]])[: self.max_positions]  # reference: ids_A + ids_B[1:], then cut
        tlm_in, tlm_tgt = self._mask(tlm, rng)

        item = {
            "id": index,
            ORIG: torch.from_numpy(orig_in),
            f"{ORIG}_target": torch.from_numpy(orig_tgt),
            LATN: torch.from_numpy(latn_in),
            f"{LATN}_target": torch.from_numpy(latn_tgt),
            TLM: torch.from_numpy(tlm_in),
            f"{TLM}_target": torch.from_numpy(tlm_tgt),
            "tlm_latn_first": latn_first,
        }
        if self.tlm_reset_positions:
            start = self.pad + 1  # fairseq convention: the first real token has position padding_idx + 1
            pos_a = start + np.arange(len(first))
            pos_b = start + 1 + np.arange(len(second) - 1)  # B without its <s>: positions from padding_idx + 2
            item["tlm_positions"] = torch.from_numpy(np.concatenate([pos_a, pos_b])[: self.max_positions])
        if self.lang is not None:
            item["lang"] = int(self.lang[index])
        return item

    def collater(self, samples: list[dict]) -> dict:
        """Pad each stream; returns fairseq's sample layout plus one sub-dict per stream.

        ``sample[s]`` for ``s`` in ``orig``, ``latn``, ``tlm``: ``src_tokens`` (B x T masked input), ``target``
        (B x T, the original id where selected, padding elsewhere), ``src_lengths`` (B,), and for ``tlm`` with reset
        positions ``positions`` (B x T).  ``net_input`` aliases the ``orig`` stream for fairseq's generic code.
        """
        if len(samples) == 0:
            return {}
        batch: dict = {"id": torch.LongTensor([s["id"] for s in samples]), "nsentences": len(samples)}
        ntokens = 0
        for name in STREAMS:
            tokens = [s[name] for s in samples]
            stream = {
                "src_tokens": data_utils.collate_tokens(tokens, self.pad, left_pad=False),
                "target": data_utils.collate_tokens([s[f"{name}_target"] for s in samples], self.pad, left_pad=False),
                "src_lengths": torch.LongTensor([len(t) for t in tokens]),
            }
            if name == TLM and "tlm_positions" in samples[0]:
                # padded positions are never looked at (padding keys are masked, padding rows not pooled)
                stream["positions"] = data_utils.collate_tokens(
                    [s["tlm_positions"] for s in samples], self.pad, left_pad=False
                )
            ntokens += int(stream["src_lengths"].sum())
            batch[name] = stream
        batch["tlm_latn_first"] = torch.BoolTensor([s["tlm_latn_first"] for s in samples])
        if "lang" in samples[0]:
            batch["lang"] = torch.LongTensor([s["lang"] for s in samples])
        batch["ntokens"] = ntokens
        batch["net_input"] = {"src_tokens": batch[ORIG]["src_tokens"], "src_lengths": batch[ORIG]["src_lengths"]}
        return batch


def temperature_sampling_weights(lang: np.ndarray, temperature: float) -> tuple[np.ndarray, dict[int, float]]:
    """Per-pair sampling weights that give language ``k`` the probability ``q_k ∝ (n_k / N) ** (1 / temperature)``.

    Args:
        lang: ``(N,)`` language id of every pair.
        temperature: 1 keeps the natural distribution; larger values flatten it towards uniform over languages.
    Returns:
        ``(weights, q)``: ``(N,)`` float64 weights summing to 1 (each pair of language ``k`` gets ``q_k / n_k``) and
        the language distribution ``q`` (id -> probability).
    """
    if temperature <= 0:
        raise ValueError(f"sampling temperature must be > 0, got {temperature}")
    ids, counts = np.unique(lang, return_counts=True)
    p = counts / counts.sum()
    q = p ** (1.0 / temperature)
    q = q / q.sum()
    per_item = dict(zip(ids.tolist(), (q / counts).tolist()))
    weights = np.vectorize(per_item.__getitem__, otypes=[np.float64])(lang) if len(lang) else np.zeros(0)
    return weights, dict(zip(ids.tolist(), q.tolist()))
