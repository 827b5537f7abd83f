"""Pure tensor functions behind the post-training objectives: masking, pooling, contrastive loss, gathering.

Everything here is independent of fairseq so it can be tested (and reused) on its own; the task and the criterion
only wire these functions up.  Semantics follow the paper's reference code (Xhelili, Liu, Schütze 2024,
arXiv 2406.19759) as described in ``shared/notes/method-spec.md``:

* :func:`mask_tokens` -- MLM masking of one sequence: each maskable token selected with probability 0.15
  (Bernoulli), of the selected 80% -> ``<mask>``, 10% -> a random token, 10% unchanged.
* :func:`pool_hidden` -- sentence vector from one layer: mean over content tokens (``<s>``, ``</s>`` and padding
  excluded, ``<mask>`` included) or the ``<s>`` ("CLS") vector.
* :func:`seq_contrastive_loss` -- the SEQ objective, in the reference 2N x 2N NT-Xent form (same-script sentences are
  negatives too) or the paper-formula cross-script form, with dot or cosine similarity and a temperature.
* :func:`anchor_loss` -- the anchored alignment term: the trained model's sentence vectors pulled to a frozen copy
  of the start model's vectors of the original-script sentence (mean-squared error as in multilingual knowledge
  distillation, Reimers & Gurevych 2020, cosine distance, or InfoNCE against the teacher's vectors of the batch).
* :func:`all_gather_with_grad` / :func:`all_gather_reference` -- collecting sentence vectors from every worker,
  either with an exact gradient (the default) or with the reference code's gradient (each worker back-propagates
  only through its own vectors, so after averaging the SEQ gradient is ``1/W`` of the single-process one).
"""

from __future__ import annotations

import logging
from typing import Literal

import numpy as np
import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import Tensor

logger = logging.getLogger(__name__)

#: The reference code multiplies the mean NT-Xent loss over the 2N rows by 0.5 (see method-spec.md, "Objectives").
SEQ_REFERENCE_SCALE = 0.5

PoolingMode = Literal["mean", "cls"]
AnchorLoss = Literal["mse", "cosine", "infonce"]
Similarity = Literal["dot", "cosine"]
Negatives = Literal["all", "cross"]
MaskSampling = Literal["bernoulli", "exact_count"]


# ----------------------------------------------------------------------------------------------------------- masking
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


# ----------------------------------------------------------------------------------------------------------- pooling
def content_mask(tokens: Tensor, special_ids: list[int] | tuple[int, ...]) -> Tensor:
    """``(B, T)`` ids -> ``(B, T)`` bool, True where the token is none of ``special_ids`` (``<s>``, ``</s>``, pad)."""
    keep = torch.ones_like(tokens, dtype=torch.bool)
    for idx in special_ids:
        keep &= tokens.ne(idx)
    return keep


def pool_hidden(hidden: Tensor, mask: Tensor, mode: PoolingMode = "mean") -> Tensor:
    """Sentence vectors in float32 from one layer's hidden states.

    Args:
        hidden: ``(B, T, C)`` hidden states (batch-major; transpose fairseq's ``T x B x C`` first).
        mask: ``(B, T)`` bool, True at the tokens to average (content tokens; see :func:`content_mask`).
        mode: ``"mean"`` (reference launch setting) or ``"cls"`` (the ``<s>`` vector at position 0).

    Returns:
        ``(B, C)`` float32.  A row without any content token (an empty sentence) pools to zeros.
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


# -------------------------------------------------------------------------------------------------- contrastive loss
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


def anchor_loss(
    student: Tensor,
    teacher: Tensor,
    *,
    loss: AnchorLoss = "mse",
    temperature: float = 0.05,
    rows: slice | None = None,
    total: int | None = None,
) -> Tensor:
    """Pull the trained model's sentence vectors towards fixed teacher vectors, in float32.

    Row ``i`` of ``student`` belongs with row ``rows.start + i`` of ``teacher`` (its own pair).

    * ``"mse"``: squared error averaged over the C dimensions (``nn.MSELoss`` per row, as in Reimers & Gurevych 2020).
    * ``"cosine"``: ``1 - cos(student_i, teacher_i)``.
    * ``"infonce"``: cross-entropy of ``cos(student_i, teacher_j) / temperature`` over all teacher rows ``j``, target
      ``j = i``: the student's vector must be nearer its own teacher vector than the other pairs' (the teacher's
      vectors, gathered from every worker, are the negatives; they carry no gradient).

    Args:
        student: ``(n, C)`` vectors of this worker's pairs (differentiable).
        teacher: ``(N, C)`` target vectors of every pair (detached; the gathered global batch in multi-worker runs).
        loss: one of the three forms above.
        temperature: InfoNCE temperature (embedding models use 0.01-0.05).
        rows: where this worker's pairs sit in ``teacher`` (default: all of it, ``n == N``).
        total: the normaliser (default ``N``): per-pair losses are summed and divided by it, so the values of all
            workers over disjoint ``rows`` add up to the global mean.
    Returns:
        scalar float32 tensor.
    """
    if student.dim() != 2 or teacher.dim() != 2 or student.shape[1] != teacher.shape[1]:
        raise ValueError(f"student {tuple(student.shape)} and teacher {tuple(teacher.shape)} must be n x C and N x C")
    rows = rows if rows is not None else slice(0, teacher.shape[0])
    idx = torch.arange(teacher.shape[0], device=teacher.device)[rows]  # (n,)
    if idx.numel() != student.shape[0]:
        raise ValueError(f"{student.shape[0]} student rows but rows {rows} selects {idx.numel()} teacher rows")
    student, teacher = student.float(), teacher.detach().float()
    total = teacher.shape[0] if total is None else total
    if loss == "mse":
        per_pair = (student - teacher[idx]).pow(2).mean(dim=-1)
    elif loss == "cosine":
        per_pair = 1.0 - F.cosine_similarity(student, teacher[idx], dim=-1)
    elif loss == "infonce":
        if temperature <= 0:
            raise ValueError(f"temperature must be > 0, got {temperature}")
        scores = F.normalize(student, dim=-1) @ F.normalize(teacher, dim=-1).t() / temperature  # (n, N)
        per_pair = F.cross_entropy(scores, idx, reduction="none")
    else:
        raise ValueError(f"unknown anchor loss {loss!r} (expected 'mse', 'cosine' or 'infonce')")
    return per_pair.sum() / max(total, 1)


def all_gather_no_grad(x: Tensor, group=None) -> tuple[Tensor, slice]:
    """Concatenate ``x`` from every worker without gradient (fixed targets such as teacher vectors).

    Returns ``(gathered, local)`` like :func:`all_gather_with_grad`.
    """
    sizes = _gather_sizes(x.shape[0], x.device, group)
    rank = dist.get_rank(group=group)
    padded = _pad_rows(x.detach(), max(sizes)).contiguous()
    out = [torch.empty_like(padded) for _ in sizes]
    dist.all_gather(out, padded, group=group)
    start = sum(sizes[:rank])
    return torch.cat([o[:n] for o, n in zip(out, sizes)], dim=0), slice(start, start + sizes[rank])


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


# --------------------------------------------------------------------------------------------------------- gathering
class _AllGatherPadded(torch.autograd.Function):
    """All-gather of equally shaped tensors whose backward sends each worker the summed gradient of its own slot.

    Every worker's loss may depend on every slot, so the gradient of the *sum of all workers' losses* w.r.t. this
    worker's input is the all-reduced gradient of its slot.  Written with ``all_reduce`` (which gloo and NCCL both
    support) rather than ``reduce_scatter``; the tensors are sentence vectors, so the extra traffic is negligible.
    """

    @staticmethod
    def forward(ctx, x: Tensor, group) -> Tensor:  # x: (M, C) -> (W, M, C)
        ctx.group = group
        world = dist.get_world_size(group=group)
        out = [torch.empty_like(x) for _ in range(world)]
        dist.all_gather(out, x.contiguous(), group=group)
        return torch.stack(out, dim=0)

    @staticmethod
    def backward(ctx, grad: Tensor):  # grad: (W, M, C) -> (M, C)
        grad = grad.contiguous()
        dist.all_reduce(grad, op=dist.ReduceOp.SUM, group=ctx.group)
        return grad[dist.get_rank(group=ctx.group)], None


def _gather_sizes(n: int, device: torch.device, group) -> list[int]:
    size = torch.tensor([n], dtype=torch.long, device=device)
    sizes = [torch.zeros_like(size) for _ in range(dist.get_world_size(group=group))]
    dist.all_gather(sizes, size, group=group)
    return [int(s.item()) for s in sizes]


def _pad_rows(x: Tensor, rows: int) -> Tensor:
    if x.shape[0] == rows:
        return x
    return torch.cat([x, x.new_zeros((rows - x.shape[0],) + tuple(x.shape[1:]))], dim=0)


def all_gather_with_grad(x: Tensor, group=None) -> tuple[Tensor, slice]:
    """Concatenate ``x`` from every worker, differentiably (the exact multi-worker gradient).

    Workers may hold different numbers of rows.  The backward pass gives each worker the gradient of the sum of all
    workers' losses w.r.t. its own rows, so when each worker's loss covers its own rows of a global objective
    (``seq_contrastive_loss(..., rows=local)``), summing the workers' parameter gradients yields exactly the
    single-process gradient of the global batch.

    Args:
        x: ``(N_local, C)``.
        group: process group (``None`` = default).
    Returns:
        ``(gathered, local)``: ``(sum_r N_r, C)`` in rank order, and the slice of this worker's rows in it.
    """
    sizes = _gather_sizes(x.shape[0], x.device, group)
    rank = dist.get_rank(group=group)
    stacked = _AllGatherPadded.apply(_pad_rows(x, max(sizes)), group)  # (W, max N, C)
    gathered = torch.cat([stacked[r, :s] for r, s in enumerate(sizes)], dim=0)
    start = sum(sizes[:rank])
    return gathered, slice(start, start + sizes[rank])


def all_gather_reference(x: Tensor, group=None) -> tuple[Tensor, slice]:
    """Concatenate ``x`` from every worker the way the reference code does: no gradient through other workers' rows.

    The gathered copy is detached and this worker's own (differentiable) ``x`` is put back in its slot, so each worker
    back-propagates the *whole* global loss through its own rows only.  After averaging over ``W`` workers the SEQ
    gradient is ``1/W`` of the single-process gradient of the global batch.

    Args / returns: as :func:`all_gather_with_grad`.
    """
    sizes = _gather_sizes(x.shape[0], x.device, group)
    rank = dist.get_rank(group=group)
    padded = _pad_rows(x.detach(), max(sizes)).contiguous()
    out = [torch.empty_like(padded) for _ in sizes]
    dist.all_gather(out, padded, group=group)
    parts = [x if r == rank else out[r][:s] for r, s in enumerate(sizes)]
    start = sum(sizes[:rank])
    return torch.cat(parts, dim=0), slice(start, start + sizes[rank])
