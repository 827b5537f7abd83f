"""What hostile or careless input still got through (issue 20, part B: findings 2, 3, 7 and prepare's side of 9).

* given romanisations (``encode``, ``prepare --latn-input``) are checked on every line (content_check), and a
  ``--latn`` that is the original again is refused;
* NFD input gives the same pairs as NFC;
* a directory or dangling symlink named like a language file is an error;
* partial merge files do not stay in the data-bin; group files refuse unknown and duplicate keys; ``--uroman-code``
  for a language not in the run and a sample of nothing are refused.
"""

from __future__ import annotations

import json
import unicodedata
from pathlib import Path

import pytest
from prepare_helpers import build_model_dir, demo_lines

from translit_plugin.cli import main

N = 60


@pytest.fixture(scope="session")
def model_dir(tmp_path_factory) -> Path:
    return build_model_dir(tmp_path_factory.getbasetemp() / "prepare_model")


def write_input(d: Path, langs=("ell_Grek", "heb_Hebr"), n: int = N) -> Path:
    d.mkdir(parents=True, exist_ok=True)
    for lang in langs:
        (d / f"{lang}.txt").write_text("\n".join(demo_lines(lang, n)) + "\n", encoding="utf-8")
    return d


def prepare(capsys, inp: Path, model_dir: Path, out: Path, *extra) -> tuple[int, str]:
    argv = ["prepare", "--input", inp, "--model-dir", model_dir, "--output", out, "--workers", "1",
            "--valid-size", "0", "--sample-min", "1000000", "--chunk-size", "50", "--no-progress",
            "--verify-samples", "20", "--verify-translit", "2", *extra]
    rc = main([str(a) for a in argv])
    return rc, capsys.readouterr().err


def error_lines(err: str) -> list[str]:
    return [line for line in err.splitlines() if not line[:4].isdigit()]


# ------------------------------------------------------------------------------------------ finding 7
@pytest.mark.parametrize("kind", ["directory", "dangling symlink"])
def test_language_named_entry_that_is_not_a_file_is_an_error(tmp_path, kind):
    from translit_plugin.prepare.pipeline import PrepareInputError, discover_languages

    inp = write_input(tmp_path / "in", langs=("ell_Grek",))
    bad = inp / "rus_Cyrl.txt"
    if kind == "directory":
        bad.mkdir()
    else:
        bad.symlink_to(tmp_path / "nowhere.txt")
    with pytest.raises(PrepareInputError, match=r"rus_Cyrl\.txt.*not a (regular )?file"):
        discover_languages(inp, None)
    with pytest.raises(PrepareInputError, match=r"rus_Cyrl\.txt"):
        discover_languages(inp, None, skip_unrecognized=True)


# ------------------------------------------------------------------------------------------ finding 9 (prepare side)
def test_failed_merge_leaves_no_partial_files_in_the_data_bin(tmp_path):
    pytest.importorskip("fairseq")
    from translit_plugin.prepare.chunks import ChunkTask
    from translit_plugin.prepare.merge import merge_split

    data_bin = tmp_path / "data-bin"
    task = ChunkTask(lang="ell_Grek", split="train", index=0, n_lines=1, src="x", tsv="x",
                     bin_prefix=str(tmp_path / "missing" / "chunk"), lcode="ell", external=False)
    with pytest.raises((OSError, FileNotFoundError)):
        merge_split(data_bin, "train", [task], {task.name: {"kept": 1}}, ["ell_Grek"], 100, progress=False)
    left = [p.relative_to(data_bin) for p in data_bin.rglob("*") if p.is_file()]
    assert left == [], left


def test_group_file_refuses_unknown_and_duplicate_keys(tmp_path):
    from translit_plugin.prepare.groups import load_group

    dup = tmp_path / "dup.json"
    dup.write_text('{"languages": {"ell_Grek": {"uroman_code": "ell"}, "ell_Grek": {"uroman_code": null}}}')
    with pytest.raises(ValueError, match=r"dup\.json.*duplicate.*ell_Grek"):
        load_group(dup)
    typo = tmp_path / "typo.json"
    typo.write_text(json.dumps({"languages": {"ell_Grek": {}}, "langauges": {}}))
    with pytest.raises(ValueError, match=r"typo\.json.*unknown key.*langauges"):
        load_group(typo)
    typo2 = tmp_path / "typo2.json"
    typo2.write_text(json.dumps({"languages": {"ell_Grek": {"uroman-code": "ell"}}}))
    with pytest.raises(ValueError, match=r"typo2\.json.*languages\.ell_Grek.*unknown key.*uroman-code"):
        load_group(typo2)
    for shipped in (Path(__file__).resolve().parents[1] / "examples" / "groups").glob("*.json"):
        load_group(shipped)  # the shipped files stay valid


def test_uroman_code_for_a_language_not_in_the_run_is_refused(tmp_path, capsys, model_dir):
    inp = write_input(tmp_path / "in", langs=("ell_Grek",))
    rc, err = prepare(capsys, inp, model_dir, tmp_path / "out", "--uroman-code", "rus_Cyrl=rus")
    assert rc == 2, err
    assert any("rus_Cyrl" in line and "--uroman-code" in line for line in error_lines(err)), err


def test_sampling_nothing_is_refused(tmp_path, capsys, model_dir):
    inp = write_input(tmp_path / "in", langs=("ell_Grek",))
    argv = ["prepare", "--input", inp, "--model-dir", model_dir, "--output", tmp_path / "out", "--workers", "1",
            "--no-progress", "--sample-fraction", "0", "--sample-min", "0"]
    rc = main([str(a) for a in argv])
    err = capsys.readouterr().err
    assert rc == 2, err
    assert any("--sample-fraction" in line and "--sample-min" in line for line in error_lines(err)), err


# ------------------------------------------------------------------------------------------ finding 3
NFD_LANGS = ("kor_Hang", "ara_Arab", "ell_Grek")


def test_nfd_text_transliterates_like_nfc():
    pytest.importorskip("uroman")
    from translit_plugin.transliterate import Transliterator

    tr = Transliterator()
    for lang in NFD_LANGS:
        for line in demo_lines(lang, 40):
            nfd = unicodedata.normalize("NFD", line)
            assert tr.transliterate(nfd, lang[:3]) == tr.transliterate(line, lang[:3]), (lang, line)


def test_nfd_input_gives_the_same_data_bin_as_nfc(tmp_path, capsys, model_dir):
    pytest.importorskip("uroman")
    pytest.importorskip("fairseq")
    nfc = write_input(tmp_path / "nfc", langs=NFD_LANGS, n=40)
    nfd = tmp_path / "nfd"
    nfd.mkdir()
    for f in nfc.iterdir():
        (nfd / f.name).write_text(unicodedata.normalize("NFD", f.read_text(encoding="utf-8")), encoding="utf-8")
    assert (nfd / "kor_Hang.txt").read_bytes() != (nfc / "kor_Hang.txt").read_bytes()
    for inp, out in ((nfc, tmp_path / "out_nfc"), (nfd, tmp_path / "out_nfd")):
        rc, err = prepare(capsys, inp, model_dir, out)
        assert rc == 0, err
    a, b = tmp_path / "out_nfc" / "data-bin", tmp_path / "out_nfd" / "data-bin"
    names = sorted(str(p.relative_to(a)) for p in a.rglob("*") if p.is_file())
    assert names and names == sorted(str(p.relative_to(b)) for p in b.rglob("*") if p.is_file())
    for name in names:
        assert (a / name).read_bytes() == (b / name).read_bytes(), name
