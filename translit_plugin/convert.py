"""HF XLM-R / Glot500 checkpoints <-> fairseq ``translit_roberta`` model directories, losslessly.

The key mapping is one declarative table (:data:`BODY_KEYS`, :data:`LM_HEAD_KEYS`): HF name, fairseq name and the
expected shape in symbols (``V`` vocabulary rows, ``P`` position rows, ``C`` hidden size, ``F`` FFN size), checked
against the HF config before anything is written.

Special cases (see ``shared/notes/method-spec.md``):

* HF adds ``token_type_embeddings[0]`` to every token; fairseq RoBERTa has no token types.  The row is folded into
  **every position row** (not into the word embeddings, which are tied to the LM head); outputs are unchanged.  The
  row is also kept in the buffer ``encoder.folded_token_type`` so :func:`export_fairseq_to_hf` can split it out again.
* The LM head's output projection is tied to the word embeddings in both frameworks: one tensor, two names.
* A bare ``XLMRobertaModel`` has no LM head: the head is initialised like HF does (normal(0, initializer_range)
  dense, unit layer norm, zero bias, decoder tied to the embeddings) and ``conversion.json`` says so.  Its pooler is
  dropped (RoBERTa MLM has none).
* Memory: tensors are read one at a time from safetensors (or a memory-mapped ``.bin``) and written as they are; the
  embedding matrix (~1.2 GB for Glot500's 401k vocabulary) is never copied.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import time
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import torch

from .vocab import NUM_SPECIALS, SPM_FIRST_PIECE, load_spm, write_fairseq_dict

logger = logging.getLogger(__name__)

FS = "encoder.sentence_encoder."
# (HF key without the "roberta." prefix, fairseq key, shape in symbols)
BODY_KEYS: list[tuple[str, str, tuple[str, ...]]] = [
    ("embeddings.word_embeddings.weight", FS + "embed_tokens.weight", ("V", "C")),
    ("embeddings.position_embeddings.weight", FS + "embed_positions.weight", ("P", "C")),
    ("embeddings.LayerNorm.weight", FS + "layernorm_embedding.weight", ("C",)),
    ("embeddings.LayerNorm.bias", FS + "layernorm_embedding.bias", ("C",)),
]
LAYER_KEYS: list[tuple[str, str, tuple[str, ...]]] = [
    ("attention.self.query.weight", "self_attn.q_proj.weight", ("C", "C")),
    ("attention.self.query.bias", "self_attn.q_proj.bias", ("C",)),
    ("attention.self.key.weight", "self_attn.k_proj.weight", ("C", "C")),
    ("attention.self.key.bias", "self_attn.k_proj.bias", ("C",)),
    ("attention.self.value.weight", "self_attn.v_proj.weight", ("C", "C")),
    ("attention.self.value.bias", "self_attn.v_proj.bias", ("C",)),
    ("attention.output.dense.weight", "self_attn.out_proj.weight", ("C", "C")),
    ("attention.output.dense.bias", "self_attn.out_proj.bias", ("C",)),
    ("attention.output.LayerNorm.weight", "self_attn_layer_norm.weight", ("C",)),
    ("attention.output.LayerNorm.bias", "self_attn_layer_norm.bias", ("C",)),
    ("intermediate.dense.weight", "fc1.weight", ("F", "C")),
    ("intermediate.dense.bias", "fc1.bias", ("F",)),
    ("output.dense.weight", "fc2.weight", ("C", "F")),
    ("output.dense.bias", "fc2.bias", ("C",)),
    ("output.LayerNorm.weight", "final_layer_norm.weight", ("C",)),
    ("output.LayerNorm.bias", "final_layer_norm.bias", ("C",)),
]
LM_HEAD_KEYS: list[tuple[str, str, tuple[str, ...]]] = [
    ("lm_head.dense.weight", "encoder.lm_head.dense.weight", ("C", "C")),
    ("lm_head.dense.bias", "encoder.lm_head.dense.bias", ("C",)),
    ("lm_head.layer_norm.weight", "encoder.lm_head.layer_norm.weight", ("C",)),
    ("lm_head.layer_norm.bias", "encoder.lm_head.layer_norm.bias", ("C",)),
    ("lm_head.bias", "encoder.lm_head.bias", ("V",)),
]
TOKEN_TYPE_KEY = "embeddings.token_type_embeddings.weight"
TIED_FS_KEY = "encoder.lm_head.weight"  # the LM output projection = embed_tokens.weight
FOLDED_TT_KEY = "encoder.folded_token_type"
# HF keys that are legitimately absent from our fairseq model
IGNORED_HF = ("pooler.", "lm_head.decoder.", "embeddings.position_ids")


class ConversionError(ValueError):
    """A checkpoint that cannot be converted faithfully (the message says why and what to do)."""


def layer_keys(num_layers: int) -> list[tuple[str, str, tuple[str, ...]]]:
    """The full body table with one row per tensor of every layer."""
    rows = list(BODY_KEYS)
    for i in range(num_layers):
        rows += [(f"encoder.layer.{i}.{h}", f"{FS}layers.{i}.{f}", s) for h, f, s in LAYER_KEYS]
    return rows


@dataclass
class Dims:
    """Symbolic sizes of the table's shapes."""

    V: int
    P: int
    C: int
    F: int

    def shape(self, symbols: tuple[str, ...]) -> tuple[int, ...]:
        return tuple(getattr(self, s) for s in symbols)


# ---------------------------------------------------------------------------------------------------------- reading
class HFWeights:
    """Lazy, copy-free access to an HF checkpoint's tensors (safetensors, sharded or not, or ``pytorch_model.bin``)."""

    def __init__(self, hf_dir: Path) -> None:
        self.dir = hf_dir
        self.files: list[Path] = []
        self._where: dict[str, Path] = {}
        self._bin: dict[str, torch.Tensor] | None = None
        st_index = hf_dir / "model.safetensors.index.json"
        bin_index = hf_dir / "pytorch_model.bin.index.json"
        if (hf_dir / "model.safetensors").is_file():
            self._index_safetensors([hf_dir / "model.safetensors"])
        elif st_index.is_file():
            shards = sorted(set(json.loads(st_index.read_text())["weight_map"].values()))
            self._index_safetensors([hf_dir / s for s in shards])
        elif (hf_dir / "pytorch_model.bin").is_file() or bin_index.is_file():
            shards = (
                [hf_dir / "pytorch_model.bin"]
                if (hf_dir / "pytorch_model.bin").is_file()
                else [hf_dir / s for s in sorted(set(json.loads(bin_index.read_text())["weight_map"].values()))]
            )
            self._bin = {}
            for shard in shards:
                # mmap: tensors stay on disk until touched; weights_only: a .bin is a pickle
                part = torch.load(shard, map_location="cpu", mmap=True, weights_only=True)
                self._bin.update(part)
                self.files.append(shard)
        else:
            raise ConversionError(
                f"{hf_dir}: no model weights found (expected model.safetensors, model.safetensors.index.json or "
                "pytorch_model.bin)"
            )
        prefixes = ("roberta.", "xlm_roberta.")
        keys = self.keys()
        self.prefix = next((p for p in prefixes if any(k.startswith(p) for k in keys)), "")

    def _index_safetensors(self, shards: list[Path]) -> None:
        from safetensors import safe_open

        for shard in shards:
            if not shard.is_file():
                raise ConversionError(f"{shard}: shard listed in the index is missing")
            with safe_open(str(shard), framework="pt") as f:
                for k in f.keys():
                    self._where[k] = shard
            self.files.append(shard)

    def keys(self) -> set[str]:
        return set(self._bin) if self._bin is not None else set(self._where)

    def __contains__(self, key: str) -> bool:
        return key in self.keys()

    def get(self, key: str) -> torch.Tensor:
        if self._bin is not None:
            return self._bin[key]
        from safetensors import safe_open

        with safe_open(str(self._where[key]), framework="pt") as f:
            return f.get_tensor(key)

    def body(self, key: str) -> str:
        """Full checkpoint name of a body key (with the ``roberta.`` prefix if the checkpoint has one)."""
        return self.prefix + key


def sha256_files(paths: list[Path], chunk: int = 1 << 22) -> str:
    """One hash over the given files in order (the conversion record's source fingerprint)."""
    h = hashlib.sha256()
    for p in paths:
        with open(p, "rb") as f:
            while block := f.read(chunk):
                h.update(block)
    return h.hexdigest()


def resolve_hf_source(name_or_dir: str) -> Path:
    """A local HF directory, or a hub name downloaded into the HF cache (needs the network)."""
    path = Path(name_or_dir)
    if path.is_dir():
        return path
    if path.exists():
        raise ConversionError(f"{path} is a file; pass the HF checkpoint *directory*")
    if name_or_dir.count("/") == 1 and not name_or_dir.startswith((".", "/")):
        try:
            from huggingface_hub import snapshot_download

            return Path(
                snapshot_download(
                    name_or_dir,
                    allow_patterns=["*.json", "*.safetensors", "*.bin", "sentencepiece.bpe.model", "*.model"],
                )
            )
        except Exception as e:  # offline, unknown repo, auth...
            raise ConversionError(
                f"{name_or_dir}: not a local directory and could not be fetched from the HF hub ({e}). "
                "Download it on a machine with network access and pass the directory."
            ) from e
    raise ConversionError(f"{name_or_dir}: no such directory")


def check_hf_config(cfg: dict, hf_dir: Path) -> None:
    """Refuse anything that is not the XLM-R architecture fairseq RoBERTa computes."""
    model_type = cfg.get("model_type")
    if model_type not in ("xlm-roberta", "roberta"):
        raise ConversionError(
            f"{hf_dir}/config.json: model_type {model_type!r} is not an XLM-R/RoBERTa architecture; "
            "translit-ppa converts XLM-R-architecture encoders (XLM-R, Glot500, ...) only"
        )
    problems = []
    if cfg.get("position_embedding_type", "absolute") != "absolute":
        problems.append(f"position_embedding_type={cfg.get('position_embedding_type')!r} (need 'absolute')")
    if cfg.get("hidden_act", "gelu") != "gelu":
        problems.append(f"hidden_act={cfg.get('hidden_act')!r} (need 'gelu')")
    if abs(float(cfg.get("layer_norm_eps", 1e-5)) - 1e-5) > 1e-9:
        problems.append(f"layer_norm_eps={cfg.get('layer_norm_eps')} (fairseq LayerNorm uses 1e-5)")
    if cfg.get("pad_token_id", 1) != 1:
        problems.append(f"pad_token_id={cfg.get('pad_token_id')} (XLM-R layout has <pad>=1)")
    if cfg.get("is_decoder", False) or cfg.get("add_cross_attention", False):
        problems.append("decoder / cross-attention configuration")
    if problems:
        raise ConversionError(f"{hf_dir}/config.json: cannot convert faithfully: " + "; ".join(problems))


def find_spm(hf_dir: Path) -> Path:
    for name in ("sentencepiece.bpe.model", "spm.model", "tokenizer.model"):
        if (hf_dir / name).is_file():
            return hf_dir / name
    raise ConversionError(
        f"{hf_dir}: no sentencepiece model (sentencepiece.bpe.model); the fairseq dictionary and the hub tokenizer "
        "are built from it. Copy the start model's sentencepiece file into the directory."
    )


# --------------------------------------------------------------------------------------------------- fairseq config
def fairseq_cfg(
    data_dir: Path, arch: str, dims: Dims, num_layers: int, heads: int, dropout: float, attn_dropout: float
):
    """A complete fairseq config (as ``fairseq-train`` would save) for a converted model directory."""
    from fairseq import options
    from fairseq.dataclass.utils import convert_namespace_to_omegaconf

    plugin_dir = str(Path(__file__).resolve().parent)
    max_positions = dims.P - 2  # learned positions reserve padding_idx + 1 rows
    argv = [
        str(data_dir),
        "--user-dir", plugin_dir,
        "--task", "masked_lm",
        "--criterion", "masked_lm",
        "--arch", arch,
        "--tokens-per-sample", str(max_positions),
        "--max-positions", str(max_positions),
        "--encoder-layers", str(num_layers),
        "--encoder-embed-dim", str(dims.C),
        "--encoder-ffn-embed-dim", str(dims.F),
        "--encoder-attention-heads", str(heads),
        "--dropout", str(dropout),
        "--attention-dropout", str(attn_dropout),
        "--activation-dropout", "0.0",
        "--optimizer", "adam",
        "--cpu",
    ]  # fmt: skip
    parser = options.get_training_parser()
    args = options.parse_args_and_arch(parser, input_args=argv)
    with warnings.catch_warnings():  # hydra's deprecation chatter about fairseq's legacy config layout
        warnings.simplefilter("ignore", UserWarning)
        return convert_namespace_to_omegaconf(args)


@contextmanager
def staged_output(out_dir: Path, force: bool, inputs: list[Path], marker: str, command: str) -> Iterator[Path]:
    """Write into a temporary sibling directory and move it into place only when everything succeeded.

    Refuses an ``out_dir`` that is, contains or is inside one of ``inputs``, and replaces an existing one (``force``)
    only if it carries ``marker`` and nothing but our files (:func:`translit_plugin.safe_output.staged_dir`).
    """
    from .safe_output import staged_dir

    with staged_dir(out_dir, force, inputs, marker, command) as tmp:
        yield tmp


def _plugin_version() -> str:
    from . import __version__

    return __version__


# -------------------------------------------------------------------------------------------------- HF -> fairseq
def convert_hf_to_fairseq(
    hf_source: str | os.PathLike,
    out_dir: str | os.PathLike,
    force: bool = False,
    arch: str = "translit_roberta_base",
    check_parity: bool = True,
    seed: int = 0,
) -> Path:
    """Convert an HF XLM-R-architecture checkpoint into a fairseq model directory; return ``out_dir``.

    Writes ``model.pt``, ``dict.txt``, ``sentencepiece.bpe.model`` and ``conversion.json``.  With ``check_parity``
    the HF model and the written fairseq model are run on a few sentences and must agree to 1e-4 (max abs), otherwise
    nothing is written.
    """
    hf_dir = resolve_hf_source(str(hf_source))
    cfg_path = hf_dir / "config.json"
    if not cfg_path.is_file():
        raise ConversionError(f"{hf_dir}: config.json not found; is this an HF checkpoint directory?")
    hf_cfg = json.loads(cfg_path.read_text())
    check_hf_config(hf_cfg, hf_dir)
    spm_path = find_spm(hf_dir)
    weights = HFWeights(hf_dir)
    num_layers = int(hf_cfg["num_hidden_layers"])
    dims = Dims(
        V=int(hf_cfg["vocab_size"]),
        P=int(hf_cfg["max_position_embeddings"]),
        C=int(hf_cfg["hidden_size"]),
        F=int(hf_cfg["intermediate_size"]),
    )
    sp = load_spm(spm_path)
    expected_v = NUM_SPECIALS + (sp.GetPieceSize() - SPM_FIRST_PIECE) + 1
    emb_key = weights.body("embeddings.word_embeddings.weight")
    if emb_key not in weights:
        raise ConversionError(f"{hf_dir}: no {emb_key} in the checkpoint; not an XLM-R encoder")
    emb = weights.get(emb_key)  # (V, C); lazily read, never copied
    if emb.shape[0] != expected_v or dims.V != expected_v:
        raise ConversionError(
            f"{hf_dir}: the dictionary built from {spm_path.name} has {expected_v} entries (4 specials + "
            f"{sp.GetPieceSize() - SPM_FIRST_PIECE} pieces + <mask>) but the embedding matrix has {emb.shape[0]} rows "
            f"(config vocab_size {dims.V}); the sentencepiece model does not belong to these weights"
        )

    state: dict[str, torch.Tensor] = {}
    record: dict = {"notes": []}
    for hf_key, fs_key, symbols in layer_keys(num_layers):
        full = weights.body(hf_key)
        if full not in weights:
            raise ConversionError(f"{hf_dir}: missing tensor {full}")
        t = emb if hf_key == "embeddings.word_embeddings.weight" else weights.get(full)
        if tuple(t.shape) != dims.shape(symbols):
            raise ConversionError(
                f"{hf_dir}: {full} has shape {tuple(t.shape)}, expected {dims.shape(symbols)} from config.json"
            )
        state[fs_key] = t

    # token types: fold row 0 into every position row (B x T x C outputs unchanged); keep it for export
    tt_key = weights.body(TOKEN_TYPE_KEY)
    if tt_key in weights:
        tt = weights.get(tt_key)
        if tt.shape[0] > 1:
            record["notes"].append(
                f"token_type_embeddings has {tt.shape[0]} rows; only row 0 is used (XLM-R never sets token types)"
            )
        tt_row = tt[0].clone()
    else:
        tt_row = torch.zeros(dims.C, dtype=emb.dtype)
    pos_key = FS + "embed_positions.weight"
    state[pos_key] = state[pos_key] + tt_row  # new (P, C) tensor; the HF one is untouched
    state[FOLDED_TT_KEY] = tt_row
    state[FS + "version"] = torch.tensor([3.0])  # fairseq TransformerEncoder's state-dict version buffer

    # LM head (tied output projection); a bare encoder gets a fresh head
    state[TIED_FS_KEY] = emb
    if all(k in weights for k, _, _ in LM_HEAD_KEYS):
        for hf_key, fs_key, symbols in LM_HEAD_KEYS:
            t = weights.get(hf_key)
            if tuple(t.shape) != dims.shape(symbols):
                raise ConversionError(f"{hf_dir}: {hf_key} has shape {tuple(t.shape)}, expected {dims.shape(symbols)}")
            state[fs_key] = t
        dec_key = "lm_head.decoder.weight"
        if dec_key in weights and not torch.equal(weights.get(dec_key), emb):
            raise ConversionError(
                f"{hf_dir}: lm_head.decoder.weight differs from the word embeddings (untied head); translit_roberta "
                "ties them like XLM-R"
            )
        record["lm_head"] = "converted from the checkpoint (output projection tied to the word embeddings)"
    else:
        gen = torch.Generator().manual_seed(seed)
        std = float(hf_cfg.get("initializer_range", 0.02))
        state["encoder.lm_head.dense.weight"] = torch.randn(dims.C, dims.C, generator=gen, dtype=emb.dtype) * std
        state["encoder.lm_head.dense.bias"] = torch.zeros(dims.C, dtype=emb.dtype)
        state["encoder.lm_head.layer_norm.weight"] = torch.ones(dims.C, dtype=emb.dtype)
        state["encoder.lm_head.layer_norm.bias"] = torch.zeros(dims.C, dtype=emb.dtype)
        state["encoder.lm_head.bias"] = torch.zeros(dims.V, dtype=emb.dtype)
        record["lm_head"] = (
            f"initialised (checkpoint has no LM head): dense ~ N(0, {std}) with seed {seed}, layer norm 1/0, bias 0, "
            "output projection tied to the word embeddings"
        )
        logger.warning("%s has no LM head: initialised a new one tied to the embeddings (MLM starts untrained)", hf_dir)
    used = {weights.body(k) for k, _, _ in layer_keys(num_layers)} | {k for k, _, _ in LM_HEAD_KEYS} | {tt_key}
    dropped = sorted(k for k in weights.keys() if k not in used)
    ignored = tuple(weights.prefix + p for p in IGNORED_HF) + IGNORED_HF
    unexpected = [k for k in dropped if not k.startswith(ignored)]
    if unexpected:
        raise ConversionError(f"{hf_dir}: tensors with no place in translit_roberta: {', '.join(unexpected[:10])}")

    with staged_output(Path(out_dir), force, [hf_dir], "conversion.json", "translit-ppa convert") as tmp:
        shutil.copyfile(spm_path, tmp / "sentencepiece.bpe.model")
        write_fairseq_dict(tmp / "sentencepiece.bpe.model", tmp / "dict.txt")
        cfg = fairseq_cfg(
            tmp,
            arch,
            dims,
            num_layers,
            int(hf_cfg["num_attention_heads"]),
            float(hf_cfg.get("hidden_dropout_prob", 0.1)),
            float(hf_cfg.get("attention_probs_dropout_prob", 0.1)),
        )
        verify_state_dict(cfg, state)
        torch.save(
            {
                "cfg": cfg,
                "model": state,
                "args": None,
                "optimizer_history": [
                    {"criterion_name": "MaskedLmLoss", "optimizer_name": "None", "lr_scheduler_state": {},
                     "num_updates": 0}
                ],
                "last_optimizer_state": None,
                "extra_state": {"train_iterator": {"epoch": 1, "iterations_in_epoch": 0, "version": 2}},
            },
            tmp / "model.pt",
        )  # fmt: skip
        record.update(
            {
                "source": str(hf_source),
                "source_dir": str(hf_dir.resolve()),
                "source_sha256": sha256_files(weights.files),
                "source_files": [p.name for p in weights.files],
                "sentencepiece_sha256": sha256_files([spm_path]),
                "hf_config": hf_cfg,
                "arch": arch,
                "dims": {"vocab": dims.V, "positions": dims.P, "hidden": dims.C, "ffn": dims.F, "layers": num_layers},
                "token_type_folded": True,
                "dropped_tensors": dropped,
                "translit_ppa_version": _plugin_version(),
                "torch_version": torch.__version__,
                "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            }
        )
        if check_parity:
            record["parity_max_abs_diff"] = parity_check(hf_dir, tmp)
        (tmp / "conversion.json").write_text(json.dumps(record, indent=2, ensure_ascii=False) + "\n")
    logger.info("converted %s -> %s", hf_dir, out_dir)
    return Path(out_dir)


def verify_state_dict(cfg, state: dict[str, torch.Tensor]) -> None:
    """Every key and shape of ``state`` must be what ``translit_roberta`` built from ``cfg`` expects.

    The reference model is built with a 5-entry dictionary (specials + ``<mask>``) so checking Glot500's 401k-row
    embedding costs no second copy of it; vocabulary-sized dimensions are compared against the state's own ``V``.
    """
    from fairseq.data import Dictionary

    import translit_plugin  # noqa: F401  (registers the model)

    from .hub import _HubTask
    from .models.translit_roberta import TranslitRobertaModel

    small = Dictionary()
    small.add_symbol("<mask>")
    model = TranslitRobertaModel.build_model(cfg.model, _HubTask(small, int(cfg.model.max_positions)))
    vocab = state[FS + "embed_tokens.weight"].shape[0]
    expected = {k: tuple(vocab if d == len(small) and k in _VOCAB_KEYS else d for d in v.shape)
                for k, v in model.state_dict().items()}  # fmt: skip
    got = {k: tuple(v.shape) for k, v in state.items()}
    missing, unexpected = sorted(set(expected) - set(got)), sorted(set(got) - set(expected))
    wrong = [f"{k}: {got[k]} != {expected[k]}" for k in sorted(set(got) & set(expected)) if got[k] != expected[k]]
    if missing or unexpected or wrong:
        raise ConversionError(
            f"state dict does not fit translit_roberta: missing {missing}, unexpected {unexpected}, shapes {wrong}"
        )


_VOCAB_KEYS = {FS + "embed_tokens.weight", TIED_FS_KEY, "encoder.lm_head.bias"}


# Sentences in several scripts for the parity check (the model is random or trained; only agreement matters).
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


def _compare_with_hf(hub, hf, batch: dict, tol: float, what: str) -> float:
    """Max abs difference of every hidden state (padding included) and the MLM logits; raise above ``tol``."""
    with torch.no_grad():
        out = hf(**batch, output_hidden_states=True)
        logits, extra = hub.model(batch["input_ids"], return_all_hiddens=True)
    diff = (logits - out.logits).abs().max().item()
    for ours_h, theirs in zip(extra["inner_states"], out.hidden_states):
        diff = max(diff, (ours_h.transpose(0, 1) - theirs).abs().max().item())  # T x B x C -> B x T x C
    if diff > tol:
        raise ConversionError(f"{what} failed: max abs difference {diff:.3g} > {tol} between HF and fairseq")
    logger.info("%s passed: max abs difference %.3g over %d sentences", what, diff, len(PARITY_SENTENCES))
    return diff


def parity_check(hf_dir: Path, model_dir: Path, tol: float = 1e-4) -> float:
    """HF checkpoint vs the converted model: same token ids, hidden states and logits within ``tol``."""
    from transformers import AutoModelForMaskedLM, AutoTokenizer

    from .hub import from_pretrained

    hub = from_pretrained(str(model_dir)).eval()
    hf = AutoModelForMaskedLM.from_pretrained(str(hf_dir)).eval()
    batch = dict(AutoTokenizer.from_pretrained(str(hf_dir))(PARITY_SENTENCES, padding=True, return_tensors="pt"))
    if not torch.equal(hub.batch_encode(PARITY_SENTENCES), batch["input_ids"]):
        raise ConversionError(f"{model_dir}: our tokenization differs from the HF tokenizer of {hf_dir}")
    return _compare_with_hf(hub, hf, batch, tol, "parity check")


# -------------------------------------------------------------------------------------------------- fairseq -> HF
def load_fairseq_checkpoint(path: str | os.PathLike) -> dict:
    """``checkpoint_utils.load_checkpoint_to_cpu`` with the plugin registered (weights-only allow-list installed)."""
    from fairseq import checkpoint_utils

    import translit_plugin  # noqa: F401

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint not found: {path}")
    return checkpoint_utils.load_checkpoint_to_cpu(str(path))


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
    from safetensors.torch import save_file

    from .start_model import save_hf_tokenizer

    checkpoint = Path(checkpoint)
    spm_path = Path(spm_model) if spm_model else checkpoint.parent / "sentencepiece.bpe.model"
    if not spm_path.is_file():
        raise FileNotFoundError(
            f"sentencepiece model not found: {spm_path}; pass --spm (the start model's sentencepiece.bpe.model)"
        )
    state = load_fairseq_checkpoint(checkpoint)
    model_state: dict[str, torch.Tensor] = state["model"]
    mcfg = state["cfg"]["model"]
    num_layers = int(mcfg.encoder_layers)
    emb = model_state[FS + "embed_tokens.weight"]
    dims = Dims(V=emb.shape[0], P=model_state[FS + "embed_positions.weight"].shape[0], C=emb.shape[1],
                F=int(mcfg.encoder_ffn_embed_dim))  # fmt: skip
    sp = load_spm(spm_path)
    expected_v = NUM_SPECIALS + (sp.GetPieceSize() - SPM_FIRST_PIECE) + 1
    if expected_v != dims.V:
        raise ConversionError(
            f"{checkpoint}: {dims.V} embedding rows but {spm_path} gives a {expected_v}-entry dictionary; "
            "pass the sentencepiece model the checkpoint was trained with"
        )
    if getattr(mcfg, "encoder_normalize_before", False):
        raise ConversionError(f"{checkpoint}: pre-LN models have no XLM-R equivalent")

    tt_row = model_state.get(FOLDED_TT_KEY, torch.zeros(dims.C, dtype=emb.dtype))
    hf_state: dict[str, torch.Tensor] = {}
    for hf_key, fs_key, symbols in layer_keys(num_layers):
        t = model_state[fs_key]
        if tuple(t.shape) != dims.shape(symbols):
            raise ConversionError(f"{checkpoint}: {fs_key} has shape {tuple(t.shape)}, expected {dims.shape(symbols)}")
        hf_state["roberta." + hf_key] = t
    # split the folded token-type row out again (float64 so the subtraction adds no error of its own)
    pos = model_state[FS + "embed_positions.weight"]
    hf_state["roberta.embeddings.position_embeddings.weight"] = (pos.double() - tt_row.double()).to(pos.dtype)
    hf_state["roberta." + TOKEN_TYPE_KEY] = tt_row.reshape(1, -1).clone()
    for hf_key, fs_key, _ in LM_HEAD_KEYS:
        hf_state[hf_key] = model_state[fs_key]
    tied = TIED_FS_KEY not in model_state or torch.equal(model_state[TIED_FS_KEY], emb)
    if not tied:
        hf_state["lm_head.decoder.weight"] = model_state[TIED_FS_KEY]
    heads = sorted({k.split(".")[1] for k in model_state if k.startswith("classification_heads.")})
    if heads:
        logger.warning("classification heads %s are not exported (HF MaskedLM has no place for them)", heads)

    config = {
        "architectures": ["XLMRobertaForMaskedLM"],
        "model_type": "xlm-roberta",
        "vocab_size": dims.V,
        "hidden_size": dims.C,
        "num_hidden_layers": num_layers,
        "num_attention_heads": int(mcfg.encoder_attention_heads),
        "intermediate_size": dims.F,
        "hidden_act": "gelu",
        "hidden_dropout_prob": float(mcfg.dropout),
        "attention_probs_dropout_prob": float(mcfg.attention_dropout),
        "max_position_embeddings": dims.P,
        "type_vocab_size": 1,
        "initializer_range": 0.02,
        "layer_norm_eps": 1e-5,
        "pad_token_id": 1,
        "bos_token_id": 0,
        "eos_token_id": 2,
        "position_embedding_type": "absolute",
        "tie_word_embeddings": tied,
        "dtype": str(emb.dtype).replace("torch.", ""),
    }
    with staged_output(Path(out_dir), force, [checkpoint, spm_path], "translit_ppa_export.json",
                       "translit-ppa export-hf") as tmp:
        # safetensors refuses shared storage: give each tensor its own contiguous buffer only where needed
        save_file({k: v.contiguous() for k, v in hf_state.items()}, str(tmp / "model.safetensors"),
                  metadata={"format": "pt"})  # fmt: skip
        (tmp / "config.json").write_text(json.dumps(config, indent=2) + "\n")
        save_hf_tokenizer(spm_path, tmp, model_max_length=dims.P - 2)
        record = {
            "source_checkpoint": str(checkpoint.resolve()),
            "source_sha256": sha256_files([checkpoint]),
            "num_updates": (state.get("optimizer_history") or [{}])[-1].get("num_updates"),
            "translit_ppa_version": _plugin_version(),
            "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        }
        if check_parity:
            record["parity_max_abs_diff"] = export_parity_check(checkpoint, spm_path, tmp)
        (tmp / "translit_ppa_export.json").write_text(json.dumps(record, indent=2) + "\n")
    logger.info("exported %s -> %s", checkpoint, out_dir)
    return Path(out_dir)


def export_parity_check(checkpoint: Path, spm_path: Path, hf_dir: Path, tol: float = 1e-4) -> float:
    """Our checkpoint vs the exported HF model on the same ids (see :func:`_compare_with_hf`)."""
    from transformers import AutoModelForMaskedLM

    from .hub import from_pretrained

    hub = from_pretrained(str(checkpoint.parent), checkpoint_file=checkpoint.name, sentencepiece_model=str(spm_path))
    hub.eval()
    hf = AutoModelForMaskedLM.from_pretrained(str(hf_dir)).eval()
    ids = hub.batch_encode(PARITY_SENTENCES)
    batch = {"input_ids": ids, "attention_mask": ids.ne(hub.dictionary.pad()).long()}
    return _compare_with_hf(hub, hf, batch, tol, "export parity check")
