"""Loss equivalence: our task + criterion on a converted model vs a plain-PyTorch reference objective on the HF model.

The reference below is written from the paper's method description and reference code directly on HF
``XLMRobertaForMaskedLM``: HF's own MLM loss (mean cross-entropy over labelled positions), layer ``k`` hidden states
mean-pooled over the attention mask minus special tokens (or ``<s>``), the 2N x 2N NT-Xent with the diagonal removed
and the partner as target (times 0.5), and HF's MLM loss on ``<s> A </s> B </s>``.  It sees the same pairs and the
same masks (taken from the task's batch) and the same weights (the fairseq model is the conversion of the HF one).
"""

import pytest
import torch
import torch.nn.functional as F
from omegaconf import OmegaConf
from translit_helpers import build_data_bin

SPECIAL = (0, 1, 2)  # <s>, <pad>, </s>
PAD = 1


@pytest.fixture(scope="module")
def setup(tiny_hf_dir, tiny_model_dir, tmp_path_factory):
    from fairseq import checkpoint_utils
    from transformers import XLMRobertaForMaskedLM

    import translit_plugin.plugin  # noqa: F401  (registers the components)
    from translit_plugin.tasks.translit_align import TranslitAlignConfig, TranslitAlignTask

    data = build_data_bin(tmp_path_factory.mktemp("ref") / "data", tiny_model_dir / "sentencepiece.bpe.model",
                          train_per_lang=6, valid_per_lang=2)
    assert (data / "orig" / "dict.txt").read_text() == (tiny_model_dir / "dict.txt").read_text()
    cfg = OmegaConf.structured(TranslitAlignConfig(data=str(data), seed=7, tokens_per_sample=128))
    task = TranslitAlignTask.setup_task(cfg)
    task.load_dataset("train")
    models, _ = checkpoint_utils.load_model_ensemble([str(tiny_model_dir / "model.pt")], task=task)
    fs_model = models[0].eval()  # eval: no dropout on either side
    hf_model = XLMRobertaForMaskedLM.from_pretrained(str(tiny_hf_dir), attn_implementation="eager").eval()
    ds = task.datasets["train"]
    batch = ds.collater([ds[i] for i in range(0, len(ds), 2)])  # 12 pairs, 4 languages
    return task, fs_model, hf_model, batch


def reference_objective(hf, batch, seq_layer, pooling="mean", cosine=False, tau=1.0):
    """The four reference terms on HF (see module docstring); returns a dict of scalar tensors."""

    def mlm(stream):
        ids = stream["src_tokens"]
        attn = ids.ne(PAD).long()
        labels = torch.where(stream["target"].ne(PAD), stream["target"], torch.full_like(ids, -100))
        out = hf(input_ids=ids, attention_mask=attn, labels=labels, output_hidden_states=True)
        return out.loss, out.hidden_states, attn

    def pooled(hidden, ids, attn):
        if pooling == "cls":
            return hidden[:, 0]
        special = torch.zeros_like(ids, dtype=torch.bool)
        for s in SPECIAL:
            special |= ids.eq(s)
        keep = (attn.bool() & ~special).unsqueeze(-1).float()
        return (hidden * keep).sum(1) / keep.sum(1)

    loss_o, hs_o, attn_o = mlm(batch["orig"])
    loss_l, hs_l, attn_l = mlm(batch["latn"])
    loss_t, _, _ = mlm(batch["tlm"])
    o = pooled(hs_o[seq_layer], batch["orig"]["src_tokens"], attn_o)
    l_ = pooled(hs_l[seq_layer], batch["latn"]["src_tokens"], attn_l)
    if cosine:
        o, l_ = F.normalize(o, dim=-1), F.normalize(l_, dim=-1)
    z = torch.stack([o, l_], dim=1).reshape(-1, o.shape[1])  # [o1, l1, o2, l2, ...]
    sim = (z @ z.t()).float() / tau
    sim.fill_diagonal_(float("-inf"))
    labels = torch.arange(z.shape[0]) ^ 1
    loss_s = F.cross_entropy(sim, labels) * 0.5
    return {"orig": loss_o, "latn": loss_l, "seq": loss_s, "tlm": loss_t}


CASES = {
    "reference_defaults": dict(seq_layer=1),
    "cls_cosine_tau": dict(seq_layer=2, seq_pooling="cls", seq_similarity="cosine", seq_temperature=0.1),
    # every pass in length-sorted chunks of <= 40 padded tokens (several chunks per stream on this batch)
    "chunked_passes": dict(seq_layer=2, encoder_chunk_tokens=40),
}


@pytest.mark.parametrize("case", list(CASES))
def test_four_losses_and_gradient_match_the_hf_reference(setup, case):
    from translit_plugin.criterions.mlm_seq_tlm import MlmSeqTlmCriterion

    task, fs_model, hf_model, batch = setup
    kwargs = CASES[case]
    crit = MlmSeqTlmCriterion(task, **kwargs)
    fs_model.zero_grad()
    loss, sample_size, log = crit(fs_model, batch)
    assert sample_size == 1.0
    ours = {n: float(log[f"mlm_{n}_sum"]) / float(log[f"mlm_{n}_count"]) for n in ("orig", "latn", "tlm")}
    ours["seq"] = float(log["seq_loss"])

    hf_model.zero_grad()
    ref = reference_objective(hf_model, batch, kwargs["seq_layer"], kwargs.get("seq_pooling", "mean"),
                              kwargs.get("seq_similarity") == "cosine", kwargs.get("seq_temperature", 1.0))
    for name in ("orig", "latn", "seq", "tlm"):
        assert abs(ours[name] - ref[name].item()) < 1e-5, f"{name}: ours {ours[name]:.7f} vs HF {ref[name].item():.7f}"
    assert abs(loss.item() - sum(ref.values()).item()) < 1e-5
    assert 0 < ours["seq"] and all(v > 1.0 for k, v in ours.items() if k != "seq"), "degenerate losses"

    # and the same gradient: the word embeddings (tied to the LM head) collect every term's gradient
    loss.backward()
    sum(ref.values()).backward()
    ours_g = fs_model.encoder.sentence_encoder.embed_tokens.weight.grad
    ref_g = hf_model.roberta.embeddings.word_embeddings.weight.grad
    scale = float(ref_g.abs().max())
    assert float((ours_g - ref_g).abs().max()) < 1e-5 * max(scale, 1.0)


def test_zero_weights_skip_their_forward(setup):
    from translit_plugin.criterions.mlm_seq_tlm import MlmSeqTlmCriterion

    task, fs_model, _, batch = setup
    calls = []
    handle = fs_model.register_forward_hook(lambda m, args, out: calls.append(args[0].shape))
    try:
        # MLM only: two passes (orig, latn), no TLM pass
        _, _, log = MlmSeqTlmCriterion(task, seq_layer=1, seq_weight=0, tlm_weight=0)(fs_model, batch)
        assert len(calls) == 2 and "seq_loss" not in log and "mlm_tlm_sum" not in log
        calls.clear()
        # MLM + TLM: three passes
        MlmSeqTlmCriterion(task, seq_layer=1, seq_weight=0)(fs_model, batch)
        assert len(calls) == 3
    finally:
        handle.remove()
    with pytest.raises(ValueError, match="--seq-layer 8 but the model has 2 layers"):
        MlmSeqTlmCriterion(task)(fs_model, batch)
    with pytest.raises(ValueError, match="all loss weights are 0"):
        MlmSeqTlmCriterion(task, mlm_orig_weight=0, mlm_latn_weight=0, seq_weight=0, tlm_weight=0)


def reference_anchor(student, teacher, batch, layer, loss, tau):
    """The anchored term written plainly on HF models: clean inputs, mean over the attention mask (<s>, </s> in)."""

    def vec(model, stream):
        ids = torch.where(stream["target"].ne(PAD), stream["target"], stream["src_tokens"])  # unmask
        attn = ids.ne(PAD)
        hidden = model(input_ids=ids, attention_mask=attn.long(), output_hidden_states=True).hidden_states[layer]
        keep = attn.unsqueeze(-1).float()
        return (hidden * keep).sum(1) / keep.sum(1)

    with torch.no_grad():
        t = vec(teacher, batch["orig"])
    terms = []
    for side in ("latn", "orig"):
        s = vec(student, batch[side])
        if loss == "mse":
            terms.append(((s - t) ** 2).mean())
        elif loss == "cosine":
            terms.append((1 - F.cosine_similarity(s, t, dim=-1)).mean())
        else:
            sim = F.normalize(s, dim=-1) @ F.normalize(t, dim=-1).t() / tau
            terms.append(F.cross_entropy(sim, torch.arange(len(s))))
    return sum(terms) / 2


@pytest.mark.parametrize("kind", ["infonce", "mse", "cosine"])
def test_anchor_term_and_gradient_match_the_hf_reference(setup, tiny_hf_dir, tiny_model_dir, kind):
    """Student = the converted model with perturbed word embeddings: it differs from the teacher (the start model)."""
    import copy

    from transformers import XLMRobertaForMaskedLM

    from translit_plugin.criterions.mlm_seq_tlm import MlmSeqTlmCriterion

    task, fs_model, hf_model, batch = setup
    fs_student, hf_student = copy.deepcopy(fs_model), copy.deepcopy(hf_model)
    noise = torch.randn(fs_student.encoder.sentence_encoder.embed_tokens.weight.shape,
                        generator=torch.Generator().manual_seed(11)) * 0.05  # fmt: skip
    with torch.no_grad():
        fs_student.encoder.sentence_encoder.embed_tokens.weight.add_(noise)
        hf_student.roberta.embeddings.word_embeddings.weight.add_(noise)
    teacher = XLMRobertaForMaskedLM.from_pretrained(str(tiny_hf_dir), attn_implementation="eager").eval()
    crit = MlmSeqTlmCriterion(task, mlm_orig_weight=0, mlm_latn_weight=0, seq_weight=0, tlm_weight=0,
                              anchor_weight=1.0, anchor_teacher=str(tiny_model_dir / "model.pt"), anchor_layer=2,
                              anchor_loss=kind, anchor_temperature=0.1)  # fmt: skip
    loss, sample_size, log = crit(fs_student, batch)
    ref = reference_anchor(hf_student, teacher, batch, 2, kind, 0.1)
    assert sample_size == 1.0 and ref.item() > 1e-4, "degenerate reference"
    assert abs(loss.item() - ref.item()) < 1e-5 * max(1.0, ref.item()), (loss.item(), ref.item())
    assert abs(float(log["anchor_sum"]) / log["anchor_count"] - ref.item()) < 1e-5 * max(1.0, ref.item())
    loss.backward()
    ref.backward()
    ours_g = fs_student.encoder.sentence_encoder.embed_tokens.weight.grad
    ref_g = hf_student.roberta.embeddings.word_embeddings.weight.grad
    scale = float(ref_g.abs().max())
    assert scale > 0 and float((ours_g - ref_g).abs().max()) < 1e-5 * max(scale, 1.0)
    # the teacher is outside the module tree: no parameters of the criterion, nothing to checkpoint
    assert not list(crit.parameters()) and not crit.state_dict()
    teacher = next(term.teacher for term in crit.terms if term.name == "anchor")
    assert all(not p.requires_grad for p in teacher.parameters())


def test_anchor_needs_a_teacher_of_the_same_vocabulary(setup, tiny_model_dir, tmp_path):
    from translit_plugin.criterions.mlm_seq_tlm import MlmSeqTlmCriterion

    task = setup[0]
    with pytest.raises(ValueError, match="needs a teacher"):
        MlmSeqTlmCriterion(task, anchor_weight=1.0)
    with pytest.raises(FileNotFoundError, match="no such checkpoint"):
        MlmSeqTlmCriterion(task, anchor_weight=1.0, anchor_teacher=str(tmp_path / "nope.pt"))


def test_chunked_anchor_passes_give_the_same_loss_and_gradient(setup, tiny_model_dir):
    """--encoder-chunk-tokens runs length-sorted chunks without their padding: same loss, same gradient."""
    import copy

    from translit_plugin.criterions.mlm_seq_tlm import MlmSeqTlmCriterion

    task, fs_model, _, batch = setup
    results = []
    for chunk in (0, 40):
        model = copy.deepcopy(fs_model)
        with torch.no_grad():
            model.encoder.sentence_encoder.embed_tokens.weight.add_(0.05)
        crit = MlmSeqTlmCriterion(task, mlm_orig_weight=0, mlm_latn_weight=0, seq_weight=0, tlm_weight=0,
                                  anchor_weight=1.0, anchor_teacher=str(tiny_model_dir / "model.pt"), anchor_layer=2,
                                  encoder_chunk_tokens=chunk)  # fmt: skip
        calls: list = []
        handle = model.register_forward_hook(lambda m, args, out, calls=calls: calls.append(tuple(args[0].shape)))
        loss, _, _ = crit(model, batch)
        handle.remove()
        loss.backward()
        results.append((loss.item(), model.encoder.sentence_encoder.embed_tokens.weight.grad.clone(), calls))
    (l0, g0, calls0), (l1, g1, calls1) = results
    assert len(calls0) == 2 and len(calls1) > 2  # chunked: several narrower passes per side
    assert sum(b * t for b, t in calls1) < sum(b * t for b, t in calls0)  # less padding
    assert abs(l0 - l1) < 1e-5 * max(1.0, abs(l0))
    assert float((g0 - g1).abs().max()) < 1e-5 * max(float(g0.abs().max()), 1.0)


def test_chunked_seq_only_passes_give_the_same_loss_and_gradient(setup):
    import copy

    from translit_plugin.criterions.mlm_seq_tlm import MlmSeqTlmCriterion

    task, fs_model, _, batch = setup
    results = []
    for chunk in (0, 40):
        model = copy.deepcopy(fs_model)
        crit = MlmSeqTlmCriterion(task, mlm_orig_weight=0, mlm_latn_weight=0, tlm_weight=0, seq_layer=2,
                                  seq_similarity="cosine", seq_temperature=0.1, encoder_chunk_tokens=chunk)  # fmt: skip
        loss, _, log = crit(model, batch)
        loss.backward()
        results.append((loss.item(), float(log["seq_correct"]),
                        model.encoder.sentence_encoder.embed_tokens.weight.grad.clone()))  # fmt: skip
    (l0, c0, g0), (l1, c1, g1) = results
    assert abs(l0 - l1) < 1e-5 * max(1.0, abs(l0)) and c0 == c1
    assert float((g0 - g1).abs().max()) < 1e-5 * max(float(g0.abs().max()), 1.0)
