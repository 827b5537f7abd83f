"""The ``fairseq-preprocess`` path to training data (README, "With fairseq-preprocess").

``translit-ppa transliterate`` + ``translit-ppa encode`` + two real ``fairseq-preprocess`` runs build a data-bin from
raw text (real demo lines with adversarial ones mixed in) that is byte-identical to what ``translit-ppa prepare``
writes for the same lines (``.bin``/``.idx``, ``dict.txt``, language ids, ``pairing.json``; only fairseq-preprocess's
``preprocess.log`` is extra), and ``fairseq-train --task translit_align --criterion mlm_seq_tlm`` trains on it (with
``--lang-sampling-temperature 2``, which used to fail with ``TypeError: 'bool' object is not callable``).  A Latin
side shifted by one line, built the same way, is refused with a one-line error and exit status 2; so are a Latin side
from another split, another dictionary, and a stale ``pairing.json``.
"""

from __future__ import annotations

import filecmp
import json
import logging
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from prepare_helpers import ADVERSARIAL_LINES
from test_train_cli import ENV, parse, train_cmd

from translit_plugin.cli import main as translit_ppa
from translit_plugin.data.errors import PairingError, TranslitDataError

REPO = Path(__file__).resolve().parents[1]
DEMO = REPO / "examples" / "data" / "train"
BIN = Path(sys.executable).parent
LANGS = ("ell_Grek", "kor_Hang")
MAX_LENGTH = "128"  # the tiny model's positions
PREPARE_SAMPLING = ["--valid-size", "20", "--valid-max-fraction", "0.2"]
TERMS = ("loss_mlm_orig", "loss_mlm_latn", "loss_seq", "loss_tlm", "seq_acc")


def raw_corpus(lang: str, n: int = 150) -> list[bytes]:
    """``n`` real demo lines of ``lang`` with the adversarial lines spread among them (raw bytes, one per line)."""
    lines = (DEMO / f"{lang}.txt").read_bytes().split(b"\n")[:n]
    out: list[bytes] = []
    for i, line in enumerate(lines):
        out.append(line)
        if i % 10 == 5 and i // 10 < len(ADVERSARIAL_LINES):
            out.append(ADVERSARIAL_LINES[i // 10])
    out.append("Καλημέρα\u00a0κόσμε\u3000και\u2002φίλοι".encode())  # Unicode spaces inside a line
    return out


def prepare_split_of_raw_lines(raw: list[bytes], lang: str) -> dict[str, list[bytes]]:
    """The raw lines ``prepare`` puts in train and valid (its clean + sample rules with the options used here)."""
    from translit_plugin.core.lines import to_single_line
    from translit_plugin.prepare.sample import SampleConfig, choose
    from translit_plugin.prepare.transliterate_job import decode_raw

    kept = [line for line in raw if to_single_line(decode_raw(line))]
    train, valid = choose(len(kept), lang, SampleConfig(valid_size=20, valid_max_fraction=0.2))
    return {"train": [kept[i] for i in train], "valid": [kept[i] for i in valid]}


def fairseq_preprocess(model_dir: Path, pieces: Path, data: Path, side: str, splits=("train", "valid"),
                       workers: int = 2) -> subprocess.Popen:
    """The README's command for one side (started, not awaited)."""
    cmd = [str(BIN / "fairseq-preprocess"), "--only-source", "--srcdict", str(model_dir / "dict.txt"),
           "--destdir", str(data / side), "--workers", str(workers), "--dataset-impl", "mmap"]
    for split in splits:
        cmd += [f"--{split}pref", str(pieces / f"{split}.{side}")]
    return subprocess.Popen(cmd, env=ENV, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def wait_all(procs: list[subprocess.Popen]) -> None:
    for p in procs:
        out = p.communicate(timeout=300)[0]
        assert p.returncode == 0, out[-3000:]


def files_of(d: Path) -> dict[str, Path]:
    return {str(p.relative_to(d)): p for p in sorted(d.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def built(tiny_model_dir, tmp_path_factory):
    """prepare's data-bin and the fairseq-preprocess path's data-bin for the same raw lines."""
    root = tmp_path_factory.mktemp("fpp")
    raw_dir = root / "raw"
    raw_dir.mkdir()
    split_dirs = {split: root / "text" / split for split in ("train", "valid")}
    for lang in LANGS:
        raw = raw_corpus(lang)
        (raw_dir / f"{lang}.txt").write_bytes(b"\n".join(raw) + b"\n")
        for split, lines in prepare_split_of_raw_lines(raw, lang).items():
            split_dirs[split].mkdir(parents=True, exist_ok=True)
            (split_dirs[split] / f"{lang}.txt").write_bytes(b"".join(line + b"\n" for line in lines))

    # 1. translit-ppa prepare (the reference)
    assert translit_ppa(["prepare", "--input", str(raw_dir), "--model-dir", str(tiny_model_dir), "--output",
                         str(root / "prepared"), *PREPARE_SAMPLING, "--max-length", MAX_LENGTH, "--workers", "1",
                         "--verify-translit", "5", "--no-progress"]) == 0

    # 2. the fairseq-preprocess path (README): transliterate, encode, fairseq-preprocess per side
    data, pieces = root / "data-bin", root / "pieces"
    for split, text in split_dirs.items():
        assert translit_ppa(["transliterate", "--input", str(text), "--output", str(root / "latn" / split),
                             "--workers", "2" if split == "train" else "1", "--chunk-size", "40",
                             "--no-progress"]) == 0
        assert translit_ppa(["encode", "--model-dir", str(tiny_model_dir), "--orig", str(text), "--latn",
                             str(root / "latn" / split), "--split", split, "--output", str(pieces), "--data-bin",
                             str(data), "--max-length", MAX_LENGTH, "--workers", "2", "--no-progress"]) == 0
    wait_all([fairseq_preprocess(tiny_model_dir, pieces, data, side) for side in ("orig", "latn")])
    return {"root": root, "prepared": root / "prepared" / "data-bin", "data": data, "pieces": pieces}


def test_data_bin_is_byte_identical_to_prepare(built):
    mine, theirs = files_of(built["data"]), files_of(built["prepared"])
    # beside the data: fairseq-preprocess's logs and encode's lock file (it holds DATA while it writes)
    assert set(mine) - set(theirs) == {"orig/preprocess.log", "latn/preprocess.log", ".translit-ppa.lock"}, sorted(mine)
    assert set(theirs) - set(mine) == set(), sorted(theirs)
    for name, path in theirs.items():
        assert filecmp.cmp(path, mine[name], shallow=False), f"{name} differs"
    record = json.loads((built["data"] / "pairing.json").read_text())
    manifest = json.loads((built["root"] / "prepared" / "manifest.json").read_text())
    for split in ("train", "valid"):
        assert record["splits"][split]["pairs"] == manifest["pairs"][split] > 0
    summary = json.loads((built["pieces"] / "train.encode.json").read_text())
    drops = {lang: summary["per_language"][lang]["drops"] for lang in LANGS}
    assert all(sum(d.values()) > 0 for d in drops.values()), drops  # the adversarial lines were dropped as pairs


def test_fairseq_train_on_the_preprocessed_data_bin(built, tiny_model_dir, tmp_path):
    cmd = train_cmd(built["data"], tiny_model_dir, tmp_path / "ckpt", 3, "--lang-sampling-temperature", "2",
                    "--save-interval-updates", "0", "--no-save")
    proc = subprocess.run(cmd, env=ENV, capture_output=True, text=True, timeout=300)
    log = proc.stdout + proc.stderr
    assert proc.returncode == 0, log[-4000:]
    assert "train: pairing verified" in log and "valid: pairing verified" in log
    assert "language sampling (T=2)" in log
    inner = parse(log, "train_inner")
    assert [int(r["num_updates"]) for r in inner] == [1, 2, 3]
    assert all(t in inner[-1] for t in TERMS)
    assert parse(log, "valid"), "no validation ran"


def test_latin_side_shifted_by_one_line_is_refused(built, tiny_model_dir, tmp_path):
    """Built exactly like the good one, with the Latin piece file shifted by one line (same count)."""
    bad, pieces = tmp_path / "bad", tmp_path / "pieces"
    pieces.mkdir()
    shutil.copytree(built["data"], bad, ignore=shutil.ignore_patterns("latn"))
    lines = (built["pieces"] / "train.latn").read_text(encoding="utf-8").splitlines(keepends=True)
    (pieces / "train.latn").write_text("".join(lines[1:] + lines[:1]), encoding="utf-8")
    wait_all([fairseq_preprocess(tiny_model_dir, pieces, bad, "latn", splits=("train",), workers=1)])
    shutil.copy(built["data"] / "latn" / "valid.bin", bad / "latn" / "valid.bin")
    shutil.copy(built["data"] / "latn" / "valid.idx", bad / "latn" / "valid.idx")
    proc = subprocess.run(train_cmd(bad, tiny_model_dir, tmp_path / "ckpt", 2), env=ENV, capture_output=True,
                          text=True, timeout=300)
    log = proc.stdout + proc.stderr
    assert proc.returncode == 2, log[-3000:]
    errors = [line for line in log.splitlines() if "| ERROR |" in line]
    assert len(errors) == 1 and "split 'train', side 'latn'" in errors[0], errors
    assert "does not hold the lines recorded in" in errors[0] and "the orig side matches" in errors[0]
    assert "Traceback" not in log


# ------------------------------------------------------------------------------------------- the task, in-process
def make_task(data, **overrides):
    from omegaconf import OmegaConf

    import translit_plugin.plugin  # noqa: F401  (registers the components)
    from translit_plugin.tasks.translit_align import TranslitAlignConfig, TranslitAlignTask

    return TranslitAlignTask.setup_task(OmegaConf.structured(TranslitAlignConfig(data=str(data), seed=1, **overrides)))


def copy_data(built, tmp_path) -> Path:
    d = tmp_path / "d"
    shutil.copytree(built["data"], d)
    return d


def test_latin_side_from_another_split_is_refused(built, tmp_path):
    d = copy_data(built, tmp_path)
    for ext in (".bin", ".idx"):
        shutil.copy(d / "latn" / f"valid{ext}", d / "latn" / f"train{ext}")
    with pytest.raises(PairingError, match=r"orig/train\.bin has \d+ sentences but .*latn/train\.bin has \d+"):
        make_task(d).load_dataset("train")
    # same count, other lines: the valid side of orig and latn swapped in for train on both sides pairs up again,
    # but not with the record
    for side in ("orig", "latn"):
        for ext in (".bin", ".idx"):
            shutil.copy(d / side / f"valid{ext}", d / side / f"train{ext}")
    with pytest.raises(PairingError, match=r"split 'train': neither side matches .*pairing\.json"):
        make_task(d).load_dataset("train")


def test_another_dictionary_is_refused(built, tmp_path):
    d = copy_data(built, tmp_path)
    lines = (d / "orig" / "dict.txt").read_text(encoding="utf-8").splitlines(keepends=True)
    swapped = "".join([lines[1], lines[0]] + lines[2:])  # same size, two pieces exchanged
    (d / "latn" / "dict.txt").write_text(swapped, encoding="utf-8")
    with pytest.raises(PairingError, match=r"latn/dict\.txt differ: both sides must be binarized with the model"):
        make_task(d)
    (d / "orig" / "dict.txt").write_text(swapped, encoding="utf-8")
    with pytest.raises(PairingError, match=r"orig/dict\.txt is not the dictionary recorded in .*pairing\.json"):
        make_task(d).load_dataset("train")


def test_without_pairing_file_a_warning_and_with_counts_only_no_check(built, tmp_path, caplog):
    d = copy_data(built, tmp_path)
    (d / "pairing.json").unlink()
    with caplog.at_level(logging.WARNING):
        make_task(d).load_dataset("train")
    assert any("pairing.json not found: the pairing of orig/train and latn/train cannot be verified" in r.message
               for r in caplog.records)
    (d / "pairing.json").write_text("{}")
    with pytest.raises(PairingError, match="is not a 'translit-ppa pairing v1' file"):
        make_task(d).load_dataset("train")
    make_task(d, pairing_check="counts").load_dataset("train")  # the opt-out reads no fingerprint


def test_without_pairing_file_a_shift_by_one_is_caught_by_the_lengths(built, tmp_path):
    """An older data-bin has no pairing.json: a side shifted by one line still shows in the length correlations."""
    import torch
    from fairseq.data import indexed_dataset

    from translit_plugin.data.fingerprint import length_correlations
    from translit_plugin.data.pread_dataset import PreadIndexedDataset

    d = copy_data(built, tmp_path)
    (d / "pairing.json").unlink()
    task = make_task(d)
    task.load_dataset("train")  # the true pairs pass
    latn = PreadIndexedDataset(str(d / "latn" / "train"), warmup=False)
    rows = [latn[i] for i in range(len(latn))]
    del latn
    builder = indexed_dataset.make_builder(str(d / "latn" / "train.bin"), impl="mmap", vocab_size=len(task.dictionary))
    for ids in rows[1:] + rows[:1]:
        builder.add_item(torch.IntTensor(ids.int()))
    builder.finalize(str(d / "latn" / "train.idx"))
    orig = PreadIndexedDataset(str(d / "orig" / "train"), warmup=False)
    corr = length_correlations(orig.sizes, np.array([len(r) for r in rows]))
    assert corr["aligned"] > 0.5 > corr["shifted"], corr  # the true pairs
    with pytest.raises(PairingError, match=r"split 'train' looks shifted by one line: .* \(r=0\.\d\d\) far better"):
        make_task(d).load_dataset("train")


def test_a_split_in_parts_is_checked_part_by_part(built, tmp_path, caplog):
    """fairseq combines train, train1, ... into one split; each part has its own entry in pairing.json."""
    d = copy_data(built, tmp_path)
    for side in ("orig", "latn"):
        for ext in (".bin", ".idx"):
            shutil.copy(d / side / f"valid{ext}", d / side / f"train1{ext}")
    shutil.copy(d / "valid.lang.npy", d / "train1.lang.npy")
    record = json.loads((d / "pairing.json").read_text())
    record["splits"]["train1"] = record["splits"]["valid"]
    (d / "pairing.json").write_text(json.dumps(record))
    with caplog.at_level(logging.INFO):
        task = make_task(d)
        task.load_dataset("train", combine=True)
    assert len(task.datasets["train"]) == record["splits"]["train"]["pairs"] + record["splits"]["valid"]["pairs"]
    assert "train: pairing verified" in caplog.text
    lang = np.concatenate([np.load(d / "train.lang.npy"), np.load(d / "valid.lang.npy")])
    assert [int(task.datasets["train"][i]["lang"]) for i in (0, len(lang) - 1)] == [lang[0], lang[-1]]
    record["splits"]["train1"] = record["splits"]["train"]
    (d / "pairing.json").write_text(json.dumps(record))
    with pytest.raises(PairingError, match=r"split 'train1': neither side matches"):
        make_task(d).load_dataset("train", combine=True)
    (d / "latn" / "train1.bin").unlink()
    with pytest.raises(PairingError, match=r"split 'train': orig has 2 part\(s\) .* but latn has 1"):
        make_task(d).load_dataset("train", combine=True)


@pytest.mark.parametrize(("option", "value", "message"), [
    ("mask_prob", 1.5, r"--mask-prob 1\.5: must be a probability in \[0, 1\]"),
    ("leave_unmasked_prob", -0.1, r"--leave-unmasked-prob -0\.1: must be a probability"),
    ("random_token_prob", 0.95, r"--leave-unmasked-prob 0\.1 \+ --random-token-prob 0\.95 = 1\.05"),
    ("tokens_per_sample", 2, r"--tokens-per-sample 2: must be > 2"),
    ("lang_sampling_temperature", 0.0, r"--lang-sampling-temperature 0: must be > 0"),
])
def test_invalid_options_are_rejected(built, option, value, message):
    with pytest.raises(TranslitDataError, match=message):
        make_task(built["data"], **{option: value})


# ------------------------------------------------------------------------------------- the commands themselves
def test_pieces_read_by_fairseq_give_prepares_ids_and_fingerprint(built, tiny_model_dir):
    """Every piece line, read as fairseq-preprocess reads it (text mode, Dictionary.encode_line), gives the ids
    prepare's encoder gives the cleaned line, and the fingerprint in pairing.json is that of the .bin files."""
    from fairseq.data import Dictionary

    from translit_plugin.data.fingerprint import side_fingerprint

    d = Dictionary.load(str(tiny_model_dir / "dict.txt"))
    record = json.loads((built["data"] / "pairing.json").read_text())
    for split in ("train", "valid"):
        for side in ("orig", "latn"):
            with open(built["pieces"] / f"{split}.{side}", encoding="utf-8") as f:  # universal newlines, as fairseq
                ids = [d.encode_line(line, append_eos=True, add_if_not_exist=False).tolist() for line in f]
            from translit_plugin.data.pread_dataset import PreadIndexedDataset

            stored = PreadIndexedDataset(str(built["data"] / side / split), warmup=False)
            assert ids == [stored[i].tolist() for i in range(len(stored))]
            assert side_fingerprint([str(built["data"] / side / split)]) == record["splits"][split][side]


def test_encode_refuses_a_short_transliteration_and_resumes(built, tiny_model_dir, tmp_path, capfd):
    text = built["root"] / "text" / "valid" / "ell_Grek.txt"
    latn = tmp_path / "latn.txt"
    lines = (built["root"] / "latn" / "valid" / "ell_Grek.txt").read_bytes().split(b"\n")[:-1]
    latn.write_bytes(b"\n".join(lines[1:]) + b"\n")  # one line short
    args = ["encode", "--model-dir", str(tiny_model_dir), "--orig", str(text), "--latn", str(latn), "--split",
            "valid", "--output", str(tmp_path / "p"), "--data-bin", str(tmp_path / "d"), "--lang", "ell_Grek",
            "--no-progress"]
    assert translit_ppa(args) == 3
    err = capfd.readouterr().err  # the CLI's logging goes to stderr
    assert "has 19 lines, fewer than" in err and "exactly one line per original line" in err
    latn.write_bytes(b"\n".join(lines) + b"\n")
    assert translit_ppa(args) == 0
    work = tmp_path / "p" / ".work" / "valid"
    stamps = {p: p.stat().st_mtime_ns for p in work.iterdir()}
    first = (tmp_path / "p" / "valid.orig").read_bytes()
    assert translit_ppa(args) == 0  # up to date: nothing re-encoded, same output
    assert stamps == {p: p.stat().st_mtime_ns for p in work.iterdir()}
    assert (tmp_path / "p" / "valid.orig").read_bytes() == first
    assert np.load(tmp_path / "d" / "valid.lang.npy").tolist() == [0] * first.count(b"\n")
    assert (tmp_path / "d" / "langs.txt").read_text() == "ell_Grek\n"


def test_transliterate_resumes_after_an_interruption(built, tmp_path, monkeypatch):
    import translit_plugin.prepare.transliterate_job as tr

    src = built["root"] / "text" / "train"
    reference = built["root"] / "latn" / "train"
    args = ["transliterate", "--input", str(src), "--output", str(tmp_path / "out"), "--workers", "1",
            "--chunk-size", "30", "--no-progress"]
    real, calls = tr.run_job, []

    def dying(job):
        if len(calls) == 3:
            raise KeyboardInterrupt("killed")
        calls.append(job)
        return real(job)

    monkeypatch.setattr(tr, "run_job", dying)
    try:
        status = translit_ppa(args)  # the CLI may turn the interruption into an exit status
    except KeyboardInterrupt:
        status = None
    assert status != 0
    done = sorted((tmp_path / "out" / ".work").rglob("*.txt"))
    assert len(done) == 3 and not (tmp_path / "out" / f"{LANGS[0]}.txt").exists()
    monkeypatch.setattr(tr, "run_job", lambda job: (calls.append(job), real(job))[1])
    calls.clear()
    assert translit_ppa(args) == 0
    total = sum(len(tr.chunk_offsets(src / f"{lang}.txt", 30)[0]) for lang in LANGS)
    assert len(calls) == total - 3, "the finished chunks were redone"
    for lang in LANGS:
        assert (tmp_path / "out" / f"{lang}.txt").read_bytes() == (reference / f"{lang}.txt").read_bytes()
        n_in = (src / f"{lang}.txt").read_bytes().count(b"\n")
        assert (tmp_path / "out" / f"{lang}.txt").read_bytes().count(b"\n") == n_in  # line for line
