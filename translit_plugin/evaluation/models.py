"""Which models to evaluate, and loading them as hub interfaces.

A model is given as ``[NAME=]PATH`` where PATH is

- a model directory made by ``translit-ppa convert`` or a training run directory (holds ``model.pt`` or is given
  with a checkpoint file, plus ``dict.txt`` and ``sentencepiece.bpe.model``),
- a fairseq checkpoint file (``.../checkpoint_3_2000.pt``), loaded from its directory, or
- an HF directory (has ``config.json``): converted on the fly with ``convert_hf_to_fairseq`` into a cache directory
  keyed by the HF directory's path and the content (sha256) of its files, so a re-run reuses the conversion and an
  edited file (even one edited in place with its size and mtime kept) gets a new one.

NAME defaults to the directory name (or ``dir/checkpoint`` stem) and is the model's label in results and reports.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path

from translit_plugin.core.hashing import sha256_file, stable_key

logger = logging.getLogger(__name__)

DEFAULT_CACHE = Path(os.environ.get("TRANSLIT_PPA_CACHE", Path.home() / ".cache" / "translit-ppa")) / "converted"


@dataclass(frozen=True)
class ModelSpec:
    """A model to evaluate: its label and where it lives."""

    name: str
    path: Path

    @property
    def kind(self) -> str:
        """``checkpoint`` (a .pt file), ``hf`` (HF directory) or ``fairseq`` (our model directory)."""
        if self.path.is_file():
            return "checkpoint"
        if (self.path / "config.json").is_file() and not (self.path / "model.pt").is_file():
            return "hf"
        return "fairseq"


def parse_model_spec(text: str) -> ModelSpec:
    """``NAME=PATH`` or ``PATH`` -> :class:`ModelSpec` (the path must exist)."""
    name, sep, path = text.partition("=")
    if not sep or not name or os.sep in name:
        name, path = "", text
    p = Path(path).expanduser()
    if not p.exists():
        raise FileNotFoundError(f"model not found: {p} (give a model directory, a checkpoint .pt or an HF directory)")
    if not name:
        name = f"{p.parent.name}/{p.stem}" if p.is_file() else p.resolve().name
    return ModelSpec(name, p.resolve())


def parse_model_specs(texts: list[str]) -> list[ModelSpec]:
    """Parse several specs; names must be unique (they key the results)."""
    specs = [parse_model_spec(t) for t in texts]
    names = [s.name for s in specs]
    dup = sorted({n for n in names if names.count(n) > 1})
    if dup:
        raise ValueError(f"model names must be unique, {dup} repeat; name them explicitly as NAME=PATH")
    return specs


def _fingerprint(hf_dir: Path) -> str:
    """Path and content of every file of ``hf_dir`` (never size / mtime, which an in-place edit can keep)."""
    files = {f.name: sha256_file(f) for f in sorted(hf_dir.iterdir()) if f.is_file()}
    return stable_key({"path": str(hf_dir.resolve()), "files": files})[:16]


def converted_dir(hf_dir: str | os.PathLike, cache_dir: str | os.PathLike | None = None) -> Path:
    """Convert an HF directory to a fairseq model directory in the cache (once) and return that directory."""
    from translit_plugin.conversion.hf_to_fairseq import convert_hf_to_fairseq

    hf_dir = Path(hf_dir)
    out = Path(cache_dir or DEFAULT_CACHE) / f"{hf_dir.resolve().name}-{_fingerprint(hf_dir)}"
    if (out / "model.pt").is_file() and (out / "dict.txt").is_file():
        logger.info("using the cached conversion of %s: %s", hf_dir, out)
        return out
    logger.info("converting HF model %s -> %s", hf_dir, out)
    out.parent.mkdir(parents=True, exist_ok=True)
    convert_hf_to_fairseq(str(hf_dir), str(out), force=True)
    return out


def load_hub(
    spec: ModelSpec,
    cache_dir: str | os.PathLike | None = None,
    device: str | None = None,
    assets_dir: str | os.PathLike | None = None,
):
    """Load ``spec`` as a ``TranslitHubInterface`` in eval mode on ``device``.

    ``assets_dir`` holds ``dict.txt`` / ``sentencepiece.bpe.model`` for a checkpoint whose directory lacks them
    (a training run's ``checkpoints/``; usually the start model's directory).
    """
    from translit_plugin.hub import from_pretrained

    kind = spec.kind
    if kind == "checkpoint":
        hub = from_pretrained(str(assets_dir or spec.path.parent), checkpoint_file=str(spec.path))
    elif kind == "hf":
        hub = from_pretrained(str(converted_dir(spec.path, cache_dir)))
    else:
        hub = from_pretrained(str(spec.path))
    hub.eval()
    if device is not None:
        hub.to(device)
    return hub


def default_device() -> str:
    """``cuda`` when available, else ``cpu``."""
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"
