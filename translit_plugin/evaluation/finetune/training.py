"""The training loop (AdamW, linear decay, clipping, accumulation, best-epoch selection) and prediction."""


from __future__ import annotations

import logging
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
from torch import nn

from .config import IGNORE, FinetuneConfig
from .features import Feature, _batch
from .heads import EncoderWithHead

logger = logging.getLogger(__name__)


@dataclass
class TrainResult:
    """What a run did: epochs run, the selected epoch and its dev score, per-epoch history."""

    best_epoch: int
    best_dev: float
    epochs_run: int
    history: list[dict]


@torch.no_grad()
def predict_logits(
    model: EncoderWithHead, feats: Sequence[Feature], pad: int, tagging: bool, batch_size: int, device
) -> list[torch.Tensor]:
    """Argmax predictions per feature: a class id (0-dim) or the ids at labelled (first-subword) positions."""
    model.eval()
    preds: list[torch.Tensor | None] = [None] * len(feats)
    order = sorted(range(len(feats)), key=lambda i: -feats[i].ids.numel())  # length-sorted: less padding
    for start in range(0, len(order), batch_size):
        idx = order[start : start + batch_size]
        tokens, labels = _batch([feats[i] for i in idx], pad, tagging)
        logits = model(tokens.to(device)).float().cpu()  # B x K or B x T x K
        best = logits.argmax(-1)
        for row, i in enumerate(idx):
            preds[i] = best[row][labels[row] != IGNORE] if tagging else best[row]
    return preds


def train(
    model: EncoderWithHead,
    train_feats: Sequence[Feature],
    dev_score: Callable[[EncoderWithHead], float],
    cfg: FinetuneConfig,
    seed: int,
    pad: int,
    tagging: bool,
    device,
    desc: str = "finetune",
) -> TrainResult:
    """Fine-tune ``model`` in place and leave it holding the weights of the best source-dev epoch."""
    from tqdm import tqdm

    if not train_feats:
        raise ValueError("no training examples")
    gen = torch.Generator().manual_seed(seed)
    steps_per_epoch = math.ceil(math.ceil(len(train_feats) / cfg.batch_size) / cfg.grad_accum)
    total_steps = max(1, steps_per_epoch * cfg.max_epochs)
    decay, no_decay = [], []
    for name, p in model.named_parameters():
        if p.requires_grad:
            (no_decay if p.dim() == 1 or "layer_norm" in name else decay).append(p)
    optimizer = torch.optim.AdamW(
        [{"params": decay, "weight_decay": cfg.weight_decay}, {"params": no_decay, "weight_decay": 0.0}],
        lr=cfg.lr, betas=(0.9, 0.999), eps=1e-8,
    )
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: max(0.0, 1.0 - step / total_steps))
    loss_fn = nn.CrossEntropyLoss(ignore_index=IGNORE)
    best_dev, best_epoch, best_state, history, stale = -math.inf, 0, None, [], 0
    epoch = 0
    for epoch in range(1, cfg.max_epochs + 1):
        model.train()
        perm = torch.randperm(len(train_feats), generator=gen).tolist()
        batches = [perm[i : i + cfg.batch_size] for i in range(0, len(perm), cfg.batch_size)]
        total_loss, n_loss = 0.0, 0
        optimizer.zero_grad(set_to_none=True)
        for bi, idx in enumerate(tqdm(batches, desc=f"{desc} epoch {epoch}", leave=False, disable=len(batches) < 20)):
            tokens, labels = _batch([train_feats[i] for i in idx], pad, tagging)
            logits = model(tokens.to(device))
            loss = loss_fn(logits.reshape(-1, logits.size(-1)).float(), labels.reshape(-1).to(device))
            (loss / cfg.grad_accum).backward()
            total_loss, n_loss = total_loss + float(loss.detach()), n_loss + 1
            if (bi + 1) % cfg.grad_accum == 0 or bi + 1 == len(batches):
                if cfg.max_grad_norm:
                    nn.utils.clip_grad_norm_(model.parameters(), cfg.max_grad_norm)
                optimizer.step()
                scheduler.step()
                optimizer.zero_grad(set_to_none=True)
        dev = float(dev_score(model))
        history.append({"epoch": epoch, "train_loss": total_loss / max(1, n_loss), "dev": dev})
        logger.info("%s epoch %d: train loss %.4f, dev %.4f", desc, epoch, total_loss / max(1, n_loss), dev)
        if dev > best_dev:
            best_dev, best_epoch, stale = dev, epoch, 0
            best_state = {k: v.detach().to("cpu", copy=True) for k, v in model.state_dict().items()}
        else:
            stale += 1
            if cfg.patience is not None and stale >= cfg.patience:
                logger.info("%s: no dev improvement for %d epochs; stopping", desc, stale)
                break
    if best_state is None:
        raise RuntimeError(f"{desc}: the dev score was never a number ({history}); check the dev data")
    model.load_state_dict(best_state)
    model.eval()
    return TrainResult(best_epoch, best_dev, epoch, history)
