"""Unit tests of the prepare stages that need neither uroman nor a model: the line contract, cleaning, sampling,
group files.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from prepare_helpers import ADVERSARIAL_LINES, REPO, write_raw

from translit_plugin.core.lines import count_lines, is_single_line, iter_lines, iter_raw_lines, to_single_line
from translit_plugin.prepare.clean import CleanConfig, clean_language
from translit_plugin.prepare.groups import load_group
from translit_plugin.prepare.sample import SampleConfig, choose, sample_language, sample_size

BREAKERS = "\r\n\x0b\x0c\x1c\x1d\x1e\x85\u2028\u2029"  # everything str.splitlines splits on


@pytest.mark.parametrize("text", ["a\u2028b", "a\x85b", "a\x0cb", "a\rb", "a\x00b", "a\tb", "a\u3000b", "a\xa0b",
                                  "\ufeffa b", "a\x1cb", "  a   b  ", "a\x7fb", "a\x9bb"])
def test_to_single_line_removes_every_breaker(text):
    out = to_single_line(text)
    assert out == "a b"
    assert out.splitlines() == [out]
    assert is_single_line(out)


def test_to_single_line_keeps_text():
    for s in ["Καλημέρα κόσμε", "صفحه\u200cهای", "中文，测试。", "\xe9", "zero\u200bwidth"]:
        assert to_single_line(s) == s
    assert to_single_line("e\u0301") == "\xe9"  # composed (NFC), as uroman and the tokenizers expect


def test_raw_lines_split_on_newline_only(tmp_path):
    """CRLF ends, lone CR, U+2028, NEL, FF, NUL and invalid UTF-8 stay inside their line."""
    path = tmp_path / "x.txt"
    write_raw(path, ADVERSARIAL_LINES, final_newline=False)
    lines = list(iter_raw_lines(path))
    assert len(lines) == len(ADVERSARIAL_LINES) == count_lines(path)
    assert lines[-1] == "crlf line"
    assert "\ufffd" in lines[ADVERSARIAL_LINES.index(b"bad \xff\xfe utf8 \xc3")]


def test_cleaned_file_is_read_identically_by_every_reader(tmp_path):
    """After cleaning, binary split, text-mode universal newlines (fairseq-preprocess, uroman's reader) and
    ``splitlines`` all see the same lines."""
    raw = tmp_path / "ell_Grek.txt"
    write_raw(raw, [b"first"] + ADVERSARIAL_LINES + [b"last"])
    out = tmp_path / "clean" / "ell_Grek.txt"
    rec = clean_language(raw, out, "ell_Grek", CleanConfig(), progress=False)
    data = out.read_bytes()
    by_bytes = data.decode("utf-8").split("\n")[:-1]
    with open(out, encoding="utf-8") as f:  # universal newlines, as fairseq's binarizer reads
        by_text_mode = [line.rstrip("\n") for line in f]
    assert by_bytes == by_text_mode == data.decode("utf-8").splitlines() == list(iter_lines(out))
    assert len(by_bytes) == rec["kept"]
    assert by_bytes[0] == "first" and by_bytes[-1] == "last"
    assert "Καλημέρα κόσμε" in by_bytes and "lone carriage return" in by_bytes and "nul byte" in by_bytes
    assert not any(c in line for line in by_bytes for c in BREAKERS + "\x00\t")
    assert rec["empty"] == 3 and rec["invalid_utf8"] == 1 and rec["input_lines"] == len(ADVERSARIAL_LINES) + 2


def test_clean_dedupe_and_max_chars(tmp_path):
    raw = tmp_path / "tur_Latn.txt"
    write_raw(raw, [b"a b", b"a  b", b"x" * 50, b"c", b"a b"])
    rec = clean_language(raw, tmp_path / "c.txt", "tur_Latn", CleanConfig(dedupe=True, max_chars=20), progress=False)
    assert list(iter_lines(tmp_path / "c.txt")) == ["a b", "c"]
    assert (rec["duplicate"], rec["too_long"], rec["kept"]) == (2, 1, 2)
    again = clean_language(raw, tmp_path / "c.txt", "tur_Latn", CleanConfig(dedupe=True, max_chars=20), progress=False)
    assert again.get("skipped")
    redone = clean_language(raw, tmp_path / "c.txt", "tur_Latn", CleanConfig(), progress=False)
    assert not redone.get("skipped") and redone["kept"] == 5


@pytest.mark.parametrize(("n", "k"), [(5, 5), (10_000, 10_000), (50_000, 10_000), (200_000, 20_000), (0, 0)])
def test_paper_sampling_rule(n, k):
    assert sample_size(n, SampleConfig()) == k  # max(10%, 10k), capped by what exists


def test_sampling_is_seeded_disjoint_and_per_language():
    cfg = SampleConfig(min_sentences=100, valid_size=10)
    tr, va = choose(5000, "ara_Arab", cfg)
    tr2, va2 = choose(5000, "ara_Arab", cfg)
    np.testing.assert_array_equal(tr, tr2)
    np.testing.assert_array_equal(va, va2)
    assert len(tr) + len(va) == 500 and len(va) == 10 and not set(tr) & set(va)
    assert np.all(np.diff(tr) > 0)  # corpus order
    other, _ = choose(5000, "fas_Arab", cfg)
    assert not np.array_equal(tr, other)  # each language has its own stream
    tr3, _ = choose(5000, "ara_Arab", SampleConfig(min_sentences=100, valid_size=10, seed=2))
    assert not np.array_equal(tr, tr3)


def test_sample_chunks(tmp_path):
    raw = tmp_path / "kor_Hang.txt"
    write_raw(raw, [f"line {i}".encode() for i in range(95)])
    rec = clean_language(raw, tmp_path / "clean.txt", "kor_Hang", CleanConfig(), progress=False)
    cfg = SampleConfig(min_sentences=60, valid_size=5, valid_max_fraction=0.5, chunk_size=20)
    s = sample_language(tmp_path / "clean.txt", rec, tmp_path / "sample", "kor_Hang", cfg, progress=False)
    assert s["chunks"] == {"train": [20, 20, 15], "valid": [5]}
    got = [line for p in sorted((tmp_path / "sample").glob("train-*.txt")) for line in iter_lines(p)]
    valid = list(iter_lines(tmp_path / "sample" / "valid-00000.txt"))
    tr, va = choose(95, "kor_Hang", cfg)
    assert got == [f"line {i}" for i in tr] and valid == [f"line {i}" for i in va]


GROUPS = sorted((REPO / "examples" / "groups").glob("*.json"))


@pytest.mark.parametrize("path", GROUPS, ids=[p.stem for p in GROUPS])
def test_group_files(path: Path):
    group = load_group(path)
    assert group.languages and all(len(code.split("_")) == 2 for code in group.languages)
    for code in group.uroman_codes.values():
        assert code is None or (len(code) == 3 and code.isalpha())
    data = json.loads(path.read_text())
    assert set(data.get("transfer_sources", [])) - set(group.languages) <= {"eng_Latn"}


def test_paper_groups_exist():
    names = {load_group(p).name for p in GROUPS}
    assert {"mediterranean-amharic-farsi", "south-east-asian"} <= names


def test_group_file_errors(tmp_path):
    bad = tmp_path / "g.json"
    bad.write_text(json.dumps({"languages": {}}))
    with pytest.raises(ValueError, match="non-empty"):
        load_group(bad)
    bad.write_text(json.dumps({"languages": {"ara_Arab": {}}, "sampling": {"fracton": 0.1}}))
    with pytest.raises(ValueError, match="fracton"):
        load_group(bad)


def test_plan_runs_keep_languages_together_and_cover_everything():
    from translit_plugin.prepare.chunks import ChunkTask
    from translit_plugin.prepare.parallel import plan_runs

    tasks = [ChunkTask(lang, "train", k, n, "s", "t", "b", None)
             for lang, n_chunks, n in (("ara_Arab", 9, 100), ("ell_Grek", 2, 100), ("kor_Hang", 1, 30))
             for k in range(n_chunks)]
    runs = plan_runs(tasks, workers=2)
    assert all(len({t.lang for t in run}) == 1 for run in runs)
    assert all(len(run) <= 2 for run in runs)  # ceil(12 / (4 * 2))
    assert sorted((t.lang, t.index) for run in runs for t in run) == sorted((t.lang, t.index) for t in tasks)
    for run in runs:
        assert [t.index for t in run] == list(range(run[0].index, run[0].index + len(run)))  # consecutive
    sizes = [sum(t.n_lines for t in run) for run in runs]
    assert sizes == sorted(sizes, reverse=True)  # largest first
    assert plan_runs(tasks, workers=1) == [[t] for t in tasks]  # one worker: each chunk alone, in order
