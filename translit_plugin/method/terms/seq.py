"""SEQ: sentence-level contrast between a sentence and its transliteration.

Sentence vectors from layer ``--seq-layer`` of the *masked* original and Latin inputs (the passes the MLM terms use),
pooled in float32, compared by :func:`seq_contrastive_loss` (the reference code's 2N x 2N NT-Xent, or the paper's
cross-script formula).  Logs ``seq_loss``, ``seq_share`` (the share of the global batch this worker's ``seq_loss``
stands for), ``seq_correct`` and ``seq_count``; reported as ``loss_seq`` and ``seq_acc`` (share of pairs whose original
retrieves its own Latin side in the batch, the gathered batch when gathering).
"""

from __future__ import annotations

import functools
import logging
from dataclasses import dataclass, field
from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor

from translit_plugin.core.names import CLS, DEFAULT_LAYER, LATN, MEAN_NO_SPECIAL, ORIG
from translit_plugin.method.gather import gather_vectors
from translit_plugin.method.pooling import VectorRequest
from translit_plugin.method.terms.base import Metric, Step, StreamNeeds, Term, TermSetup, logged_total

logger = logging.getLogger(__name__)

#: The reference code multiplies the mean NT-Xent loss over the 2N rows by 0.5.
SEQ_REFERENCE_SCALE = 0.5

Similarity = Literal["dot", "cosine"]
Negatives = Literal["all", "cross"]

#: Deprecated name of :data:`MEAN_NO_SPECIAL` for ``--seq-pooling`` (older command lines and configs).
MEAN_ALIAS = "mean"


def seq_contrastive_loss(
    orig: Tensor,
    latn: Tensor,
    *,
    temperature: float = 1.0,
    similarity: Similarity = "dot",
    negatives: Negatives = "all",
    rows: slice | None = None,
) -> Tensor:
    """SEQ loss between the sentence vectors of N (original, Latin) pairs, in float32.

    ``negatives="all"`` is the reference code's NT-Xent form: the 2N vectors ``[o_1, l_1, o_2, l_2, ...]`` form
    ``S = G G^T / tau`` with the diagonal excluded; row ``o_i`` must pick ``l_i`` and row ``l_i`` must pick ``o_i``, so
    the other sentences of *both* scripts are negatives.  ``negatives="cross"`` is the paper's formula: ``o_i`` against
    all ``l_j`` and ``l_i`` against all ``o_j``.  Either way the loss is ``SEQ_REFERENCE_SCALE`` times the mean
    cross-entropy over the 2N rows.

    Args:
        orig, latn: ``(N, C)`` vectors; row ``i`` of both is pair ``i``.  In multi-worker training these are the
            gathered global batch.
        temperature: ``tau`` (reference: 1).
        similarity: ``"dot"`` (reference) or ``"cosine"`` (reference option ``use_cosine``).
        negatives: ``"all"`` or ``"cross"`` as above.
        rows: compute only the rows of these pairs (both the ``o_i`` and ``l_i`` rows), still against all N pairs and
            still normalised by the full 2N, so the values over disjoint ``rows`` add up to the full loss.  Workers
            use it to compute only their own pairs' rows of the global loss.

    Returns:
        scalar float32 tensor.
    """
    if orig.shape != latn.shape or orig.dim() != 2:
        raise ValueError(f"orig {tuple(orig.shape)} and latn {tuple(latn.shape)} must both be N x C")
    if temperature <= 0:
        raise ValueError(f"temperature must be > 0, got {temperature}")
    n = orig.shape[0]
    orig, latn = orig.float(), latn.float()
    if similarity == "cosine":
        orig, latn = F.normalize(orig, dim=-1), F.normalize(latn, dim=-1)
    elif similarity != "dot":
        raise ValueError(f"unknown similarity {similarity!r} (expected 'dot' or 'cosine')")
    sel = torch.arange(n, device=orig.device)[rows if rows is not None else slice(None)]  # (n_rows,)

    if negatives == "all":
        g = torch.stack([orig, latn], dim=1).reshape(2 * n, -1)  # (2N, C): [o_1, l_1, o_2, l_2, ...]
        row_ids = torch.stack([2 * sel, 2 * sel + 1], dim=1).reshape(-1)  # (2 n_rows,)
        scores = g[row_ids] @ g.t() / temperature  # (2 n_rows, 2N)
        self_sim = torch.zeros_like(scores, dtype=torch.bool)
        self_sim[torch.arange(len(row_ids), device=orig.device), row_ids] = True
        scores = scores.masked_fill(self_sim, float("-inf"))
        targets = row_ids ^ 1  # partner: 2i <-> 2i + 1
        row_losses = F.cross_entropy(scores, targets, reduction="sum")
    elif negatives == "cross":
        o2l = orig[sel] @ latn.t() / temperature  # (n_rows, N)
        l2o = latn[sel] @ orig.t() / temperature  # (n_rows, N)
        row_losses = F.cross_entropy(o2l, sel, reduction="sum") + F.cross_entropy(l2o, sel, reduction="sum")
    else:
        raise ValueError(f"unknown negatives {negatives!r} (expected 'all' or 'cross')")
    return row_losses / (2 * n) * SEQ_REFERENCE_SCALE


@torch.no_grad()
def retrieval_correct(
    orig: Tensor, latn: Tensor, *, similarity: Similarity = "dot", rows: slice | None = None
) -> Tensor:
    """Number of pairs (among ``rows``) whose original vector retrieves its own Latin vector among all N (top-1).

    Args:
        orig, latn: ``(N, C)``; row ``i`` of both is pair ``i``.
    Returns:
        scalar long tensor.
    """
    orig, latn = orig.float(), latn.float()
    if similarity == "cosine":
        orig, latn = F.normalize(orig, dim=-1), F.normalize(latn, dim=-1)
    sel = torch.arange(orig.shape[0], device=orig.device)[rows if rows is not None else slice(None)]
    return (orig[sel] @ latn.t()).argmax(dim=-1).eq(sel).sum()


@functools.cache
def _warn_mean_alias() -> None:
    logger.warning("--seq-pooling %s is deprecated: it means %s (the mean over content tokens, without <s> and </s>)",
                   MEAN_ALIAS, MEAN_NO_SPECIAL)  # fmt: skip


def seq_pooling(name: str) -> str:
    """The SEQ pooling ``name`` stands for: :data:`MEAN_NO_SPECIAL` or :data:`CLS` (``mean``: deprecated alias of
    :data:`MEAN_NO_SPECIAL`, warned about once per process)."""
    if name == MEAN_ALIAS:
        _warn_mean_alias()
        return MEAN_NO_SPECIAL
    if name not in (MEAN_NO_SPECIAL, CLS):
        raise ValueError(f"unknown --seq-pooling {name!r} (expected {MEAN_NO_SPECIAL!r} or {CLS!r})")
    return name


@dataclass
class SeqOptions:
    seq_weight: float = field(default=1.0, metadata={"help": "weight of the sentence-level contrastive loss (0 = off)"})
    seq_layer: int = field(
        default=DEFAULT_LAYER,
        metadata={"help": f"SEQ sentence vectors from this layer's output (0 = embeddings; paper: {DEFAULT_LAYER})"},
    )
    seq_pooling: str = field(
        default=MEAN_NO_SPECIAL,
        metadata={
            "help": f"'{MEAN_NO_SPECIAL}': mean over the tokens other than <s>, </s>, padding (reference); '{CLS}': "
            f"the <s> vector; '{MEAN_ALIAS}': deprecated name of '{MEAN_NO_SPECIAL}'",
            "choices": (MEAN_NO_SPECIAL, CLS, MEAN_ALIAS),
        },
    )
    seq_similarity: str = field(
        default="dot",
        metadata={"help": "'dot' (reference) or 'cosine' (reference option use_cosine)", "choices": ("dot", "cosine")},
    )
    seq_temperature: float = field(default=1.0, metadata={"help": "softmax temperature of SEQ (reference: 1)"})
    seq_negatives: str = field(
        default="all",
        metadata={
            "help": "'all': reference 2N x 2N NT-Xent (same-script sentences are negatives too); 'cross': only the "
            "other script's sentences (the paper's formula)",
            "choices": ("all", "cross"),
        },
    )


class SeqTerm(Term):
    """The SEQ term (see the module docstring)."""

    name = "seq"
    options = SeqOptions
    weight_option = "seq_weight"

    def __init__(self, cfg, setup: TermSetup) -> None:
        super().__init__(cfg, setup)
        if cfg.seq_temperature <= 0:
            raise ValueError(f"--seq-temperature must be > 0, got {cfg.seq_temperature}")
        self.request = VectorRequest(int(cfg.seq_layer), seq_pooling(str(cfg.seq_pooling)), "--seq-layer")
        self.similarity = str(cfg.seq_similarity)
        self.temperature = cfg.seq_temperature
        self.negatives = str(cfg.seq_negatives)
        self._warned_small_batch = False

    def needs(self) -> dict[str, StreamNeeds]:
        return {side: StreamNeeds(vectors={self.name: self.request}) for side in (ORIG, LATN)}

    def compute(self, step: Step) -> tuple[Tensor, dict] | None:
        o_vec, l_vec = step.vectors[ORIG][self.name], step.vectors[LATN][self.name]  # N x C each
        both, rows = gather_vectors(torch.cat([o_vec, l_vec], dim=1), step.workers)  # one collective for both sides
        o_all, l_all = both.split(o_vec.shape[1], dim=1)
        if o_all.shape[0] < 2:
            self._warn_small_batch(o_all.shape[0])
            return None
        # exact: this worker's rows of the global loss (the rows of all workers add up to it);
        # reference / local: the whole (gathered / local) loss on every worker, as the reference code does.
        exact = step.workers.gather == "exact"
        loss = seq_contrastive_loss(o_all, l_all, temperature=self.temperature, similarity=self.similarity,
                                    negatives=self.negatives, rows=rows if exact else None)  # fmt: skip
        share = step.n_local / max(o_all.shape[0], 1)
        logging = {
            "seq_loss": loss.detach() if exact else loss.detach() * share,
            "seq_share": share if step.workers.world > 1 and step.workers.gather != "local" else 1.0,
            "seq_correct": retrieval_correct(o_all.detach(), l_all.detach(), similarity=self.similarity, rows=rows),
            "seq_count": step.n_local,
        }
        return loss, logging

    @classmethod
    def reduce(cls, logs: list[dict]) -> list[Metric]:
        if not any("seq_loss" in log for log in logs):
            return []
        share, count = logged_total(logs, "seq_share"), logged_total(logs, "seq_count")
        return [
            ("loss_seq", logged_total(logs, "seq_loss") / max(share, 1e-8), share),
            ("seq_acc", logged_total(logs, "seq_correct") / max(count, 1.0), count),
        ]

    def _warn_small_batch(self, n: int) -> None:
        if not self._warned_small_batch:
            logger.warning(
                "SEQ skipped on a batch of %d pair(s): a contrastive loss needs at least 2 pairs to contrast (loss 0, "
                "accuracy 1 otherwise); use --batch-size >= 2 (the paper: 16 per GPU)", n
            )  # fmt: skip
            self._warned_small_batch = True
