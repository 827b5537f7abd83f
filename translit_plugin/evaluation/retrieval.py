"""Sentence retrieval on embeddings: cosine similarity, top-k accuracy in both directions, English-side alignment.

Protocol (Glot500 / the paper): L2-normalise, rank every candidate by inner product, count a query as correct at k
when its gold translation is among the k nearest candidates. Gold pairs are given by index (line i <-> line i,
or an explicit alignment). With English as the source, the paper's number is "target-language queries against
English candidates" (``tgt2src``); we also report the reverse direction (``src2tgt``).

For a non-English source S and target L the candidates come from ``{prefix}.L-eng_Latn.L`` and the queries from
``{prefix}.S-eng_Latn.S``; this is only valid when the English sides of both files agree. :func:`align_by_english`
checks that instead of assuming it and, when they differ, aligns the two languages through identical English lines.

:func:`mining_scores` gives the metrics of MTEB's BitextMining tasks (accuracy, precision, recall, F1 of
nearest-neighbour mining; F1 is MTEB's main score), so results can be written in MTEB's format
(:mod:`translit_plugin.evaluation.mteb_results`).
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass

import torch

from .metrics import MINING_METRICS

logger = logging.getLogger(__name__)

DEFAULT_KS = (1, 5, 10)


def l2_normalize(x: torch.Tensor, eps: float = 1e-12) -> torch.Tensor:
    """Row-wise L2 normalisation in float32 (N x C -> N x C)."""
    x = x.float()
    return x / x.norm(dim=-1, keepdim=True).clamp_min(eps)


def topk_accuracy(
    queries: torch.Tensor,
    candidates: torch.Tensor,
    gold: torch.Tensor | None = None,
    ks: Sequence[int] = DEFAULT_KS,
    chunk_size: int = 4096,
) -> dict[str, float]:
    """Top-k accuracy of cosine retrieval.

    Args:
        queries: Q x C embeddings.
        candidates: N x C embeddings.
        gold: Q long tensor, index of each query's translation among the candidates (default ``arange(Q)``).
        ks: the k values; a k larger than N counts every query as found (as a search returning all N would).
    Returns:
        ``{"top1": ..., "top5": ..., ...}`` as fractions in [0, 1].
    """
    if queries.dim() != 2 or candidates.dim() != 2 or queries.size(1) != candidates.size(1):
        raise ValueError(
            f"expected Q x C and N x C embeddings, got {tuple(queries.shape)} and {tuple(candidates.shape)}"
        )
    q, c = l2_normalize(queries), l2_normalize(candidates)
    if gold is None:
        if q.size(0) > c.size(0):
            raise ValueError(f"{q.size(0)} queries but only {c.size(0)} candidates and no gold indices")
        gold = torch.arange(q.size(0))
    kmax = min(max(ks), c.size(0))
    hits = {k: 0 for k in ks}
    for start in range(0, q.size(0), chunk_size):
        sim = q[start : start + chunk_size] @ c.T  # (q_chunk, N)
        top = sim.topk(kmax, dim=1).indices  # (q_chunk, kmax), best first
        found = top == gold[start : start + chunk_size, None].to(top.device)  # (q_chunk, kmax)
        for k in ks:
            hits[k] += int(found[:, : min(k, kmax)].any(dim=1).sum())
    n = q.size(0)
    return {f"top{k}": hits[k] / n for k in ks}


def bidirectional_scores(
    src_emb: torch.Tensor,
    tgt_emb: torch.Tensor,
    ks: Sequence[int] = DEFAULT_KS,
) -> dict[str, float]:
    """Scores for row-aligned ``src_emb`` / ``tgt_emb`` (row i of one is the translation of row i of the other).

    Returns ``tgt2src_top{k}`` (target queries, source candidates: the paper's direction with English as source) and
    ``src2tgt_top{k}``.
    """
    if src_emb.size(0) != tgt_emb.size(0):
        raise ValueError(f"row-aligned embeddings expected, got {src_emb.size(0)} and {tgt_emb.size(0)} rows")
    out = {f"tgt2src_{k}": v for k, v in topk_accuracy(tgt_emb, src_emb, ks=ks).items()}
    out.update({f"src2tgt_{k}": v for k, v in topk_accuracy(src_emb, tgt_emb, ks=ks).items()})
    return out


def nearest_neighbours(queries: torch.Tensor, candidates: torch.Tensor, chunk_size: int = 4096) -> torch.Tensor:
    """Index of each query's most cosine-similar candidate (``Q`` long tensor; on a tie the lowest index)."""
    if queries.dim() != 2 or candidates.dim() != 2 or queries.size(1) != candidates.size(1):
        raise ValueError(
            f"expected Q x C and N x C embeddings, got {tuple(queries.shape)} and {tuple(candidates.shape)}"
        )
    q, c = l2_normalize(queries), l2_normalize(candidates)
    return torch.cat([(q[s : s + chunk_size] @ c.T).argmax(dim=1) for s in range(0, q.size(0), chunk_size)])


def mining_metrics(gold: torch.Tensor, predicted: torch.Tensor) -> dict[str, float]:
    """MTEB's BitextMining metrics of 1-nearest-neighbour mining, from gold and predicted candidate indices.

    MTEB scores a query's nearest candidate as the prediction of a classifier whose classes are the candidate
    indices: ``accuracy`` is the share of queries whose nearest candidate is their translation (top-1 accuracy);
    ``precision``, ``recall`` and ``f1`` are the per-class scores averaged with the classes' gold counts as weights
    (scikit-learn's ``average="weighted"``, ``zero_division=0``).  With one query per gold candidate, recall equals
    accuracy, and a candidate that is the nearest neighbour of ``m`` queries (one of them its own translation) has
    precision ``1/m`` and F1 ``2/(1+m)``: precision and F1 penalise hubs.
    """
    gold, predicted = gold.long().flatten().cpu(), predicted.long().flatten().cpu()
    if gold.numel() != predicted.numel() or gold.numel() == 0:
        raise ValueError(f"need as many predictions as gold indices, got {predicted.numel()} and {gold.numel()}")
    size = int(max(gold.max(), predicted.max())) + 1
    support = torch.bincount(gold, minlength=size).double()  # queries per gold class
    n_pred = torch.bincount(predicted, minlength=size).double()  # queries predicting each class
    tp = torch.bincount(gold[gold == predicted], minlength=size).double()
    weight = support / support.sum()
    precision = torch.where(n_pred > 0, tp / n_pred.clamp(min=1), torch.zeros_like(tp))
    recall = tp / support.clamp(min=1)
    f1 = 2 * tp / (support + n_pred).clamp(min=1)  # = 2PR / (P + R); 0 where the class is never right
    scores = {
        "precision": float((weight * precision).sum()),
        "recall": float((weight * recall).sum()),
        "f1": float((weight * f1).sum()),
        "accuracy": float(tp.sum() / support.sum()),
    }
    return {m: scores[m] for m in MINING_METRICS}


def mining_scores(
    queries: torch.Tensor, candidates: torch.Tensor, gold: torch.Tensor | None = None, chunk_size: int = 4096
) -> dict[str, float]:
    """:func:`mining_metrics` of cosine 1-NN mining of ``queries`` among ``candidates`` (gold default
    ``arange(Q)``)."""
    if gold is None:
        gold = torch.arange(queries.size(0))
    return mining_metrics(gold, nearest_neighbours(queries, candidates, chunk_size))


@dataclass
class EnglishAlignment:
    """Index pairs ``(i in source file, j in target file)`` whose English sides are the same sentence."""

    src_idx: list[int]
    tgt_idx: list[int]
    how: str  # "identical": the English files are equal line by line; "english_text": matched by English text

    def __len__(self) -> int:
        return len(self.src_idx)


def align_by_english(
    src_eng: Sequence[str], tgt_eng: Sequence[str], src: str = "S", tgt: str = "L"
) -> EnglishAlignment:
    """Align two languages' retrieval files through their English sides.

    Identical English files give the identity alignment. Otherwise every English line that occurs exactly once in
    each file links the two lines that carry it (a warning says how many lines that keeps); English lines repeated
    within a file are ambiguous and dropped. Raises ``ValueError`` when nothing can be aligned.
    """
    if list(src_eng) == list(tgt_eng):
        idx = list(range(len(src_eng)))
        return EnglishAlignment(idx, idx, "identical")
    norm = lambda s: " ".join(s.split())
    cs, ct = Counter(map(norm, src_eng)), Counter(map(norm, tgt_eng))
    where_t = {norm(e): j for j, e in enumerate(tgt_eng) if ct[norm(e)] == 1}
    pairs = [(i, where_t[norm(e)]) for i, e in enumerate(src_eng) if cs[norm(e)] == 1 and norm(e) in where_t]
    if not pairs:
        raise ValueError(
            f"the English sides of {src} and {tgt} share no sentence; a non-English source needs the same English "
            "pivot sentences as the target (the multi-source protocol assumes identical English files)"
        )
    logger.warning(
        "English sides of %s (%d lines) and %s (%d lines) differ; aligned %d pairs through identical English lines",
        src, len(src_eng), tgt, len(tgt_eng), len(pairs),
    )
    return EnglishAlignment([i for i, _ in pairs], [j for _, j in pairs], "english_text")
