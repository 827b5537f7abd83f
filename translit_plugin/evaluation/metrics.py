"""Evaluation metrics, labelled by what they measure.

- :func:`macro_f1`: classification macro-F1 (same definition as ``sklearn.metrics.f1_score(average="macro")``:
  unweighted mean over the labels present in gold or predictions, F1 = 0 where precision + recall = 0).
- :func:`seqeval_scores`: ``seqeval`` chunk-level precision / recall / F1, the number the paper reports for NER *and*
  POS. For POS this is a quirk: seqeval reads the first letter of a UPOS tag as a chunk prefix (``NOUN`` -> type
  ``OUN``), merges adjacent equal tags into one chunk and reads ``X`` as a chunk of type ``_``; kept for
  comparability with the paper.
- :func:`token_scores`: correct token-level accuracy and macro-F1 over tags (what a POS tagger should be judged by).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence

#: The metrics of MTEB's BitextMining tasks (nearest-neighbour mining; computed by
#: :func:`translit_plugin.evaluation.retrieval.mining_metrics`), in the order MTEB lists them.
MINING_METRICS = ("precision", "recall", "f1", "accuracy")
#: Their prefix in a retrieval record: target-language queries, source candidates, the direction MTEB's ``xxx-eng``
#: subsets mine (``tgt2src_mining_f1``, ...).
MINING_PREFIX = "tgt2src_mining_"


def macro_f1(y_true: Sequence, y_pred: Sequence, labels: Sequence | None = None) -> float:
    """Macro-averaged F1 over ``labels`` (default: sorted union of gold and predicted labels)."""
    if len(y_true) != len(y_pred):
        raise ValueError(f"y_true has {len(y_true)} items but y_pred has {len(y_pred)}")
    if not y_true:
        raise ValueError("macro_f1 of an empty set is undefined")
    labels = sorted(set(y_true) | set(y_pred)) if labels is None else list(labels)
    tp: Counter = Counter()
    n_pred: Counter = Counter(y_pred)
    n_true: Counter = Counter(y_true)
    for t, p in zip(y_true, y_pred):
        if t == p:
            tp[t] += 1
    f1s = []
    for label in labels:
        denom = n_pred[label] + n_true[label]
        # F1 = 2 tp / (|pred| + |gold|); 0 when the label is absent from both or never right (sklearn's zero_division=0)
        f1s.append(2.0 * tp[label] / denom if denom else 0.0)
    return float(sum(f1s) / len(f1s))


def accuracy(y_true: Sequence, y_pred: Sequence) -> float:
    """Fraction of positions where prediction equals gold."""
    if len(y_true) != len(y_pred):
        raise ValueError(f"y_true has {len(y_true)} items but y_pred has {len(y_pred)}")
    if not y_true:
        raise ValueError("accuracy of an empty set is undefined")
    return sum(t == p for t, p in zip(y_true, y_pred)) / len(y_true)


def classification_scores(y_true: Sequence[str], y_pred: Sequence[str]) -> dict[str, float]:
    """``{"macro_f1", "accuracy"}`` for sentence classification (macro-F1 is the paper's metric)."""
    return {"macro_f1": macro_f1(y_true, y_pred), "accuracy": accuracy(y_true, y_pred)}


def _check_sequences(true_seqs: Sequence[Sequence[str]], pred_seqs: Sequence[Sequence[str]]) -> None:
    if len(true_seqs) != len(pred_seqs):
        raise ValueError(f"{len(true_seqs)} gold sentences but {len(pred_seqs)} predicted")
    for i, (t, p) in enumerate(zip(true_seqs, pred_seqs)):
        if len(t) != len(p):
            raise ValueError(f"sentence {i}: {len(t)} gold labels but {len(p)} predicted")


def seqeval_scores(true_seqs: Sequence[Sequence[str]], pred_seqs: Sequence[Sequence[str]]) -> dict[str, float]:
    """seqeval's default (conlleval-style) chunk precision / recall / F1, as the paper computes them."""
    import warnings

    from seqeval.metrics import f1_score, precision_score, recall_score

    _check_sequences(true_seqs, pred_seqs)
    t, p = [list(s) for s in true_seqs], [list(s) for s in pred_seqs]
    with warnings.catch_warnings():
        # POS tags make seqeval warn "... seems not to be NE tag" for every tag: expected (see module docstring).
        warnings.filterwarnings("ignore", message=".*seems not to be NE tag")
        warnings.filterwarnings("ignore", message=".*ill-defined")
        return {
            "seqeval_f1": float(f1_score(t, p)),
            "seqeval_precision": float(precision_score(t, p)),
            "seqeval_recall": float(recall_score(t, p)),
        }


def token_scores(true_seqs: Sequence[Sequence[str]], pred_seqs: Sequence[Sequence[str]]) -> dict[str, float]:
    """Token-level accuracy and macro-F1 over tags (every token counts once; tags are taken as whole labels)."""
    _check_sequences(true_seqs, pred_seqs)
    flat_t = [x for s in true_seqs for x in s]
    flat_p = [x for s in pred_seqs for x in s]
    return {"token_accuracy": accuracy(flat_t, flat_p), "token_macro_f1": macro_f1(flat_t, flat_p)}


def tagging_scores(
    task: str, true_seqs: Sequence[Sequence[str]], pred_seqs: Sequence[Sequence[str]]
) -> dict[str, float]:
    """NER: seqeval scores (+ token accuracy). POS: the paper-compatible seqeval scores and the correct token scores."""
    scores = seqeval_scores(true_seqs, pred_seqs)
    scores.update(token_scores(true_seqs, pred_seqs))
    if task == "ner":
        scores.pop("token_macro_f1")  # dominated by "O"; not meaningful for NER
    return scores
