"""Issue 20, part A: no command writes over a file it did not write, an output folder is held by one run at a time,
the same inputs give byte-identical outputs (convert, trim, untrim, export-hf, prepare), identity checks compare
content, printed hints are right, and staged outputs get the permissions a plain ``open()`` would give them."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import time
from pathlib import Path

import pytest
import torch

from translit_plugin.cli import main

REPO = Path(__file__).resolve().parents[1]
DEMO_TRAIN = REPO / "examples" / "data" / "train"


def run_cli(capsys, *argv) -> tuple[int, str]:
    rc = main([str(a) for a in argv])
    return rc, capsys.readouterr().err


def hashes(d: Path) -> dict[str, str]:
    """sha256 of every file under ``d`` (relative names)."""
    return {str(p.relative_to(d)): hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(d.rglob("*"))
            if p.is_file()}


def demo_lines(lang: str, n: int) -> str:
    return "\n".join((DEMO_TRAIN / f"{lang}.txt").read_text(encoding="utf-8").splitlines()[:n]) + "\n"


def umask_mode(bits: int = 0o666) -> int:
    umask = os.umask(0)
    os.umask(umask)
    return bits & ~umask


# ------------------------------------------------------------------------------------------ finding 1: transliterate
def test_transliterate_never_writes_over_a_file_it_did_not_write(tmp_path, capsys):
    inp = tmp_path / "corpus" / "train"
    valid = tmp_path / "corpus" / "valid"
    for d, n in ((inp, 5), (valid, 3)):
        d.mkdir(parents=True)
        (d / "ell_Grek.txt").write_text(demo_lines("ell_Grek", n), encoding="utf-8")
    notes = tmp_path / "notes.txt"
    notes.write_text("my notes\n")
    before = valid.joinpath("ell_Grek.txt").read_bytes()

    rc, err = run_cli(capsys, "transliterate", "--input", inp / "ell_Grek.txt", "--output", notes, "--workers", "1",
                      "--no-progress")
    assert rc == 2 and "notes.txt" in err and "Traceback" not in err, err
    assert notes.read_text() == "my notes\n"
    rc, err = run_cli(capsys, "transliterate", "--input", inp, "--output", valid, "--workers", "1", "--no-progress")
    assert rc == 2 and "ell_Grek.txt" in err, err
    assert valid.joinpath("ell_Grek.txt").read_bytes() == before and not (valid / ".work").exists()

    # its own outputs: written, and a rerun (even after the input changed) replaces them
    out = tmp_path / "latn"
    assert run_cli(capsys, "transliterate", "--input", inp, "--output", out, "--workers", "1", "--no-progress")[0] == 0
    first = (out / "ell_Grek.txt").read_text(encoding="utf-8")
    assert len(first.splitlines()) == 5
    (inp / "ell_Grek.txt").write_text(demo_lines("ell_Grek", 4), encoding="utf-8")
    assert run_cli(capsys, "transliterate", "--input", inp, "--output", out, "--workers", "1", "--no-progress")[0] == 0
    assert (out / "ell_Grek.txt").read_text(encoding="utf-8").splitlines() == first.splitlines()[:4]
    # a file of a language's name that it did not write, in its own folder, is still refused
    (inp / "kor_Hang.txt").write_text(demo_lines("kor_Hang", 2), encoding="utf-8")
    (out / "kor_Hang.txt").write_text("someone else's\n")
    rc, err = run_cli(capsys, "transliterate", "--input", inp, "--output", out, "--workers", "1", "--no-progress")
    assert rc == 2 and "kor_Hang.txt" in err and (out / "kor_Hang.txt").read_text() == "someone else's\n"

    # single file: a new file is written, then it is ours
    single = tmp_path / "single.txt"
    for _ in range(2):
        assert run_cli(capsys, "transliterate", "--input", inp / "ell_Grek.txt", "--output", single, "--workers", "1",
                       "--no-progress")[0] == 0


def test_transliterate_work_dir_must_be_its_own(tmp_path, capsys):
    inp = tmp_path / "in"
    inp.mkdir()
    (inp / "ell_Grek.txt").write_text(demo_lines("ell_Grek", 3), encoding="utf-8")
    work = tmp_path / "mywork"
    (work / "ell_Grek").mkdir(parents=True)
    (work / "ell_Grek" / "keep.txt").write_text("mine")
    rc, err = run_cli(capsys, "transliterate", "--input", inp, "--output", tmp_path / "out", "--work-dir", work,
                      "--workers", "1", "--no-progress")
    assert rc == 2 and str(work) in err, err
    assert (work / "ell_Grek" / "keep.txt").read_text() == "mine"


def test_transliterate_help_names_the_default_work_dir(capsys):
    with pytest.raises(SystemExit):
        main(["transliterate", "--help"])
    out = " ".join(capsys.readouterr().out.split())
    assert "see above" not in out and "OUTPUT/.work" in out


# ------------------------------------------------------------------------------------ finding 5: folders and locks
def test_held_output_dir_refuses_foreign_folders_and_a_second_run(tmp_path):
    from translit_plugin.core.safe_output import OutputBusyError, UnsafeOutputError, held_output_dir

    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / "manifest.json").write_text("{}")
    with pytest.raises(UnsafeOutputError, match="not written by translit-ppa prepare"):
        with held_output_dir(foreign, "prepare"):
            pass
    assert sorted(p.name for p in foreign.iterdir()) == ["manifest.json"]

    out = tmp_path / "out"
    with held_output_dir(out, "prepare"):
        with pytest.raises(OutputBusyError, match=rf"{out}.*pid {os.getpid()}"):
            with held_output_dir(out, "prepare"):
                pass
        (out / "manifest.json").write_text("{}")
    with held_output_dir(out, "prepare"):  # released: ours, and free again
        pass
    with pytest.raises(UnsafeOutputError, match="translit-ppa prepare"):  # another command's folder
        with held_output_dir(out, "encode"):
            pass
    # shard runs share the folder with each other, never with a full run
    with held_output_dir(out, "prepare", shared=True), held_output_dir(out, "prepare", shared=True):
        with pytest.raises(OutputBusyError):
            with held_output_dir(out, "prepare"):
                pass
    before = (out / ".translit-ppa.lock").read_bytes()
    with held_output_dir(out, "prepare"):
        pass
    assert (out / ".translit-ppa.lock").read_bytes() == before  # no pid left behind: the folder's bytes stay


@pytest.fixture()
def small_corpus(tmp_path) -> Path:
    inp = tmp_path / "input"
    inp.mkdir()
    for lang in ("ell_Grek", "kor_Hang"):
        (inp / f"{lang}.txt").write_text(demo_lines(lang, 60), encoding="utf-8")
    return inp


PREPARE_FLAGS = ("--sample-min", "1000000", "--valid-size", "5", "--chunk-size", "40", "--max-length", "60",
                 "--verify-samples", "10", "--verify-translit", "2", "--workers", "1", "--no-progress")


def test_prepare_refuses_a_folder_that_is_not_its_own_and_a_held_one(tiny_model_dir, small_corpus, tmp_path,
                                                                     capsys):
    from translit_plugin.core.safe_output import held_output_dir

    out = tmp_path / "out"
    (out / "data-bin" / "orig").mkdir(parents=True)
    (out / "data-bin" / "orig" / "train.bin").write_bytes(b"theirs")
    (out / "manifest.json").write_text('{"theirs": 1}')
    rc, err = run_cli(capsys, "prepare", "--input", small_corpus, "--model-dir", tiny_model_dir, "--output", out,
                      *PREPARE_FLAGS)
    assert rc == 2 and str(out) in err, err
    assert (out / "data-bin" / "orig" / "train.bin").read_bytes() == b"theirs"
    assert (out / "manifest.json").read_text() == '{"theirs": 1}'

    mine = tmp_path / "mine"
    with held_output_dir(mine, "prepare"):
        rc, err = run_cli(capsys, "prepare", "--input", small_corpus, "--model-dir", tiny_model_dir, "--output",
                          mine, *PREPARE_FLAGS)
    assert rc == 2 and f"pid {os.getpid()}" in err and str(mine) in err, err
    assert not (mine / "manifest.json").exists()


def test_prepare_output_is_byte_identical_run_to_run(tiny_model_dir, small_corpus, tmp_path, capsys):
    out = tmp_path / "out"
    assert run_cli(capsys, "prepare", "--input", small_corpus, "--model-dir", tiny_model_dir, "--output", out,
                   *PREPARE_FLAGS)[0] == 0
    first = hashes(out)
    out.rename(tmp_path / "first")
    time.sleep(0.05)
    assert run_cli(capsys, "prepare", "--input", small_corpus, "--model-dir", tiny_model_dir, "--output", out,
                   *PREPARE_FLAGS)[0] == 0
    second = hashes(out)
    results = {k: v for k, v in first.items() if not k.startswith("work/")}  # work/ holds resumption records
    assert results and {k: second[k] for k in results} == results
    assert "manifest.json" in results


def _encode_inputs(tmp_path: Path, capsys) -> tuple[Path, Path]:
    orig, latn = tmp_path / "orig", tmp_path / "latn"
    orig.mkdir()
    (orig / "ell_Grek.txt").write_text(demo_lines("ell_Grek", 8), encoding="utf-8")
    assert run_cli(capsys, "transliterate", "--input", orig, "--output", latn, "--workers", "1",
                   "--no-progress")[0] == 0
    return orig, latn


def test_encode_refuses_foreign_folders_and_prints_the_right_next_step(tiny_model_dir, tmp_path, capsys):
    orig, latn = _encode_inputs(tmp_path, capsys)
    common = ("encode", "--model-dir", tiny_model_dir, "--orig", orig, "--latn", latn, "--max-length", "60",
              "--workers", "1", "--no-progress")
    theirs = tmp_path / "theirs"
    theirs.mkdir()
    (theirs / "valid.orig").write_text("someone else's\n")
    rc, err = run_cli(capsys, *common, "--split", "valid", "--output", theirs, "--data-bin", tmp_path / "data")
    assert rc == 2 and str(theirs) in err and (theirs / "valid.orig").read_text() == "someone else's\n", err
    other_bin = tmp_path / "other-bin"
    (other_bin / "orig").mkdir(parents=True)
    (other_bin / "langs.txt").write_text("theirs\n")
    (other_bin / "model.pt").write_bytes(b"x")
    rc, err = run_cli(capsys, *common, "--split", "valid", "--output", tmp_path / "p", "--data-bin", other_bin)
    assert rc == 2 and str(other_bin) in err and (other_bin / "langs.txt").read_text() == "theirs\n", err

    for split in ("train", "valid"):  # the CLI logs to stderr
        rc, err = run_cli(capsys, *common, "--split", split, "--output", tmp_path / "pieces", "--data-bin",
                          tmp_path / "data")
        assert rc == 0, err
        hint = next(line for line in err.splitlines() if "fairseq-preprocess" in line)
        assert f"--{split}pref {tmp_path / 'pieces' / split}.S" in hint, hint
        assert ("--trainpref" in hint) == (split == "train"), hint


# --------------------------------------------------------------------------------------------- reproducible outputs
def test_convert_is_byte_identical_run_to_run(tiny_hf_dir, tmp_path):
    from translit_plugin.conversion.hf_to_fairseq import convert_hf_to_fairseq

    out = tmp_path / "model"
    convert_hf_to_fairseq(tiny_hf_dir, out, arch="translit_roberta_tiny", check_parity=True)
    first = hashes(out)
    assert ".tmp-" not in (out / "model.pt").read_bytes().decode("latin-1")  # no staging path inside
    time.sleep(1.1)  # a recorded time of writing would differ now
    convert_hf_to_fairseq(tiny_hf_dir, out, force=True, arch="translit_roberta_tiny", check_parity=True)
    assert hashes(out) == first
    assert "created" not in json.loads((out / "conversion.json").read_text())


@pytest.fixture()
def trim_setup(tiny_model_dir, tmp_path):
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    (corpus / "ell_Grek.txt").write_text(demo_lines("ell_Grek", 40), encoding="utf-8")
    return corpus


def _trained_from(trimmed: Path, run: Path) -> Path:
    """A stand-in for a training run on the trimmed model (every float tensor changed)."""
    from omegaconf import open_dict

    from translit_plugin.checkpoint_compat import load_fairseq_checkpoint
    from translit_plugin.conversion.keys import EMBED_KEY, HEAD_W_KEY

    state = load_fairseq_checkpoint(trimmed / "model.pt")
    gen = torch.Generator().manual_seed(3)
    model = state["model"]
    for k, v in list(model.items()):
        if k != HEAD_W_KEY and v.is_floating_point():
            model[k] = v + 0.01 * torch.randn(v.shape, generator=gen, dtype=v.dtype)
    model[HEAD_W_KEY] = model[EMBED_KEY]
    with open_dict(state["cfg"]):
        state["cfg"].checkpoint.finetune_from_model = str(trimmed / "model.pt")
    run.mkdir(parents=True)
    torch.save(state, run / "checkpoint_best.pt")
    return run / "checkpoint_best.pt"


def test_trim_untrim_export_are_byte_identical_and_untrim_accepts_a_reconversion(tiny_hf_dir, tiny_model_dir,
                                                                                  trim_setup, tmp_path):
    from translit_plugin.conversion.fairseq_to_hf import export_fairseq_to_hf
    from translit_plugin.conversion.hf_to_fairseq import convert_hf_to_fairseq
    from translit_plugin.trimming.trim import trim_model_dir
    from translit_plugin.trimming.untrim import untrim

    trimmed = tmp_path / "trimmed"
    trim_model_dir(tiny_model_dir, [trim_setup], trimmed, check_lines=2)
    first = hashes(trimmed)
    time.sleep(1.1)
    trim_model_dir(tiny_model_dir, [trim_setup], trimmed, force=True, check_lines=2)
    assert hashes(trimmed) == first

    ckpt = _trained_from(trimmed, tmp_path / "run")
    full = tmp_path / "full"
    untrim(ckpt, tiny_model_dir, full)
    first = hashes(full)
    untrim(ckpt, tiny_model_dir, full, force=True)
    assert hashes(full) == first

    # the start model converted again elsewhere: other bytes in model.pt's config, the same weights and tokenizer
    again = convert_hf_to_fairseq(tiny_hf_dir, tmp_path / "reconverted", arch="translit_roberta_tiny",
                                  check_parity=False)
    untrim(ckpt, again, tmp_path / "full2")
    from translit_plugin.checkpoint_compat import load_fairseq_checkpoint

    a = load_fairseq_checkpoint(full / "model.pt")["model"]
    b = load_fairseq_checkpoint(tmp_path / "full2" / "model.pt")["model"]
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)

    hf = tmp_path / "hf"
    export_fairseq_to_hf(full / "model.pt", hf, check_parity=True)
    first = hashes(hf)
    export_fairseq_to_hf(full / "model.pt", hf, force=True, check_parity=True)
    assert hashes(hf) == first
    modes = {p.name: p.stat().st_mode & 0o777 for p in hf.iterdir()}
    assert set(modes.values()) == {umask_mode()}, modes


def test_untrim_still_refuses_another_start_model(tiny_model_dir, trim_setup, tmp_path):
    from translit_plugin.checkpoint_compat import load_fairseq_checkpoint
    from translit_plugin.conversion.keys import EMBED_KEY
    from translit_plugin.trimming import TrimError
    from translit_plugin.trimming.trim import trim_model_dir
    from translit_plugin.trimming.untrim import untrim

    trimmed = tmp_path / "trimmed"
    trim_model_dir(tiny_model_dir, [trim_setup], trimmed, check_lines=0)
    ckpt = _trained_from(trimmed, tmp_path / "run")
    other = tmp_path / "other"
    shutil.copytree(tiny_model_dir, other)
    state = load_fairseq_checkpoint(other / "model.pt")
    state["model"][EMBED_KEY][5, 0] += 1.0  # one weight differs
    torch.save(state, other / "model.pt")
    with pytest.raises(TrimError, match="is not the model"):
        untrim(ckpt, other, tmp_path / "full")


def test_staged_files_get_the_permissions_a_plain_open_gives(tmp_path):
    from translit_plugin.core.safe_output import staged_dir

    with staged_dir(tmp_path / "out", force=False, inputs=[], marker="conversion.json") as tmp:
        (tmp / "conversion.json").write_text("{}")
        private = tmp / "model.safetensors"
        private.write_bytes(b"x")
        os.chmod(private, 0o600)  # what safetensors' writer leaves
    assert {p.name: p.stat().st_mode & 0o777 for p in (tmp_path / "out").iterdir()} == {
        "conversion.json": umask_mode(), "model.safetensors": umask_mode()}


def test_readme_trust_model_names_the_import_that_installs_the_allow_list():
    text = (REPO / "README.md").read_text(encoding="utf-8")
    section = text.split("(trust model)", 1)[1].split("\n## ", 1)[0]
    assert "or `import translit_plugin`)" not in section
    assert "import translit_plugin.plugin" in section


def test_build_start_model_is_byte_identical_with_normal_permissions(tmp_path, capsys):
    text = tmp_path / "text.txt"
    text.write_text("".join(demo_lines(lang, 300) for lang in ("ell_Grek", "tur_Latn")), encoding="utf-8")
    out = tmp_path / "start"
    argv = ("build-start-model", "--text", text, "--output", out, "--vocab-size", "300", "--max-positions", "34")
    assert run_cli(capsys, *argv)[0] == 0
    first = hashes(out)
    assert run_cli(capsys, *argv, "--force")[0] == 0
    assert hashes(out) == first
    modes = {p.name: p.stat().st_mode & 0o777 for p in out.iterdir()}
    assert set(modes.values()) == {umask_mode()}, modes  # model.safetensors too (safetensors writes 0600)
