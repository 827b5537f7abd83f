"""Sentence vectors from one layer's hidden states.

The poolings are named by whether ``<s>``/``</s>`` count (:mod:`translit_plugin.core.names`):
:data:`MEAN_NO_SPECIAL` averages the content tokens (``<mask>`` included; the SEQ objective's pooling),
:data:`MEAN_WITH_SPECIAL` every non-padding token (the retrieval evaluation's pooling), :data:`CLS` takes ``<s>``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from torch import Tensor

from translit_plugin.core.names import CLS, MEAN_NO_SPECIAL, MEAN_WITH_SPECIAL, POOLINGS
from translit_plugin.method.masking import SpecialIds, content_mask

PoolingMode = Literal["mean", "cls"]


def pool_hidden(hidden: Tensor, mask: Tensor, mode: PoolingMode = "mean") -> Tensor:
    """Sentence vectors in float32: the mean over the tokens ``mask`` selects, or the ``<s>`` vector.

    Args:
        hidden: ``(B, T, C)`` hidden states (batch-major; transpose fairseq's ``T x B x C`` first).
        mask: ``(B, T)`` bool, True at the tokens to average (it decides whether specials count; see
            :func:`sentence_vectors` for the named poolings).
        mode: ``"mean"`` over ``mask`` or ``"cls"`` (the vector at position 0).

    Returns:
        ``(B, C)`` float32.  A row whose mask is empty (an empty sentence) pools to zeros.
    """
    if hidden.dim() != 3 or mask.shape != hidden.shape[:2]:
        raise ValueError(f"hidden {tuple(hidden.shape)} must be B x T x C with mask B x T, got {tuple(mask.shape)}")
    hidden = hidden.float()
    if mode == "cls":
        return hidden[:, 0]
    if mode != "mean":
        raise ValueError(f"unknown pooling {mode!r} (expected 'mean' or 'cls')")
    weights = mask.to(hidden.dtype).unsqueeze(-1)  # B x T x 1
    return (hidden * weights).sum(dim=1) / weights.sum(dim=1).clamp(min=1.0)  # B x C


def sentence_vectors(hidden: Tensor, tokens: Tensor, pooling: str, specials: SpecialIds) -> Tensor:
    """``(B, T, C)`` states of ``(B, T)`` ``tokens`` -> ``(B, C)`` float32 vectors by the named ``pooling``."""
    if pooling == CLS:
        return pool_hidden(hidden, tokens.ne(specials.pad), "cls")
    if pooling == MEAN_WITH_SPECIAL:
        return pool_hidden(hidden, tokens.ne(specials.pad), "mean")
    if pooling == MEAN_NO_SPECIAL:
        return pool_hidden(hidden, content_mask(tokens, specials), "mean")
    raise ValueError(f"unknown pooling {pooling!r}; expected one of {POOLINGS}")


def layer_states(inner_states: list[Tensor], layer: int, flag: str) -> Tensor:
    """``B x T x C`` output of ``layer`` (0 = embeddings) from fairseq's list of ``T x B x C`` states, or a clear
    error naming the ``flag`` that chose the layer."""
    if not 0 <= layer < len(inner_states):
        raise ValueError(
            f"{flag} {layer} but the model has {len(inner_states) - 1} layers (valid: 0..{len(inner_states) - 1}); "
            "the reference uses 8 for 12-layer models"
        )
    return inner_states[layer].transpose(0, 1)  # T x B x C -> B x T x C


@dataclass(frozen=True)
class VectorRequest:
    """Sentence vectors a loss term takes from an encoder pass: ``layer``'s output pooled by ``pooling``; ``flag``
    names the option that chose the layer (for the error when the model has no such layer)."""

    layer: int
    pooling: str
    flag: str

    def pool(self, inner_states: list[Tensor], tokens: Tensor, specials: SpecialIds) -> Tensor:
        """``(B, C)`` float32 vectors of ``tokens`` from a pass's ``inner_states``."""
        return sentence_vectors(layer_states(inner_states, self.layer, self.flag), tokens, self.pooling, specials)
