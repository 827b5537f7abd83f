"""The classification heads put on the encoder (HF's ``RobertaClassificationHead`` and a token head)."""


from __future__ import annotations

import torch
from torch import nn


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


def encoder_dim(model: nn.Module) -> int:
    args = getattr(model, "args", None) or getattr(getattr(model, "cfg", None), "model", None)
    dim = getattr(args, "encoder_embed_dim", None)
    if dim is None:
        dim = model.encoder.sentence_encoder.embed_tokens.embedding_dim
    return int(dim)
