"""How a model's users read it: the layer, the pooling and the prompts of its *use setting*, recorded in
``use.json`` next to ``model.pt``.

A sentence-embedding model is read at a fixed place: multilingual-e5 at its last layer, mean-pooled over every token
(the prompt's and the specials' included), with ``"query: "`` or ``"passage: "`` in front of the text, as its model
card and its sentence-transformers configuration say.  The paper's probe (layer 8, mean pooling, no prompt) is a
different place in the same network, and a post-training that improves one can hurt the other.  So every model
directory says where it is read (:class:`UseSetting`), and the hub, ``evaluate``, ``select-checkpoint``, the anchored
training term and the demo default to it; :data:`PROBE` is the paper's view, always available by name.

Where the setting comes from (:func:`setting_from_source`), in order: what the user passes at conversion; the
source's own sentence-transformers files (``modules.json``, the pooling module's ``config.json``,
``config_sentence_transformers.json`` with its ``prompts`` and ``default_prompt_name``); a known embedding family
(:data:`KNOWN_MODELS`: e5's documented prompts); otherwise the probe, which is also what a model directory without
``use.json`` means (the behaviour of every earlier version).

Layers are ``"last"`` or an index (0 = embeddings, k = output of layer k), resolved against the model by
:meth:`UseSetting.layer_index`.  Stdlib only.
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import asdict, dataclass, field
from pathlib import Path

from translit_plugin.core.names import CLS, DEFAULT_LAYER, MEAN_NO_SPECIAL, MEAN_WITH_SPECIAL, POOLINGS

USE_FILE = "use.json"
LAST = "last"
#: The names of the two views every report can show.
USE_VIEW, PROBE_VIEW = "use", "probe"
VIEWS = (USE_VIEW, PROBE_VIEW)


@dataclass(frozen=True)
class UseSetting:
    """Where a model is read.

    ``layer``: ``"last"`` or an index; ``pooling``: one of :data:`~translit_plugin.core.names.POOLINGS`;
    ``prompts``: name -> text put in front of a sentence before tokenization (sentence-transformers' ``prompts``);
    ``default_prompt``: the name used when none is asked for (``None``: no prompt); ``source``: where the setting
    was taken from (for the record).
    """

    layer: str | int = DEFAULT_LAYER
    pooling: str = MEAN_WITH_SPECIAL
    prompts: dict[str, str] = field(default_factory=dict)
    default_prompt: str | None = None
    source: str = "the paper's probe (no use setting recorded)"

    def __post_init__(self) -> None:
        if isinstance(self.layer, str) and self.layer != LAST:
            if not re.fullmatch(r"\d+", self.layer):
                raise ValueError(f"use setting: layer must be 'last' or an index, got {self.layer!r}")
            object.__setattr__(self, "layer", int(self.layer))
        if isinstance(self.layer, int) and self.layer < 0:
            raise ValueError(f"use setting: layer must be >= 0, got {self.layer}")
        if self.pooling not in POOLINGS:
            raise ValueError(f"use setting: pooling {self.pooling!r} is not one of {POOLINGS}")
        if not isinstance(self.prompts, dict) or not all(
            isinstance(k, str) and isinstance(v, str) for k, v in self.prompts.items()
        ):
            raise ValueError(f"use setting: prompts must map names to texts, got {self.prompts!r}")
        if self.default_prompt is not None and self.default_prompt not in self.prompts:
            raise ValueError(
                f"use setting: default prompt {self.default_prompt!r} is not among the prompts {sorted(self.prompts)}"
            )

    def layer_index(self, num_layers: int) -> int:
        """The layer as an index into a model of ``num_layers`` transformer layers."""
        layer = num_layers if self.layer == LAST else int(self.layer)
        if not 0 <= layer <= num_layers:
            raise ValueError(f"use setting: layer {layer} does not exist (the model has layers 0..{num_layers})")
        return layer

    def prompt_text(self, name: str | None = None) -> str:
        """The text of prompt ``name`` (default: the default prompt; ``""`` when there is none)."""
        name = self.default_prompt if name is None else name
        if name is None or name == "":
            return ""
        if name not in self.prompts:
            raise ValueError(f"unknown prompt name {name!r}; this model's prompts are {sorted(self.prompts) or 'none'}")
        return self.prompts[name]

    def describe(self, num_layers: int | None = None) -> str:
        """``"layer 12 (last), mean_with_special, prompt 'query: '"``: how reports name the view."""
        layer = self.layer if num_layers is None else self.layer_index(num_layers)
        last = " (last)" if self.layer == LAST and num_layers is not None else ""
        prompt = self.prompt_text()
        return f"layer {layer}{last}, {self.pooling}, " + (f"prompt {prompt!r}" if prompt else "no prompt")

    def to_json(self) -> dict:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict, where: str = USE_FILE) -> UseSetting:
        if not isinstance(data, dict):
            raise ValueError(f"{where}: expected a JSON object, got {type(data).__name__}")
        known = {"layer", "pooling", "prompts", "default_prompt", "source"}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"{where}: unknown keys {unknown} (known: {sorted(known)})")
        try:
            return cls(**data)
        except (TypeError, ValueError) as e:
            raise ValueError(f"{where}: {e}") from None


#: The paper's probe: layer 8, mean over every token (``<s>``/``</s>`` included), no prompt.
PROBE = UseSetting()

_E5_PROMPTS = {"query": "query: ", "passage": "passage: "}
#: Embedding families whose use setting is documented on their model cards (name pattern -> setting).
KNOWN_MODELS: dict[str, UseSetting] = {
    r"(^|/)(multilingual-)?e5-(small|base|large)(-v2)?$": UseSetting(
        layer=LAST, pooling=MEAN_WITH_SPECIAL, prompts=dict(_E5_PROMPTS), default_prompt="query",
        source="multilingual-e5's model card: last layer, mean pooling, 'query: ' / 'passage: ' prompts",
    ),  # fmt: skip
}


def known_model_setting(name: str | None) -> UseSetting | None:
    """The documented setting of a known embedding family, from a model name or path (``intfloat/...-e5-small``)."""
    if not name:
        return None
    name = str(name).rstrip("/").lower()
    for pattern, setting in KNOWN_MODELS.items():
        if re.search(pattern, name):
            return setting
    return None


#: our pooling -> the switch of sentence-transformers' Pooling config that selects it (read by ``convert``, written by
#: ``export-hf``); a mean over every token with the attention mask counts ``<s>``, ``</s>`` and the prompt
ST_POOLING_MODES = {MEAN_WITH_SPECIAL: "pooling_mode_mean_tokens", CLS: "pooling_mode_cls_token"}


def sentence_transformers_setting(model_dir: str | os.PathLike) -> UseSetting | None:
    """The setting a sentence-transformers directory declares (``modules.json`` with a Pooling module), or None.

    Reads the pooling module's ``config.json`` (``pooling_mode_mean_tokens`` / ``pooling_mode_cls_token``,
    ``include_prompt``) and ``config_sentence_transformers.json`` (``prompts``, ``default_prompt_name``).  Poolings
    this project does not compute (max, weighted mean, last token, a prompt excluded from the mean) raise.
    """
    root = Path(model_dir)
    modules_path = root / "modules.json"
    if not modules_path.is_file():
        return None
    modules = _read_json(modules_path)
    pooling_dirs = [m.get("path", "") for m in modules if isinstance(m, dict) and "Pooling" in str(m.get("type", ""))]
    if not pooling_dirs:
        return None
    pool_cfg_path = root / pooling_dirs[0] / "config.json"
    pool_cfg = _read_json(pool_cfg_path) if pool_cfg_path.is_file() else {}
    modes = [k for k, v in pool_cfg.items() if k.startswith("pooling_mode_") and v]
    ours = {key: name for name, key in ST_POOLING_MODES.items()}
    if len(modes) == 1 and modes[0] in ours:
        pooling = ours[modes[0]]
    else:
        raise ValueError(
            f"{pool_cfg_path}: pooling {modes or 'unspecified'} is not one this project computes (mean over tokens "
            "or the <s> token); pass the use setting at conversion (--use-pooling)"
        )
    if pooling == MEAN_WITH_SPECIAL and pool_cfg.get("include_prompt", True) is False:
        raise ValueError(f"{pool_cfg_path}: include_prompt false (the prompt left out of the mean) is not supported")
    st_path = root / "config_sentence_transformers.json"
    st = _read_json(st_path) if st_path.is_file() else {}
    prompts = {k: v for k, v in (st.get("prompts") or {}).items() if isinstance(v, str) and v}
    default = st.get("default_prompt_name") or None
    return UseSetting(layer=LAST, pooling=pooling, prompts=prompts, default_prompt=default if default in prompts
                      else None, source=f"the source's sentence-transformers configuration ({root.name})")  # fmt: skip


def setting_from_source(source_dir: str | os.PathLike | None, name: str | None = None) -> UseSetting | None:
    """The use setting of a conversion source: its sentence-transformers files, else a known family by ``name``
    (or the directory's name), else None (the probe applies)."""
    if source_dir is not None:
        found = sentence_transformers_setting(source_dir)
        if found is not None:
            return found
    return known_model_setting(name) or (known_model_setting(Path(source_dir).name) if source_dir else None)


def read_use_setting(model_dir: str | os.PathLike) -> UseSetting | None:
    """``model_dir/use.json`` as a :class:`UseSetting`, or None when there is none."""
    path = Path(model_dir) / USE_FILE
    if not path.is_file():
        return None
    return UseSetting.from_json(_read_json(path), str(path))


def find_use_setting(*dirs: str | os.PathLike | None) -> UseSetting:
    """The first ``use.json`` among ``dirs`` (a model directory, then the directories its assets came from), else
    :data:`PROBE`."""
    for d in dirs:
        if d is not None:
            found = read_use_setting(d)
            if found is not None:
                return found
    return PROBE


def use_json_text(setting: UseSetting) -> str:
    """The bytes ``use.json`` holds (sorted keys, so equal settings give equal files)."""
    return json.dumps(setting.to_json(), indent=2, sort_keys=True, ensure_ascii=False) + "\n"


def setting_with(base: UseSetting, layer: str | None = None, pooling: str | None = None,
                 prompts: dict[str, str] | None = None, default_prompt: str | None = None,
                 source: str | None = None) -> UseSetting:  # fmt: skip
    """``base`` with the given fields replaced (the user's overrides at conversion)."""
    data = base.to_json()
    for key, value in (("layer", layer), ("pooling", pooling), ("prompts", prompts),
                       ("default_prompt", default_prompt), ("source", source)):  # fmt: skip
        if value is not None:
            data[key] = value
    if data["default_prompt"] == "":
        data["default_prompt"] = None
    return UseSetting.from_json(data, "use setting")


def _read_json(path: Path):
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ValueError(f"{path}: cannot read ({e})") from None


__all__ = [
    "KNOWN_MODELS", "LAST", "MEAN_NO_SPECIAL", "PROBE", "PROBE_VIEW", "USE_FILE", "USE_VIEW", "UseSetting", "VIEWS",
    "find_use_setting", "known_model_setting", "read_use_setting", "sentence_transformers_setting",
    "setting_from_source", "setting_with", "use_json_text",
]  # fmt: skip
