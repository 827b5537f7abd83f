"""Zero-shot transfer fine-tuning in plain PyTorch on a hub model: sentence and token classification.

- Sentence classification (Taxi1500, SIB-200): the HF ``RobertaClassificationHead`` on ``<s>`` (dropout, dense,
  tanh, dropout, out projection).
- Token classification (WikiAnn NER, UD POS): dropout + linear on every position; only the first subword of a word
  carries its label (others get ``IGNORE``). Sentences longer than the max length are split into chunks of whole
  words and the chunk predictions are put back together per sentence before scoring.

Training: AdamW, linear decay to 0 without warm-up, gradient clipping at 1.0, optional gradient accumulation; the
source-dev score is computed after every epoch and the best epoch's weights are kept (early stopping with
``patience`` optional). Every random choice derives from ``seed``: head initialisation and dropout via
``torch.manual_seed(seed)``, batch order via its own generator seeded with ``seed``.
"""

from __future__ import annotations

import copy
import dataclasses
import logging
import math
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field

import torch
from torch import nn

from translit_plugin.core.names import truncate_keep_eos
from translit_plugin.hub.encoding import collate

from .readers import ClassificationData, TaggingData

logger = logging.getLogger(__name__)

IGNORE = -100  # label id ignored by the loss (non-first subwords, <s>, </s>, padding)


@dataclass
class FinetuneConfig:
    """Hyper-parameters of one fine-tuning run (defaults per task: :func:`default_config`)."""

    lr: float = 1e-5
    batch_size: int = 32
    grad_accum: int = 1  # optimizer step every `grad_accum` batches
    max_epochs: int = 40
    max_length: int = 100  # subword tokens including <s> and </s>
    weight_decay: float = 0.0
    max_grad_norm: float = 1.0
    head_dropout: float = 0.1
    patience: int | None = None  # stop after this many epochs without a better dev score (None: run all epochs)
    eval_batch_size: int = 64

    def to_dict(self) -> dict:
        return asdict(self)


#: The paper's per-task settings: learning rate, batch size, gradient accumulation, epochs, max length (subword
#: tokens including <s> and </s>).
TASK_DEFAULTS: dict[str, dict] = {
    "taxi1500": dict(lr=1e-5, batch_size=32, grad_accum=1, max_epochs=40, max_length=100),
    "sib200": dict(lr=1e-5, batch_size=32, grad_accum=1, max_epochs=40, max_length=160),
    "ner": dict(lr=2e-5, batch_size=32, grad_accum=2, max_epochs=5, max_length=256),
    "pos": dict(lr=2e-5, batch_size=32, grad_accum=2, max_epochs=10, max_length=256),
}


def default_config(task: str, **overrides) -> FinetuneConfig:
    """The paper's configuration for ``task`` with ``overrides`` (``None`` values are ignored)."""
    values = dict(TASK_DEFAULTS[task])
    values.update({k: v for k, v in overrides.items() if v is not None})
    return FinetuneConfig(**values)


def _init_linear(layer: nn.Linear) -> None:
    # HF initialisation of new heads: N(0, 0.02) weights, zero bias.
    nn.init.normal_(layer.weight, mean=0.0, std=0.02)
    nn.init.zeros_(layer.bias)


class SequenceClassificationHead(nn.Module):
    """HF ``RobertaClassificationHead``: ``<s>`` state -> dropout -> dense -> tanh -> dropout -> classes."""

    def __init__(self, dim: int, num_labels: int, dropout: float) -> None:
        super().__init__()
        self.dropout = nn.Dropout(dropout)
        self.dense = nn.Linear(dim, dim)
        self.out_proj = nn.Linear(dim, num_labels)
        _init_linear(self.dense)
        _init_linear(self.out_proj)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        x = self.dropout(features[:, 0])  # B x T x C -> B x C (<s>)
        x = torch.tanh(self.dense(x))
        return self.out_proj(self.dropout(x))  # B x K


class TokenClassificationHead(nn.Module):
    """HF ``RobertaForTokenClassification`` head: dropout -> linear, on every position."""

    def __init__(self, dim: int, num_labels: int, dropout: float) -> None:
        super().__init__()
        self.dropout = nn.Dropout(dropout)
        self.classifier = nn.Linear(dim, num_labels)
        _init_linear(self.classifier)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.dropout(features))  # B x T x K


class EncoderWithHead(nn.Module):
    """A fairseq encoder (``model(tokens, features_only=True) -> (B x T x C, extra)``) followed by a head."""

    def __init__(self, encoder: nn.Module, head: nn.Module) -> None:
        super().__init__()
        self.encoder = encoder
        self.head = head

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        features, _ = self.encoder(tokens, features_only=True)  # B x T x C
        return self.head(features)


def _encoder_dim(model: nn.Module) -> int:
    args = getattr(model, "args", None) or getattr(getattr(model, "cfg", None), "model", None)
    dim = getattr(args, "encoder_embed_dim", None)
    if dim is None:
        dim = model.encoder.sentence_encoder.embed_tokens.embedding_dim
    return int(dim)


# ----------------------------------------------------------------------------------------------------------------
# Features


@dataclass
class Feature:
    """One model input: ids (``<s> ... </s>``), labels (class id, or per-position ids with ``IGNORE``)."""

    ids: torch.Tensor
    label: torch.Tensor | int
    sentence: int = 0  # tagging: index of the sentence this chunk belongs to
    n_words: int = 0  # tagging: words of that sentence in this chunk


@dataclass
class TokenizerAdapter:
    """Subword ids from a hub's ``encode`` (which returns ``<s> ... </s>``), cached per word."""

    encode: Callable[[str], torch.Tensor]
    bos: int
    eos: int
    unk: int
    _cache: dict = field(default_factory=dict, repr=False)

    @classmethod
    def from_hub(cls, hub) -> TokenizerAdapter:
        d = hub.dictionary
        return cls(hub.encode, d.bos(), d.eos(), d.unk())

    def sentence(self, text: str, max_length: int) -> torch.Tensor:
        return truncate_keep_eos(self.encode(text).long(), max_length)

    def word(self, word: str) -> list[int]:
        pieces = self._cache.get(word)
        if pieces is None:
            ids = self.encode(word).tolist()
            if ids and ids[0] == self.bos:
                ids = ids[1:]
            if ids and ids[-1] == self.eos:
                ids = ids[:-1]
            # A word the tokenizer maps to nothing still needs a position to carry its label.
            pieces = ids or [self.unk]
            self._cache[word] = pieces
        return pieces


def classification_features(
    tok: TokenizerAdapter, data: ClassificationData, label_to_id: dict[str, int], max_length: int
) -> list[Feature]:
    """``<s> text </s>`` ids truncated to ``max_length`` with the class id."""
    return [Feature(tok.sentence(t, max_length), label_to_id[y]) for t, y in zip(data.texts, data.labels)]


def tagging_features(
    tok: TokenizerAdapter, data: TaggingData, label_to_id: dict[str, int], max_length: int
) -> list[Feature]:
    """Word-chunked features: each chunk holds whole words whose subwords fit in ``max_length - 2``.

    A single word longer than that keeps only its first ``max_length - 2`` subwords (its label is on the first).
    """
    budget = max_length - 2
    if budget < 1:
        raise ValueError(f"max_length {max_length} leaves no room between <s> and </s>")
    feats: list[Feature] = []
    for si, (words, tags) in enumerate(zip(data.sentences, data.labels)):
        ids: list[int] = []
        labels: list[int] = []
        n_words = 0
        for word, tag in zip(words, tags):
            pieces = tok.word(word)[:budget]
            if ids and len(ids) + len(pieces) > budget:
                feats.append(_tag_feature(tok, ids, labels, si, n_words))
                ids, labels, n_words = [], [], 0
            ids.extend(pieces)
            labels.extend([label_to_id[tag]] + [IGNORE] * (len(pieces) - 1))
            n_words += 1
        feats.append(_tag_feature(tok, ids, labels, si, n_words))
    return feats


def _tag_feature(tok: TokenizerAdapter, ids: list[int], labels: list[int], si: int, n_words: int) -> Feature:
    return Feature(
        torch.tensor([tok.bos, *ids, tok.eos], dtype=torch.long),
        torch.tensor([IGNORE, *labels, IGNORE], dtype=torch.long),
        si,
        n_words,
    )


def _batch(feats: Sequence[Feature], pad: int, tagging: bool) -> tuple[torch.Tensor, torch.Tensor]:
    tokens = collate([f.ids for f in feats], pad)  # B x T
    if tagging:
        labels = torch.full(tokens.shape, IGNORE, dtype=torch.long)  # B x T
        for i, f in enumerate(feats):
            labels[i, : f.label.numel()] = f.label
    else:
        labels = torch.tensor([f.label for f in feats], dtype=torch.long)  # B
    return tokens, labels


# ----------------------------------------------------------------------------------------------------------------
# Training and prediction


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
        head = self._head_cls(_encoder_dim(self._encoder), len(self.labels), self.cfg.head_dropout)
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
        from .metrics import macro_f1

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
        from .metrics import seqeval_scores, token_scores

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
