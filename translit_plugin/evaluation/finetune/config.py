"""The fine-tuning settings: the paper's per task, and the label id the loss ignores."""


from __future__ import annotations

from dataclasses import asdict, dataclass

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
