"""MLM on the original script and MLM on the Latin transliteration: mean cross-entropy over a stream's selected
tokens (the LM head runs only on those positions; the encoder passes sum it with
:func:`~translit_plugin.method.masking.mlm_loss_sum`)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar

from torch import Tensor

from translit_plugin.core.names import LATN, ORIG
from translit_plugin.method.terms.base import Metric, Step, StreamNeeds, Term, logged_total


class MlmTerm(Term):
    """MLM on ``stream``: the pass's summed cross-entropy divided by the number of selected tokens (of the global
    batch under exact gathering, so the workers' losses add up to the global mean).  Logs ``mlm_{stream}_sum`` and
    ``mlm_{stream}_count``; reported as ``label``."""

    stream: ClassVar[str]
    label: ClassVar[str]

    def needs(self) -> dict[str, StreamNeeds]:
        return {self.stream: StreamNeeds(mlm=True)}

    def counts(self, step: Step) -> dict[str, Tensor]:
        return {self.name: step.mlm[self.stream][1]}

    def compute(self, step: Step) -> tuple[Tensor, dict]:
        ce_sum, count = step.mlm[self.stream]
        loss = ce_sum / step.totals[self.name].clamp(min=1.0)
        return loss, {f"mlm_{self.stream}_sum": ce_sum.detach(), f"mlm_{self.stream}_count": count}

    @classmethod
    def reduce(cls, logs: list[dict]) -> list[Metric]:
        key = f"mlm_{cls.stream}"
        if not any(f"{key}_sum" in log for log in logs):
            return []
        count = logged_total(logs, f"{key}_count")
        return [(cls.label, logged_total(logs, f"{key}_sum") / max(count, 1.0), count)]


@dataclass
class MlmOrigOptions:
    mlm_orig_weight: float = field(default=1.0, metadata={"help": "weight of MLM on the original script (0 = off)"})


@dataclass
class MlmLatnOptions:
    mlm_latn_weight: float = field(default=1.0, metadata={"help": "weight of MLM on the transliteration (0 = off)"})


class MlmOrigTerm(MlmTerm):
    name = "mlm_orig"
    options = MlmOrigOptions
    weight_option = "mlm_orig_weight"
    stream = ORIG
    label = "loss_mlm_orig"


class MlmLatnTerm(MlmTerm):
    name = "mlm_latn"
    options = MlmLatnOptions
    weight_option = "mlm_latn_weight"
    stream = LATN
    label = "loss_mlm_latn"
