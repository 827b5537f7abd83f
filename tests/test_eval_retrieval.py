"""Retrieval math: top-k accuracy against a brute-force reference, both directions, English-side alignment."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from translit_plugin.core.names import truncate_keep_eos
from translit_plugin.evaluation.retrieval import align_by_english, bidirectional_scores, topk_accuracy
from translit_plugin.hub.encoding import length_batches, pooling_name


def _brute_force(q: torch.Tensor, c: torch.Tensor, gold: list[int], k: int) -> float:
    qn = q / q.norm(dim=1, keepdim=True)
    cn = c / c.norm(dim=1, keepdim=True)
    hits = 0
    for i in range(q.size(0)):
        sims = [(float(qn[i] @ cn[j]), j) for j in range(c.size(0))]
        ranked = [j for _, j in sorted(sims, key=lambda x: -x[0])]
        hits += gold[i] in ranked[:k]
    return hits / q.size(0)


def test_topk_matches_brute_force():
    g = torch.Generator().manual_seed(0)  # fixed random embeddings: no ties in practice
    src = torch.randn(40, 16, generator=g)
    tgt = src + 1.5 * torch.randn(40, 16, generator=g)  # noisy translations: some wrong neighbours
    got = topk_accuracy(tgt, src, ks=(1, 5, 10))
    for k in (1, 5, 10):
        assert got[f"top{k}"] == pytest.approx(_brute_force(tgt, src, list(range(40)), k))
    assert 0.0 < got["top1"] < got["top10"] <= 1.0
    # chunking does not change the answer
    assert topk_accuracy(tgt, src, ks=(1, 5, 10), chunk_size=7) == got
    # scale invariance (cosine): scaling rows changes nothing
    assert topk_accuracy(tgt * 3.0, src * torch.rand(40, 1, generator=g) + 0, ks=(1, 5, 10)) == got


def test_topk_with_gold_indices_and_small_candidate_sets():
    q = torch.eye(3)
    c = torch.tensor([[0.0, 0.0, 1.0], [1.0, 0.0, 0.0], [0.0, 1.0, 0.0]])
    assert topk_accuracy(q, c, gold=torch.tensor([1, 2, 0]), ks=(1,))["top1"] == 1.0
    assert topk_accuracy(q, c, ks=(1, 10))["top1"] == 0.0
    assert topk_accuracy(q, c, ks=(1, 10))["top10"] == 1.0  # k > N: everything is in the top k
    with pytest.raises(ValueError):
        topk_accuracy(torch.zeros(3, 2), torch.zeros(3, 4))


def test_bidirectional_directions_differ_and_are_labelled():
    # a "hub" candidate attracts every query in one direction only
    src = torch.tensor([[1.0, 0.0], [0.0, 1.0], [0.7, 0.7]])
    tgt = torch.tensor([[1.0, 0.1], [0.1, 1.0], [1.0, 0.05]])
    s = bidirectional_scores(src, tgt, ks=(1,))
    assert set(s) == {"tgt2src_top1", "src2tgt_top1"}
    assert s["tgt2src_top1"] == pytest.approx(topk_accuracy(tgt, src, ks=(1,))["top1"])
    assert s["src2tgt_top1"] == pytest.approx(topk_accuracy(src, tgt, ks=(1,))["top1"])
    assert s["tgt2src_top1"] != s["src2tgt_top1"]


def test_align_by_english():
    eng = ["a b", "c d", "e f", "g h"]
    al = align_by_english(eng, list(eng))
    assert al.how == "identical" and al.src_idx == al.tgt_idx == [0, 1, 2, 3]
    other = ["g h", "x y", "a  b", "c d", "c d"]  # reordered, one extra, whitespace differs, one duplicate
    al = align_by_english(eng, other)
    assert al.how == "english_text"
    assert list(zip(al.src_idx, al.tgt_idx)) == [(0, 2), (3, 0)]  # "c d" is ambiguous in `other`: dropped
    with pytest.raises(ValueError, match="share no sentence"):
        align_by_english(eng, ["zz"])


def test_pooling_names_and_batching_helpers():
    assert pooling_name("mean_with_special") == "mean_with_special" and pooling_name("cls") == "cls"
    with pytest.warns(FutureWarning, match="deprecated"):
        assert pooling_name("mean") == "mean_with_special"  # the old name: <s> and </s> always counted
    with pytest.raises(ValueError, match="unknown pooling"):
        pooling_name("max")
    assert truncate_keep_eos(torch.tensor([0, 5, 6, 7, 2]), 4).tolist() == [0, 5, 6, 2]
    assert truncate_keep_eos(torch.tensor([0, 5, 2]), 4).tolist() == [0, 5, 2]
    assert truncate_keep_eos(np.array([0, 5, 6, 7, 2], dtype=np.int32), 3).tolist() == [0, 5, 2]
    assert length_batches([3, 9, 1, 5], 2) == [[1, 3], [0, 2]]
    assert length_batches([3, 9, 1, 5], 2, sort_by_length=False) == [[0, 1], [2, 3]]
