"""Metrics cross-checked against scikit-learn and seqeval on fixed predictions, including the POS quirk."""

from __future__ import annotations

import random

import pytest

from translit_plugin.evaluation.metrics import (
    accuracy,
    classification_scores,
    macro_f1,
    seqeval_scores,
    tagging_scores,
    token_scores,
)


def _random_labels(rng: random.Random, n: int, labels: list[str]) -> list[str]:
    return [rng.choice(labels) for _ in range(n)]


@pytest.mark.parametrize("seed", range(6))
def test_macro_f1_matches_sklearn(seed):
    from sklearn.metrics import accuracy_score, f1_score

    rng = random.Random(seed)  # fixed predictions per seed
    labels = ["Recommendation", "Faith", "Violence", "Grace", "Sin", "Description"][: 2 + seed % 5]
    y_true = _random_labels(rng, 50, labels)
    # predictions can use a label the gold never has (label set = union, as in sklearn)
    y_pred = _random_labels(rng, 50, labels + ["Other"])
    assert macro_f1(y_true, y_pred) == pytest.approx(f1_score(y_true, y_pred, average="macro", zero_division=0))
    assert accuracy(y_true, y_pred) == pytest.approx(accuracy_score(y_true, y_pred))
    scores = classification_scores(y_true, y_pred)
    assert set(scores) == {"macro_f1", "accuracy"}


def test_macro_f1_edge_cases():
    assert macro_f1(["a", "b"], ["a", "b"]) == 1.0
    assert macro_f1(["a", "a"], ["b", "b"]) == 0.0
    with pytest.raises(ValueError):
        macro_f1(["a"], ["a", "b"])
    with pytest.raises(ValueError):
        macro_f1([], [])


def test_ner_scores_match_seqeval():
    from seqeval.metrics import f1_score, precision_score, recall_score

    gold = [["B-PER", "I-PER", "O", "B-LOC"], ["O", "B-ORG", "I-ORG", "O", "O"]]
    pred = [["B-PER", "I-PER", "O", "B-ORG"], ["O", "B-ORG", "O", "O", "B-LOC"]]
    s = seqeval_scores(gold, pred)
    assert s["seqeval_f1"] == pytest.approx(f1_score(gold, pred))
    assert s["seqeval_precision"] == pytest.approx(precision_score(gold, pred))
    assert s["seqeval_recall"] == pytest.approx(recall_score(gold, pred))
    # by hand: gold chunks PER, LOC, ORG(2 tokens); predicted PER, ORG, ORG(1 token), LOC -> only PER correct
    assert s["seqeval_precision"] == pytest.approx(1 / 4)
    assert s["seqeval_recall"] == pytest.approx(1 / 3)
    t = tagging_scores("ner", gold, pred)
    assert "token_macro_f1" not in t and t["token_accuracy"] == pytest.approx(6 / 9)


def test_pos_quirk_seqeval_vs_token_level():
    """seqeval on UPOS tags: first letter read as a prefix, adjacent equal tags merged, X dropped."""
    from seqeval.metrics import f1_score
    from sklearn.metrics import accuracy_score
    from sklearn.metrics import f1_score as sk_f1

    gold = [["NOUN", "NOUN", "VERB", "ADJ", "X", "PUNCT", "ADP"]]
    pred = [["NOUN", "NOUN", "VERB", "ADV", "X", "PUNCT", "ADJ"]]
    s = tagging_scores("pos", gold, pred)
    assert s["seqeval_f1"] == pytest.approx(f1_score(gold, pred))
    # two wrong tokens of seven; seqeval sees chunks OUN (2 tokens merged), ERB, DJ, _ (X), UNCT, DP: 4 of 6 right
    assert s["token_accuracy"] == pytest.approx(5 / 7)
    assert s["seqeval_f1"] == pytest.approx(4 / 6)
    flat_g, flat_p = gold[0], pred[0]
    assert s["token_accuracy"] == pytest.approx(accuracy_score(flat_g, flat_p))
    assert s["token_macro_f1"] == pytest.approx(sk_f1(flat_g, flat_p, average="macro", zero_division=0))
    assert s["seqeval_f1"] != pytest.approx(s["token_accuracy"])


def test_token_scores_shape_checks():
    with pytest.raises(ValueError, match="sentence 0"):
        token_scores([["A", "B"]], [["A"]])
    with pytest.raises(ValueError, match="gold sentences"):
        seqeval_scores([["A"]], [])
