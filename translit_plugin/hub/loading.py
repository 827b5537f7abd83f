"""Load a model directory or a training checkpoint as a :class:`~translit_plugin.hub.TranslitHubInterface`."""

from __future__ import annotations

import logging
import os
from pathlib import Path

from translit_plugin.core.use_settings import PROBE, UseSetting, find_use_setting, read_use_setting

from .interface import TranslitHubInterface

logger = logging.getLogger(__name__)


def find_dictionary(model_dir: Path, cfg) -> Path:
    """``dict.txt`` of ``model_dir``, else of the data directory the checkpoint was trained on."""
    candidates = [model_dir / "dict.txt"]
    data = getattr(getattr(cfg, "task", None), "data", None)
    if data:
        first = str(data).split(os.pathsep)[0]
        candidates += [Path(first) / "dict.txt", Path(first) / "orig" / "dict.txt"]
    for c in candidates:
        if c.is_file():
            return c
    raise FileNotFoundError(
        "dict.txt not found (looked in " + ", ".join(str(c) for c in candidates) + "); pass dictionary=PATH"
    )


def from_pretrained(
    model_name_or_path: str | os.PathLike,
    checkpoint_file: str = "model.pt",
    sentencepiece_model: str | os.PathLike | None = None,
    dictionary: str | os.PathLike | None = None,
    use_setting: UseSetting | str | os.PathLike | None = None,
    **unused,
) -> TranslitHubInterface:
    """Load ``model_name_or_path/checkpoint_file`` (a model directory or a training run's checkpoint directory).

    ``sentencepiece_model`` and ``dictionary`` default to the files in ``model_name_or_path`` (a converted model
    directory has both); for a training run's ``checkpoints/`` pass the start model's files.  ``use_setting`` (a
    :class:`~translit_plugin.core.use_settings.UseSetting` or a directory holding ``use.json``) defaults to the
    ``use.json`` of the model directory, else of the tokenizer files' directories, else the paper's probe.
    """
    from fairseq.data import Dictionary

    import translit_plugin.plugin  # noqa: F401  (registers the model)
    from translit_plugin.checkpoint_compat import load_fairseq_checkpoint
    from translit_plugin.data.fingerprint import check_recorded_vocabulary
    from translit_plugin.models.checkpoints import load_model

    model_dir = Path(model_name_or_path)
    ckpt = Path(checkpoint_file) if Path(checkpoint_file).is_absolute() else model_dir / checkpoint_file
    if not ckpt.is_file():
        raise FileNotFoundError(f"checkpoint not found: {ckpt}")
    spm_path = Path(sentencepiece_model) if sentencepiece_model else model_dir / "sentencepiece.bpe.model"
    if not spm_path.is_file():
        raise FileNotFoundError(f"sentencepiece model not found: {spm_path}; pass sentencepiece_model=PATH")
    state = load_fairseq_checkpoint(ckpt)
    cfg = state["cfg"]
    dict_path = Path(dictionary) if dictionary else find_dictionary(model_dir, cfg)
    d = Dictionary.load(str(dict_path))
    d.add_symbol("<mask>")
    model, _ = load_model(
        ckpt, d, lambda rows, entries: (
            f"{dict_path}: dictionary has {entries} entries (with <mask>) but {ckpt} has {rows} embedding rows; "
            "the dictionary does not belong to this checkpoint"
        ),
        state=state,  # same size, other content (issue 20):
        check_state=lambda state: check_recorded_vocabulary(state, dict_path, spm_path, ckpt),
    )
    logger.info("loaded %s (%d layers, vocab %d)", ckpt, len(model.encoder.sentence_encoder.layers), len(d))
    if use_setting is None:  # the model's directory, then the directories its tokenizer files came from
        use_setting = find_use_setting(model_dir, spm_path.parent, dict_path.parent)
    elif not isinstance(use_setting, UseSetting):
        use_setting = read_use_setting(use_setting) or PROBE
    return TranslitHubInterface(cfg, model, d, spm_path, use=use_setting)
