"""The sentence-transformers files of an exported model: ``SentenceTransformer(OUT)`` reads it where its use setting
(``use.json``, :mod:`translit_plugin.core.use_settings`) says, exactly as the hub's ``embed`` does.

Written in the layout sentence-transformers has read since version 2 (and multilingual-e5's own repository uses):
``modules.json`` (a Transformer at the top of the directory, then a Pooling module), ``sentence_bert_config.json``
(the longest input: the hub's, ``min(512, max_positions)`` tokens, truncated keeping ``</s>`` as HF does),
``1_Pooling/config.json`` and ``config_sentence_transformers.json`` (the use setting's ``prompts`` and
``default_prompt_name``, cosine similarity).  What the hub computes and sentence-transformers expresses:

* layer: the **last** layer only (sentence-transformers pools the Transformer's output);
* pooling: ``mean_with_special`` = sentence-transformers' mean over the attention mask, ``<s>``, ``</s>`` and the
  prompt's tokens included (``include_prompt``); ``cls`` = its CLS pooling.  ``mean_no_special`` has no equivalent.
* no Normalize module: ``hub.embed`` returns the pooled vectors unnormalised (cosine similarity is the same either
  way; a source whose own configuration normalised is noted in the record).

A use setting outside this (an intermediate layer, ``mean_no_special``), or a source whose own sentence-transformers
pipeline has modules the use setting does not describe (a Dense projection, ...), gets no configuration at all
rather than a wrong one: :func:`sentence_transformers_files` says why, and the export logs a warning.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

from translit_plugin.core.files import atomic_write_json
from translit_plugin.core.names import DEFAULT_MAX_LENGTH
from translit_plugin.core.use_settings import ST_POOLING_MODES, UseSetting

logger = logging.getLogger(__name__)

POOLING_DIR = "1_Pooling"
#: every mode switch of sentence-transformers' Pooling config (all written: the chosen one true, the others false)
_ST_MODES = ("cls_token", "mean_tokens", "max_tokens", "mean_sqrt_len_tokens", "weightedmean_tokens", "lasttoken")
_KNOWN_SOURCE_MODULES = ("Transformer", "Pooling", "Normalize")


def source_modules(conversion: dict | None) -> list[str] | None:
    """The module types of the HF source's own ``modules.json`` (when its directory is still there), else None."""
    if not conversion or not conversion.get("source_dir"):
        return None
    path = Path(str(conversion["source_dir"])) / "modules.json"
    try:
        modules = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return None
    if not isinstance(modules, list):
        return None
    return [str(m.get("type", "")) for m in modules if isinstance(m, dict)]


def plan(use: UseSetting | None, num_layers: int, src_modules: list[str] | None = None) -> tuple[str | None, str]:
    """(sentence-transformers pooling mode, why) for ``use``; the mode is None when no configuration can be right."""
    if use is None:
        return None, "no use setting (use.json): the model has no documented sentence-embedding reading"
    layer = use.layer_index(num_layers)
    if layer != num_layers:
        return None, (f"the use setting reads layer {layer}, not the last ({num_layers}); sentence-transformers pools "
                      "the last layer's output")  # fmt: skip
    if use.pooling not in ST_POOLING_MODES:
        return None, (f"the use setting's pooling {use.pooling!r} has no sentence-transformers equivalent (its mean "
                      "counts <s>, </s> and the prompt)")  # fmt: skip
    extra = [t for t in src_modules or [] if not t.endswith(_KNOWN_SOURCE_MODULES)]
    if extra:
        return None, (f"the source's sentence-transformers pipeline has modules the use setting does not describe "
                      f"({extra}); the hub computes without them")  # fmt: skip
    return ST_POOLING_MODES[use.pooling], f"the use setting: {use.describe(num_layers)}"


#: the prompt names sentence-transformers' ``encode_query`` / ``encode_document`` use, and the names embedding models
#: give the same prompts (multilingual-e5: ``passage``); sentence-transformers adds an empty ``document`` prompt of its
#: own, which ``encode_document`` would otherwise pick before ``passage``
ST_TASK_ALIASES = {"document": ("passage", "corpus")}


def st_prompts(prompts: dict[str, str]) -> dict[str, str]:
    """The use setting's prompts, plus ``document`` = the passage prompt where only ``passage`` names it, so that
    ``SentenceTransformer.encode_document`` reads documents as the model's card says."""
    out = dict(prompts)
    for task, names in ST_TASK_ALIASES.items():
        if task not in out:
            given = next((n for n in names if n in out), None)
            if given is not None:
                out[task] = out[given]
    return out


def write_files(out: Path, use: UseSetting, mode: str, hidden: int, max_positions: int) -> list[str]:
    """Write the sentence-transformers files into ``out``; return their names."""
    modules = [
        {"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"},
        {"idx": 1, "name": "1", "path": POOLING_DIR, "type": "sentence_transformers.models.Pooling"},
    ]
    atomic_write_json(out / "modules.json", modules, indent=2)
    atomic_write_json(out / "sentence_bert_config.json",
                      {"max_seq_length": min(DEFAULT_MAX_LENGTH, max_positions), "do_lower_case": False}, indent=2)
    pooling = {"word_embedding_dimension": hidden,
               **{f"pooling_mode_{m}": f"pooling_mode_{m}" == mode for m in _ST_MODES},
               "include_prompt": True}  # fmt: skip
    (out / POOLING_DIR).mkdir(exist_ok=True)
    atomic_write_json(out / POOLING_DIR / "config.json", pooling, indent=2)
    st = {"model_type": "SentenceTransformer", "prompts": st_prompts(use.prompts),
          "default_prompt_name": use.default_prompt, "similarity_fn_name": "cosine"}  # fmt: skip
    atomic_write_json(out / "config_sentence_transformers.json", st, indent=2, ensure_ascii=False)
    return ["modules.json", "sentence_bert_config.json", f"{POOLING_DIR}/config.json",
            "config_sentence_transformers.json"]  # fmt: skip


def sentence_transformers_files(out: Path, use: UseSetting | None, use_file: str | None, num_layers: int,
                                hidden: int, max_positions: int, conversion: dict | None = None) -> dict:  # fmt: skip
    """Write the configuration when the use setting can be expressed; return what the export record keeps."""
    src_modules = source_modules(conversion)
    mode, why = plan(use, num_layers, src_modules)
    record: dict = {"written": mode is not None, "why": why, "use_file": use_file,
                    "use_setting": use.to_json() if use is not None else None}  # fmt: skip
    if src_modules is not None:
        record["source_modules"] = src_modules
        if any(t.endswith("Normalize") for t in src_modules):
            record["note"] = ("the source's configuration normalised the vectors; hub.embed does not, so neither does "
                              "this one (cosine similarities are the same)")  # fmt: skip
    if mode is None:
        (logger.warning if use is not None else logger.info)(
            "no sentence-transformers configuration written: %s", why)
        return record
    record.update(files=write_files(out, use, mode, hidden, max_positions), pooling_mode=mode, normalize=False,
                  max_seq_length=min(DEFAULT_MAX_LENGTH, max_positions))  # fmt: skip
    logger.info("sentence-transformers configuration written (%s)", why)
    return record
