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
        data = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as e:
        raise ValueError(f"{path}: not valid JSON ({e})") from e
    if not isinstance(data.get("languages"), dict) or not data["languages"]:
        raise ValueError(f"{path}: needs a non-empty 'languages' object mapping lang_Script codes to settings")
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
