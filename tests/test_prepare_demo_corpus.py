"""The shipped demo corpus (``examples/data``) and the script that builds it (``scripts/build_demo_corpus.py``)."""

from __future__ import annotations

import glob
import gzip
import importlib.util
import json
import os
import struct

import pytest
from prepare_helpers import REPO

from translit_plugin.core.lines import is_single_line

DATA = REPO / "examples" / "data"
LANGS = ("ara_Arab", "fas_Arab", "amh_Ethi", "ell_Grek", "heb_Hebr", "tur_Latn", "zho_Hans", "zho_Hant", "kor_Hang",
         "tha_Thai", "eng_Latn")


def _load_script():
    spec = importlib.util.spec_from_file_location("build_demo_corpus", REPO / "scripts" / "build_demo_corpus.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _lines(path):
    text = path.read_text(encoding="utf-8")
    assert text.endswith("\n")
    return text.split("\n")[:-1]


def test_corpus_is_small_and_licensed():
    apps = DATA / "train-apps"
    total = sum(p.stat().st_size for p in DATA.rglob("*") if p.is_file() and apps not in p.parents)
    assert total < 5_000_000
    assert "BSD" in (DATA / "LICENSE").read_text() or "Redistribution" in (DATA / "LICENSE").read_text()
    assert (DATA / "README.md").is_file()
    prov = json.loads((DATA / "provenance.json").read_text())
    assert set(prov["languages"]) == set(LANGS)


@pytest.mark.parametrize("lang", LANGS)
def test_train_files_obey_the_line_contract(lang):
    lines = _lines(DATA / "train" / f"{lang}.txt")
    assert len(lines) >= 3000
    assert all(line and is_single_line(line) for line in lines)
    assert len(set(lines)) == len(lines)
    dev = set(_lines(DATA / "dev" / f"{lang}.txt"))
    assert not dev & set(lines)  # held apart


def test_dev_set_is_parallel():
    ids = _lines(DATA / "dev" / "message_ids.txt")
    dev = {lang: _lines(DATA / "dev" / f"{lang}.txt") for lang in LANGS}
    assert all(len(v) == len(ids) >= 200 for v in dev.values())
    for lang, lines in dev.items():
        assert len(set(lines)) == len(lines), lang  # one right answer per retrieval query
        assert all(is_single_line(x) for x in lines)
    script = _load_script()
    for lang in LANGS:
        frac = sum(script.script_fraction(x, script.LANGUAGES[lang][1]) >= 0.5 for x in dev[lang]) / len(ids)
        assert frac == 1.0, lang


def _pak(entries: dict[int, bytes], aliases: dict[int, int]) -> bytes:
    ids = sorted(entries)
    header = struct.pack("<IBxxxHH", 5, 1, len(ids), len(aliases))
    offset = len(header) + 6 * (len(ids) + 1) + 4 * len(aliases)
    table, blob = b"", b""
    for rid in ids:
        table += struct.pack("<HI", rid, offset + len(blob))
        blob += entries[rid]
    table += struct.pack("<HI", 0, offset + len(blob))
    alias_table = b"".join(struct.pack("<HH", rid, ids.index(target)) for rid, target in sorted(aliases.items()))
    return header + table + alias_table + blob


def test_read_pak_v5_with_aliases_and_gzip():
    script = _load_script()
    data = _pak({10: "Γειά".encode(), 11: gzip.compress(b"zipped"), 12: b"\xff\xfe"}, {20: 10})
    assert script.read_pak(data) == {10: "Γειά", 11: "zipped", 20: "Γειά"}


@pytest.mark.parametrize(
    ("raw", "clean"),
    [
        ("Notifications allowed for $1", "Notifications allowed for"),
        ("Updating Chromium ($1)", "Updating Chromium"),
        ("Visit <a href=\"$1\" target=\"_blank\">data and privacy</a> now", "Visit data and privacy now"),
        ("A&amp;B\n        <br>  done", "A&B done"),
        ("\u200fلمحة عن Chromium", "لمحة عن Chromium"),
        ("صفحه\u200cهای بیشتر", "صفحه\u200cهای بیشتر"),  # ZWNJ is spelling, kept
        ("{COUNT, plural, =1{one file}other{# files}}", ""),
        ("{0,plural, =1{x}other{y}}", ""),
        ("Show “$1” in folder", "Show in folder"),
    ],
)
def test_clean_message(raw, clean):
    assert _load_script().clean_message(raw) == clean


def test_keep_rules():
    script = _load_script()
    assert script.keep("Καλημέρα κόσμε", "ell_Grek", "Good morning world", 0.5)
    assert not script.keep("Good morning world", "ell_Grek", "Good morning world", 0.5)  # untranslated
    assert not script.keep("Chromium Google", "ell_Grek", "x", 0.5)  # wrong script
    assert not script.keep("https://example.com", "eng_Latn", None, 0.5)
    assert not script.keep("42", "eng_Latn", None, 0.5)


def _chromium_source() -> str | None:
    env = os.environ.get("TRANSLIT_CHROMIUM_L10N")
    if env:
        return env
    debs = sorted(glob.glob("/tmp/chromium-l10n_*.deb"))
    return debs[-1] if debs else None


@pytest.mark.skipif(_chromium_source() is None, reason="set TRANSLIT_CHROMIUM_L10N to the chromium-l10n .deb or dir")
def test_build_reproduces_the_shipped_corpus(tmp_path):
    """Rebuilding from the package gives the shipped files byte for byte (same package version)."""
    script = _load_script()
    prov = json.loads((DATA / "provenance.json").read_text())
    source = _chromium_source()
    if os.path.basename(source) != prov["source_file"] and not os.path.isdir(source):
        pytest.skip(f"{source} is not {prov['source_file']}")
    script.main(["--source", source, "--out", str(tmp_path)])
    for sub in ("train", "dev"):
        for path in sorted((DATA / sub).iterdir()):
            assert (tmp_path / sub / path.name).read_bytes() == path.read_bytes(), path


def test_four_application_corpus_is_licensed_and_held_apart():
    """``examples/data/train-apps`` (run H): Chromium's training lines plus other applications' strings, each line
    single, none of the added ones a line of the dev or the held-out set (either side, casefolded)."""
    apps = DATA / "train-apps"
    assert sum(p.stat().st_size for p in apps.rglob("*") if p.is_file()) < 6_000_000
    assert "MPL" in (apps / "LICENSE").read_text() and "GPL" in (apps / "LICENSE").read_text()
    prov = json.loads((apps / "provenance.json").read_text())
    assert set(prov["languages"]) == set(LANGS) and "licence" in prov
    held = {line.casefold() for f in [*(DATA / "dev").glob("*.txt"), *(DATA / "heldout").glob("gettext.*")]
            for line in _lines(f)}
    for lang in LANGS:
        lines = _lines(apps / f"{lang}.txt")
        chromium = set(_lines(DATA / "train" / f"{lang}.txt"))
        assert len(lines) == prov["languages"][lang]["lines"] and chromium <= set(lines), lang
        assert all(line and is_single_line(line) for line in lines), lang
        assert len(lines) - len(set(lines)) <= 12, lang  # a string two other applications share (README.md)
        added = [line for line in lines if line not in chromium]
        assert len(added) == prov["languages"][lang]["added_lines"] > 3000, lang
        assert not {line.casefold() for line in added} & held, lang
