"""The uroman wrapper: reproduces uroman's own multi-script reference output exactly, derives language codes, gives
single-line output, and is independent of history (cache) and process.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

uroman = pytest.importorskip("uroman")

from translit_plugin.core.lines import is_single_line  # noqa: E402
from translit_plugin.transliterate import Transliterator, uroman_code, uroman_version  # noqa: E402

MINI_TEST = Path(uroman.__file__).resolve().parent / "mini-test"
LCODE_PREFIX = re.compile(r"(::lcode\s+)([a-z]{3})(\s+)(.*)$")  # uroman's per-line language-code syntax


@pytest.fixture(scope="module")
def tr() -> Transliterator:
    return Transliterator()  # uroman CLI default: cache on (65,536 entries)


def _reference() -> tuple[list[str], list[str]]:
    src = (MINI_TEST / "multi-script.txt").read_text(encoding="utf-8").split("\n")
    ref = (MINI_TEST / "multi-script.uroman-ref.txt").read_text(encoding="utf-8").split("\n")
    assert len(src) == len(ref) > 30
    return src, ref


def test_reproduces_uroman_multi_script_reference_exactly(tr):
    """Line by line, with each line's ``::lcode`` passed explicitly (no code where the line has none)."""
    src, ref = _reference()
    n_coded = 0
    for i, (line, expected) in enumerate(zip(src, ref)):
        m = LCODE_PREFIX.match(line)
        if m:
            n_coded += 1
            prefix = m.group(1) + m.group(2) + m.group(3)
            got = prefix + tr.romanize(m.group(4), lcode=m.group(2))
        else:
            got = tr.romanize(line, lcode=None)
        assert got == expected, f"multi-script.txt line {i + 1}"
    assert n_coded >= 20  # the sample covers ~20 languages with explicit codes


def test_transliterate_is_the_single_line_form_of_the_reference(tr):
    src, ref = _reference()
    for line, expected in zip(src, ref):
        m = LCODE_PREFIX.match(line)
        if not m:
            continue
        out = tr.transliterate(m.group(4), m.group(2))
        assert is_single_line(out)
        assert out == " ".join(LCODE_PREFIX.match(expected).group(4).split())


def test_language_code_matters_and_is_passed(tr):
    persian = "کالیفرنیا (به انگلیسی: California) ایالتی در غرب آمریکا"
    assert tr.transliterate(persian, "fas") != tr.transliterate(persian, None)
    assert tr.transliterate_lines([persian, persian], "fas") == [tr.transliterate(persian, "fas")] * 2


def test_output_is_independent_of_history(tr):
    """The token cache must not make a line's output depend on what was romanized before (resume, workers)."""
    lines = ["مرحبا بالعالم، كيف حالك؟", "中文，测试。你好", "Καλημέρα κόσμε", "안녕하세요 세계", "สวัสดีชาวโลก"]
    first = [tr.transliterate(x, None) for x in lines]
    fresh = Transliterator()
    assert [fresh.transliterate(x, None) for x in reversed(lines)][::-1] == first


@pytest.mark.parametrize(
    ("code", "expected"),
    [("fas_Arab", "fas"), ("zho_Hani", "zho"), ("kor_Hang", "kor"), ("ell_Grek", "ell"), ("en", "en")],
)
def test_uroman_code(code, expected):
    assert uroman_code(code) == expected


@pytest.mark.parametrize("bad", ["Persian", "fas-Arab", "FAS_Arab", "fas_arab", ""])
def test_uroman_code_rejects_non_codes(bad):
    with pytest.raises(ValueError, match="lang_Script"):
        uroman_code(bad)


def test_version(tr):
    assert uroman_version() == tr.version == uroman.uroman.__version__
