"""Build a small start model as a real HF checkpoint: a sentencepiece unigram model + a random XLM-R.

Glot500 / XLM-R weights cannot be downloaded everywhere (tests, CI, the offline demo).  This writes a directory in
exactly the layout of an HF XLM-R checkpoint (``config.json``, ``model.safetensors``, ``sentencepiece.bpe.model``,
``tokenizer.json``, ``tokenizer_config.json``) so the real conversion and loading code runs on it.
"""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
from collections.abc import Iterable
from pathlib import Path

from translit_plugin.core.names import DEFAULT_MAX_LENGTH

logger = logging.getLogger(__name__)

START_MODEL_COMMAND = "translit-ppa build-start-model"
#: The record of a built start model; it marks the directory as written by ``build-start-model``
START_MODEL_MARKER = "translit_ppa_start_model.json"
#: What a start-model directory may hold besides its record (``--force`` replaces nothing else)
START_MODEL_FILES = ("config.json", "model.safetensors", "generation_config.json", "sentencepiece.bpe.model",
                     "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "added_tokens.json")


def train_sentencepiece(
    text_files: Iterable[str | os.PathLike],
    out_model: str | os.PathLike,
    vocab_size: int = 8000,
    max_sentences: int = 200_000,
    seed: int = 0,
) -> Path:
    """Train an XLM-R-style sentencepiece unigram model (ids 0/1/2 = ``<unk>``/``<s>``/``</s>``, NFKC rules).

    Lines are read from every file in turn (one sentence per line); training is single-threaded and seeded so the
    same inputs give the same model.
    """
    import sentencepiece as spm
    from sentencepiece import sentencepiece_model_pb2 as pb2

    files = [Path(f) for f in text_files]
    missing = [str(f) for f in files if not f.is_file()]
    if missing:
        raise FileNotFoundError(f"text files not found: {', '.join(missing)}")
    out_model = Path(out_model)
    spm.set_random_generator_seed(seed)
    with tempfile.TemporaryDirectory() as tmp:
        prefix = Path(tmp) / "spm"
        spm.SentencePieceTrainer.train(
            input=",".join(str(f) for f in files),
            model_prefix=str(prefix),
            vocab_size=vocab_size,
            model_type="unigram",
            character_coverage=0.9995,
            normalization_rule_name="nmt_nfkc",
            input_sentence_size=max_sentences,
            shuffle_input_sentence=True,
            num_threads=1,  # multi-threaded EM is not bit-reproducible
            unk_id=0,
            bos_id=1,
            eos_id=2,
            pad_id=-1,
            minloglevel=2,
        )
        out_model.parent.mkdir(parents=True, exist_ok=True)
        proto = pb2.ModelProto()
        proto.ParseFromString(Path(f"{prefix}.model").read_bytes())
        # the trainer records its model_prefix, here a random temporary path: record the output's name instead, so
        # the same inputs give the same bytes
        proto.trainer_spec.model_prefix = out_model.with_suffix("").name
        out_model.write_bytes(proto.SerializeToString())
    logger.info("trained sentencepiece model %s (%d pieces)", out_model, vocab_size)
    return out_model


def save_hf_tokenizer(spm_model: str | os.PathLike, out_dir: str | os.PathLike,
                      model_max_length: int = DEFAULT_MAX_LENGTH) -> None:
    """Write the HF XLM-R tokenizer files for ``spm_model`` into ``out_dir`` (needs ``protobuf`` to read the spm)."""
    from transformers import XLMRobertaTokenizer

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    target = out_dir / "sentencepiece.bpe.model"
    if Path(spm_model).resolve() != target.resolve():
        shutil.copyfile(spm_model, target)
    tok = XLMRobertaTokenizer.from_pretrained(str(out_dir), model_max_length=model_max_length)
    tok.save_pretrained(str(out_dir))


def build_random_xlmr(
    spm_model: str | os.PathLike,
    out_dir: str | os.PathLike,
    layers: int = 2,
    hidden: int = 64,
    heads: int = 4,
    ffn: int = 128,
    max_positions: int = DEFAULT_MAX_LENGTH,
    seed: int = 0,
    dropout: float = 0.1,
) -> Path:
    """Save a randomly initialised ``XLMRobertaForMaskedLM`` (HF format) whose vocabulary is ``spm_model``'s."""
    import torch
    from transformers import XLMRobertaConfig, XLMRobertaForMaskedLM

    from translit_plugin.vocab import expected_vocab_size

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    config = XLMRobertaConfig(
        vocab_size=expected_vocab_size(spm_model),
        hidden_size=hidden,
        num_hidden_layers=layers,
        num_attention_heads=heads,
        intermediate_size=ffn,
        max_position_embeddings=max_positions + 2,  # + padding_idx + 1, as XLM-R's 514
        type_vocab_size=1,
        layer_norm_eps=1e-5,
        hidden_act="gelu",
        hidden_dropout_prob=dropout,
        attention_probs_dropout_prob=dropout,
        pad_token_id=1,
        bos_token_id=0,
        eos_token_id=2,
        tie_word_embeddings=True,
    )
    torch.manual_seed(seed)
    model = XLMRobertaForMaskedLM(config)
    model.save_pretrained(str(out_dir))
    save_hf_tokenizer(spm_model, out_dir, model_max_length=max_positions)
    logger.info(
        "saved random XLM-R (%d layers, %d hidden, vocab %d) to %s", layers, hidden, config.vocab_size, out_dir
    )
    return out_dir
