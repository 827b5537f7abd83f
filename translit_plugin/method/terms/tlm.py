"""TLM: MLM on the concatenated pair ``<s> A </s> B </s>`` (the task builds the stream: order, positions)."""

from __future__ import annotations

from dataclasses import dataclass, field

from translit_plugin.core.names import TLM
from translit_plugin.method.terms.mlm import MlmTerm


@dataclass
class TlmOptions:
    tlm_weight: float = field(default=1.0, metadata={"help": "weight of TLM on the concatenated pair (0 = off)"})


class TlmTerm(MlmTerm):
    name = "tlm"
    options = TlmOptions
    weight_option = "tlm_weight"
    stream = TLM
    label = "loss_tlm"
