"""Sentence and token classifiers on a hub model, and the encoder snapshot they start from."""


from __future__ import annotations

import copy
import dataclasses
import logging
from collections.abc import Sequence

import torch
from torch import nn

from ..readers import ClassificationData, TaggingData
from .config import FinetuneConfig
from .features import Feature, TokenizerAdapter, classification_features, tagging_features
from .heads import EncoderWithHead, SequenceClassificationHead, TokenClassificationHead, encoder_dim
from .training import TrainResult, predict_logits, train

logger = logging.getLogger(__name__)


class _Finetuned:
    """A trained encoder + head with its label list and tokenizer; shared by the two public classes."""

    tagging = False

    def __init__(self, hub, labels: Sequence[str], cfg: FinetuneConfig, device=None) -> None:
        self.labels = list(labels)
        self.label_to_id = {y: i for i, y in enumerate(self.labels)}
        max_positions = getattr(hub, "max_positions", None)
        if max_positions is not None and cfg.max_length > max_positions:
            logger.info("max length %d exceeds the model's %d positions; using %d", cfg.max_length, max_positions,
                        max_positions)
            cfg = dataclasses.replace(cfg, max_length=int(max_positions))
        self.cfg = cfg
        self.tok = TokenizerAdapter.from_hub(hub)
        self.pad = hub.dictionary.pad()
        self.device = torch.device(device) if device is not None else next(hub.model.parameters()).device
        head_cls = TokenClassificationHead if self.tagging else SequenceClassificationHead
        # The head is created right after torch.manual_seed(seed) in `fit`, so its initialisation follows the seed.
        self._head_cls = head_cls
        self.model: EncoderWithHead | None = None
        self._encoder = hub.model
        self.result: TrainResult | None = None

    def _features(self, data) -> list[Feature]:
        raise NotImplementedError

    def _score(self, data, preds) -> float:
        raise NotImplementedError

    def fit(self, train_data, dev_data, seed: int, desc: str = "finetune") -> TrainResult:
        torch.manual_seed(seed)  # head init and dropout masks
        head = self._head_cls(encoder_dim(self._encoder), len(self.labels), self.cfg.head_dropout)
        self.model = EncoderWithHead(self._encoder, head).to(self.device)
        train_feats = self._features(train_data)
        dev_feats = self._features(dev_data)
        logger.info(
            "%s: %d train / %d dev features, %d labels", desc, len(train_feats), len(dev_feats), len(self.labels)
        )
        score = lambda m: self._score(dev_data, self._predict_feats(dev_feats, len(dev_data)))
        self.result = train(
            self.model, train_feats, score, self.cfg, seed, self.pad, self.tagging, self.device, desc
        )
        return self.result

    def _predict_feats(self, feats: list[Feature], n: int):
        raise NotImplementedError


class SequenceClassifier(_Finetuned):
    """Fine-tune a ``<s>`` classification head (and the encoder) on a source language; predict label strings."""

    tagging = False

    def _features(self, data: ClassificationData) -> list[Feature]:
        return classification_features(self.tok, data, self.label_to_id, self.cfg.max_length)

    def _predict_feats(self, feats: list[Feature], n: int) -> list[str]:
        preds = predict_logits(self.model, feats, self.pad, False, self.cfg.eval_batch_size, self.device)
        return [self.labels[int(p)] for p in preds]

    def _score(self, data: ClassificationData, preds: list[str]) -> float:
        from ..metrics import macro_f1

        return macro_f1(data.labels, preds)

    def predict(self, data: ClassificationData) -> list[str]:
        """Predicted label of every example of ``data`` (its gold labels are not used)."""
        feats = [Feature(self.tok.sentence(t, self.cfg.max_length), 0) for t in data.texts]
        return self._predict_feats(feats, len(data))


class TokenClassifier(_Finetuned):
    """Fine-tune a token classification head on first subwords; predict one label per word (chunks re-joined)."""

    tagging = True

    def __init__(self, hub, labels: Sequence[str], cfg: FinetuneConfig, device=None, select_metric: str = "seqeval_f1"):
        super().__init__(hub, labels, cfg, device)
        self.select_metric = select_metric

    def _features(self, data: TaggingData) -> list[Feature]:
        return tagging_features(self.tok, data, self.label_to_id, self.cfg.max_length)

    def _predict_feats(self, feats: list[Feature], n: int) -> list[list[str]]:
        preds = predict_logits(self.model, feats, self.pad, True, self.cfg.eval_batch_size, self.device)
        out: list[list[str]] = [[] for _ in range(n)]
        for f, p in zip(feats, preds):  # features are in sentence order, chunks in word order
            if p.numel() != f.n_words:
                raise RuntimeError(f"chunk of sentence {f.sentence}: {p.numel()} predictions for {f.n_words} words")
            out[f.sentence].extend(self.labels[int(i)] for i in p)
        return out

    def _score(self, data: TaggingData, preds: list[list[str]]) -> float:
        from ..metrics import seqeval_scores, token_scores

        if self.select_metric == "seqeval_f1":
            return seqeval_scores(data.labels, preds)["seqeval_f1"]
        return token_scores(data.labels, preds)[self.select_metric]

    def predict(self, data: TaggingData) -> list[list[str]]:
        """Predicted label of every word of every sentence of ``data`` (gold labels are not used)."""
        blank = TaggingData(data.sentences, [[self.labels[0]] * len(s) for s in data.sentences], data.path)
        return self._predict_feats(self._features(blank), len(data))


def snapshot(model: nn.Module) -> dict[str, torch.Tensor]:
    """A CPU copy of ``model``'s weights, to restore the pristine encoder before each fine-tuning run."""
    return {k: v.detach().to("cpu", copy=True) for k, v in model.state_dict().items()}


def restore(model: nn.Module, state: dict[str, torch.Tensor]) -> None:
    """Load a :func:`snapshot` back (strict: the same model)."""
    model.load_state_dict(copy.copy(state))
