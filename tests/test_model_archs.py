"""Architecture defaults: sizes of the registered ``translit_roberta`` archs."""

from __future__ import annotations

import argparse

from translit_plugin.models.translit_roberta import translit_roberta_base, translit_roberta_large, translit_roberta_tiny


def _args(**kw) -> argparse.Namespace:
    ns = argparse.Namespace(max_positions=None)  # RoBERTa's --max-positions parses to None when not given
    for k, v in kw.items():
        setattr(ns, k, v)
    return ns


def test_base_is_xlmr_base_with_512_positions_whatever_the_sample_length():
    a = _args(tokens_per_sample=256)
    translit_roberta_base(a)
    assert (a.encoder_layers, a.encoder_embed_dim, a.encoder_ffn_embed_dim, a.encoder_attention_heads) == (
        12, 768, 3072, 12)  # fmt: skip
    assert a.max_positions == 512 and a.activation_fn == "gelu" and not a.encoder_normalize_before
    b = _args(max_positions=128)
    translit_roberta_base(b)
    assert b.max_positions == 128


def test_large_and_tiny():
    a = _args()
    translit_roberta_large(a)
    assert (a.encoder_layers, a.encoder_embed_dim, a.max_positions) == (24, 1024, 512)
    t = _args(tokens_per_sample=128)
    translit_roberta_tiny(t)
    assert (t.encoder_layers, t.encoder_embed_dim, t.encoder_attention_heads) == (2, 64, 4)
    assert t.max_positions is None  # build_model then takes --tokens-per-sample
