"""Collecting sentence vectors from every data-parallel worker.

* :func:`all_gather_with_grad` -- with the exact gradient: summing the workers' gradients gives the single-process
  gradient of the global batch (the default, ``--seq-gather exact``).
* :func:`all_gather_reference` -- the reference code's gathering: each worker back-propagates only through its own
  vectors, so after averaging the SEQ gradient is ``1/W`` of the single-process one (``--seq-gather reference``).
* :func:`all_gather_no_grad` -- fixed targets (the anchored term's teacher vectors).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

import torch
import torch.distributed as dist
from torch import Tensor

Gather = Literal["exact", "reference", "local"]
GATHERS = ("exact", "reference", "local")


@dataclass(frozen=True)
class Workers:
    """Data parallelism of one step: the process ``group`` (None = default), its size and the gathering mode."""

    group: Any = None
    world: int = 1
    gather: str = "exact"

    @property
    def exact(self) -> bool:
        """True when several workers compute their own shares of one global-batch objective."""
        return self.world > 1 and self.gather == "exact"


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


def gather_vectors(x: Tensor, workers: Workers) -> tuple[Tensor, slice | None]:
    """``x`` (``N_local x C``) gathered as ``workers.gather`` says: ``(all rows, this worker's rows)``; with one worker
    or ``local`` gathering, ``(x, None)``."""
    if workers.world > 1 and workers.gather == "exact":
        return all_gather_with_grad(x, workers.group)
    if workers.world > 1 and workers.gather == "reference":
        return all_gather_reference(x, workers.group)
    return x, None
