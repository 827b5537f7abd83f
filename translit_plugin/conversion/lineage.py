"""Where a checkpoint came from: the model directory its training started from, and the conversion behind it.

``export-hf`` writes what the source was (a bare encoder stays bare, an MLM model keeps its head, the source's
``config.json``), so it needs two things a fairseq checkpoint does not hold itself:

* the **start model directory**: the ``model.pt`` training started from, whose LM head the checkpoint's is compared
  with (:func:`head_status`: equal tensors = the head was never trained).  Found, in this order: ``--start-dir``;
  ``untrim.json`` next to the checkpoint (an ``untrim`` output: its ``start_model_dir``, the full-vocabulary start
  model); the checkpoint's own directory when it holds ``conversion.json`` or ``trim.json`` (the checkpoint *is* a
  converted or trimmed model); the run's ``--finetune-from-model`` (``cfg.checkpoint.finetune_from_model``); the data
  directory a converted model's own config names (``convert`` writes its output directory there).
* the **conversion record** (``conversion.json``): the source's ``config.json`` (``hf_config``), whether the source
  had an LM head (``lm_head``), the rows dropped.  Found from the start model directory, following ``trim.json``
  (``full.model_dir``) and ``untrim.json`` (``start_model_dir``) back to the converted directory.

Every step is recorded as a sentence (``how``), so the export record says how the source was found, or why it was
not (then ``export-hf`` keeps its earlier behaviour: an ``XLMRobertaForMaskedLM`` rebuilt from the checkpoint).
"""

from __future__ import annotations

import json
import logging
import os
from dataclasses import dataclass, field
from pathlib import Path

import torch

from translit_plugin.core.names import CONVERT_MARKER, TRIM_MARKER, UNTRIM_MARKER

from . import ConversionError
from .keys import EMBED_KEY, HEAD_W_KEY, LM_HEAD_KEYS

logger = logging.getLogger(__name__)

#: the LM head's own tensors (its output projection is the word embedding matrix, part of the body)
HEAD_KEYS = tuple(fs_key for _, fs_key, _ in LM_HEAD_KEYS)
#: the file ``convert`` keeps the source's tensors in that fairseq RoBERTa has no place for: a bare encoder's pooler
#: (``pooler.dense.*``) and a token-type matrix of more than one row (HF names without the ``roberta.`` prefix)
EXTRA_FILE = "hf_extra.safetensors"
POOLER_KEYS = ("pooler.dense.weight", "pooler.dense.bias")


@dataclass
class Lineage:
    """What is known about where a checkpoint came from (``None``: not found; ``how`` says why)."""

    start_dir: Path | None = None
    conversion_dir: Path | None = None
    conversion: dict | None = None
    how: list[str] = field(default_factory=list)

    @property
    def source_is_bare(self) -> bool | None:
        """Whether the HF source had no LM head (``convert`` initialised one); None when unknown."""
        if self.conversion is None or "lm_head" not in self.conversion:
            return None
        return str(self.conversion["lm_head"]).startswith("initialised")

    def record(self) -> dict:
        return {"start_model_dir": str(self.start_dir) if self.start_dir else None,
                "conversion_record": str(self.conversion_dir / CONVERT_MARKER) if self.conversion_dir else None,
                "how_found": self.how}  # fmt: skip


def _read_record(path: Path) -> dict:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ConversionError(f"{path}: cannot read ({e}); it is a record this tool wrote, restore it") from None
    if not isinstance(data, dict):
        raise ConversionError(f"{path}: not a JSON object; it is a record this tool wrote, restore it")
    return data


def _cfg_get(cfg, section: str, key: str):
    part = cfg.get(section) if hasattr(cfg, "get") else getattr(cfg, section, None)
    if part is None:
        return None
    return part.get(key) if hasattr(part, "get") else getattr(part, key, None)


def find_start_dir(checkpoint: Path, cfg, given: str | os.PathLike | None, how: list[str]) -> Path | None:
    """The model directory training started from (see the module docstring for the order); None if unknown."""
    if given is not None:
        start = Path(given)
        if not (start / "model.pt").is_file():
            raise FileNotFoundError(f"--start-dir {start}: no model.pt there; pass the converted (or trimmed) model "
                                    "directory training started from")  # fmt: skip
        how.append(f"start model directory given: {start}")
        return start
    here = checkpoint.parent
    if (here / UNTRIM_MARKER).is_file():
        rec = _read_record(here / UNTRIM_MARKER)
        start = Path(str(rec.get("start_model_dir", "")))
        if (start / "model.pt").is_file():
            how.append(f"{here / UNTRIM_MARKER}: untrimmed onto the start model {start}")
            return start
        how.append(f"{here / UNTRIM_MARKER} names the start model {start}, which is not there (moved?)")
        return None
    for marker in (CONVERT_MARKER, TRIM_MARKER):
        if (here / marker).is_file():
            how.append(f"the checkpoint's own directory {here} is a model directory ({marker})")
            return here
    ft = _cfg_get(cfg, "checkpoint", "finetune_from_model")
    if ft:
        start = Path(str(ft)).parent
        if (start / "model.pt").is_file():
            how.append(f"the run's --finetune-from-model {ft}")
            return start
        how.append(f"the run's --finetune-from-model {ft} is not there (moved?); pass --start-dir")
        return None
    data = _cfg_get(cfg, "task", "data")
    if data:
        first = Path(str(data).split(os.pathsep)[0])
        if (first / CONVERT_MARKER).is_file() and (first / "model.pt").is_file():
            how.append(f"the checkpoint's config names the converted model directory {first}")
            return first
    how.append("no start model found (no untrim.json, conversion.json or trim.json next to the checkpoint, no "
               "--finetune-from-model in its config); pass --start-dir")  # fmt: skip
    return None


def find_conversion(start: Path, how: list[str], max_links: int = 6) -> tuple[Path | None, dict | None]:
    """The converted directory behind ``start`` and its ``conversion.json`` (following trim/untrim records)."""
    d = start
    for _ in range(max_links):
        if (d / CONVERT_MARKER).is_file():
            if d != start:
                how.append(f"conversion record {d / CONVERT_MARKER}")
            return d, _read_record(d / CONVERT_MARKER)
        if (d / TRIM_MARKER).is_file():
            nxt = Path(str((_read_record(d / TRIM_MARKER).get("full") or {}).get("model_dir", "")))
            what = f"{d / TRIM_MARKER}: trimmed from {nxt}"
        elif (d / UNTRIM_MARKER).is_file():
            nxt = Path(str(_read_record(d / UNTRIM_MARKER).get("start_model_dir", "")))
            what = f"{d / UNTRIM_MARKER}: untrimmed onto {nxt}"
        else:
            how.append(f"{d} has no {CONVERT_MARKER}, {TRIM_MARKER} or {UNTRIM_MARKER}: the HF source is unknown")
            return None, None
        if str(nxt) in ("", ".") or not nxt.is_dir():
            how.append(f"{what}, which is not there (moved?): the HF source is unknown")
            return None, None
        how.append(what)
        d = nxt
    how.append(f"more than {max_links} trim/untrim links from {start}: the HF source is unknown")
    return None, None


def find_lineage(checkpoint: Path, cfg, start_dir: str | os.PathLike | None = None) -> Lineage:
    """:class:`Lineage` of ``checkpoint`` (``cfg``: its fairseq config)."""
    lin = Lineage()
    lin.start_dir = find_start_dir(checkpoint, cfg, start_dir, lin.how)
    if lin.start_dir is not None:
        lin.conversion_dir, lin.conversion = find_conversion(lin.start_dir, lin.how)
    return lin


@dataclass
class HeadStatus:
    """Whether the checkpoint's LM head is the start model's (``trained`` None: could not be compared)."""

    trained: bool | None
    changed: list[str]
    why: str


def head_status(model_state: dict[str, torch.Tensor], start_dir: Path | None) -> HeadStatus:
    """Compare the checkpoint's LM head tensors with the start model's (``start_dir/model.pt``), exactly.

    The start model's tensors are cast to the checkpoint's dtype first (a half-precision run saves half tensors).
    Any difference counts as trained, weight decay included; a term that is off never touches the head (its
    forward pass is skipped), so a run without MLM/TLM leaves it bit-identical.  An untied output projection counts
    as trained too.  ``trained`` is None when there is no start model or its shapes differ (another vocabulary).
    """
    if start_dir is None:
        return HeadStatus(None, [], "no start model to compare the LM head with")
    from translit_plugin.checkpoint_compat import map_checkpoint

    start = map_checkpoint(start_dir / "model.pt")["model"]
    missing = [k for k in HEAD_KEYS if k not in model_state or k not in start]
    if missing:
        return HeadStatus(None, [], f"LM head tensors {missing} missing in the checkpoint or {start_dir}/model.pt")
    shapes = [k for k in HEAD_KEYS if tuple(model_state[k].shape) != tuple(start[k].shape)]
    if shapes:
        return HeadStatus(None, [], f"LM head shapes differ from {start_dir}/model.pt ({shapes}: another vocabulary?)"
                                    "; pass --start-dir with the model directory training started from")
    changed = [k for k in HEAD_KEYS if not torch.equal(model_state[k], start[k].to(model_state[k].dtype))]
    if HEAD_W_KEY in model_state and not torch.equal(model_state[HEAD_W_KEY], model_state[EMBED_KEY]):
        changed.append(HEAD_W_KEY + " (untied from the embeddings)")
    if changed:
        return HeadStatus(True, changed, f"differs from the start model's ({start_dir}/model.pt) in {changed}")
    return HeadStatus(False, [], f"bit-identical to the start model's ({start_dir}/model.pt): never trained")


def read_hf_extra(conversion_dir: Path | None, hidden: int) -> dict[str, torch.Tensor]:
    """The source's tensors ``convert`` kept (:data:`EXTRA_FILE`), checked against the hidden size; {} if none."""
    if conversion_dir is None or not (conversion_dir / EXTRA_FILE).is_file():
        return {}
    from safetensors.torch import load_file

    from .keys import TOKEN_TYPE_KEY

    path = conversion_dir / EXTRA_FILE
    extra = load_file(str(path))
    wrong = [k for k, t in extra.items() if k not in (*POOLER_KEYS, TOKEN_TYPE_KEY) or t.shape[-1] != hidden]
    if wrong or (set(POOLER_KEYS) & set(extra) and not set(POOLER_KEYS) <= set(extra)):
        raise ConversionError(f"{path}: not the source's pooler / token-type rows of hidden size {hidden} "
                              f"({sorted(extra)}); convert the source again")  # fmt: skip
    return extra
