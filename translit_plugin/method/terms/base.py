"""What a loss term is, and what it gets to compute from.

A term (:class:`Term`) is one unit: its options (a dataclass whose fields become the criterion's flags), the encoder
outputs it needs (:meth:`Term.needs`), its computation (:meth:`Term.compute`: loss and logging entries) and how its
logging entries are aggregated over workers and micro-batches (:meth:`Term.reduce`).  The criterion runs the
encoder passes the active terms ask for, hands every term the same :class:`Step` and adds ``weight * loss``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, ClassVar

from torch import Tensor

from translit_plugin.core.names import LATN, ORIG, TLM
from translit_plugin.method.gather import Workers
from translit_plugin.method.masking import SpecialIds
from translit_plugin.method.pooling import VectorRequest

#: The streams of a batch, in the order their encoder passes run (the order fixes the dropout draws).
STREAMS = (ORIG, LATN, TLM)

#: ``(name, value, weight)`` of one logged metric, as fairseq's ``metrics.log_scalar`` takes them.
Metric = tuple[str, float, float]


@dataclass
class StreamNeeds:
    """What terms take from one stream's encoder pass: the MLM cross-entropy over its selected tokens (``mlm``)
    and sentence vectors (``vectors``: key -> request)."""

    mlm: bool = False
    vectors: dict[str, VectorRequest] = field(default_factory=dict)


@dataclass
class TermSetup:
    """What a term may use when it is built: the special ids; ``load_model(path)``, which returns a frozen model
    from a checkpoint (``None``: the run's start model); ``teacher_dir(path)``, the model directory that checkpoint
    lies in (its ``use.json``, tokenizer); ``tokenize(text, path)``, the data dictionary's ids of ``text``'s pieces
    (no ``<s>``/``</s>``) by the sentencepiece model of that directory."""

    specials: SpecialIds
    load_model: Callable[[str | None], Any] | None = None
    teacher_dir: Callable[[str | None], str] | None = None
    tokenize: Callable[[str, str | None], list[int]] | None = None


@dataclass
class Step:
    """One batch as the terms see it.

    ``mlm``: stream -> ``(summed cross-entropy, number of selected tokens)``; ``vectors``: stream -> key -> ``B x C``
    float32 sentence vectors; ``totals``: the counts terms declared in :meth:`Term.counts`, summed over workers under
    exact gathering (this worker's otherwise); ``n_local`` / ``n_global``: pairs on this worker / in the global batch;
    ``encode(model, tokens, request)``: an extra encoder pass of ``B x T`` ids to ``B x C`` vectors (given a tuple of
    requests, one pass up to the deepest layer and a list of their vectors).
    """

    model: Any
    sample: dict
    mlm: dict[str, tuple[Tensor, Tensor]]
    vectors: dict[str, dict[str, Tensor]]
    workers: Workers
    specials: SpecialIds
    encode: Callable[[Any, Tensor, VectorRequest], Tensor]
    n_local: int
    n_global: int = 0
    totals: dict[str, Tensor] = field(default_factory=dict)


class Term:
    """One loss term.  Subclasses set the class attributes and override what they use.

    ``name``: the term's name (logging and the registry); ``options``: the dataclass of its config fields (each with
    ``help`` and, for a fixed set of values, ``choices`` metadata); ``weight_option``: which of them is its weight
    (0 = off: the term is then neither run nor logged).
    """

    name: ClassVar[str]
    options: ClassVar[type]
    weight_option: ClassVar[str]

    def __init__(self, cfg: Any, setup: TermSetup) -> None:
        self.weight = float(getattr(cfg, self.weight_option))

    def needs(self) -> dict[str, StreamNeeds]:
        """Stream -> what this term takes from its encoder pass (nothing by default)."""
        return {}

    def counts(self, step: Step) -> dict[str, Tensor]:
        """Counts this term normalises by; under exact gathering they come back summed over workers in
        ``step.totals`` (one collective for all terms)."""
        return {}

    def compute(self, step: Step) -> tuple[Tensor, dict] | None:
        """``(loss, logging entries)`` of this batch, or None when the term has nothing to compute on it."""
        raise NotImplementedError

    @classmethod
    def reduce(cls, logs: list[dict]) -> list[Metric]:
        """Metrics from the logging entries of all workers and micro-batches (empty when the term did not log)."""
        return []


def logged_total(logs: list[dict], key: str) -> float:
    """Sum of ``key`` over logging outputs (0 where absent)."""
    return float(sum(float(log.get(key, 0)) for log in logs))


def merge_needs(terms: list[Term]) -> dict[str, StreamNeeds]:
    """What the encoder passes must deliver for ``terms``: stream -> merged needs, in :data:`STREAMS` order, only the
    streams some term uses."""
    asked = [term.needs() for term in terms]
    unknown = {s for needs in asked for s in needs} - set(STREAMS)
    if unknown:
        raise ValueError(f"unknown streams {sorted(unknown)} (expected {STREAMS})")
    merged: dict[str, StreamNeeds] = {}
    for stream in STREAMS:
        need = StreamNeeds()
        for needs in asked:
            if stream not in needs:
                continue
            need.mlm = need.mlm or needs[stream].mlm
            for key, request in needs[stream].vectors.items():
                if need.vectors.setdefault(key, request) != request:
                    raise ValueError(f"two terms ask for vectors {key!r} of {stream} differently")
        if need.mlm or need.vectors:
            merged[stream] = need
    return merged
