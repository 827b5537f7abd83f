"""Vocabulary trimming (``trim-vocab``) and the way back (``untrim``) on the tiny converted model.

The corpus is real demo text in two scripts prepared by ``translit-ppa prepare`` (uroman Latin side included), so the
trimmed vocabulary is a real cut (3,002 -> a few hundred rows).  Checked: rows kept bit-identical, identical
segmentation of every corpus line, identical hidden states, prepare/task/training/hub work unchanged on the trimmed
directory, untrim restores the full vocabulary (untouched rows bit-identical, trained rows the trained ones) and
export-hf takes it, and every bad input gives a clear error.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from translit_plugin.conversion.keys import EMBED_KEY, HEAD_B_KEY, HEAD_W_KEY
from translit_plugin.core.safe_output import UnsafeOutputError
from translit_plugin.trimming import TrimCheckError, TrimError
from translit_plugin.trimming.trim import trim_model_dir
from translit_plugin.trimming.untrim import untrim

REPO = Path(__file__).resolve().parents[1]
DEMO_TRAIN = REPO / "examples" / "data" / "train"
LANGS = ("ell_Grek", "kor_Hang")
N_LINES = 120


def _state(path: Path) -> dict:
    from translit_plugin.checkpoint_compat import load_fairseq_checkpoint

    return load_fairseq_checkpoint(path)


def _corpus_lines(prepared: Path) -> list[str]:
    """Both sides of every prepared pair (what training sees)."""
    lines = []
    for tsv in sorted((prepared / "work" / "translit").glob("*/*.tsv")):
        for rec in tsv.read_text(encoding="utf-8").splitlines():
            lines += rec.split("\t")
    return lines


@pytest.fixture(scope="module")
def prepared(tiny_model_dir, tmp_path_factory) -> Path:
    """``translit-ppa prepare`` output (work/ + data-bin) of two demo languages for the full tiny model."""
    from translit_plugin.prepare.pipeline import run_prepare

    base = tmp_path_factory.mktemp("trim_prep")
    inp = base / "input"
    inp.mkdir()
    for lang in LANGS:
        lines = (DEMO_TRAIN / f"{lang}.txt").read_text(encoding="utf-8").splitlines()[:N_LINES]
        (inp / f"{lang}.txt").write_text("\n".join(lines) + "\n", encoding="utf-8")
    run_prepare(_prepare_config(inp, tiny_model_dir, base / "out"))
    return base / "out"


def _prepare_config(inp: Path, model_dir: Path, out: Path):
    from translit_plugin.prepare.pipeline import PrepareConfig
    from translit_plugin.prepare.sample import SampleConfig

    # max_length 60: <s> A </s> B </s> (TLM) fits the tiny model's 128 positions
    return PrepareConfig(input=inp, model_dir=model_dir, output=out, progress=False, max_length=60,
                         sample=SampleConfig(min_sentences=10**6, valid_size=10, chunk_size=50),
                         verify_samples=20, verify_translit=2)


@pytest.fixture(scope="module")
def trimmed(tiny_model_dir, prepared, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("trim_out") / "trimmed"
    trim_model_dir(tiny_model_dir, [prepared], out, check_lines=8)
    return out


@pytest.fixture(scope="module")
def record(trimmed) -> dict:
    return json.loads((trimmed / "trim.json").read_text(encoding="utf-8"))


# ---------------------------------------------------------------------------------------------------- trimming
def test_rows_kept_bit_identical_and_record(tiny_model_dir, trimmed, record):
    from translit_plugin.core.hashing import sha256_file

    full, small = _state(tiny_model_dir / "model.pt")["model"], _state(trimmed / "model.pt")["model"]
    kept = torch.tensor(record["kept_ids"])
    rows_before, rows_after = full[EMBED_KEY].shape[0], small[EMBED_KEY].shape[0]
    print(f"rows before/after on {'+'.join(LANGS)} ({N_LINES} lines each, both sides): {rows_before} -> {rows_after}")
    assert rows_before == record["full"]["rows"] == 3002
    assert rows_after == record["trimmed"]["rows"] == len(kept) < rows_before // 3
    assert kept[:4].tolist() == [0, 1, 2, 3] and kept[-1].item() == rows_before - 1  # specials first, <mask> last
    assert bool((kept[1:] > kept[:-1]).all())  # original order
    assert torch.equal(small[EMBED_KEY], full[EMBED_KEY][kept])
    assert torch.equal(small[HEAD_B_KEY], full[HEAD_B_KEY][kept])
    assert small[HEAD_W_KEY].data_ptr() == small[EMBED_KEY].data_ptr()  # still tied (one tensor in the file)
    for k, v in full.items():
        if k not in (EMBED_KEY, HEAD_W_KEY, HEAD_B_KEY):
            assert torch.equal(small[k], v), k
    for name, d in (("full", tiny_model_dir), ("trimmed", trimmed)):
        assert record[name]["model_sha256"] == sha256_file(d / "model.pt")
        assert record[name]["sentencepiece_sha256"] == sha256_file(d / "sentencepiece.bpe.model")
        assert record[name]["dict_sha256"] == sha256_file(d / "dict.txt")
    assert record["segmentation_verified_lines"] == record["corpus_lines"] == 2 * 2 * N_LINES
    assert record["hidden_states_max_abs_diff"] == 0.0


def test_demo_corpus_rows_before_after(tiny_model_dir, tmp_path):
    """The whole demo corpus (raw text): the tiny model's spm was trained on it, so nearly every piece stays."""
    rec = trim_model_dir(tiny_model_dir, [DEMO_TRAIN], tmp_path / "t", check_lines=0)
    print(f"demo corpus: {rec['corpus_lines']} lines, rows {rec['full']['rows']} -> {rec['trimmed']['rows']}")
    assert rec["segmentation_verified_lines"] == rec["corpus_lines"] == 44000
    assert rec["trimmed"]["rows"] <= rec["full"]["rows"]


def test_segmentation_unchanged_on_every_line(tiny_model_dir, trimmed, prepared, record):
    from translit_plugin.hub import from_pretrained

    full, small = from_pretrained(str(tiny_model_dir)), from_pretrained(str(trimmed))
    kept = np.asarray(record["kept_ids"])
    lines = _corpus_lines(prepared)
    assert len(lines) == 2 * 2 * N_LINES
    for line in lines:
        assert kept[small.encode(line).numpy()].tolist() == full.encode(line).tolist(), line


def test_hidden_states_and_logits_equal_full_model(tiny_model_dir, trimmed, prepared, record):
    from translit_plugin.hub import from_pretrained

    full, small = from_pretrained(str(tiny_model_dir)).eval(), from_pretrained(str(trimmed)).eval()
    lines = _corpus_lines(prepared)[::5]
    kept = torch.tensor(record["kept_ids"])
    with torch.no_grad():
        tf, ts = full.batch_encode(lines), small.batch_encode(lines)
        assert torch.equal(kept[ts], tf)
        hf_ = full.extract_features(tf, return_all_hiddens=True)
        hs = small.extract_features(ts, return_all_hiddens=True)
        diff = max((a - b).abs().max().item() for a, b in zip(hf_, hs))
        assert diff <= 1e-6, diff
        # the MLM head scores the kept pieces only: the same logits as the full model's on those rows
        lf, _ = full.model(tf)
        ls, _ = small.model(ts)
        assert (lf[..., kept] - ls).abs().max().item() <= 1e-5
    print(f"hidden states, {len(lines)} corpus sentences, all layers: max abs diff {diff}")


def test_text_outside_the_corpus_uses_the_remaining_pieces(trimmed):
    from translit_plugin.hub import from_pretrained

    small = from_pretrained(str(trimmed))
    ids = small.encode("Καλημέρα κόσμε, 안녕하세요 세계 — שלום עולם")  # Hebrew is not in the corpus
    assert ids[0] == 0 and ids[-1] == 2 and len(ids) > 4
    assert (ids < len(small.dictionary)).all()


@pytest.fixture(scope="module")
def prepared_trimmed(prepared, trimmed, tmp_path_factory) -> Path:
    """``prepare --model-dir TRIMMED`` rerun on (a copy of) the full model's prepare output: re-binarizes only."""
    from translit_plugin.prepare.pipeline import run_prepare

    out = tmp_path_factory.mktemp("trim_prep2") / "out"
    shutil.copytree(prepared, out)
    run_prepare(_prepare_config(prepared.parent / "input", trimmed, out))
    return out


def test_prepare_task_and_training_step_work_on_the_trimmed_model(prepared, trimmed, prepared_trimmed, record):
    """The re-binarized data-bin holds the full data-bin's ids, renumbered; the task and criterion take it."""
    from fairseq.data.indexed_dataset import MMapIndexedDataset
    from omegaconf import OmegaConf

    from translit_plugin.criterions.mlm_seq_tlm import MlmSeqTlmCriterion
    from translit_plugin.hub import from_pretrained
    from translit_plugin.tasks.translit_align import TranslitAlignConfig, TranslitAlignTask

    out = prepared_trimmed
    kept = np.asarray(record["kept_ids"])
    for side in ("orig", "latn"):
        for split in ("train", "valid"):
            a = MMapIndexedDataset(str(prepared / "data-bin" / side / split))
            b = MMapIndexedDataset(str(out / "data-bin" / side / split))
            assert len(a) == len(b) > 0
            for i in range(len(a)):
                assert kept[b[i].numpy()].tolist() == a[i].tolist()

    cfg = OmegaConf.structured(TranslitAlignConfig(data=str(out / "data-bin"), seed=1, tokens_per_sample=128,
                                                   finetune_from_model=str(trimmed / "model.pt")))
    task = TranslitAlignTask.setup_task(cfg)
    task.check_start_checkpoint()
    task.load_dataset("train")
    hub = from_pretrained(str(trimmed))
    model = hub.model.train()
    ds = task.datasets["train"]
    batch = ds.collater([ds[i] for i in range(8)])
    loss, _, log = MlmSeqTlmCriterion(task, seq_layer=2)(model, batch)
    loss.backward()
    assert torch.isfinite(loss) and model.encoder.sentence_encoder.embed_tokens.weight.grad.shape[0] == len(kept)


def test_trim_from_data_bin_only(tiny_model_dir, prepared, record, tmp_path):
    """A prepare output without work/: the ids are read from the .bin files (and their decoded text verified)."""
    rec = trim_model_dir(tiny_model_dir, [prepared / "data-bin"], tmp_path / "t", check_lines=0)
    kept = set(rec["kept_ids"])
    from fairseq.data.indexed_dataset import MMapIndexedDataset

    for side in ("orig", "latn"):
        ds = MMapIndexedDataset(str(prepared / "data-bin" / side / "train"))
        assert all(set(ds[i].tolist()) <= kept for i in range(len(ds)))


# ------------------------------------------------------------------------------------------------------- untrim
@pytest.fixture(scope="module")
def trained_run(trimmed, tmp_path_factory) -> Path:
    """A stand-in for a training run on the trimmed model: every tensor changed, cfg naming the start model."""
    from omegaconf import open_dict

    state = _state(trimmed / "model.pt")
    gen = torch.Generator().manual_seed(3)
    model = state["model"]
    for k, v in list(model.items()):
        if k != HEAD_W_KEY and v.is_floating_point():
            model[k] = v + 0.01 * torch.randn(v.shape, generator=gen, dtype=v.dtype)
    model[HEAD_W_KEY] = model[EMBED_KEY]  # tied, as training keeps it
    with open_dict(state["cfg"]):
        state["cfg"].checkpoint.finetune_from_model = str(trimmed / "model.pt")
    state["optimizer_history"][-1]["num_updates"] = 123
    run = tmp_path_factory.mktemp("trim_run") / "checkpoints"
    run.mkdir()
    torch.save(state, run / "checkpoint_best.pt")
    return run


def test_untrim_round_trip(tiny_model_dir, trimmed, trained_run, record, prepared, tmp_path):
    from translit_plugin.conversion.fairseq_to_hf import export_fairseq_to_hf
    from translit_plugin.hub import from_pretrained

    out = untrim(trained_run / "checkpoint_best.pt", tiny_model_dir, tmp_path / "full")
    start = _state(tiny_model_dir / "model.pt")["model"]
    trained = _state(trained_run / "checkpoint_best.pt")["model"]
    back = _state(out / "model.pt")
    kept = torch.tensor(record["kept_ids"])
    others = torch.ones(start[EMBED_KEY].shape[0], dtype=torch.bool)
    others[kept] = False
    for key in (EMBED_KEY, HEAD_B_KEY):
        assert back["model"][key].shape == start[key].shape
        assert torch.equal(back["model"][key][others], start[key][others]), key  # untouched rows: bit-identical
        assert torch.equal(back["model"][key][kept], trained[key]), key  # trained rows: the trained ones
    assert back["model"][HEAD_W_KEY].data_ptr() == back["model"][EMBED_KEY].data_ptr()
    for k, v in trained.items():
        if k not in (EMBED_KEY, HEAD_W_KEY, HEAD_B_KEY):
            assert torch.equal(back["model"][k], v), k
    assert back["optimizer_history"][-1]["num_updates"] == 123 and back["last_optimizer_state"] is None
    for f in ("dict.txt", "sentencepiece.bpe.model"):
        assert (out / f).read_bytes() == (tiny_model_dir / f).read_bytes()
    info = json.loads((out / "untrim.json").read_text())
    assert info["rows"] == record["full"]["rows"] and info["rows_from_trained"] == len(kept)

    # the full-vocabulary model computes on the corpus what the trained trimmed model computes
    a = from_pretrained(str(out)).eval()
    b = from_pretrained(str(trained_run), "checkpoint_best.pt", sentencepiece_model=trimmed / "sentencepiece.bpe.model",
                        dictionary=trimmed / "dict.txt").eval()
    lines = _corpus_lines(prepared)[::7]
    with torch.no_grad():
        ha = a.extract_features(a.batch_encode(lines), return_all_hiddens=True)
        hb = b.extract_features(b.batch_encode(lines), return_all_hiddens=True)
    assert max((x - y).abs().max().item() for x, y in zip(ha, hb)) <= 1e-6

    # and export-hf takes it (HF parity checked inside), with the original tokenizer
    hf = export_fairseq_to_hf(out / "model.pt", tmp_path / "hf")
    assert json.loads((hf / "config.json").read_text())["vocab_size"] == record["full"]["rows"]


def test_fairseq_train_on_the_trimmed_model_then_untrim_and_export(tiny_model_dir, trimmed, prepared_trimmed,
                                                                    record, tmp_path):
    """The user's path: fairseq-train from the trimmed model on its data-bin, untrim checkpoint_best.pt (trim.json
    found through the run's --finetune-from-model), export-hf with the original tokenizer."""
    import os
    import subprocess
    import sys

    from translit_plugin.conversion.fairseq_to_hf import export_fairseq_to_hf

    save = tmp_path / "checkpoints"
    cmd = [str(Path(sys.executable).parent / "fairseq-train"), str(prepared_trimmed / "data-bin"),
           "--user-dir", str(REPO / "translit_plugin"), "--task", "translit_align", "--criterion", "mlm_seq_tlm",
           "--arch", "translit_roberta_tiny", "--finetune-from-model", str(trimmed / "model.pt"),
           "--tokens-per-sample", "128", "--seq-layer", "1", "--optimizer", "adam", "--lr", "1e-3",
           "--batch-size", "8", "--max-update", "3", "--save-dir", str(save), "--no-epoch-checkpoints",
           "--save-interval-updates", "3", "--cpu", "--num-workers", "0", "--seed", "3"]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-3000:]
    out = untrim(save / "checkpoint_best.pt", tiny_model_dir, tmp_path / "full")
    start = _state(tiny_model_dir / "model.pt")["model"]
    trained = _state(save / "checkpoint_best.pt")["model"]
    back = _state(out / "model.pt")["model"]
    kept = torch.tensor(record["kept_ids"])
    others = torch.ones(start[EMBED_KEY].shape[0], dtype=torch.bool)
    others[kept] = False
    assert torch.equal(back[EMBED_KEY][others], start[EMBED_KEY][others])
    assert torch.equal(back[EMBED_KEY][kept], trained[EMBED_KEY])
    assert not torch.equal(trained[EMBED_KEY], start[EMBED_KEY][kept])  # training changed them
    hf = export_fairseq_to_hf(out / "model.pt", tmp_path / "hf")
    assert (hf / "sentencepiece.bpe.model").read_bytes() == (tiny_model_dir / "sentencepiece.bpe.model").read_bytes()


def test_untrim_of_a_trimmed_model_dir_gives_back_the_start_model(tiny_model_dir, trimmed, tmp_path):
    out = untrim(trimmed, tiny_model_dir, tmp_path / "back")
    start, back = _state(tiny_model_dir / "model.pt")["model"], _state(out / "model.pt")["model"]
    assert start.keys() == back.keys()
    assert all(torch.equal(start[k], back[k]) for k in start)


# --------------------------------------------------------------------------------------------------- bad inputs
def test_untrim_against_the_wrong_start_model(tiny_model_dir, trimmed, trained_run, tmp_path):
    other = tmp_path / "other"
    shutil.copytree(tiny_model_dir, other)
    state = _state(other / "model.pt")
    state["model"][EMBED_KEY][5, 0] += 1.0  # one value differs: another model
    torch.save(state, other / "model.pt")
    with pytest.raises(TrimError, match="is not the model .*trim.json was trimmed from.*model_(content_)?sha256"):
        untrim(trained_run / "checkpoint_best.pt", other, tmp_path / "x")
    with pytest.raises(TrimError, match="is not the model"):
        untrim(trained_run / "checkpoint_best.pt", trimmed, tmp_path / "x")
    # a checkpoint that does not have the trimmed rows
    with pytest.raises(TrimError, match="3002 embedding rows but .* kept"):
        untrim(tiny_model_dir / "model.pt", tiny_model_dir, tmp_path / "x", trim_record=trimmed / "trim.json")
    # no trim.json anywhere
    lone = tmp_path / "lone"
    lone.mkdir()
    shutil.copyfile(tiny_model_dir / "model.pt", lone / "model.pt")
    with pytest.raises(TrimError, match="trim.json not found.*--trim-record"):
        untrim(lone / "model.pt", tiny_model_dir, tmp_path / "x")
    assert not (tmp_path / "x").exists()


def test_trimmed_model_with_data_of_another_vocabulary(tiny_model_dir, trimmed, prepared):
    """The task and the hub refuse the trimmed model with data / a dictionary made for the full vocabulary."""
    from omegaconf import OmegaConf

    from translit_plugin.hub import from_pretrained
    from translit_plugin.tasks.translit_align import TranslitAlignConfig, TranslitAlignTask

    cfg = OmegaConf.structured(TranslitAlignConfig(data=str(prepared / "data-bin"), seed=1,
                                                   finetune_from_model=str(trimmed / "model.pt")))
    with pytest.raises(ValueError, match="dictionary mismatch.*binarize the data with the model's dictionary"):
        TranslitAlignTask.setup_task(cfg).check_start_checkpoint()
    with pytest.raises(ValueError, match="does not belong to this checkpoint"):
        from_pretrained(str(trimmed), dictionary=tiny_model_dir / "dict.txt")
    # trimming the trimmed model with the full model's data-bin (ids of another vocabulary)
    with pytest.raises(TrimError, match="data-bin was prepared for another model"):
        trim_model_dir(trimmed, [prepared / "data-bin"], trimmed.parent / "x")


def test_trim_bad_inputs(tiny_model_dir, trimmed, tmp_path):
    with pytest.raises(TrimError, match="no such file or directory"):
        trim_model_dir(tiny_model_dir, [tmp_path / "nope"], tmp_path / "o")
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(TrimError, match="no \\*.txt files"):
        trim_model_dir(tiny_model_dir, [empty], tmp_path / "o")
    with pytest.raises(TrimError, match="missing model.pt"):
        trim_model_dir(empty, [DEMO_TRAIN / "ell_Grek.txt"], tmp_path / "o")
    with pytest.raises(UnsafeOutputError, match="inside the input"):
        trim_model_dir(tiny_model_dir, [DEMO_TRAIN / "ell_Grek.txt"], tiny_model_dir / "trimmed")
    with pytest.raises(FileExistsError, match="--force"):
        trim_model_dir(tiny_model_dir, [DEMO_TRAIN / "ell_Grek.txt"], trimmed)
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("mine")
    with pytest.raises(UnsafeOutputError, match="was not written by translit-ppa trim-vocab"):
        trim_model_dir(tiny_model_dir, [DEMO_TRAIN / "ell_Grek.txt"], foreign, force=True)
    assert (foreign / "notes.txt").read_text() == "mine"


def test_segmentation_check_names_the_line(tiny_model_dir, tmp_path, monkeypatch):
    """If a line ever segmented differently (an exact score tie), trimming fails naming it and writes nothing."""
    import translit_plugin.trimming.trim as trim

    real = trim.kept_spm_ids

    def drop_one(proto, used):  # simulate a lost piece: drop one piece the corpus uses
        keep = real(proto, used)
        return np.delete(keep, len(keep) // 2)

    monkeypatch.setattr(trim, "kept_spm_ids", drop_one)
    with pytest.raises(TrimCheckError, match=r"ell_Grek.txt:\d+: the trimmed model segments this line differently"):
        trim_model_dir(tiny_model_dir, [DEMO_TRAIN / "ell_Grek.txt"], tmp_path / "o")
    assert not (tmp_path / "o").exists()


def test_cli(tiny_model_dir, trimmed, tmp_path, capsys):
    from translit_plugin.cli import main

    assert main(["trim-vocab", str(tiny_model_dir), str(DEMO_TRAIN / "ell_Grek.txt"), "-o", str(tmp_path / "t"),
                 "--check-lines", "0"]) == 0
    assert "3002 -> " in capsys.readouterr().out
    assert main(["untrim", str(tmp_path / "t"), str(trimmed), str(tmp_path / "u")]) == 2
    assert "is not the model" in capsys.readouterr().err


def test_hub_refuses_a_sentencepiece_model_of_another_vocabulary(tiny_model_dir, tmp_path):
    """A trimmed dict.txt with the full model's sentencepiece file would map the missing pieces to <unk>: refused."""
    import shutil

    from translit_plugin.hub import from_pretrained
    from translit_plugin.trimming.trim import trim_model_dir

    corpus = tmp_path / "corpus"
    corpus.mkdir()
    (corpus / "ell_Grek.txt").write_text("Καλημέρα κόσμε\nkalimera kosme\n", encoding="utf-8")
    trimmed = tmp_path / "trimmed"
    trim_model_dir(tiny_model_dir, [corpus], trimmed)
    mixed = tmp_path / "mixed"
    shutil.copytree(trimmed, mixed)
    shutil.copy(tiny_model_dir / "sentencepiece.bpe.model", mixed / "sentencepiece.bpe.model")
    with pytest.raises(ValueError, match="belong to different vocabularies"):
        from_pretrained(mixed)


def test_force_replaces_an_earlier_trim_or_untrim_output(tiny_model_dir, trimmed, tmp_path):
    """Our own earlier output (trim.json / untrim.json marker, nothing else in it) is replaced with --force."""
    again = tmp_path / "again"
    trim_model_dir(tiny_model_dir, [DEMO_TRAIN / "ell_Grek.txt"], again, check_lines=4)
    first = (again / "trim.json").read_text(encoding="utf-8")
    trim_model_dir(tiny_model_dir, [DEMO_TRAIN / "ell_Grek.txt", DEMO_TRAIN / "kor_Hang.txt"], again, force=True,
                   check_lines=4)
    assert (again / "trim.json").read_text(encoding="utf-8") != first  # rewritten for the larger corpus
    back = untrim(trimmed, tiny_model_dir, tmp_path / "back")
    untrim(trimmed, tiny_model_dir, back, force=True)
    assert (back / "untrim.json").is_file() and (back / "model.pt").is_file()
