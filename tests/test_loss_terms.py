"""The loss-term units on their own (no fairseq, no task): what each computes and logs, how its logging is
aggregated, how their needs merge, the deprecated ``--seq-pooling mean``; and the criterion's flags, composed from
the units' options, against the flags it had before the units."""

import logging
import subprocess
import sys
from dataclasses import asdict
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

from translit_plugin.core.names import CLS, LATN, MEAN_NO_SPECIAL, MEAN_WITH_SPECIAL, ORIG, TLM
from translit_plugin.method.gather import Workers
from translit_plugin.method.masking import SpecialIds
from translit_plugin.method.pooling import VectorRequest, sentence_vectors
from translit_plugin.method.terms import TERMS, AnchorTerm, MlmOrigTerm, SeqTerm, TlmTerm
from translit_plugin.method.terms.anchor import anchor_loss
from translit_plugin.method.terms.base import Step, StreamNeeds, Term, TermSetup, merge_needs
from translit_plugin.method.terms.seq import _warn_mean_alias, retrieval_correct, seq_contrastive_loss

REPO = Path(__file__).resolve().parents[1]
SPECIALS = SpecialIds(bos=0, eos=2, pad=1)


def _cfg(**overrides):
    """Every term's options at their defaults, with ``overrides``: what the criterion's config holds."""
    values = {}
    for term in TERMS:
        values.update(asdict(term.options()))
    return SimpleNamespace(**{**values, **overrides})


def _step(**fields) -> Step:
    base = dict(model=None, sample={}, mlm={}, vectors={}, workers=Workers(), specials=SPECIALS,
                encode=None, n_local=0)  # fmt: skip
    return Step(**{**base, **fields})


def test_loss_term_units_import_neither_fairseq_nor_the_task():
    code = (
        "import sys\n"
        "import translit_plugin.method.terms, translit_plugin.method.masking, translit_plugin.method.pooling\n"
        "import translit_plugin.method.gather\n"
        "bad = [m for m in ('fairseq', 'translit_plugin.tasks', 'translit_plugin.criterions') if m in sys.modules]\n"
        "assert not bad, bad\n"
    )
    result = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr[-2000:]


def test_mlm_term_divides_by_its_count_and_reduces_token_weighted():
    term = MlmOrigTerm(_cfg(), TermSetup(SPECIALS))
    assert term.needs() == {ORIG: StreamNeeds(mlm=True)}
    step = _step(mlm={ORIG: (torch.tensor(6.0), torch.tensor(3.0))})
    step.totals = term.counts(step)
    loss, log = term.compute(step)
    assert float(loss) == 2.0 and set(log) == {"mlm_orig_sum", "mlm_orig_count"}
    logs = [log, {"mlm_orig_sum": 2.0, "mlm_orig_count": 1.0}]
    assert MlmOrigTerm.reduce(logs) == [("loss_mlm_orig", 2.0, 4.0)]
    assert MlmOrigTerm.reduce([{"seq_loss": 1.0}]) == []
    assert TlmTerm(_cfg(), TermSetup(SPECIALS)).needs() == {TLM: StreamNeeds(mlm=True)}


def test_seq_term_is_the_contrastive_loss_of_the_pooled_vectors_and_logs_its_share():
    g = torch.Generator().manual_seed(0)
    o, latn = torch.randn(5, 4, generator=g), torch.randn(5, 4, generator=g)
    term = SeqTerm(_cfg(seq_similarity="cosine", seq_temperature=0.1), TermSetup(SPECIALS))
    loss, log = term.compute(_step(vectors={ORIG: {"seq": o}, LATN: {"seq": latn}}, n_local=5))
    want = seq_contrastive_loss(o, latn, temperature=0.1, similarity="cosine")
    assert torch.equal(loss, want)
    assert log["seq_share"] == 1.0 and log["seq_count"] == 5
    assert int(log["seq_correct"]) == int(retrieval_correct(o, latn, similarity="cosine"))
    (name, value, weight), (acc_name, acc, count) = SeqTerm.reduce([log, log])
    assert (name, weight, acc_name, count) == ("loss_seq", 2.0, "seq_acc", 10.0)
    assert abs(value - float(want)) < 1e-6 and abs(acc - int(log["seq_correct"]) / 5) < 1e-9


def test_seq_term_skips_a_single_pair():
    term = SeqTerm(_cfg(), TermSetup(SPECIALS))
    v = torch.randn(1, 4)
    assert term.compute(_step(vectors={ORIG: {"seq": v}, LATN: {"seq": v}}, n_local=1)) is None


def test_seq_pooling_mean_is_a_deprecated_alias_warned_once(caplog):
    _warn_mean_alias.cache_clear()
    with caplog.at_level(logging.WARNING, logger="translit_plugin.method.terms.seq"):
        terms = [SeqTerm(_cfg(seq_pooling="mean"), TermSetup(SPECIALS)) for _ in range(3)]
    assert all(t.request == VectorRequest(8, MEAN_NO_SPECIAL, "--seq-layer") for t in terms)
    assert sum("deprecated" in r.getMessage() for r in caplog.records) == 1
    assert SeqTerm(_cfg(seq_pooling=CLS), TermSetup(SPECIALS)).request.pooling == CLS
    with pytest.raises(ValueError, match="unknown --seq-pooling"):
        SeqTerm(_cfg(seq_pooling=MEAN_WITH_SPECIAL), TermSetup(SPECIALS))


def test_named_poolings_say_whether_specials_count():
    tokens = torch.tensor([[0, 10, 11, 2, 1]])
    hidden = torch.arange(15, dtype=torch.float32).reshape(1, 5, 3)
    torch.testing.assert_close(sentence_vectors(hidden, tokens, MEAN_NO_SPECIAL, SPECIALS), hidden[:, 1:3].mean(1))
    torch.testing.assert_close(sentence_vectors(hidden, tokens, MEAN_WITH_SPECIAL, SPECIALS), hidden[:, 0:4].mean(1))
    torch.testing.assert_close(sentence_vectors(hidden, tokens, CLS, SPECIALS), hidden[:, 0])
    with pytest.raises(ValueError, match="unknown pooling"):
        sentence_vectors(hidden, tokens, "mean", SPECIALS)


def test_anchor_term_on_masked_vectors_is_the_mean_of_its_sides():
    g = torch.Generator().manual_seed(1)
    teacher_vecs = torch.randn(4, 3, generator=g)
    student = {ORIG: torch.randn(4, 3, generator=g), LATN: torch.randn(4, 3, generator=g)}
    teacher = torch.nn.Linear(1, 1)  # stands for the frozen model: only its device and dtype are read here
    term = AnchorTerm(_cfg(anchor_weight=1.0, anchor_input="masked", anchor_loss="mse", anchor_layer=2),
                      TermSetup(SPECIALS, load_model=lambda path: teacher))  # fmt: skip
    assert term.teacher is teacher
    assert set(term.needs()) == {ORIG, LATN}
    tokens = torch.tensor([[0, 5, 2]] * 4)
    sample = {ORIG: {"src_tokens": tokens, "target": torch.ones_like(tokens)}}
    step = _step(model=teacher, sample=sample, vectors={s: {"anchor": v} for s, v in student.items()}, n_local=4,
                 encode=lambda model, toks, request: teacher_vecs)  # fmt: skip
    loss, log = term.compute(step)
    want = (anchor_loss(student[LATN], teacher_vecs) + anchor_loss(student[ORIG], teacher_vecs)) / 2
    torch.testing.assert_close(loss, want)
    assert log["anchor_count"] == 4
    assert AnchorTerm.reduce([log])[0] == ("loss_anchor", pytest.approx(float(want)), 4.0)


def test_anchor_term_off_loads_no_teacher():
    def refuse(path):
        raise AssertionError("no teacher should be loaded")

    assert AnchorTerm(_cfg(), TermSetup(SPECIALS, load_model=refuse)).teacher is None


def test_needs_merge_in_stream_order_and_conflicts_are_refused():
    cfg = _cfg(anchor_weight=1.0, anchor_input="masked", anchor_sides="latn", mlm_orig_weight=0.0)
    terms = [cls(cfg, TermSetup(SPECIALS, load_model=lambda path: None)) for cls in TERMS]
    merged = merge_needs([t for t in terms if t.weight > 0])
    assert list(merged) == [ORIG, LATN, TLM]
    assert merged[ORIG] == StreamNeeds(mlm=False, vectors={"seq": VectorRequest(8, MEAN_NO_SPECIAL, "--seq-layer")})
    assert merged[LATN].mlm and set(merged[LATN].vectors) == {"seq", "anchor"}

    class Other(Term):
        def __init__(self) -> None:
            self.weight = 1.0

        def needs(self):
            return {ORIG: StreamNeeds(vectors={"seq": VectorRequest(2, CLS, "--other")})}

    with pytest.raises(ValueError, match="differently"):
        merge_needs([terms[3], Other()])


def test_the_criterion_flags_are_the_units_options_with_the_old_defaults():
    from translit_plugin.criterions.mlm_seq_tlm import MlmSeqTlmConfig

    old = {  # the criterion's flags before the units (less --encoder-batching; --seq-pooling mean renamed)
        "mlm_orig_weight": 1.0, "mlm_latn_weight": 1.0, "seq_weight": 1.0, "tlm_weight": 1.0, "seq_layer": 8,
        "seq_pooling": MEAN_NO_SPECIAL, "seq_similarity": "dot", "seq_temperature": 1.0, "seq_negatives": "all",
        "seq_gather": "exact", "anchor_weight": 0.0, "anchor_teacher": None, "anchor_layer": "8", "anchor_prompt": "",
        "anchor_pooling": MEAN_WITH_SPECIAL, "anchor_loss": "infonce", "anchor_temperature": 0.05,
        "anchor_sides": "both", "anchor_input": "clean", "encoder_chunk_tokens": 0, "anchor_teacher_cache": False,
    }  # fmt: skip
    cfg = MlmSeqTlmConfig()
    assert {k: v for k, v in asdict(cfg).items() if k != "_name"} == old
    assert all(cfg._get_help(k) for k in old), "every flag has a help string"

    import argparse

    from fairseq.dataclass.utils import gen_parser_from_dataclass

    parser = argparse.ArgumentParser()
    gen_parser_from_dataclass(parser, MlmSeqTlmConfig())
    args = parser.parse_args(["--seq-pooling", "mean", "--anchor-teacher", "t.pt", "--seq-gather", "local"])
    assert (args.seq_pooling, args.anchor_teacher, args.seq_gather) == ("mean", "t.pt", "local")
    with pytest.raises(SystemExit):
        parser.parse_args(["--seq-negatives", "some"])


def test_fairseq_builds_the_criterion_from_its_config():
    """fairseq-train's path: the registry merges the command line into the config and the criterion takes it."""
    from fairseq.criterions import build_criterion
    from fairseq.data import Dictionary
    from omegaconf import OmegaConf

    from translit_plugin.criterions.mlm_seq_tlm import MlmSeqTlmCriterion

    task = SimpleNamespace(source_dictionary=Dictionary(), target_dictionary=Dictionary())
    cfg = OmegaConf.create({"_name": "mlm_seq_tlm", "seq_layer": 2, "seq_pooling": "mean", "tlm_weight": 0.0,
                            "seq_similarity": "cosine"})  # fmt: skip
    crit = build_criterion(cfg, task)
    assert isinstance(crit, MlmSeqTlmCriterion)
    assert [t.name for t in crit.terms] == ["mlm_orig", "mlm_latn", "seq"]
    seq = crit.terms[-1]
    assert seq.request == VectorRequest(2, MEAN_NO_SPECIAL, "--seq-layer") and seq.similarity == "cosine"
    assert crit.specials == SpecialIds(bos=0, eos=2, pad=1) and not list(crit.parameters())
    with pytest.raises(ValueError, match="all loss weights are 0"):
        MlmSeqTlmCriterion(task, mlm_orig_weight=0, mlm_latn_weight=0, seq_weight=0, tlm_weight=0)
