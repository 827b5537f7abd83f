"""Language-group files (``examples/groups/*.json``): which languages to prepare, their uroman codes and sampling.

Format::

    {
      "name": "mediterranean-amharic-farsi",
      "description": "...",
      "sampling": {"fraction": 0.1, "min_sentences": 10000},        # optional, overrides the CLI defaults
      "languages": {
        "ara_Arab": {"uroman_code": "ara", "paper_sentences": 2400000},
        "arz_Arab": {"uroman_code": "ara"},                           # uroman has Arabic rules under "ara" only
        ...
      },
      "transfer_sources": ["eng_Latn", "ara_Arab", ...]               # informational (evaluation)
    }

``uroman_code`` may be ``null`` to call uroman without a code (what the paper's Perl uroman call did).
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


@dataclass
class LanguageGroup:
    """A parsed group file."""

    name: str
    languages: list[str]
    uroman_codes: dict[str, str | None] = field(default_factory=dict)  # only the explicit ones
    sampling: dict[str, Any] = field(default_factory=dict)
    description: str = ""
    path: str = ""


def load_group(path: str | os.PathLike) -> LanguageGroup:
    """Read and validate a group file (raises ``ValueError`` naming the file and the problem)."""
    path = Path(path)
    try:
        data = json.loads(path.read_text(encoding="utf-8"), object_pairs_hook=_no_duplicates(path))
    except json.JSONDecodeError as e:
        raise ValueError(f"{path}: not valid JSON ({e})") from e
    _check_types(path, data)
    if not isinstance(data.get("languages"), dict) or not data["languages"]:
        raise ValueError(f"{path}: needs a non-empty 'languages' object mapping lang_Script codes to settings")
    _check_keys(path, data)
    codes: dict[str, str | None] = {}
    for lang, spec in data["languages"].items():
        if not isinstance(spec, dict):
            raise ValueError(f"{path}: languages.{lang} must be an object, e.g. {{\"uroman_code\": \"ara\"}}")
        if "uroman_code" in spec:
            codes[lang] = spec["uroman_code"]
    sampling = data.get("sampling", {})
    allowed = {"fraction", "min_sentences", "max_sentences"}
    if set(sampling) - allowed:
        unknown = sorted(set(sampling) - allowed)
        raise ValueError(f"{path}: unknown sampling keys {unknown} (allowed: {sorted(allowed)})")
    return LanguageGroup(name=data.get("name", path.stem), languages=list(data["languages"]), uroman_codes=codes,
                         sampling=sampling, description=data.get("description", ""), path=str(path))


#: The keys a group file may hold (``epochs``: informational, the paper's training length for the group).
TOP_KEYS = frozenset({"name", "description", "sampling", "languages", "transfer_sources", "epochs"})
LANGUAGE_KEYS = frozenset({"uroman_code", "paper_sentences"})


def _no_duplicates(path: Path):
    """``object_pairs_hook`` for :func:`json.loads` refusing a key given twice in one object (plain ``json`` keeps the
    last one silently: a language listed twice would get its second settings without a word)."""

    def hook(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
        seen: dict[str, Any] = {}
        for key, value in pairs:
            if key in seen:
                raise ValueError(f"{path}: duplicate key {key!r} in one object (JSON keeps only the last); list it "
                                 "once")
            seen[key] = value
        return seen

    return hook


def _check_keys(path: Path, data: dict[str, Any]) -> None:
    """No key this reader does not know (a misspelt ``langauges`` or ``uroman-code`` would otherwise be ignored)."""
    unknown = sorted(set(data) - TOP_KEYS)
    if unknown:
        raise ValueError(f"{path}: unknown key(s) {unknown} (allowed: {sorted(TOP_KEYS)})")
    for lang, spec in data["languages"].items():
        unknown = sorted(set(spec) - LANGUAGE_KEYS) if isinstance(spec, dict) else []
        if unknown:
            raise ValueError(f"{path}: languages.{lang}: unknown key(s) {unknown} (allowed: {sorted(LANGUAGE_KEYS)})")


def _check_types(path: Path, data: Any) -> None:
    """Each known field has its type (``ValueError`` naming the field): what a hand-edited file gets wrong."""
    if not isinstance(data, dict):
        raise ValueError(f"{path}: must be a JSON object with a 'languages' object, found {type(data).__name__}")
    for key in ("name", "description"):
        if key in data and not isinstance(data[key], str):
            raise ValueError(f"{path}: '{key}' must be a string, found {json.dumps(data[key])}")
    sources = data.get("transfer_sources", [])
    if not isinstance(sources, list) or not all(isinstance(x, str) for x in sources):
        raise ValueError(f"{path}: 'transfer_sources' must be a list of lang_Script codes")
    for lang, spec in (data.get("languages") or {}).items() if isinstance(data.get("languages"), dict) else ():
        code = spec.get("uroman_code") if isinstance(spec, dict) else None
        if code is not None and not isinstance(code, str):
            raise ValueError(f"{path}: languages.{lang}.uroman_code must be a string (e.g. \"ara\") or null, found "
                             f"{json.dumps(code)}")
    sampling = data.get("sampling", {})
    if not isinstance(sampling, dict):
        raise ValueError(f"{path}: 'sampling' must be an object, e.g. {{\"fraction\": 0.1, \"min_sentences\": "
                         "10000}")
    fraction = sampling.get("fraction")
    if fraction is not None and (isinstance(fraction, bool) or not isinstance(fraction, (int, float))
                                 or not 0 < fraction <= 1):
        raise ValueError(f"{path}: sampling.fraction must be a number in (0, 1], found {json.dumps(fraction)}")
    for key in ("min_sentences", "max_sentences"):
        value = sampling.get(key)
        if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 0):
            raise ValueError(f"{path}: sampling.{key} must be a whole number >= 0, found {json.dumps(value)}")
