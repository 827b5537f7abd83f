"""Issue 12, prepare: misaligned given transliterations, stale outputs after in-place edits, unknown language codes,
unrecognized and empty input files, nonsense numbers, unsafe --output.  Each case runs the real CLI on real files."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from prepare_helpers import build_model_dir, demo_lines, error_lines, run_prepare
from prepare_helpers import write_input as _write_input

pytest.importorskip("uroman")
pytest.importorskip("fairseq")

N = 24  # lines per language: everything is sampled, every pair checked


@pytest.fixture(scope="session")
def model_dir(tmp_path_factory) -> Path:
    return build_model_dir(tmp_path_factory.getbasetemp() / "prepare_model")


@pytest.fixture(scope="module")
def uroman():
    from translit_plugin.transliterate import Transliterator

    return Transliterator()


def write_input(d: Path, langs=("ell_Grek", "heb_Hebr"), n: int = N) -> Path:
    return _write_input(d, langs, n)


prepare = run_prepare


def given_latin(inp: Path, latn: Path, uroman, lcode=None) -> dict[str, list[str]]:
    """What an external romanizer (the paper's Perl uroman: no language code) would write, line for line."""
    latn.mkdir(parents=True, exist_ok=True)
    out = {}
    for f in inp.glob("*.txt"):
        out[f.stem] = [uroman.transliterate(line, lcode) for line in f.read_text(encoding="utf-8").splitlines()]
        (latn / f.name).write_text("\n".join(out[f.stem]) + "\n", encoding="utf-8")
    return out


# ------------------------------------------------------------------------------------- 3: silent misalignment
def test_given_transliteration_that_matches_passes(tmp_path, model_dir, uroman, capsys):
    inp = write_input(tmp_path / "in")
    given_latin(inp, tmp_path / "latn", uroman)
    rc, err = prepare(capsys, inp, model_dir, tmp_path / "out", "--latn-input", tmp_path / "latn")
    assert rc == 0, err
    manifest = json.loads((tmp_path / "out" / "manifest.json").read_text())
    assert manifest["per_language"]["ell_Grek"]["latn_check"]["checked"] == N


@pytest.mark.parametrize("damage", ["two_swapped", "split_and_dropped"])
def test_misaligned_given_transliteration_is_caught(tmp_path, model_dir, uroman, capsys, damage):
    inp = write_input(tmp_path / "in")
    latn = tmp_path / "latn"
    lines = given_latin(inp, latn, uroman)["ell_Grek"]
    if damage == "two_swapped":
        lines[6], lines[7] = lines[7], lines[6]
        bad = {7, 8}
    else:  # line 5 split in two, line 15 dropped: same count, lines 6..15 shifted by one
        words = lines[4].split()
        lines[4:5] = [" ".join(words[: len(words) // 2]), " ".join(words[len(words) // 2 :])]
        del lines[14]
        bad = set(range(6, 15))
    assert len(lines) == N
    (latn / "ell_Grek.txt").write_text("\n".join(lines) + "\n", encoding="utf-8")
    rc, err = prepare(capsys, inp, model_dir, tmp_path / "out", "--latn-input", latn)
    assert rc == 3 and len(error_lines(err)) == 1 and "Traceback" not in err
    assert "ell_Grek: " in err and "do not match uroman" in err
    named = {int(x.split(" ")[0]) for x in err.split(f"{latn / 'ell_Grek.txt'}:")[1:]}
    assert named and named <= bad
    assert not (tmp_path / "out" / "data-bin").exists()
    # the user's way out: skip the checks deliberately (the sample and the every-line check)
    rc, err = prepare(capsys, inp, model_dir, tmp_path / "out", "--latn-input", latn, "--latn-check", "0",
                      "--content-check", "off")
    assert rc == 0, err


# ----------------------------------------------------------------------------------------------- 4: stale output
def test_in_place_edit_keeping_size_and_mtime_is_not_up_to_date(tmp_path, model_dir, capsys):
    inp = write_input(tmp_path / "in", ("ell_Grek",))
    out = tmp_path / "out"
    assert prepare(capsys, inp, model_dir, out)[0] == 0
    f = inp / "ell_Grek.txt"
    st = f.stat()
    text = f.read_text(encoding="utf-8")
    first = text.split("\n")[0]
    edited = first[::-1]  # same characters, same byte size
    assert edited != first
    f.write_text(text.replace(first, edited, 1), encoding="utf-8")
    os.utime(f, ns=(st.st_atime_ns, st.st_mtime_ns))
    assert f.stat().st_size == st.st_size and f.stat().st_mtime_ns == st.st_mtime_ns
    assert prepare(capsys, inp, model_dir, out)[0] == 0
    assert (out / "work" / "clean" / "ell_Grek.txt").read_text(encoding="utf-8").split("\n")[0] == edited
    sample = (out / "work" / "sample" / "ell_Grek" / "train-00000.txt").read_text(encoding="utf-8")
    assert sample.split("\n")[0] == edited


# --------------------------------------------------------------------------------------- 5: silent degradation
@pytest.mark.parametrize("name,expected", [
    ("el_Grek", "'el' is an ISO 639-1 code; the ISO 639-3 code is 'ell' (Greek"),
    ("fa_Arab", "the ISO 639-3 code is 'fas' (Persian"),
    ("xx_Yyyy", "'xx' is not an ISO 639-3 language code; 'Yyyy' is not an ISO 15924 script code"),
    ("ell_GREK", "not named {lang_Script}.txt"),
])  # fmt: skip
def test_unknown_language_codes_are_refused(tmp_path, model_dir, capsys, name, expected):
    inp = tmp_path / "in"
    inp.mkdir()
    (inp / f"{name}.txt").write_text("\n".join(demo_lines("ell_Grek", N)) + "\n", encoding="utf-8")
    rc, err = prepare(capsys, inp, model_dir, tmp_path / "out")
    assert rc == 2 and expected in err and len(error_lines(err)) == 1, err
    assert not (tmp_path / "out").exists()
    if name in ("el_Grek", "fa_Arab"):
        assert f"name it {'ell' if name == 'el_Grek' else 'fas'}_" in err


def test_unknown_codes_can_be_accepted_deliberately(tmp_path, model_dir, capsys):
    inp = tmp_path / "in"
    inp.mkdir()
    (inp / "xx_Yyyy.txt").write_text("\n".join(demo_lines("ell_Grek", N)) + "\n", encoding="utf-8")
    rc, err = prepare(capsys, inp, model_dir, tmp_path / "out", "--allow-unknown-lang")
    assert rc == 0, err
    manifest = json.loads((tmp_path / "out" / "manifest.json").read_text())
    assert manifest["uroman"]["codes"] == {"xx_Yyyy": "xx"} and "xx" in manifest["warnings"][0]


def test_bad_uroman_code_override_is_refused(tmp_path, model_dir, capsys):
    inp = write_input(tmp_path / "in", ("ell_Grek",))
    rc, err = prepare(capsys, inp, model_dir, tmp_path / "out", "--uroman-code", "ell_Grek=el")
    assert rc == 2 and "uroman code for ell_Grek: 'el' is an ISO 639-1 code" in err
    rc, err = prepare(capsys, inp, model_dir, tmp_path / "out", "--uroman-code", "ell_Grek")
    assert rc == 2 and "expected LANG=CODE" in err


def test_unrecognized_files_are_an_error_or_skipped_on_request(tmp_path, model_dir, capsys):
    inp = write_input(tmp_path / "in", ("ell_Grek",))
    (inp / "Hebrew.txt").write_text("שלום עולם\n", encoding="utf-8")
    (inp / "notes.md").write_text("corpus notes\n", encoding="utf-8")
    rc, err = prepare(capsys, inp, model_dir, tmp_path / "out")
    assert rc == 2 and "2 file(s) not named {lang_Script}.txt: Hebrew.txt, notes.md" in err
    rc, err = prepare(capsys, inp, model_dir, tmp_path / "out", "--skip-unrecognized-files")
    assert rc == 0, err
    assert json.loads((tmp_path / "out" / "manifest.json").read_text())["languages"] == ["ell_Grek"]


def test_empty_language_is_an_error_or_a_warning(tmp_path, model_dir, capsys):
    inp = write_input(tmp_path / "in", ("ell_Grek",))
    (inp / "heb_Hebr.txt").write_text("\n  \n\n", encoding="utf-8")
    rc, err = prepare(capsys, inp, model_dir, tmp_path / "out")
    assert rc == 2 and "heb_Hebr.txt: 3 lines: 3 empty" in err and "0 pairs" in err
    rc, err = prepare(capsys, inp, model_dir, tmp_path / "out", "--allow-empty-lang")
    assert rc == 0, err
    manifest = json.loads((tmp_path / "out" / "manifest.json").read_text())
    assert "heb_Hebr: 0 training pairs" in manifest["warnings"]


@pytest.mark.parametrize("option,value", [
    ("--sample-fraction", "-0.1"), ("--sample-fraction", "1.5"), ("--sample-min", "-5"), ("--workers", "0"),
    ("--chunk-size", "0"), ("--valid-max-fraction", "1"), ("--max-length", "2"), ("--max-tokens", "2"),
    ("--latn-min-similarity", "nan"), ("--latn-check", "-1"), ("--verify-samples", "x"),
])  # fmt: skip
def test_nonsense_numbers_are_usage_errors(tmp_path, model_dir, capsys, option, value):
    inp = write_input(tmp_path / "in", ("ell_Grek",))
    with pytest.raises(SystemExit) as info:
        prepare(capsys, inp, model_dir, tmp_path / "out", option, value)
    assert info.value.code == 2
    assert f"argument {option}" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("command,required", [
    ("prepare", ["--input", "in", "--model-dir", "m", "--output", "out"]),
    ("encode", ["--model-dir", "m", "--orig", "o", "--latn", "l", "--split", "train", "--output", "p", "--data-bin",
                "d"]),
])  # fmt: skip
def test_max_tokens_is_a_hidden_deprecated_alias_of_max_length(command, required, caplog):
    """The length budget is --max-length (fairseq's --max-tokens is a batching flag); the old name still works, with
    one warning, and is not in the help."""
    import argparse
    import importlib
    import logging

    from translit_plugin.cli.prepare import warn_deprecated

    parser = argparse.ArgumentParser()
    importlib.import_module(f"translit_plugin.cli.{command}").add_arguments(parser)
    assert "--max-length" in parser.format_help() and "--max-tokens" not in parser.format_help()
    assert parser.parse_args(required).max_length == 512
    assert parser.parse_args([*required, "--max-length", "64"]).max_length == 64
    args = parser.parse_args([*required, "--max-tokens", "64", "--max-tokens", "100"])
    assert args.max_length == 100
    with caplog.at_level(logging.WARNING):
        warn_deprecated(args)
    assert caplog.text.count("--max-tokens is deprecated, use --max-length") == 1


def test_shard_id_out_of_range(tmp_path, model_dir, capsys):
    inp = write_input(tmp_path / "in", ("ell_Grek",))
    rc, err = prepare(capsys, inp, model_dir, tmp_path / "out", "--num-shards", "2", "--shard-id", "2")
    assert rc == 2 and "--shard-id 2 must be below --num-shards 2" in err


# ------------------------------------------------------------------------------------------ 1: unsafe --output
def test_output_inside_or_around_an_input_is_refused(tmp_path, model_dir, capsys):
    inp = write_input(tmp_path / "data" / "in", ("ell_Grek",))
    rc, err = prepare(capsys, inp, model_dir, inp / "prepared")
    assert rc == 2 and "inside the input directory" in err and not (inp / "prepared").exists()
    rc, err = prepare(capsys, inp, model_dir, tmp_path / "data")
    assert rc == 2 and "contains the input" in err
    foreign = tmp_path / "fairseq-out"
    (foreign / "data-bin").mkdir(parents=True)
    (foreign / "data-bin" / "train.bin").write_bytes(b"someone else's")
    rc, err = prepare(capsys, inp, model_dir, foreign)
    assert rc == 2 and "was not written by translit-ppa prepare" in err


def test_real_cli_process_prints_one_line(tmp_path, model_dir):
    """The installed entry point: exit status and a single stderr line, no traceback."""
    inp = write_input(tmp_path / "in", ("ell_Grek",))
    (inp / "el_Grek.txt").write_text("Καλημέρα\n", encoding="utf-8")
    r = subprocess.run([sys.executable, "-m", "translit_plugin.cli", "prepare", "--input", str(inp), "--model-dir",
                        str(model_dir), "--output", str(tmp_path / "out"), "--no-progress"],
                       capture_output=True, text=True)
    lines = [x for x in r.stderr.splitlines() if "| INFO |" not in x]
    assert r.returncode == 2 and len(lines) == 1 and lines[0].startswith("translit-ppa prepare: error:"), r.stderr
    r = subprocess.run([sys.executable, "-m", "translit_plugin.cli", "--debug", "prepare", "--input", str(inp),
                        "--model-dir", str(model_dir), "--output", str(tmp_path / "out"), "--no-progress"],
                       capture_output=True, text=True)
    assert r.returncode == 2 and "Traceback" in r.stderr and "LanguageCodeError" in r.stderr
