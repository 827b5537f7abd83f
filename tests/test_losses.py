"""Pure loss functions: masking statistics, pooling, the SEQ contrastive loss against a loop-by-loop reading of the
reference formula, and the row decomposition that exact multi-worker SEQ relies on."""

import math

import numpy as np
import pytest
import torch

from translit_plugin.method.masking import content_mask, mask_tokens
from translit_plugin.method.pooling import pool_hidden
from translit_plugin.method.terms.seq import SEQ_REFERENCE_SCALE, retrieval_correct, seq_contrastive_loss

BOS, PAD, EOS, UNK, MASK = 0, 1, 2, 3, 99


def _sequence(n: int, rng: np.random.Generator) -> np.ndarray:
    return np.concatenate([[BOS], rng.integers(4, 99, size=n), [EOS]])


def _mask(tokens, rng, **kw):
    maskable = (tokens != BOS) & (tokens != EOS) & (tokens != PAD)
    return mask_tokens(tokens, rng, maskable=maskable, mask_idx=MASK, random_low=4, random_high=100, **kw)


# ------------------------------------------------------------------------------------------------------------ masking
def test_masking_rates_match_reference_80_10_10():
    rng = np.random.default_rng(0)
    tokens = _sequence(200_000, rng)
    masked, selected = _mask(tokens, np.random.default_rng(1))
    assert not selected[0] and not selected[-1], "<s> and </s> must never be selected"
    inner = selected[1:-1]
    assert abs(inner.mean() - 0.15) < 0.003
    sel_orig, sel_new = tokens[selected], masked[selected]
    to_mask = (sel_new == MASK).mean()
    changed = ((sel_new != MASK) & (sel_new != sel_orig)).mean()
    assert abs(to_mask - 0.8) < 0.01
    # a random replacement equals the original with probability 1/96, so "changed" is slightly under 0.1
    assert abs(changed - 0.1 * (1 - 1 / 96)) < 0.006
    assert np.array_equal(masked[~selected], tokens[~selected]), "unselected tokens must be untouched"
    assert ((sel_new >= 4) & (sel_new < 100)).all(), "random replacements come from the non-special range"


def test_masking_is_bernoulli_so_short_sentences_can_get_no_target():
    rng = np.random.default_rng(0)
    counts = [int(_mask(_sequence(3, rng), np.random.default_rng(i))[1].sum()) for i in range(2000)]
    # P(no token of 3 selected) = 0.85^3 = 0.614 under Bernoulli; exact-count would always give int(0.45 + U)
    assert abs(np.mean(np.array(counts) == 0) - 0.85**3) < 0.04


def test_masking_exact_count_mode():
    rng = np.random.default_rng(3)
    for i in range(200):
        tokens = _sequence(int(rng.integers(1, 60)), rng)
        n = len(tokens) - 2
        _, selected = _mask(tokens, np.random.default_rng(i), sampling="exact_count")
        assert int(0.15 * n) <= selected.sum() <= int(0.15 * n + 1)
        assert not selected[0] and not selected[-1]


def test_masking_is_deterministic_in_the_generator_seed():
    tokens = _sequence(50, np.random.default_rng(0))
    a = _mask(tokens, np.random.default_rng([1, 2, 3]))
    b = _mask(tokens, np.random.default_rng([1, 2, 3]))
    c = _mask(tokens, np.random.default_rng([1, 3, 3]))
    assert all(np.array_equal(x, y) for x, y in zip(a, b))
    assert not all(np.array_equal(x, y) for x, y in zip(a, c))


def test_masking_rejects_bad_arguments():
    tokens = _sequence(5, np.random.default_rng(0))
    with pytest.raises(ValueError, match="sampling"):
        _mask(tokens, np.random.default_rng(0), sampling="poisson")
    with pytest.raises(ValueError, match="same 1-D shape"):
        mask_tokens(tokens, np.random.default_rng(0), maskable=np.ones(3, bool), mask_idx=MASK, random_low=4,
                    random_high=10)


# ------------------------------------------------------------------------------------------------------------ pooling
def test_mean_pooling_excludes_specials_and_padding_but_keeps_mask():
    tokens = torch.tensor([[BOS, 10, MASK, 11, EOS], [BOS, 12, EOS, PAD, PAD]])
    hidden = torch.arange(2 * 5 * 3, dtype=torch.float16).reshape(2, 5, 3)  # half precision in, float32 out
    pooled = pool_hidden(hidden, content_mask(tokens, (BOS, EOS, PAD)), "mean")
    assert pooled.dtype == torch.float32
    torch.testing.assert_close(pooled[0], hidden[0, 1:4].float().mean(0))
    torch.testing.assert_close(pooled[1], hidden[1, 1].float())
    torch.testing.assert_close(pool_hidden(hidden, content_mask(tokens, (BOS, EOS, PAD)), "cls"), hidden[:, 0].float())


def test_mean_pooling_of_an_empty_sentence_is_zero():
    tokens = torch.tensor([[BOS, EOS]])
    pooled = pool_hidden(torch.ones(1, 2, 4), content_mask(tokens, (BOS, EOS, PAD)))
    assert torch.equal(pooled, torch.zeros(1, 4))


# ---------------------------------------------------------------------------------------------------- contrastive loss
def _loop_nt_xent(o, l_, tau, cosine=False):
    """The reference code's loss read literally: 2N rows [o1, l1, o2, l2, ...], self excluded, partner is target."""
    if cosine:
        o, l_ = torch.nn.functional.normalize(o, dim=-1), torch.nn.functional.normalize(l_, dim=-1)
    g = [v for pair in zip(o, l_) for v in pair]
    total = 0.0
    for i, gi in enumerate(g):
        logits = [float(gi @ gj) / tau for j, gj in enumerate(g) if j != i]
        partner = i + 1 if i % 2 == 0 else i - 1
        target = partner if partner < i else partner - 1  # index after removing the self column
        total += -(logits[target] - math.log(sum(math.exp(x) for x in logits)))
    return total / len(g) * SEQ_REFERENCE_SCALE


def _loop_cross(o, l_, tau):
    total = 0.0
    n = len(o)
    for i in range(n):
        for a, b in ((o, l_), (l_, o)):
            logits = [float(a[i] @ b[j]) / tau for j in range(n)]
            total += -(logits[i] - math.log(sum(math.exp(x) for x in logits)))
    return total / (2 * n) * SEQ_REFERENCE_SCALE


@pytest.mark.parametrize("tau", [1.0, 0.05])
@pytest.mark.parametrize("similarity", ["dot", "cosine"])
def test_nt_xent_matches_the_loop_reading_of_the_reference(tau, similarity):
    torch.manual_seed(0)
    o, l_ = torch.randn(5, 8, dtype=torch.float64) * 0.3, torch.randn(5, 8, dtype=torch.float64) * 0.3
    got = seq_contrastive_loss(o, l_, temperature=tau, similarity=similarity, negatives="all")
    assert got.dtype == torch.float32
    assert abs(float(got) - _loop_nt_xent(o.float(), l_.float(), tau, similarity == "cosine")) < 1e-4


def test_cross_script_form_matches_the_paper_formula():
    torch.manual_seed(1)
    o, l_ = torch.randn(6, 4), torch.randn(6, 4)
    got = seq_contrastive_loss(o, l_, negatives="cross", temperature=0.5)
    assert abs(float(got) - _loop_cross(o, l_, 0.5)) < 1e-5


def test_random_vectors_give_log_of_candidates():
    """With identical vectors every candidate is equally likely: loss = 0.5 * log(2N - 1) (all) / log(N) (cross)."""
    v = torch.ones(7, 3)
    assert abs(float(seq_contrastive_loss(v, v)) - 0.5 * math.log(13)) < 1e-5
    assert abs(float(seq_contrastive_loss(v, v, negatives="cross")) - 0.5 * math.log(7)) < 1e-5


@pytest.mark.parametrize("negatives", ["all", "cross"])
def test_rows_partition_adds_up_to_the_full_loss_with_the_same_gradient(negatives):
    torch.manual_seed(2)
    o = torch.randn(7, 5, requires_grad=True)
    l_ = torch.randn(7, 5, requires_grad=True)
    full = seq_contrastive_loss(o, l_, negatives=negatives)
    g_full = torch.autograd.grad(full, [o, l_])
    parts = [seq_contrastive_loss(o, l_, negatives=negatives, rows=r) for r in (slice(0, 3), slice(3, 7))]
    torch.testing.assert_close(sum(parts), full)
    g_parts = torch.autograd.grad(sum(parts), [o, l_])
    for a, b in zip(g_full, g_parts):
        torch.testing.assert_close(a, b)


def test_seq_loss_rejects_bad_arguments():
    v = torch.randn(3, 2)
    with pytest.raises(ValueError, match="temperature"):
        seq_contrastive_loss(v, v, temperature=0)
    with pytest.raises(ValueError, match="N x C"):
        seq_contrastive_loss(v, torch.randn(4, 2))
    with pytest.raises(ValueError, match="similarity"):
        seq_contrastive_loss(v, v, similarity="l2")


def test_retrieval_correct_counts_top1_over_latin_candidates():
    o = torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, 0.1]])
    latn = torch.tensor([[1.0, 0.0], [0.0, 1.0], [0.0, 0.5]])
    # pair 2 retrieves latn 0 (dot 1.0 > 0.05); pairs 0 and 1 are correct
    assert int(retrieval_correct(o, latn)) == 2
    assert int(retrieval_correct(o, latn, rows=slice(2, 3))) == 0


# ------------------------------------------------------------------------------------------------------- anchor loss
def _anchor_reference(student, teacher, loss, temperature):
    """Plain per-pair loops: the textbook definitions, nothing shared with the implementation."""
    n = student.shape[0]
    total = 0.0
    for i in range(n):
        s, t = student[i].double(), teacher[i].double()
        if loss == "mse":
            total += float(((s - t) ** 2).sum()) / s.numel()
        elif loss == "cosine":
            total += 1.0 - float(s @ t) / (float(s.norm()) * float(t.norm()))
        else:
            sims = [float(s @ teacher[j].double()) / (float(s.norm()) * float(teacher[j].double().norm()))
                    for j in range(teacher.shape[0])]  # fmt: skip
            logits = torch.tensor(sims, dtype=torch.float64) / temperature
            total += float(torch.logsumexp(logits, 0) - logits[i])
    return total / n


@pytest.mark.parametrize("kind", ["mse", "cosine", "infonce"])
def test_anchor_loss_matches_plain_reference(kind):
    from translit_plugin.method.terms.anchor import anchor_loss

    g = torch.Generator().manual_seed(7)
    student = torch.randn(6, 5, generator=g)
    teacher = torch.randn(6, 5, generator=g) * 3
    got = anchor_loss(student, teacher, loss=kind, temperature=0.07)
    want = _anchor_reference(student, teacher, kind, 0.07)
    assert abs(float(got) - want) < 1e-5 * max(1.0, abs(want))


@pytest.mark.parametrize("kind", ["mse", "cosine", "infonce"])
def test_anchor_loss_rows_add_up_to_the_whole(kind):
    """Workers compute their own rows against the gathered teacher vectors, normalised by the global count."""
    from translit_plugin.method.terms.anchor import anchor_loss

    g = torch.Generator().manual_seed(3)
    student = torch.randn(7, 4, generator=g, requires_grad=True)
    teacher = torch.randn(7, 4, generator=g)
    whole = anchor_loss(student, teacher, loss=kind)
    parts = [anchor_loss(student[r], teacher, loss=kind, rows=r, total=7) for r in (slice(0, 3), slice(3, 7))]
    assert torch.allclose(parts[0] + parts[1], whole, atol=1e-6)
    (g_whole,) = torch.autograd.grad(whole, student)
    g_parts = torch.autograd.grad(parts[0] + parts[1], student)[0]
    assert torch.allclose(g_whole, g_parts, atol=1e-6)


def test_anchor_loss_teacher_gets_no_gradient_and_bad_input_is_refused():
    from translit_plugin.method.terms.anchor import anchor_loss

    teacher = torch.randn(3, 4, requires_grad=True)
    anchor_loss(torch.randn(3, 4, requires_grad=True), teacher, loss="infonce").backward()
    assert teacher.grad is None
    with pytest.raises(ValueError, match="unknown anchor loss"):
        anchor_loss(torch.randn(3, 4), torch.randn(3, 4), loss="l1")
    with pytest.raises(ValueError, match="rows"):
        anchor_loss(torch.randn(2, 4), torch.randn(3, 4), rows=slice(0, 3))
