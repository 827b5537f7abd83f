"""Stage records of the prepare pipeline: when is a stage output up to date, and marking it so.

The line contract itself lives in :mod:`translit_plugin.core.lines`.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from translit_plugin.core.files import atomic_write_json


def file_stamp(path: str | os.PathLike) -> dict[str, Any]:
    """Cheap identity of an input file (path, size, mtime): changes when the file is replaced or edited."""
    st = os.stat(path)
    return {"path": str(Path(path).resolve()), "size": st.st_size, "mtime_ns": st.st_mtime_ns}


def done_path(output: Path) -> Path:
    return output.with_name(output.name + ".done.json")


def read_done(output: Path, key: str, marker: Path | None = None) -> dict[str, Any] | None:
    """The stage record of ``output`` if it exists, matches ``key`` and the output is still there; else None.

    ``marker`` overrides where the record lives (default: ``output`` + ``.done.json``)."""
    marker = marker or done_path(output)
    if not marker.is_file() or not output.exists():
        return None
    try:
        record = json.loads(marker.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError):
        return None
    return record if record.get("key") == key else None


def write_done(output: Path, key: str, record: dict[str, Any], marker: Path | None = None) -> dict[str, Any]:
    """Mark ``output`` as up to date for ``key`` (written last, atomically, after the output itself)."""
    record = {**record, "key": key}
    atomic_write_json(marker or done_path(output), record, sort_keys=True)
    return record
