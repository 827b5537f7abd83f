"""``translit-ppa export-hf``: one of our fairseq checkpoints -> an HF ``XLMRobertaForMaskedLM`` directory.

The steps: read the checkpoint and check it has an HF equivalent, map its tensors back through the table
(:mod:`.keys`; the folded token-type row is split out of the position rows again), write safetensors, config and
tokenizer, and run both side by side (:mod:`.parity`).
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path

import torch

from translit_plugin.checkpoint_compat import load_fairseq_checkpoint
from translit_plugin.core.files import atomic_write_json
from translit_plugin.core.hashing import sha256_file
from translit_plugin.core.safe_output import EXPORT_MARKER, staged_dir
from translit_plugin.vocab import expected_vocab_size

from . import ConversionError, stamp
from .fairseq_model import num_updates
from .keys import (
    EMB_KEY,
    FAIRSEQ_TO_HF_ACT,
    FOLDED_TT_KEY,
    HEAD_W_KEY,
    LM_HEAD_KEYS,
    POS_KEY,
    TOKEN_TYPE_KEY,
    Dims,
    layer_keys,
)
from .parity import export_parity_check

logger = logging.getLogger(__name__)


def export_fairseq_to_hf(
    checkpoint: str | os.PathLike,
    out_dir: str | os.PathLike,
    spm_model: str | os.PathLike | None = None,
    force: bool = False,
    check_parity: bool = True,
) -> Path:
    """Write an HF ``XLMRobertaForMaskedLM`` directory (safetensors + tokenizer) from one of our checkpoints.

    ``spm_model`` defaults to ``sentencepiece.bpe.model`` next to the checkpoint (a converted model directory); a
    training run's ``checkpoints/`` directory needs the start model's file passed explicitly.
    """
    checkpoint = Path(checkpoint)
    spm_path = Path(spm_model) if spm_model else checkpoint.parent / "sentencepiece.bpe.model"
    if not spm_path.is_file():
        raise FileNotFoundError(
            f"sentencepiece model not found: {spm_path}; pass --spm (the start model's sentencepiece.bpe.model)"
        )
    src = read_checkpoint(checkpoint, spm_path)
    hf_state, tied = hf_state_dict(src)
    config = hf_config(src, tied)
    _write_hf_dir(src, spm_path, hf_state, config, Path(out_dir), force, check_parity)
    logger.info("exported %s -> %s", checkpoint, out_dir)
    return Path(out_dir)


@dataclass
class FairseqCheckpoint:
    """One of our checkpoints, loaded and checked to have an HF XLM-R equivalent."""

    path: Path
    state: dict  # the whole checkpoint (cfg, model, optimizer history, ...)
    dims: Dims
    num_layers: int
    activation: str
    layer_norm_eps: float

    @property
    def model(self) -> dict[str, torch.Tensor]:
        return self.state["model"]

    @property
    def model_cfg(self):
        return self.state["cfg"]["model"]


def read_checkpoint(checkpoint: Path, spm_path: Path) -> FairseqCheckpoint:
    """Load ``checkpoint``; refuse a vocabulary ``spm_path`` does not give, pre-LN models and other activations."""
    from translit_plugin.models.arch_flags import network

    state = load_fairseq_checkpoint(checkpoint)
    model_state: dict[str, torch.Tensor] = state["model"]
    mcfg = state["cfg"]["model"]
    emb = model_state[EMB_KEY]
    dims = Dims(V=emb.shape[0], P=model_state[POS_KEY].shape[0], C=emb.shape[1], F=int(mcfg.encoder_ffn_embed_dim))
    expected_v = expected_vocab_size(spm_path)
    if expected_v != dims.V:
        raise ConversionError(
            f"{checkpoint}: {dims.V} embedding rows but {spm_path} gives a {expected_v}-entry dictionary; "
            "pass the sentencepiece model the checkpoint was trained with"
        )
    if getattr(mcfg, "encoder_normalize_before", False):
        raise ConversionError(f"{checkpoint}: pre-LN models have no XLM-R equivalent")
    net = network(mcfg)
    act = str(net.get("activation_fn", "gelu"))
    if act not in FAIRSEQ_TO_HF_ACT:
        raise ConversionError(f"{checkpoint}: activation {act!r} has no HF XLM-R equivalent")
    return FairseqCheckpoint(checkpoint, state, dims, int(mcfg.encoder_layers), act, net["layer_norm_eps"])


def hf_state_dict(src: FairseqCheckpoint) -> tuple[dict[str, torch.Tensor], bool]:
    """The HF ``XLMRobertaForMaskedLM`` tensors of ``src``, and whether its LM head is tied to the embeddings."""
    model_state, dims = src.model, src.dims
    emb = model_state[EMB_KEY]
    tt_row = model_state.get(FOLDED_TT_KEY, torch.zeros(dims.C, dtype=emb.dtype))
    hf_state: dict[str, torch.Tensor] = {}
    for hf_key, fs_key, symbols in layer_keys(src.num_layers):
        t = model_state[fs_key]
        if tuple(t.shape) != dims.shape(symbols):
            raise ConversionError(f"{src.path}: {fs_key} has shape {tuple(t.shape)}, expected {dims.shape(symbols)}")
        hf_state["roberta." + hf_key] = t
    # split the folded token-type row out again (float64 so the subtraction adds no error of its own)
    pos = model_state[POS_KEY]
    hf_state["roberta.embeddings.position_embeddings.weight"] = (pos.double() - tt_row.double()).to(pos.dtype)
    hf_state["roberta." + TOKEN_TYPE_KEY] = tt_row.reshape(1, -1).clone()
    for hf_key, fs_key, _ in LM_HEAD_KEYS:
        hf_state[hf_key] = model_state[fs_key]
    tied = HEAD_W_KEY not in model_state or torch.equal(model_state[HEAD_W_KEY], emb)
    if not tied:
        hf_state["lm_head.decoder.weight"] = model_state[HEAD_W_KEY]
    heads = sorted({k.split(".")[1] for k in model_state if k.startswith("classification_heads.")})
    if heads:
        logger.warning("classification heads %s are not exported (HF MaskedLM has no place for them)", heads)
    return hf_state, tied


def hf_config(src: FairseqCheckpoint, tied: bool) -> dict:
    """``config.json`` of the exported model."""
    mcfg, dims = src.model_cfg, src.dims
    return {
        "architectures": ["XLMRobertaForMaskedLM"],
        "model_type": "xlm-roberta",
        "vocab_size": dims.V,
        "hidden_size": dims.C,
        "num_hidden_layers": src.num_layers,
        "num_attention_heads": int(mcfg.encoder_attention_heads),
        "intermediate_size": dims.F,
        "hidden_act": FAIRSEQ_TO_HF_ACT[src.activation],
        "hidden_dropout_prob": float(mcfg.dropout),
        "attention_probs_dropout_prob": float(mcfg.attention_dropout),
        "max_position_embeddings": dims.P,
        "type_vocab_size": 1,
        "initializer_range": 0.02,
        "layer_norm_eps": src.layer_norm_eps,
        "pad_token_id": 1,
        "bos_token_id": 0,
        "eos_token_id": 2,
        "position_embedding_type": "absolute",
        "tie_word_embeddings": tied,
        "dtype": str(src.model[EMB_KEY].dtype).replace("torch.", ""),
    }


def _write_hf_dir(src: FairseqCheckpoint, spm_path: Path, hf_state: dict[str, torch.Tensor], config: dict,
                  out_dir: Path, force: bool, check_parity: bool) -> None:  # fmt: skip
    """Write the HF directory (staged: nothing appears unless every step, the parity check included, passed)."""
    from safetensors.torch import save_file

    from .start_model import save_hf_tokenizer

    with staged_dir(out_dir, force, [src.path, spm_path], EXPORT_MARKER, "translit-ppa export-hf") as tmp:
        # safetensors refuses shared storage: give each tensor its own contiguous buffer only where needed
        save_file({k: v.contiguous() for k, v in hf_state.items()}, str(tmp / "model.safetensors"),
                  metadata={"format": "pt"})  # fmt: skip
        atomic_write_json(tmp / "config.json", config, indent=2)
        save_hf_tokenizer(spm_path, tmp, model_max_length=src.dims.P - 2)
        record = {
            "source_checkpoint": str(src.path.resolve()),
            "source_sha256": sha256_file(src.path),
            "num_updates": num_updates(src.state),
            **stamp(),
        }
        if check_parity:
            record["parity"] = export_parity_check(src.path, spm_path, tmp, out_name=str(out_dir))
            record["parity_max_abs_diff"] = record["parity"]["max_abs_diff"]
        atomic_write_json(tmp / EXPORT_MARKER, record, indent=2)
