"""``translit-ppa untrim``: a model trained on a trimmed vocabulary scattered back into the full start model.

Rows not kept stay bit-identical to the start model's; every other tensor is the trained model's; the start model must
be the one trimmed (checked against ``trim.json``).
"""

from __future__ import annotations

import json
import logging
import os
import shutil
from pathlib import Path

import torch

from translit_plugin.checkpoint_compat import load_fairseq_checkpoint
from translit_plugin.conversion import stamp
from translit_plugin.conversion.fairseq_model import num_updates, verify_state_dict
from translit_plugin.conversion.keys import EMBED_KEY, HEAD_B_KEY, HEAD_W_KEY, VOCAB_KEYS
from translit_plugin.core.files import atomic_write_json
from translit_plugin.core.hashing import sha256_file
from translit_plugin.core.safe_output import check_not_input, check_replaceable_dir, staged_dir
from translit_plugin.core.use_settings import USE_FILE

from . import TRIM_RECORD, UNTRIM_COMMAND, UNTRIM_RECORD, UNTRIMMED_FILES, TrimError, check_model_dir

logger = logging.getLogger(__name__)


def _find_trim_record(trained: Path, cfg, record_path: str | os.PathLike | None) -> Path:
    candidates = [Path(record_path)] if record_path else []
    if not record_path:
        candidates.append(trained.parent / TRIM_RECORD)
        ft = getattr(getattr(cfg, "checkpoint", None), "finetune_from_model", None) if cfg is not None else None
        if ft:
            candidates.append(Path(str(ft)).parent / TRIM_RECORD)
    for c in candidates:
        if c.is_file():
            return c
    raise TrimError(f"{TRIM_RECORD} not found (looked at {', '.join(str(c) for c in candidates)}); pass "
                    f"--trim-record TRIMMED_MODEL_DIR/{TRIM_RECORD}")


def untrim(
    trained: str | os.PathLike,
    full_dir: str | os.PathLike,
    out_dir: str | os.PathLike,
    trim_record: str | os.PathLike | None = None,
    force: bool = False,
) -> Path:
    """Scatter a trained trimmed model back into the full start model; write a full-vocabulary model directory.

    ``trained``: a trimmed model directory (its ``model.pt``) or a training checkpoint (``checkpoint_best.pt``) of a
    run started from one.  ``trim.json`` is looked up next to it, then next to the run's ``--finetune-from-model``,
    or given as ``trim_record``.
    """
    trained, full_dir, out_dir = Path(trained), Path(full_dir), Path(out_dir)
    ckpt = trained / "model.pt" if trained.is_dir() else trained
    if not ckpt.is_file():
        raise TrimError(f"{ckpt}: no such checkpoint")
    check_model_dir(full_dir)
    state = load_fairseq_checkpoint(ckpt)
    record_path = _find_trim_record(ckpt, state.get("cfg"), trim_record)
    check_not_input(out_dir, [ckpt, full_dir, record_path])
    check_replaceable_dir(out_dir, force, UNTRIM_RECORD, UNTRIM_COMMAND, UNTRIMMED_FILES)
    record = json.loads(record_path.read_text(encoding="utf-8"))
    kept = torch.tensor(record["kept_ids"], dtype=torch.long)
    start_sha = _check_start_model(full_dir, record["full"], record_path)
    new_state = _scattered_state(ckpt, state["model"], full_dir, record["full"]["rows"], record_path, kept)
    verify_state_dict(state["cfg"], new_state)
    new_ckpt = dict(state)
    new_ckpt["model"] = new_state
    new_ckpt["last_optimizer_state"] = None  # the trimmed run's Adam state has the trimmed shapes

    with staged_dir(out_dir, force, [ckpt, full_dir, record_path], UNTRIM_RECORD, UNTRIM_COMMAND,
                    UNTRIMMED_FILES) as tmp:
        torch.save(new_ckpt, tmp / "model.pt")
        shutil.copyfile(full_dir / "sentencepiece.bpe.model", tmp / "sentencepiece.bpe.model")
        shutil.copyfile(full_dir / "dict.txt", tmp / "dict.txt")
        if (full_dir / USE_FILE).is_file():  # the trained model is read where the start model is
            shutil.copyfile(full_dir / USE_FILE, tmp / USE_FILE)
        out_record = {
            "format": 1,
            "trained_checkpoint": str(ckpt.resolve()),
            "trained_sha256": sha256_file(ckpt),
            "trim_record": str(record_path.resolve()),
            "start_model_dir": str(full_dir.resolve()),
            "start_model_sha256": start_sha,
            "rows": int(new_state[EMBED_KEY].shape[0]),
            "rows_from_trained": len(kept),
            "num_updates": num_updates(state),
            "model_sha256": sha256_file(tmp / "model.pt"),
            **stamp(),
        }
        atomic_write_json(tmp / UNTRIM_RECORD, out_record, indent=2)
    logger.info("untrimmed %s -> %s: %d trained rows into %d", ckpt, out_dir, len(kept), out_record["rows"])
    return out_dir


def _check_start_model(full_dir: Path, want: dict, record_path: Path) -> str:
    """The start model must be the one that was trimmed: the same weights (content hash of the state tensors; the
    file's bytes also hold paths, e.g. of another conversion of the same model) and the same sentencepiece model;
    return the model file's sha256."""
    from translit_plugin.conversion.fairseq_model import checkpoint_content_sha256

    model_sha = sha256_file(full_dir / "model.pt")
    got = {"sentencepiece_sha256": sha256_file(full_dir / "sentencepiece.bpe.model")}
    if model_sha != want["model_sha256"]:  # the same file needs no second look; another one, its tensors
        key = "model_content_sha256" if "model_content_sha256" in want else "model_sha256"  # older records
        got[key] = checkpoint_content_sha256(full_dir / "model.pt") if key != "model_sha256" else model_sha
    wrong = [k for k in got if got[k] != want[k]]
    if wrong:
        raise TrimError(
            f"{full_dir} is not the model {record_path} was trimmed from ({', '.join(wrong)} differ: expected "
            f"{', '.join(want[k][:12] for k in wrong)}..., got {', '.join(got[k][:12] for k in wrong)}...; trimmed "
            f"from {want.get('model_dir')}). Pass that start model directory"
        )
    return model_sha


def _scattered_state(ckpt: Path, trained_state: dict[str, torch.Tensor], full_dir: Path, full_rows: int,
                     record_path: Path, kept: torch.Tensor) -> dict[str, torch.Tensor]:  # fmt: skip
    """The trained tensors, with the vocabulary-sized ones scattered into the start model's full matrices."""
    t_emb = trained_state[EMBED_KEY]
    if t_emb.shape[0] != len(kept):
        raise TrimError(f"{ckpt} has {t_emb.shape[0]} embedding rows but {record_path} kept {len(kept)}: the "
                        "checkpoint was not trained from that trimmed model")
    full_state = load_fairseq_checkpoint(full_dir / "model.pt")["model"]
    f_emb = full_state[EMBED_KEY]
    if f_emb.shape[0] != full_rows:
        raise TrimError(f"{full_dir}/model.pt has {f_emb.shape[0]} rows, {record_path} says {full_rows}")
    shape_diff = [k for k in trained_state if k not in VOCAB_KEYS and k in full_state
                  and tuple(trained_state[k].shape) != tuple(full_state[k].shape)]
    if shape_diff or set(trained_state) - set(full_state) - set(VOCAB_KEYS):
        raise TrimError(f"{ckpt} and {full_dir}/model.pt have different architectures (tensors {shape_diff[:5]}, "
                        f"extra {sorted(set(trained_state) - set(full_state))[:5]})")

    def scatter(full_t: torch.Tensor, trained_t: torch.Tensor) -> torch.Tensor:
        out = full_t.clone()  # rows not kept: the start model's, bit for bit
        out.index_copy_(0, kept, trained_t.to(full_t.dtype))
        return out

    new_state = dict(trained_state)
    new_emb = scatter(f_emb, t_emb)
    new_state[EMBED_KEY] = new_emb
    if HEAD_W_KEY in trained_state:
        t_head = trained_state[HEAD_W_KEY]
        tied = t_head is t_emb or torch.equal(t_head, t_emb)
        new_state[HEAD_W_KEY] = new_emb if tied else scatter(full_state.get(HEAD_W_KEY, f_emb), t_head)
    if HEAD_B_KEY in trained_state:
        new_state[HEAD_B_KEY] = scatter(full_state[HEAD_B_KEY], trained_state[HEAD_B_KEY])
    return new_state
