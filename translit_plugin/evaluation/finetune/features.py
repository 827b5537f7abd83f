"""From dataset rows to model inputs: sentence features, word-aligned tagging features in chunks, batches."""


from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import torch

from translit_plugin.core.names import truncate_keep_eos
from translit_plugin.hub.encoding import collate

from ..readers import ClassificationData, TaggingData
from .config import IGNORE


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
