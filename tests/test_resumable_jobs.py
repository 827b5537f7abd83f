"""The one resumable-step mechanism (:mod:`translit_plugin.prepare.records`) behind ``prepare``, ``transliterate`` and
``encode``: its record shape and when a record is trusted, and, for each of the three jobs, a work folder written by
the previous version (records of the old shape, even with a matching key and a corrupted output) is recomputed, never
trusted: the outputs are byte-identical to a fresh run's, nothing crashes and nothing else is deleted.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from prepare_helpers import build_model_dir, write_input

from translit_plugin.prepare.records import (
    RECORD_FORMAT,
    done_path,
    looks_written_here,
    read_done,
    read_record,
    record_names,
    step_key,
    write_done,
    write_record,
)


def _to_old_shape(marker: Path, output: Path | None = None) -> None:
    """Rewrite a record as the previous version wrote it: same key and stats, no "format", no "outputs" (and the
    transliterate language record's single "output")."""
    record = json.loads(marker.read_text(encoding="utf-8"))
    record.pop("format")
    record.pop("outputs")
    if output is not None:
        record["output"] = str(output.resolve())
    marker.write_text(json.dumps(record, sort_keys=True) + "\n", encoding="utf-8")


def _files(d: Path) -> dict[str, bytes]:
    return {str(p.relative_to(d)): p.read_bytes() for p in sorted(d.rglob("*"))
            if p.is_file() and not p.name.endswith((".done.json", ".lock"))}


# ----------------------------------------------------------------------------------------------- the mechanism
def test_record_shape_and_when_it_is_trusted(tmp_path):
    out = tmp_path / "a.txt"
    other = tmp_path / "sub" / "b.bin"
    other.parent.mkdir()
    out.write_text("x\n")
    other.write_bytes(b"y")
    key = step_key({"step": "t", "n": 1}, inputs=[out])
    assert key != step_key({"step": "t", "n": 2}, inputs=[out]) and key == step_key({"n": 1, "step": "t"}, [out])
    record = write_done(out, key, {"lines": 1}, outputs=[out, other])
    on_disk = json.loads(done_path(out).read_text())
    assert on_disk == record == {"format": RECORD_FORMAT, "key": key, "outputs": ["a.txt", "sub/b.bin"], "lines": 1}
    assert read_done(out, key) == record and read_record(done_path(out), key) == record
    assert read_done(out, "another key") is None
    other.unlink()  # an output it names is gone: recompute
    assert read_done(out, key) is None
    (tmp_path / "work").mkdir()
    outside = write_record(tmp_path / "work" / "l.done.json", key, [out], {})  # an output outside: absolute
    assert outside["outputs"] == [str(out.resolve())] and record_names(tmp_path / "work" / "l.done.json", out)
    assert not record_names(tmp_path / "work" / "l.done.json", other)


@pytest.mark.parametrize("text", ["", "{", "[]", '"key"', '{"key": "K", "lines": 1}',
                                  '{"key": "K", "format": 1, "outputs": ["a.txt"]}',
                                  '{"key": "K", "format": 2, "outputs": "a.txt"}',
                                  '{"key": "K", "format": 2, "outputs": []}'])
def test_records_of_another_shape_are_never_trusted(tmp_path, text):
    out = tmp_path / "a.txt"
    out.write_text("x\n")
    done_path(out).write_text(text)
    assert read_done(out, "K") is None  # recompute; no exception
    assert record_names(done_path(out), out) is False


def test_ownership_carries_over_from_old_records(tmp_path):
    out = tmp_path / "out.txt"
    marker = tmp_path / "work" / "x.done.json"
    marker.parent.mkdir()
    marker.write_text(json.dumps({"key": "old", "output": str(out.resolve()), "lines": 3}))
    assert record_names(marker, out) and read_record(marker, "old") is None


def test_looks_written_here(tmp_path):
    work = tmp_path / "work"
    (work / "ell_Grek").mkdir(parents=True)
    assert not looks_written_here(work)  # no record
    (work / "ell_Grek.done.json").write_text("{}")
    (work / ".x.done.json.tmp123").write_text("")  # leftover of an atomic write: ignored
    assert looks_written_here(work)
    (work / "notes.txt").write_text("mine")
    assert not looks_written_here(work)
    (work / "notes.txt").unlink()
    (work / "link").symlink_to(tmp_path, target_is_directory=True)
    assert not looks_written_here(work)


# -------------------------------------------------------------------------- the three jobs over old work folders
@pytest.fixture(scope="module")
def model_dir(tmp_path_factory) -> Path:
    pytest.importorskip("fairseq")
    return build_model_dir(tmp_path_factory.getbasetemp() / "prepare_model")


def test_transliterate_recomputes_an_old_work_folder(tmp_path):
    pytest.importorskip("uroman")
    from translit_plugin.core.hashing import stable_key
    from translit_plugin.prepare.records import file_stamp
    from translit_plugin.prepare.transliterate_job import (
        Job,
        job_key,
        language_record,
        output_paths,
        transliterate_files,
    )
    from translit_plugin.transliterate import DEFAULT_CACHE_SIZE

    inp = write_input(tmp_path / "in", ("ell_Grek", "heb_Hebr"), n=30)
    files = {lang: inp / f"{lang}.txt" for lang in ("ell_Grek", "heb_Hebr")}
    lcodes = {"ell_Grek": "ell", "heb_Hebr": "heb"}

    def run(out: Path) -> dict:
        outputs, work = output_paths(inp, out, files)
        return transliterate_files(files, outputs, work, lcodes, chunk_size=8, workers=1, progress=False)

    run(tmp_path / "fresh")
    out = tmp_path / "old"
    run(out)
    work = out / ".work"
    # the previous version's records: a finished language, and an interrupted one whose chunk record matches its
    # (corrupted) chunk file
    _to_old_shape(language_record(work, "ell_Grek"), out / "ell_Grek.txt")
    (out / "heb_Hebr.txt").unlink()
    language_record(work, "heb_Hebr").unlink()
    job = Job(lang="heb_Hebr", index=0, src=str(files["heb_Hebr"]), start=0, n_lines=8,
              out=str(work / "heb_Hebr" / "00000.txt"), lcode="heb", max_chars=10000, cache_size=DEFAULT_CACHE_SIZE,
              input_key=stable_key(file_stamp(files["heb_Hebr"])))
    Path(job.out).parent.mkdir(parents=True)
    Path(job.out).write_text("garbage\n" * 8)
    Path(job.out + ".done.json").write_text(json.dumps({"key": job_key(job), "lines": 8, "lang": "heb_Hebr"}))
    stray = work / "heb_Hebr.notes"
    stray.write_text("not ours to delete")
    records = run(out)  # adopted (the old record names the output) and recomputed
    assert _files(out) == {**_files(tmp_path / "fresh"), ".work/heb_Hebr.notes": b"not ours to delete"}
    assert all(r["format"] == RECORD_FORMAT for r in records.values())
    assert read_record(language_record(work, "ell_Grek"), records["ell_Grek"]["key"]) == records["ell_Grek"]


def test_encode_recomputes_an_old_work_folder(tmp_path, model_dir):
    pytest.importorskip("uroman")
    from translit_plugin.prepare.encode_job import check_configs, encode_split, pair_inputs

    orig = write_input(tmp_path / "orig", ("ell_Grek", "heb_Hebr"), n=20)
    latn = tmp_path / "latn"
    latn.mkdir()
    for lang in ("ell_Grek", "heb_Hebr"):
        (latn / f"{lang}.txt").write_text("".join(f"line {i} of {lang}\n" for i in range(20)), encoding="utf-8")
    checks = check_configs(content_check=False, latn_lines=0)

    def run(d: Path) -> dict:
        return encode_split(pair_inputs(orig, latn, None, None), "train", model_dir, d / "out", d / "data",
                            workers=1, progress=False, checks=checks)

    run(tmp_path / "fresh")
    run(tmp_path / "old")
    work = tmp_path / "old" / "out" / ".work" / "train"
    for marker in work.glob("*.done.json"):
        _to_old_shape(marker)
    (work / "ell_Grek.orig.txt").write_text("garbage\n")  # an old record with a matching key must not vouch for it
    assert run(tmp_path / "old")["per_language"] == run(tmp_path / "fresh")["per_language"]
    fresh, old = _files(tmp_path / "fresh"), _files(tmp_path / "old")
    summary = "out/train.encode.json"
    assert json.loads(old.pop(summary).replace(b"/old/", b"/fresh/")) == json.loads(fresh.pop(summary))
    assert old == fresh


def test_prepare_recomputes_an_old_work_folder(tmp_path, model_dir, caplog):
    pytest.importorskip("uroman")
    import logging

    from translit_plugin.prepare.pipeline import PrepareConfig, run_prepare
    from translit_plugin.prepare.sample import SampleConfig

    inp = write_input(tmp_path / "in", ("ell_Grek", "heb_Hebr"), n=24)

    def run(out: Path) -> dict:
        return run_prepare(PrepareConfig(input=inp, model_dir=model_dir, output=out, progress=False,
                                         sample=SampleConfig(min_sentences=10**6, valid_size=0, chunk_size=7),
                                         verify_samples=20, verify_translit=2))

    run(tmp_path / "fresh")
    out = tmp_path / "old"
    run(out)
    markers = sorted(out.rglob("*.done.json"))
    assert len(markers) > 10
    for marker in markers:
        _to_old_shape(marker)
    tsv = next((out / "work" / "translit" / "ell_Grek").glob("*.tsv"))
    tsv.write_text(tsv.read_text(encoding="utf-8").upper(), encoding="utf-8")  # its old record still "matches"
    with caplog.at_level(logging.INFO):
        run(out)
    assert "0 up to date" in caplog.text  # every chunk recomputed
    assert _files(out / "data-bin") == _files(tmp_path / "fresh" / "data-bin")
    assert all(json.loads(m.read_text())["format"] == RECORD_FORMAT for m in out.rglob("*.done.json"))
