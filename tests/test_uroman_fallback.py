"""uroman 1.3 raises on some real text (Chinese ``百分之`` not followed by a number, found in LibreOffice's zh_TW
catalogue: ``在前百分之 N 中``). Such a line is romanized token by token instead, every other line stays uroman's own
output, and a corpus with such a line goes through ``transliterate`` and ``prepare`` with its pairs in place."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
from prepare_helpers import build_model_dir, demo_lines, run_prepare

uroman = pytest.importorskip("uroman")

from translit_plugin.transliterate import Transliterator  # noqa: E402

CRASHING = ["在前百分之 N 中", "百分之N", "百分之 5"]


@pytest.fixture(scope="module")
def tr() -> Transliterator:
    return Transliterator()


def test_the_lines_still_crash_uroman_itself():
    """If uroman stops raising on these, the fallback is no longer exercised here: pick other lines."""
    raw = uroman.Uroman()
    for line in CRASHING:
        with pytest.raises(Exception):  # noqa: B017 - uroman's own bug raises AttributeError today
            raw.romanize_string(line, lcode="zho")


def test_failing_line_is_romanized_token_by_token(tr, caplog):
    before = tr.fallbacks
    with caplog.at_level(logging.WARNING, logger="translit_plugin.transliterate"):
        out = [tr.transliterate(line, "zho") for line in CRASHING]
    # whitespace kept; a failing token becomes its longest prefixes uroman takes ('在前百分' + '之')
    assert out == ["zaiqianbaifenzhi N zhong", "baifenzhiN", "baifenzhi 5"]
    assert tr.fallbacks - before == 3
    warned = [r.getMessage() for r in caplog.records if "uroman failed" in r.getMessage()]
    assert len(warned) == 3 and "'在前百分之 N 中'" in warned[0] and "lcode zho" in warned[0]


def test_lines_uroman_takes_are_untouched(tr):
    raw = uroman.Uroman()
    before = tr.fallbacks
    for line in ["百分之五十", "在前百分", *demo_lines("zho_Hans", 20)]:
        assert tr.romanize(line, "zho") == raw.romanize_string(line, lcode="zho")
    assert tr.fallbacks == before


def test_transliterate_command_keeps_every_line_in_place(tmp_path, tr):
    from translit_plugin.cli import main

    lines = demo_lines("zho_Hant", 12)
    lines[5:5] = CRASHING  # in the middle: a lost or extra line would shift every later pair
    src = tmp_path / "zho_Hant.txt"
    src.write_text("\n".join(lines) + "\n", encoding="utf-8")
    out = tmp_path / "out.txt"
    assert main(["transliterate", "--input", str(src), "--output", str(out), "--workers", "1", "--no-progress"]) == 0
    got = out.read_text(encoding="utf-8").split("\n")
    assert got[-1] == "" and got[:-1] == [tr.transliterate(line, "zho") for line in lines]
    assert got[5:8] == ["zaiqianbaifenzhi N zhong", "baifenzhiN", "baifenzhi 5"]


def test_prepare_goes_through_a_corpus_with_such_a_line(tmp_path, capsys):
    model_dir = build_model_dir(tmp_path / "model")
    inp = tmp_path / "in"
    inp.mkdir()
    lines = demo_lines("zho_Hant", 24)
    lines[10:10] = CRASHING
    (inp / "zho_Hant.txt").write_text("\n".join(lines) + "\n", encoding="utf-8")
    rc, err = run_prepare(capsys, inp, model_dir, tmp_path / "out")
    assert rc == 0, err
    assert "uroman failed on '在前百分之 N 中'" in err
    assert Path(tmp_path / "out" / "data-bin").is_dir()
