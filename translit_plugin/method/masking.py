"""MLM masking of one sequence, which tokens of a batch are content (not ``<s>``, ``</s>`` or padding), and the MLM
cross-entropy over the masked (selected) positions.

:func:`mask_tokens` masks the way the reference code (HF ``DataCollatorForLanguageModeling``) does: each maskable
token is selected with probability 0.15 (Bernoulli); of the selected, 80% become ``<mask>``, 10% a random token and
10% stay unchanged.
"""

from __future__ import annotations

from typing import Literal, NamedTuple

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

MaskSampling = Literal["bernoulli", "exact_count"]


class SpecialIds(NamedTuple):
    """The ids that are not content: ``<s>``, ``</s>`` and padding (a tuple, so it can be passed as ``special_ids``)."""

    bos: int
    eos: int
    pad: int


def mask_tokens(
    tokens: np.ndarray,
    rng: np.random.Generator,
    *,
    maskable: np.ndarray,
    mask_idx: int,
    random_low: int,
    random_high: int,
    mask_prob: float = 0.15,
    leave_unmasked_prob: float = 0.1,
    random_token_prob: float = 0.1,
    sampling: MaskSampling = "bernoulli",
) -> tuple[np.ndarray, np.ndarray]:
    """Mask one sequence for MLM the way the reference code (HF ``DataCollatorForLanguageModeling``) does.

    Args:
        tokens: ``(T,)`` int token ids of one sequence (``<s> ... </s>``).
        rng: the generator; callers seed it from ``(seed, epoch, index, stream)`` so masks are reproducible.
        maskable: ``(T,)`` bool, False where a token may never be selected (``<s>``, ``</s>``, padding).
        mask_idx: id of ``<mask>``.
        random_low, random_high: random replacements are drawn uniformly from ``[random_low, random_high)``.
            The reference draws from the whole vocabulary; in fairseq a drawn ``<pad>`` would also change the
            attention mask, so callers pass the range of non-special ids (the difference affects ~1e-5 of draws).
        mask_prob: selection probability of each maskable token.
        leave_unmasked_prob: share of selected tokens left unchanged (still predicted).
        random_token_prob: share of selected tokens replaced by a random id (still predicted).
        sampling: ``"bernoulli"`` (reference: independent draws, so a short sentence may get no selected token) or
            ``"exact_count"`` (fairseq ``MaskTokensDataset`` style: ``int(mask_prob * n + U(0,1))`` of the ``n``
            maskable tokens, chosen without replacement; unlike fairseq, specials are still never chosen).

    Returns:
        ``(masked, selected)``: ``(T,)`` ids with the replacements applied, and ``(T,)`` bool, True at the positions
        whose original token is a prediction target.
    """
    if tokens.ndim != 1 or maskable.shape != tokens.shape:
        raise ValueError(f"tokens {tokens.shape} and maskable {maskable.shape} must be the same 1-D shape")
    if not 0.0 <= leave_unmasked_prob + random_token_prob <= 1.0:
        raise ValueError("leave_unmasked_prob + random_token_prob must lie in [0, 1]")
    n = tokens.shape[0]
    if sampling == "bernoulli":
        selected = (rng.random(n) < mask_prob) & maskable
    elif sampling == "exact_count":
        candidates = np.flatnonzero(maskable)
        count = min(int(mask_prob * len(candidates) + rng.random()), len(candidates))
        selected = np.zeros(n, dtype=bool)
        selected[rng.choice(candidates, size=count, replace=False)] = True
    else:
        raise ValueError(f"unknown mask sampling {sampling!r} (expected 'bernoulli' or 'exact_count')")

    # One uniform draw per token decides what happens to a selected token: [0, p_mask) -> <mask>,
    # [p_mask, p_mask + p_rand) -> random id, rest unchanged.  Same distribution as HF's two Bernoulli draws.
    action = rng.random(n)
    p_mask = 1.0 - leave_unmasked_prob - random_token_prob
    to_mask = selected & (action < p_mask)
    to_random = selected & (action >= p_mask) & (action < p_mask + random_token_prob)
    masked = tokens.copy()
    masked[to_mask] = mask_idx
    if to_random.any():
        masked[to_random] = rng.integers(random_low, random_high, size=int(to_random.sum()))
    return masked, selected


def content_mask(tokens: Tensor, special_ids: list[int] | tuple[int, ...]) -> Tensor:
    """``(B, T)`` ids -> ``(B, T)`` bool, True where the token is none of ``special_ids`` (``<s>``, ``</s>``, pad)."""
    keep = torch.ones_like(tokens, dtype=torch.bool)
    for idx in special_ids:
        keep &= tokens.ne(idx)
    return keep


def unmasked(stream: dict, pad: int) -> Tensor:
    """The clean ids of a masked stream (``src_tokens``, ``target``): ``target`` holds the original id wherever a
    token was selected for prediction, ``pad`` elsewhere."""
    target = stream["target"]
    return torch.where(target.ne(pad), target, stream["src_tokens"])


def mlm_loss_sum(logits: Tensor, target: Tensor, pad: int) -> tuple[Tensor, Tensor]:
    """Summed float32 cross-entropy of ``M x V`` ``logits`` over the selected positions of ``target`` (``B x T``,
    ``pad`` where not selected; row-major like the LM head's selection), and their number."""
    targets = target[target.ne(pad)]  # M
    if logits.shape[0] != targets.shape[0]:
        raise RuntimeError(f"LM head returned {logits.shape[0]} rows for {targets.shape[0]} selected tokens")
    loss = F.cross_entropy(logits.float(), targets, reduction="sum")
    return loss, torch.tensor(float(targets.numel()), device=logits.device)
