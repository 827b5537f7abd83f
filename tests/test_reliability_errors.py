"""Bad input gets one clear line, not a traceback (issue 20, findings 6, 8 and the training side of 9).

* a start model whose shapes differ from the network the flags build (positions above all) is refused before fairseq
  loads it, with the flag to set;
* out-of-range criterion options, a truncated ``.idx``, a garbage ``train.lang.npy`` are one-line task errors;
  ``lazy``/``cached`` data-bins load;
* resuming ``checkpoint_last.pt`` with another data-bin is refused; a checkpoint records the vocabulary it was trained
  with and the hub refuses another one of the same size;
* the ``translit-ppa`` tools: truncated safetensors, a config without ``num_hidden_layers``, an unparseable
  sentencepiece model, unreadable checkpoints, disk full: exit 2 with one line naming the file.
"""

from __future__ import annotations

import errno
import json
import os
import shutil
import sys
import types
from argparse import Namespace
from pathlib import Path

import numpy as np
import pytest
import torch
from omegaconf import OmegaConf
from translit_helpers import build_data_bin

import translit_plugin.plugin  # noqa: F401  (registers the components)
from translit_plugin.data.errors import TranslitDataError
from translit_plugin.tasks.translit_align import TranslitAlignConfig, TranslitAlignTask


@pytest.fixture(scope="module")
def data(tiny_model_dir, tmp_path_factory) -> Path:
    """A data-bin binarized with the tiny start model's dictionary (its 130 position rows: 128 positions)."""
    return build_data_bin(tmp_path_factory.mktemp("rel") / "data", tiny_model_dir / "sentencepiece.bpe.model",
                          train_per_lang=8, valid_per_lang=2)


def make_task(data: Path, **overrides) -> TranslitAlignTask:
    cfg = OmegaConf.structured(TranslitAlignConfig(data=str(data), seed=1, **overrides))
    return TranslitAlignTask.setup_task(cfg)


def tiny_args(**kw) -> Namespace:
    from translit_plugin.models.translit_roberta import translit_roberta_tiny

    args = Namespace(arch="translit_roberta_tiny", **kw)
    translit_roberta_tiny(args)
    return args


def copy_data(data: Path, tmp_path: Path) -> Path:
    out = tmp_path / "data"
    shutil.copytree(data, out)
    return out


# ------------------------------------------------------------------------------------------- 6: start model shapes
def test_start_model_with_other_positions_is_refused_with_the_flag_to_set(data, tiny_model_dir):
    start = str(tiny_model_dir / "model.pt")
    task = make_task(data, tokens_per_sample=128, finetune_from_model=start)
    task.build_model(tiny_args())  # 128 positions = the start model's 130 rows: fine
    task = make_task(data, tokens_per_sample=100, finetune_from_model=start)
    with pytest.raises(TranslitDataError, match=r"positions.*--max-positions 128"):
        task.build_model(tiny_args())  # the run builds 102 rows (tokens-per-sample 100)
    make_task(data, tokens_per_sample=100, finetune_from_model=start).build_model(tiny_args(max_positions=128))


def test_start_model_shape_check_names_every_differing_tensor_group(data, tiny_model_dir):
    from translit_plugin.models.checkpoints import check_checkpoint_shapes

    model = make_task(data, tokens_per_sample=128).build_model(tiny_args(max_positions=200))
    state = torch.load(tiny_model_dir / "model.pt", map_location="cpu", weights_only=False)
    with pytest.raises(TranslitDataError, match=r"--max-positions 128"):
        check_checkpoint_shapes("start.pt", state["model"], model)


def test_arch_flags_print_the_positions_of_the_checkpoint(tiny_model_dir):
    """The recipes pass these flags: with --max-positions the run builds the start model's position table."""
    from translit_plugin.models.arch_flags import arch_flags

    flags = arch_flags(str(tiny_model_dir / "model.pt"))
    assert flags[flags.index("--max-positions") + 1] == "128"


# ------------------------------------------------------------------------------------------- 8: training options
@pytest.mark.parametrize(
    "options, pattern",
    [
        ({"mlm_orig_weight": -1.0}, r"--mlm-orig-weight -1: must be >= 0"),
        ({"seq_temperature": 0.0}, r"--seq-temperature 0: must be > 0"),
        ({"anchor_weight": 1.0, "anchor_temperature": -0.5}, r"--anchor-temperature -0.5: must be > 0"),
        ({"seq_layer": 5}, r"--seq-layer 5: the model has 2 layers"),
        ({"seq_layer": -1}, r"--seq-layer -1: the model has 2 layers"),
        ({"seq_layer": 1, "anchor_weight": 1.0, "anchor_layer": "9"}, r"--anchor-layer 9: the model has 2 layers"),
        ({"seq_layer": 1, "anchor_weight": 1.0, "anchor_layer": "x"}, r"--anchor-layer 'x'"),
    ],
)
def test_out_of_range_criterion_options_are_one_line_errors_at_setup(data, options, pattern):
    from translit_plugin.criterions.mlm_seq_tlm import MlmSeqTlmConfig, MlmSeqTlmCriterion

    task = make_task(data, tokens_per_sample=128)
    task.build_model(tiny_args(max_positions=128))
    with pytest.raises(TranslitDataError, match=pattern):
        MlmSeqTlmCriterion.build_criterion(MlmSeqTlmConfig(**options), task)


def test_mask_prob_zero_with_a_masked_term_is_refused(data):
    from translit_plugin.criterions.mlm_seq_tlm import MlmSeqTlmConfig, MlmSeqTlmCriterion

    task = make_task(data, mask_prob=0.0, tokens_per_sample=128)
    with pytest.raises(TranslitDataError, match=r"--mask-prob 0.*nothing to predict"):
        MlmSeqTlmCriterion.build_criterion(MlmSeqTlmConfig(), task)
    MlmSeqTlmCriterion.build_criterion(MlmSeqTlmConfig(mlm_orig_weight=0.0, mlm_latn_weight=0.0, tlm_weight=0.0),
                                       task)  # SEQ alone reads clean input: fine


def test_truncated_idx_is_a_task_error_naming_it(data, tmp_path):
    bad = copy_data(data, tmp_path)
    idx = bad / "latn" / "train.idx"
    os.truncate(idx, os.path.getsize(idx) - 9)
    with pytest.raises(TranslitDataError, match=r"latn/train\.idx.*truncated"):
        make_task(bad).load_dataset("train")


def test_garbage_lang_npy_is_a_task_error_naming_it(data, tmp_path):
    bad = copy_data(data, tmp_path)
    (bad / "train.lang.npy").write_bytes(b"not numpy at all\n" * 4)
    with pytest.raises(TranslitDataError, match=r"train\.lang\.npy.*not a numpy"):
        make_task(bad).load_dataset("train")


@pytest.mark.parametrize("impl", ["lazy", "cached"])
def test_lazy_and_cached_data_bins_load(data, tmp_path, impl):
    from fairseq.data import data_utils, indexed_dataset

    out = copy_data(data, tmp_path)
    d = make_task(data).dictionary
    for side in ("orig", "latn"):
        for split in ("train", "valid"):
            prefix = str(out / side / split)
            src = data_utils.load_indexed_dataset(str(data / side / split), d)
            for ext in (".bin", ".idx"):
                os.remove(prefix + ext)
            builder = indexed_dataset.make_builder(prefix + ".bin", impl=impl, vocab_size=len(d))
            for i in range(len(src)):
                builder.add_item(src[i].int())
            builder.finalize(prefix + ".idx")
    task = make_task(out)
    task.load_dataset("train")
    ref = make_task(data)
    ref.load_dataset("train")
    assert len(task.datasets["train"]) == len(ref.datasets["train"])
    a, b = task.datasets["train"][3], ref.datasets["train"][3]
    for key in ("orig", "orig_target", "latn", "latn_target", "tlm"):
        assert torch.equal(a[key], b[key]), key


# ------------------------------------------------------------------------------------ 9: resume and assets checks
def test_resuming_checkpoint_last_with_another_data_bin_is_refused(data, tmp_path, tiny_model_dir):
    save = tmp_path / "ckpt"
    save.mkdir()
    task = make_task(data, save_dir=str(save), tokens_per_sample=128)
    state = task.state_dict()
    assert state["translit_data"]["vocab_sha256"]
    torch.save({"model": {}, "task_state": state}, save / "checkpoint_last.pt")
    same = make_task(data, save_dir=str(save), tokens_per_sample=128)
    same.build_model(tiny_args(max_positions=128))  # the same data: resumes

    other = copy_data(data, tmp_path)
    shutil.copyfile(other / "orig" / "valid.bin", other / "orig" / "train.bin")  # another data-bin ...
    shutil.copyfile(other / "orig" / "valid.idx", other / "orig" / "train.idx")
    shutil.copyfile(other / "latn" / "valid.bin", other / "latn" / "train.bin")
    shutil.copyfile(other / "latn" / "valid.idx", other / "latn" / "train.idx")
    (other / "train.lang.npy").unlink()
    with pytest.raises(TranslitDataError, match=r"checkpoint_last\.pt was trained on another data-bin"):
        make_task(other, save_dir=str(save), tokens_per_sample=128).build_model(tiny_args(max_positions=128))


def test_hub_refuses_a_dictionary_of_the_same_size_other_than_the_recorded_one(tiny_model_dir, tmp_path):
    from translit_plugin.data.fingerprint import vocab_sha256
    from translit_plugin.hub import from_pretrained

    model_dir = tmp_path / "m"
    shutil.copytree(tiny_model_dir, model_dir)
    state = torch.load(model_dir / "model.pt", map_location="cpu", weights_only=False)
    from fairseq.data import Dictionary

    symbols = Dictionary.load(str(model_dir / "dict.txt")).symbols
    record = {"vocab_sha256": vocab_sha256(symbols), "rows": len(symbols) + 1}  # + <mask>
    state["task_state"] = {"translit_data": record}
    torch.save(state, model_dir / "model.pt")
    from_pretrained(model_dir)  # the recorded vocabulary: fine
    lines = (model_dir / "dict.txt").read_text(encoding="utf-8").splitlines()
    lines[20], lines[21] = lines[21], lines[20]
    (model_dir / "dict.txt").write_text("\n".join(lines) + "\n", encoding="utf-8")
    with pytest.raises(ValueError, match=r"dict\.txt.*not the dictionary .* trained with"):
        from_pretrained(model_dir)


# ------------------------------------------------------------------------------------------------ 8: the CLI tools
def cli(argv: list[str], capsys) -> tuple[int, str]:
    from translit_plugin.cli import main

    code = main(argv)
    err = capsys.readouterr().err
    return code, err


def assert_one_line_error(code: int, err: str, *needles: str) -> None:
    assert code == 2, err
    assert "Traceback" not in err and "This is a bug" not in err, err
    last = err.strip().splitlines()[-1]
    for needle in needles:
        assert needle in last, last


def test_convert_bad_sources_are_one_line_errors(tiny_hf_dir, tmp_path, capsys):
    trunc = tmp_path / "trunc"
    shutil.copytree(tiny_hf_dir, trunc)
    st = trunc / "model.safetensors"
    os.truncate(st, os.path.getsize(st) // 2)
    assert_one_line_error(*cli(["convert", str(trunc), str(tmp_path / "o1")], capsys), str(st), "download")

    nolayers = tmp_path / "nolayers"
    shutil.copytree(tiny_hf_dir, nolayers)
    cfg = json.loads((nolayers / "config.json").read_text())
    del cfg["num_hidden_layers"]
    (nolayers / "config.json").write_text(json.dumps(cfg))
    assert_one_line_error(*cli(["convert", str(nolayers), str(tmp_path / "o2")], capsys), "config.json",
                          "num_hidden_layers")

    badspm = tmp_path / "badspm"
    shutil.copytree(tiny_hf_dir, badspm)
    (badspm / "sentencepiece.bpe.model").write_bytes(b"garbage\n")
    assert_one_line_error(*cli(["convert", str(badspm), str(tmp_path / "o3")], capsys),
                          "sentencepiece.bpe.model", "not a sentencepiece model")


def test_unreadable_checkpoints_in_trim_untrim_export_are_one_line_errors(tiny_model_dir, tmp_path, capsys):
    bad = tmp_path / "bad"
    shutil.copytree(tiny_model_dir, bad)
    ckpt = bad / "model.pt"
    ckpt.write_bytes((tiny_model_dir / "model.pt").read_bytes()[:1000])
    corpus = tmp_path / "corpus.txt"
    corpus.write_text("hello world\n", encoding="utf-8")
    assert_one_line_error(*cli(["trim-vocab", str(bad), str(corpus), "-o", str(tmp_path / "t")], capsys), str(ckpt))
    assert_one_line_error(*cli(["untrim", str(ckpt), str(tiny_model_dir), str(tmp_path / "u")], capsys), str(ckpt))
    assert_one_line_error(*cli(["export-hf", str(ckpt), str(tmp_path / "e")], capsys), str(ckpt))


def test_disk_full_names_the_path_and_the_command(tmp_path, monkeypatch, capsys):
    from translit_plugin import cli as cli_module

    mod = types.ModuleType("fake_full_disk_command")

    def add_arguments(parser):
        parser.add_argument("--output")

    def run(args):
        raise OSError(errno.ENOSPC, "No space left on device")  # what a write() gives: no file name

    mod.add_arguments, mod.run = add_arguments, run
    monkeypatch.setitem(sys.modules, "fake_full_disk_command", mod)
    monkeypatch.setitem(cli_module.COMMANDS, "fake", ("fake_full_disk_command", "test"))
    out = str(tmp_path / "out")
    code, err = cli(["fake", "--output", out], capsys)
    assert_one_line_error(code, err, "No space left on device", out, "translit-ppa fake")

    def run_named(args):
        raise OSError(errno.ENOSPC, "No space left on device", str(tmp_path / "x.bin"))

    mod.run = run_named
    code, err = cli(["fake", "--output", out], capsys)
    assert_one_line_error(code, err, str(tmp_path / "x.bin"), "free space")


def test_fairseq_train_exits_with_one_line_for_a_bad_criterion_option(data, tiny_model_dir, tmp_path):
    import subprocess

    train = str(Path(sys.executable).parent / "fairseq-train")
    repo = Path(__file__).resolve().parents[1]

    def run(*extra: str) -> subprocess.CompletedProcess:
        cmd = [train, str(data), "--user-dir", str(repo / "translit_plugin"), "--task", "translit_align",
               "--criterion", "mlm_seq_tlm", "--arch", "translit_roberta_tiny", "--finetune-from-model",
               str(tiny_model_dir / "model.pt"), "--optimizer", "adam", "--lr", "1e-4", "--batch-size", "4",
               "--max-update", "1", "--save-dir", str(tmp_path / "s"), "--cpu", "--num-workers", "0", *extra]
        env = {**os.environ, "OMP_NUM_THREADS": "1"}
        return subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)

    proc = run("--tokens-per-sample", "100")  # the start model has 128 positions; the run would build 100
    assert proc.returncode == 2, proc.stderr[-3000:]
    assert "Traceback" not in proc.stderr and "--max-positions 128" in proc.stdout + proc.stderr
    proc = run("--tokens-per-sample", "100", "--max-positions", "128", "--seq-layer", "5")
    assert proc.returncode == 2, proc.stderr[-3000:]
    assert "Traceback" not in proc.stderr and "--seq-layer 5: the model has 2 layers" in proc.stdout + proc.stderr


def test_lang_ids_loader_survives_numpy_pickles_refused(data, tmp_path):
    """A pickled object array is refused (never unpickled), naming the file."""
    bad = copy_data(data, tmp_path)
    np.save(bad / "train.lang.npy", np.array([object()] * 3, dtype=object), allow_pickle=True)
    with pytest.raises(TranslitDataError, match=r"train\.lang\.npy"):
        make_task(bad).load_dataset("train")


@pytest.mark.parametrize(
    "content, pattern",
    [
        ("[1, 2]", r"must be a JSON object"),
        ('{"languages": {"ara_Arab": {"uroman_code": 7}}}', r"languages\.ara_Arab\.uroman_code must be a string"),
        ('{"languages": {"ara_Arab": {}}, "sampling": [0.1]}', r"'sampling' must be an object"),
        ('{"languages": {"ara_Arab": {}}, "sampling": {"fraction": "0.1"}}', r"sampling\.fraction must be a number"),
        ('{"languages": {"ara_Arab": {}}, "sampling": {"min_sentences": 1.5}}', r"sampling\.min_sentences must be"),
        ('{"name": 3, "languages": {"ara_Arab": {}}}', r"'name' must be a string"),
    ],
)
def test_group_file_with_wrong_types_is_one_line_error(tmp_path, capsys, content, pattern):
    import re

    from translit_plugin.prepare.groups import load_group

    path = tmp_path / "group.json"
    path.write_text(content, encoding="utf-8")
    with pytest.raises(ValueError, match=pattern) as info:
        load_group(path)
    assert str(path) in str(info.value) and re.search(pattern, str(info.value))


def test_write_helpers_name_the_file_a_full_disk_stopped(tmp_path):
    """A write() that fails with ENOSPC names no file; the shared atomic-write helpers add the target's path and
    leave no temporary file behind."""
    from translit_plugin.core.files import write_lines

    def lines():
        yield "one"
        raise OSError(errno.ENOSPC, "No space left on device")

    target = tmp_path / "out" / "train.txt"
    with pytest.raises(OSError) as info:
        write_lines(target, lines())
    assert info.value.errno == errno.ENOSPC and info.value.filename == str(target)
    assert not target.exists() and list(target.parent.iterdir()) == []
