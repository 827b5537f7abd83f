"""HF and fairseq side by side on the same ids: the check behind ``convert`` and ``export-hf``.

Every hidden state (padding included) and the MLM logits must agree within a tolerance relative to each tensor's
largest magnitude on the HF side (a 1e-4 absolute bound is meaningless next to activations of several hundred,
which real checkpoints have); otherwise the command fails and writes nothing.
"""

from __future__ import annotations

import logging
from pathlib import Path

import torch

from . import ConversionError

logger = logging.getLogger(__name__)

#: Sentences in several scripts (the model is random or trained; only agreement matters).
PARITY_SENTENCES = [
    "The quick brown fox jumps over the lazy dog.",
    "مرحبا بالعالم",
    "Καλημέρα κόσμε",
    "שלום עולם",
    "你好，世界",
    "안녕하세요 세계",
    "สวัสดีชาวโลก",
    "",
]


def _diff(ours: torch.Tensor, theirs: torch.Tensor) -> dict:
    """Max abs difference and the same relative to the HF tensor's largest magnitude (real models have outliers)."""
    absdiff = (ours.float() - theirs.float()).abs().max().item()
    scale = theirs.float().abs().max().item()
    return {"max_abs": absdiff, "scale": scale, "rel": absdiff / max(scale, 1e-12)}


def _compare_with_hf(hub, hf, batch: dict, tol: float, what: str, where: str) -> dict:
    """Compare every hidden state (padding included) and the MLM logits of HF and fairseq; raise above ``tol``.

    Logits are compared over our vocabulary (HF may carry unreachable extra rows); an HF model without an LM head
    (``AutoModel``) has hidden states only (``logits`` is None in the report).  Returns the per-tensor report that
    the written record keeps.
    """
    with torch.no_grad():
        out = hf(**batch, output_hidden_states=True)
        logits, extra = hub.model(batch["input_ids"], return_all_hiddens=True)
    layers = [_diff(ours_h.transpose(0, 1), theirs)  # T x B x C -> B x T x C
              for ours_h, theirs in zip(extra["inner_states"], out.hidden_states)]  # fmt: skip
    if len(layers) != len(out.hidden_states):
        raise ConversionError(f"{what}: {len(extra['inner_states'])} fairseq states vs {len(out.hidden_states)} HF")
    theirs_logits = getattr(out, "logits", None)
    head = _diff(logits, theirs_logits[..., : logits.shape[-1]]) if theirs_logits is not None else None
    heads = [head] if head is not None else []
    worst = max([d["rel"] for d in heads + layers])
    report = {
        "tolerance_rel": tol,
        "max_rel_diff": worst,
        "max_abs_diff": max([d["max_abs"] for d in heads + layers]),
        "hidden_states": layers,
        "logits": head,
        "sentences": len(batch["input_ids"]),
    }
    if worst > tol:
        bad = [f"hidden_states[{i}] rel {d['rel']:.3g} (abs {d['max_abs']:.3g} of {d['scale']:.3g})"
               for i, d in enumerate(layers) if d["rel"] > tol]  # fmt: skip
        if head is not None and head["rel"] > tol:
            bad.append(f"logits rel {head['rel']:.3g} (abs {head['max_abs']:.3g} of {head['scale']:.3g})")
        raise ConversionError(
            f"{what} failed for {where}: HF and fairseq differ beyond {tol} relative: " + "; ".join(bad[:4])
        )
    logger.info("%s passed: max relative difference %.3g (abs %.3g) over %d sentences", what, worst,
                report["max_abs_diff"], report["sentences"])  # fmt: skip
    return report


def _give_hf_our_head(hf, hub) -> None:
    """A bare HF encoder loaded as ``*ForMaskedLM`` gets a random head: give it the head we initialised instead."""
    head = hub.model.encoder.lm_head
    v = head.bias.shape[0]
    with torch.no_grad():
        hf.lm_head.dense.weight.copy_(head.dense.weight)
        hf.lm_head.dense.bias.copy_(head.dense.bias)
        hf.lm_head.layer_norm.weight.copy_(head.layer_norm.weight)
        hf.lm_head.layer_norm.bias.copy_(head.layer_norm.bias)
        hf.lm_head.bias.zero_()
        hf.lm_head.bias[:v].copy_(head.bias)
        if getattr(hf.lm_head.decoder, "bias", None) is not None:
            hf.lm_head.decoder.bias.copy_(hf.lm_head.bias)


def _hf_masked_lm(hf_dir: Path, quiet: bool = False):
    """``AutoModelForMaskedLM`` of ``hf_dir`` in eval mode (``quiet``: without the "newly initialised" warning)."""
    from transformers import AutoModelForMaskedLM

    return _hf_model(hf_dir, AutoModelForMaskedLM, quiet)


def _hf_model(hf_dir: Path, auto_class, quiet: bool = False):
    """``auto_class.from_pretrained(hf_dir)`` in eval mode (``quiet``: without transformers' load report; a source
    without a pooler has it reported missing, which the export record already says)."""
    import transformers

    verbosity = transformers.logging.get_verbosity()
    if quiet:
        transformers.logging.set_verbosity_error()
    try:
        return auto_class.from_pretrained(str(hf_dir)).eval()
    finally:
        transformers.logging.set_verbosity(verbosity)


def parity_check(hf_dir: Path, model_dir: Path, tol: float = 1e-4, fresh_head: bool = False,
                 out_name: str | None = None) -> dict:  # fmt: skip
    """HF checkpoint vs the converted model: same token ids, hidden states and logits within ``tol`` (relative).

    ``fresh_head``: the source is a bare encoder and our LM head was initialised at conversion; the HF side is
    given the same head so the logits are compared too (its "newly initialised" warning is expected and muted).
    ``out_name`` names the output in errors (``model_dir`` may be a staging directory).
    """
    from transformers import AutoTokenizer

    from translit_plugin.hub import from_pretrained

    where = out_name or str(model_dir)
    hub = from_pretrained(str(model_dir)).eval()
    hf = _hf_masked_lm(hf_dir, quiet=fresh_head)
    if fresh_head:
        _give_hf_our_head(hf, hub)
    batch = dict(AutoTokenizer.from_pretrained(str(hf_dir))(PARITY_SENTENCES, padding=True, return_tensors="pt"))
    ours = hub.batch_encode(PARITY_SENTENCES)
    if not torch.equal(ours, batch["input_ids"]):
        raise ConversionError(
            f"{where}: our tokenization (sentencepiece + dict.txt) differs from the HF tokenizer of {hf_dir}; "
            "the sentencepiece model in the HF directory does not match its tokenizer files"
        )
    return _compare_with_hf(hub, hf, batch, tol, "parity check", where)


def export_parity_check(checkpoint: Path, spm_path: Path, hf_dir: Path, tol: float = 1e-4,
                        out_name: str | None = None, bare: bool = False) -> dict:  # fmt: skip
    """Our checkpoint vs the exported HF model on the same ids (see :func:`_compare_with_hf`); ``bare``: the export
    is an ``XLMRobertaModel``, loaded with ``AutoModel`` (hidden states only)."""
    from transformers import AutoModel

    from translit_plugin.hub import from_pretrained

    hub = from_pretrained(str(checkpoint.parent), checkpoint_file=checkpoint.name, sentencepiece_model=str(spm_path))
    hub.eval()
    hf = _hf_model(hf_dir, AutoModel, quiet=True) if bare else _hf_masked_lm(hf_dir)
    ids = hub.batch_encode(PARITY_SENTENCES)
    batch = {"input_ids": ids, "attention_mask": ids.ne(hub.dictionary.pad()).long()}
    return _compare_with_hf(hub, hf, batch, tol, "export parity check", out_name or str(hf_dir))
