"""The loss terms, one unit each, and their registry :data:`TERMS`.

The ``mlm_seq_tlm`` criterion builds its flags from every registered term's ``options``, runs the encoder passes
the active terms (weight > 0) ask for, adds ``weight * loss`` of each in registry order and logs what each term's
``reduce`` returns.  Adding a term is one new unit and one registration line::

    # translit_plugin/method/terms/my_term.py
    @dataclass
    class MyOptions:
        my_weight: float = field(default=0.0, metadata={"help": "weight of my term (0 = off)"})

    class MyTerm(Term):
        name, options, weight_option = "my", MyOptions, "my_weight"

        def needs(self):
            return {LATN: StreamNeeds(vectors={"my": VectorRequest(8, MEAN_NO_SPECIAL, "--my-layer")})}

        def compute(self, step):
            loss = step.vectors[LATN]["my"].pow(2).mean()
            return loss, {"my_sum": loss.detach() * step.n_local, "my_count": step.n_local}

        @classmethod
        def reduce(cls, logs):
            count = logged_total(logs, "my_count")
            return [("loss_my", logged_total(logs, "my_sum") / max(count, 1.0), count)] if count else []

    # here
    TERMS = (MlmOrigTerm, MlmLatnTerm, TlmTerm, SeqTerm, AnchorTerm, MyTerm)
"""

from __future__ import annotations

from translit_plugin.method.terms.anchor import AnchorTerm
from translit_plugin.method.terms.base import Term
from translit_plugin.method.terms.mlm import MlmLatnTerm, MlmOrigTerm
from translit_plugin.method.terms.seq import SeqTerm
from translit_plugin.method.terms.tlm import TlmTerm

#: Every term, in the order their losses are added and their metrics logged.
TERMS: tuple[type[Term], ...] = (MlmOrigTerm, MlmLatnTerm, TlmTerm, SeqTerm, AnchorTerm)

__all__ = ["TERMS", "AnchorTerm", "MlmLatnTerm", "MlmOrigTerm", "SeqTerm", "Term", "TlmTerm"]
