"""``translit-ppa export-hf``: one of our fairseq checkpoints -> an HF directory that is what the source was.

The steps: read the checkpoint and check it has an HF equivalent; find where it came from (:mod:`.lineage`: the
start model directory and its ``conversion.json``); decide what to write (:func:`export_plan`); map its tensors back
through the table (:mod:`.keys`; the folded token-type row is split out of the position rows again); write
safetensors, config and tokenizer; run both side by side (:mod:`.parity`); write the sentence-transformers files
(:mod:`.st_config`) and the model card (:mod:`.model_card`).

What is written:

* **a bare source stays bare**: when ``convert`` initialised the LM head (the source was an ``XLMRobertaModel``,
  e.g. multilingual-e5) and the checkpoint's head is still bit-identical to the start model's, the export is an
  ``XLMRobertaModel`` (no ``lm_head.*``, the source's pooler back from ``hf_extra.safetensors``).  A head that
  training changed is kept (``XLMRobertaForMaskedLM``) and the record and log say so.
* **an MLM source keeps its head** (``XLMRobertaForMaskedLM``, or the source's own MLM class).
* **the config is the source's** (``conversion.json["hf_config"]``) with only what the checkpoint changes: the
  vocabulary size (rows no token reaches were dropped at conversion), the architecture when a trained head is kept,
  the tied flag and the dtype; every change is listed in ``translit_ppa_export.json`` (``config_changes``).  The
  sizes, epsilon and activation must agree with the checkpoint, or the start model found is another model.
* when the source is unknown (no ``conversion.json`` reachable), the earlier behaviour: an ``XLMRobertaForMaskedLM``
  with a config rebuilt from the checkpoint, and the record says why.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import torch

from translit_plugin.checkpoint_compat import load_fairseq_checkpoint
from translit_plugin.core.files import atomic_write_json, atomic_write_text
from translit_plugin.core.hashing import sha256_file
from translit_plugin.core.safe_output import staged_dir
from translit_plugin.core.use_settings import USE_FILE, UseSetting, read_use_setting
from translit_plugin.vocab import expected_vocab_size

from . import ConversionError, stamp
from .fairseq_model import num_updates
from .keys import (
    EMBED_KEY,
    FAIRSEQ_TO_HF_ACT,
    FOLDED_TT_KEY,
    HEAD_W_KEY,
    HF_TO_FAIRSEQ_ACT,
    LM_HEAD_KEYS,
    POS_KEY,
    TOKEN_TYPE_KEY,
    Dims,
    layer_keys,
)
from .lineage import POOLER_KEYS, Lineage, find_lineage, head_status, read_hf_extra
from .parity import export_parity_check

logger = logging.getLogger(__name__)

EXPORT_COMMAND = "translit-ppa export-hf"
#: The record of an export; it marks the directory as written by ``export-hf``
EXPORT_MARKER = "translit_ppa_export.json"
#: What an exported directory may hold besides its record (``--force`` replaces nothing else)
EXPORTED_FILES = ("config.json", "model.safetensors", "generation_config.json", "sentencepiece.bpe.model",
                  "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "added_tokens.json",
                  "README.md", "modules.json", "sentence_bert_config.json", "config_sentence_transformers.json",
                  "1_Pooling/config.json")


def export_fairseq_to_hf(
    checkpoint: str | os.PathLike,
    out_dir: str | os.PathLike,
    spm_model: str | os.PathLike | None = None,
    force: bool = False,
    check_parity: bool = True,
    start_dir: str | os.PathLike | None = None,
    results: Sequence[str | os.PathLike] = (),
) -> Path:
    """Write an HF directory (safetensors + tokenizer, sentence-transformers files, model card) from a checkpoint.

    ``spm_model`` defaults to ``sentencepiece.bpe.model`` next to the checkpoint (a converted model directory); a
    training run's ``checkpoints/`` directory needs the start model's file passed explicitly.  ``start_dir``: the
    model directory training started from, when :mod:`.lineage` cannot find it.  ``results``: evaluation results
    for the model card (``demo_results.json`` or ``translit-ppa evaluate`` JSON lines).
    """
    from .card_facts import read_results

    checkpoint = Path(checkpoint)
    spm_path = Path(spm_model) if spm_model else checkpoint.parent / "sentencepiece.bpe.model"
    if not spm_path.is_file():
        raise FileNotFoundError(
            f"sentencepiece model not found: {spm_path}; pass --spm (the start model's sentencepiece.bpe.model)"
        )
    tables = [read_results(r) for r in results]  # a bad results file fails before anything is read or written
    src = read_checkpoint(checkpoint, spm_path)
    lineage = find_lineage(checkpoint, src.state["cfg"], start_dir)
    plan = export_plan(src, lineage)
    hf_state, tied = hf_state_dict(src, bare=plan.bare, extra=plan.extra)
    plan.finish_config(src, tied)
    use, use_file = _use_setting(checkpoint, spm_path, lineage)
    _write_hf_dir(src, spm_path, hf_state, plan, lineage, use, use_file, tables, Path(out_dir), force, check_parity)
    logger.info("exported %s -> %s (%s)", checkpoint, out_dir, plan.architecture)
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
    emb = model_state[EMBED_KEY]
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


@dataclass
class ExportPlan:
    """What the export writes: the architecture, whether the LM head goes with it, and the config."""

    bare: bool  # an XLMRobertaModel (no LM head) rather than *ForMaskedLM
    head: str  # the LM head decision, in words (record, log, model card)
    head_trained: bool | None
    config: dict
    config_from: str
    source_config: dict | None = None  # the source's config.json (None: unknown)
    config_changes: dict = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    extra: dict[str, torch.Tensor] = field(default_factory=dict)  # the source's tensors convert kept aside

    @property
    def architecture(self) -> str:
        return (self.config.get("architectures") or ["?"])[0]

    def finish_config(self, src: FairseqCheckpoint, tied: bool) -> None:
        """Set what depends on the mapped tensors: the tied flag and the dtype."""
        dtype = str(src.model[EMBED_KEY].dtype).replace("torch.", "")
        if self.source_config is None:
            self.config = hf_config(src, tied)
            return
        if not tied or self.config.get("tie_word_embeddings", True) is not True:
            self._change("tie_word_embeddings", tied)
        key = "dtype" if "dtype" in self.config or "torch_dtype" not in self.config else "torch_dtype"
        if self.config.get(key) not in (None, dtype):
            self._change(key, dtype)
        elif key not in self.config:
            self.config[key] = dtype

    def _change(self, key: str, value) -> None:
        if self.config.get(key) != value:
            self.config_changes[key] = {"source": self.config.get(key), "exported": value}
            self.config[key] = value


def export_plan(src: FairseqCheckpoint, lineage: Lineage) -> ExportPlan:
    """Decide the architecture and the config from the source (see the module docstring)."""
    source_bare = lineage.source_is_bare
    if source_bare is None:
        why = "; ".join(lineage.how[-1:]) or "no conversion record"
        if lineage.conversion is not None:
            why = f"{lineage.conversion_dir}/conversion.json does not say whether the source had an LM head"
        logger.warning("the HF source of %s is unknown (%s): exporting XLMRobertaForMaskedLM with a config built "
                       "from the checkpoint (pass --start-dir to export what the source was)", src.path, why)
        return ExportPlan(False, f"kept (the source's architecture is unknown: {why})", None, {},
                          "rebuilt from the checkpoint (the source's config.json is unknown)",
                          notes=[f"source unknown ({why}): earlier behaviour, XLMRobertaForMaskedLM"])  # fmt: skip
    conv_path = f"{lineage.conversion_dir}/conversion.json"
    status = head_status(src.model, lineage.start_dir)
    if not source_bare:
        head = "kept: the source's MLM head" + (" (trained: " + status.why + ")" if status.trained else "")
        bare, trained = False, status.trained
    elif status.trained is False:
        head, bare, trained = f"dropped: the source has none and this one is {status.why}", True, False
    elif status.trained:
        head, bare, trained = f"kept: trained ({status.why}); the source had none", False, True
        logger.warning("%s: the LM head was trained (%s): kept, exported as a masked LM although the source is a bare "
                       "encoder", src.path, status.why)  # fmt: skip
    else:
        head, bare, trained = f"kept: could not tell whether it was trained ({status.why})", False, None
        logger.warning("%s: %s; the LM head is kept (pass --start-dir to compare it)", src.path, status.why)
    logger.info("LM head %s", head)
    source_config = lineage.conversion.get("hf_config") if lineage.conversion else None
    if not isinstance(source_config, dict):
        raise ConversionError(f"{conv_path}: no hf_config (the source's config.json); convert the source again")
    plan = ExportPlan(bare, head, trained, dict(source_config), f"the source's config.json ({conv_path}: hf_config)",
                      source_config=source_config)  # fmt: skip
    _check_source_config(src, source_config, conv_path)
    plan._change("vocab_size", src.dims.V)
    if "vocab_size" in plan.config_changes and lineage.conversion.get("unused_rows_dropped"):
        plan.notes.append(f"{lineage.conversion['unused_rows_dropped']} embedding rows no token id reaches were "
                          f"dropped at conversion ({conv_path}): vocab_size is the tokenizer's")  # fmt: skip
    plan._change("architectures", _architectures(source_config, bare))
    plan.extra = read_hf_extra(lineage.conversion_dir, src.dims.C)
    if TOKEN_TYPE_KEY in plan.extra:
        plan._change("type_vocab_size", int(plan.extra[TOKEN_TYPE_KEY].shape[0]))
    else:  # only token-type row 0 is in the model (XLM-R never sets token types)
        plan._change("type_vocab_size", 1)
    if bare and not set(POOLER_KEYS) <= set(plan.extra):
        dropped = [k for k in lineage.conversion.get("dropped_tensors", []) if "pooler." in k]
        plan.notes.append("the source's pooler was dropped by an earlier convert (convert again to keep it)" if
                          dropped else "the source has no pooler (AutoModel initialises one, as for the source)")
    return plan


def _architectures(source_config: dict, bare: bool) -> list[str]:
    """The source's architectures when they say the same kind of model, else the XLM-R/RoBERTa class of that kind."""
    family = "Roberta" if source_config.get("model_type") == "roberta" else "XLMRoberta"
    archs = source_config.get("architectures") or []
    wanted = f"{family}Model" if bare else f"{family}ForMaskedLM"
    if len(archs) == 1 and str(archs[0]).endswith("Model" if bare else "ForMaskedLM"):
        return list(archs)
    return [wanted]


def _check_source_config(src: FairseqCheckpoint, cfg: dict, where: str) -> None:
    """The source's sizes, epsilon and activation must be the checkpoint's (else the record is another model's)."""
    mcfg, dims = src.model_cfg, src.dims
    want = {"hidden_size": dims.C, "num_hidden_layers": src.num_layers,
            "num_attention_heads": int(mcfg.encoder_attention_heads), "intermediate_size": dims.F,
            "max_position_embeddings": dims.P}  # fmt: skip
    wrong = [f"{k} {cfg.get(k)} != {v}" for k, v in want.items() if cfg.get(k) != v]
    if float(cfg.get("layer_norm_eps", 1e-5)) != float(src.layer_norm_eps):
        wrong.append(f"layer_norm_eps {cfg.get('layer_norm_eps')} != {src.layer_norm_eps}")
    if HF_TO_FAIRSEQ_ACT.get(cfg.get("hidden_act", "gelu")) != src.activation:
        wrong.append(f"hidden_act {cfg.get('hidden_act')!r} != {src.activation!r}")
    if wrong:
        raise ConversionError(f"{where} describes another model than {src.path} ({'; '.join(wrong)}); pass --start-dir "
                              "with the model directory this checkpoint was trained from")  # fmt: skip


def hf_state_dict(src: FairseqCheckpoint, bare: bool = False,
                  extra: dict[str, torch.Tensor] | None = None) -> tuple[dict[str, torch.Tensor], bool]:  # fmt: skip
    """The HF tensors of ``src`` (``XLMRobertaForMaskedLM``, or with ``bare`` an ``XLMRobertaModel`` without LM
    head), and whether its LM head is tied to the embeddings.  ``extra``: the source's tensors ``convert`` kept
    aside (:func:`.lineage.read_hf_extra`): the pooler (written for a bare export) and token-type rows beyond 0."""
    extra = extra or {}
    model_state, dims = src.model, src.dims
    prefix = "" if bare else "roberta."
    emb = model_state[EMBED_KEY]
    tt_row = model_state.get(FOLDED_TT_KEY, torch.zeros(dims.C, dtype=emb.dtype))
    hf_state: dict[str, torch.Tensor] = {}
    for hf_key, fs_key, symbols in layer_keys(src.num_layers):
        t = model_state[fs_key]
        if tuple(t.shape) != dims.shape(symbols):
            raise ConversionError(f"{src.path}: {fs_key} has shape {tuple(t.shape)}, expected {dims.shape(symbols)}")
        hf_state[prefix + hf_key] = t
    # split the folded token-type row out again (float64 so the subtraction adds no error of its own)
    pos = model_state[POS_KEY]
    hf_state[prefix + "embeddings.position_embeddings.weight"] = (pos.double() - tt_row.double()).to(pos.dtype)
    tt = extra[TOKEN_TYPE_KEY].to(emb.dtype, copy=True) if TOKEN_TYPE_KEY in extra else tt_row.reshape(1, -1).clone()
    tt[0] = tt_row  # row 0 is the model's (folded; the others were never used)
    hf_state[prefix + TOKEN_TYPE_KEY] = tt
    tied = HEAD_W_KEY not in model_state or torch.equal(model_state[HEAD_W_KEY], emb)
    if bare:
        hf_state.update({k: extra[k].to(emb.dtype) for k in POOLER_KEYS if k in extra})  # the model's dtype
    else:
        for hf_key, fs_key, _ in LM_HEAD_KEYS:
            hf_state[hf_key] = model_state[fs_key]
        if not tied:
            hf_state["lm_head.decoder.weight"] = model_state[HEAD_W_KEY]
    heads = sorted({k.split(".")[1] for k in model_state if k.startswith("classification_heads.")})
    if heads:
        logger.warning("classification heads %s are not exported (HF has no place for them here)", heads)
    return hf_state, tied


def hf_config(src: FairseqCheckpoint, tied: bool) -> dict:
    """``config.json`` of an ``XLMRobertaForMaskedLM`` rebuilt from the checkpoint (when the source is unknown)."""
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
        "dtype": str(src.model[EMBED_KEY].dtype).replace("torch.", ""),
    }


def _use_setting(checkpoint: Path, spm_path: Path, lineage: Lineage) -> tuple[UseSetting | None, str | None]:
    """The use setting the hub would read the checkpoint with (its directory, the tokenizer's, the start model's)."""
    for d in (checkpoint.parent, spm_path.parent, lineage.start_dir):
        if d is not None and (d / USE_FILE).is_file():
            try:
                return read_use_setting(d), str(d / USE_FILE)
            except ValueError as e:
                raise ConversionError(str(e)) from None
    return None, None


def _write_hf_dir(src: FairseqCheckpoint, spm_path: Path, hf_state: dict[str, torch.Tensor], plan: ExportPlan,
                  lineage: Lineage, use: UseSetting | None, use_file: str | None, tables: list, out_dir: Path,
                  force: bool, check_parity: bool) -> None:  # fmt: skip
    """Write the HF directory (staged: nothing appears unless every step, the parity check included, passed)."""
    from safetensors.torch import save_file

    from .model_card import CardFacts, render
    from .st_config import sentence_transformers_files
    from .start_model import save_hf_tokenizer

    inputs = [src.path, spm_path, *(t.path for t in tables)]
    with staged_dir(out_dir, force, inputs, EXPORT_MARKER, EXPORT_COMMAND, EXPORTED_FILES) as tmp:
        # safetensors refuses shared storage: give each tensor its own contiguous buffer only where needed
        save_file({k: v.contiguous() for k, v in hf_state.items()}, str(tmp / "model.safetensors"),
                  metadata={"format": "pt"})  # fmt: skip
        atomic_write_json(tmp / "config.json", plan.config, indent=2, ensure_ascii=False)
        save_hf_tokenizer(spm_path, tmp, model_max_length=src.dims.P - 2)
        record = {
            "source_checkpoint": str(src.path.resolve()),
            "source_sha256": sha256_file(src.path),
            "num_updates": num_updates(src.state),
            "architecture": plan.architecture,
            "lm_head": plan.head,
            "lm_head_trained": plan.head_trained,
            "config_from": plan.config_from,
            "config_changes": plan.config_changes,
            "pooler": ("written back from the conversion" if set(POOLER_KEYS) <= set(plan.extra) else "none")
            if plan.bare else "n/a (MLM)",
            "lineage": lineage.record(),
            "notes": plan.notes,
        }
        if check_parity:
            record["parity"] = export_parity_check(src.path, spm_path, tmp, out_name=str(out_dir), bare=plan.bare)
            record["parity_max_abs_diff"] = record["parity"]["max_abs_diff"]
        record["sentence_transformers"] = sentence_transformers_files(
            tmp, use, use_file, src.num_layers, src.dims.C, src.dims.P - 2, lineage.conversion)
        facts = CardFacts(name=out_dir.name, architecture=plan.architecture, head=plan.head,
                          num_layers=src.num_layers, hidden=src.dims.C, vocab=src.dims.V, checkpoint=str(src.path),
                          num_updates=num_updates(src.state), conversion=lineage.conversion,
                          lineage_how=lineage.how, cfg=src.state.get("cfg"), use=use,
                          st=record["sentence_transformers"], results=tables)  # fmt: skip
        atomic_write_text(tmp / "README.md", render(facts))
        record["model_card"] = "README.md"
        record["results"] = [str(Path(t.path).resolve()) for t in tables]
        record.update(stamp())
        atomic_write_json(tmp / EXPORT_MARKER, record, indent=2, ensure_ascii=False)
