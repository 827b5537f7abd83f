"""The ``translit_align`` task and its pair dataset: pairing, masking determinism, TLM layout, batching, bad input."""

import shutil

import numpy as np
import pytest
import torch
from omegaconf import OmegaConf
from translit_helpers import cached_data_bin, write_split

import translit_plugin.plugin  # noqa: F401  (registers the components)
from translit_plugin.core.names import EMBED_KEY
from translit_plugin.data.resampling import LanguageResamplingDataset
from translit_plugin.tasks.translit_align import TranslitAlignConfig, TranslitAlignTask


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    return cached_data_bin(tmp_path_factory.getbasetemp())


def make_task(data, **overrides):
    cfg = OmegaConf.structured(TranslitAlignConfig(data=str(data), seed=1, **overrides))
    return TranslitAlignTask.setup_task(cfg)


def load(data, split="train", **overrides):
    task = make_task(data, **overrides)
    task.load_dataset(split)
    return task, task.datasets[split]


def unmask(stream, target, pad):
    """Original ids of a masked stream: the target where selected, the input elsewhere."""
    return torch.where(target.ne(pad), target, stream)


def raw(task, side, split, index):
    from fairseq.data import data_utils

    ds = data_utils.load_indexed_dataset(f"{task.cfg.data}/{side}/{split}", task.dictionary)
    return torch.cat([torch.tensor([task.dictionary.bos()]), ds[index].long()])


# ---------------------------------------------------------------------------------------------------------- streams
def test_items_pair_the_two_sides_and_mask_only_content(data):
    task, ds = load(data, tokens_per_sample=512)
    d = task.dictionary
    assert task.mask_idx == len(d) - 1, "<mask> is the last id (HF layout)"
    for index in (0, 41, 159):
        item = ds[index]
        for side in ("orig", "latn"):
            restored = unmask(item[side], item[f"{side}_target"], d.pad())
            assert torch.equal(restored, raw(task, side, "train", index)), f"{side} {index} is not its own line"
            selected = item[f"{side}_target"].ne(d.pad())
            assert not selected[0] and not selected[-1], "<s> / </s> selected"
        first, second = ("latn", "orig") if item["tlm_latn_first"] else ("orig", "latn")
        a, b = raw(task, first, "train", index), raw(task, second, "train", index)
        want_tlm = torch.cat([a, b[1:]])  # <s> A </s> B </s>
        assert torch.equal(unmask(item["tlm"], item["tlm_target"], d.pad()), want_tlm)
        assert "tlm_positions" not in item, "positions continue by default (no explicit positions)"
    assert ds[0]["lang"] == 0 and ds[159]["lang"] == 3


def test_masks_are_deterministic_in_seed_epoch_index(data):
    _, ds = load(data)
    a = ds[5]
    b = ds[5]
    assert all(torch.equal(a[k], b[k]) for k in ("orig", "latn", "tlm"))
    ds.set_epoch(2)
    c = ds[5]
    assert not all(torch.equal(a[k], c[k]) for k in ("orig", "latn", "tlm")), "masks must change with the epoch"
    _, ds2 = load(data)
    ds2.set_epoch(2)
    assert all(torch.equal(c[k], ds2[5][k]) for k in ("orig", "latn", "tlm")), "a fresh dataset reproduces them"


def test_streams_are_masked_independently_and_order_is_random(data):
    _, ds = load(data)
    rates, orders = [], []
    for i in range(len(ds)):
        item = ds[i]
        rates.append([float(item[f"{s}_target"].ne(1).sum()) / max(len(item[s]) - 2, 1) for s in ("orig", "latn")])
        orders.append(bool(item["tlm_latn_first"]))
    assert 0.10 < np.mean(rates) < 0.20
    assert 0.3 < np.mean(orders) < 0.7, "the TLM order is a fair coin per pair"
    _, fixed = load(data, tlm_order="orig_first")
    assert not any(bool(fixed[i]["tlm_latn_first"]) for i in range(20))


def test_truncation_keeps_eos_and_reset_positions(data):
    task, ds = load(data, tokens_per_sample=16, tlm_reset_positions=True)
    d = task.dictionary
    lengths = ds.stream_lengths()
    assert max(lengths["orig"].max(), lengths["latn"].max(), lengths["tlm"].max()) <= 16
    long_index = int(np.argmax(lengths["orig"]))
    item = ds[long_index]
    assert len(item["orig"]) == 16 and int(item["orig"][-1]) == d.eos(), "truncated sides keep their </s>"
    assert len(item["tlm"]) == 16
    pos = item["tlm_positions"]
    pad = d.pad()
    a_len = int(lengths["latn" if item["tlm_latn_first"] else "orig"][long_index])
    assert pos[0] == pad + 1 and (a_len >= 16 or pos[a_len] == pad + 2), "B restarts at padding_idx + 2"
    with pytest.raises(ValueError, match="exceed --tokens-per-sample 16"):
        load(data, tokens_per_sample=16, long_sequences="error")


def test_collater_and_batching_account_for_all_streams(data):
    task, ds = load(data)
    batch = ds.collater([ds[i] for i in (0, 1, 2)])
    assert batch["nsentences"] == 3 and batch["id"].tolist() == [0, 1, 2]
    for s in ("orig", "latn", "tlm"):
        assert batch[s]["src_tokens"].shape == batch[s]["target"].shape
        assert batch[s]["src_tokens"].shape[0] == 3
    assert batch["ntokens"] == sum(int(ds.num_tokens(i)) for i in (0, 1, 2))
    assert ds.num_tokens(0) == len(ds[0]["orig"]) + len(ds[0]["latn"]) + len(ds[0]["tlm"])
    max_tokens = 2 * int(ds.sizes.max())
    itr = task.get_batch_iterator(ds, max_tokens=max_tokens, seed=1).next_epoch_itr(shuffle=True)
    seen = []
    for b in itr:
        seen += b["id"].tolist()
        assert len(b["id"]) * max(ds.num_tokens(i) for i in b["id"].tolist()) <= max_tokens
    assert sorted(seen) == list(range(len(ds))), "every pair exactly once per epoch"
    assert ds.collater([]) == {}


def test_compact_size_arrays_match_the_items(data):
    """Batching sizes live in one narrow array; stream lengths, ``size``, filtering and ordering derive from it."""
    from fairseq.data import data_utils

    task, ds = load(data, tokens_per_sample=24)
    assert ds.sizes.dtype == np.uint16 and ds.sizes.nbytes == 2 * len(ds)
    lengths = ds.stream_lengths()
    for i in (0, 7, 63, len(ds) - 1):
        item = ds[i]
        assert [int(lengths[s][i]) for s in ("orig", "latn", "tlm")] == [len(item[s]) for s in ("orig", "latn", "tlm")]
        assert ds.num_tokens(i) == sum(len(item[s]) for s in ("orig", "latn", "tlm"))
        assert ds.size(i) == max(len(item[s]) for s in ("orig", "latn", "tlm"))
    assert ds.num_tokens_vec(np.array([3, 1])).tolist() == [ds.num_tokens(3), ds.num_tokens(1)]
    every = np.arange(len(ds))
    kept, dropped = ds.filter_indices_by_size(every, 24)
    assert len(kept) == len(ds) and dropped == [], "streams are cut to max_positions, so nothing is too long"
    kept, dropped = ds.filter_indices_by_size(every, 12)
    longest = np.array([ds.size(i) for i in every])
    assert sorted(dropped) == np.flatnonzero(longest > 12).tolist() and (longest[kept] <= 12).all()
    # default order (the reference's): a seeded permutation, different every epoch; batches mix languages
    with data_utils.numpy_seed(5):
        got = ds.ordered_indices()
    with data_utils.numpy_seed(5):
        assert np.array_equal(got, np.random.permutation(len(ds)))
    assert not ds.can_reuse_epoch_itr_across_epochs, "random batches are drawn anew each epoch"
    itr = task.get_batch_iterator(ds, max_sentences=16, seed=1, epoch=1)
    first = [b["id"].tolist() for b in itr.next_epoch_itr(shuffle=True)]
    second = [b["id"].tolist() for b in task.get_batch_iterator(ds, max_sentences=16, seed=1, epoch=2)
              .next_epoch_itr(shuffle=True)]
    assert sorted(sum(first, [])) == sorted(sum(second, [])) == list(range(len(ds)))
    assert {tuple(sorted(b)) for b in first} != {tuple(sorted(b)) for b in second}
    if ds.lang is not None:
        assert np.mean([len(set(ds.lang[b].tolist())) for b in first]) > 2, "random batches span languages"
    # --batch-order length: a seeded shuffle, then a stable sort by total length only (ties keep the shuffled order)
    _, by_length = load(data, tokens_per_sample=24, batch_order="length")
    with data_utils.numpy_seed(5):
        got = by_length.ordered_indices()
    with data_utils.numpy_seed(5):
        perm = np.random.permutation(len(by_length))
    expected = perm[np.argsort(by_length.sizes.astype(np.int64)[perm], kind="mergesort")]
    assert got.dtype == np.int64 and np.array_equal(got, expected)
    assert by_length.can_reuse_epoch_itr_across_epochs
    with data_utils.numpy_seed(6):
        assert not np.array_equal(by_length.ordered_indices(), got), "another seed shuffles the ties differently"


def test_warmup_file_reads_whole_files_through_a_small_buffer(tmp_path):
    from translit_plugin.data.mmap_io import warmup_file

    blob = tmp_path / "blob"
    blob.write_bytes(bytes(range(256)) * 5000)  # 1.28 MB: more than one 1 MiB buffer
    assert warmup_file(blob) == 1_280_000
    assert warmup_file(blob, buffer_bytes=4096) == 1_280_000
    (tmp_path / "empty").write_bytes(b"")
    assert warmup_file(tmp_path / "empty") == 0


def test_language_temperature_sampling(data):
    import collections

    root = data.parent / "skewed"
    if not root.exists():
        shutil.copytree(data, root)
        # make language 3 rare: relabel all but 4 of its pairs as language 0
        lang = np.load(root / "train.lang.npy")
        idx = np.flatnonzero(lang == 3)
        lang[idx[4:]] = 0
        np.save(root / "train.lang.npy", lang)
    _, natural = load(root)
    assert not isinstance(natural, LanguageResamplingDataset)
    task, flat = load(root, lang_sampling_temperature=100.0)
    assert isinstance(flat, LanguageResamplingDataset) and len(flat) == 160
    counts = collections.Counter(int(flat[i]["lang"]) for i in range(len(flat)))
    assert counts[3] > 25, f"T=100 should give the rare language ~1/4 of the draws, got {counts}"
    ids = np.arange(len(flat))
    assert np.array_equal(flat.num_tokens_vec(ids), np.array([flat.num_tokens(i) for i in ids]))
    flat.set_epoch(2)
    assert sum(1 for i in range(len(flat)) if flat[i]["lang"] == 3) > 25
    # through fairseq's batching, as fairseq-train uses it (the base class's `batch_by_size` flag used to hide the
    # method: TypeError: 'bool' object is not callable); max_tokens batching sees the resampled pairs' sizes
    for order in ("random", "length"):
        task, ds = load(root, lang_sampling_temperature=2.0, batch_order=order)
        budget = 2 * int(ds.num_tokens_vec(np.arange(len(ds))).max())
        itr = task.get_batch_iterator(ds, max_tokens=budget, max_sentences=8, max_positions=512, seed=1, epoch=1)
        batches = list(itr.next_epoch_itr(shuffle=False))
        assert sum(len(b["id"]) for b in batches) == len(ds)
        inner = ds.dataset  # a batch's "id" is the wrapped pair's index
        assert all(int(inner.num_tokens_vec(b["id"].numpy()).max()) * len(b["id"]) <= budget for b in batches)


# -------------------------------------------------------------------------------------------------------- bad input
def test_sides_of_different_lengths_are_an_error(data, tmp_path):
    bad = tmp_path / "bad"
    shutil.copytree(data, bad)
    from fairseq.data import data_utils

    task = make_task(bad)
    latn = data_utils.load_indexed_dataset(str(bad / "latn" / "train"), task.dictionary)
    write_split(bad / "latn" / "train", [latn[i].tolist() for i in range(len(latn) - 1)], len(task.dictionary))
    with pytest.raises(ValueError, match=r"orig/train\.bin has 160 sentences but .*latn/train\.bin has 159"):
        task.load_dataset("train")


def test_empty_or_missing_valid_split_is_an_error(data, tmp_path):
    bad = tmp_path / "bad"
    shutil.copytree(data, bad)
    task = make_task(bad)
    for side in ("orig", "latn"):
        write_split(bad / side / "valid", [], len(task.dictionary))
    with pytest.raises(ValueError, match="empty.*--disable-validation"):
        task.load_dataset("valid")
    with pytest.raises(FileNotFoundError, match="test.bin"):
        task.load_dataset("test")


def test_start_checkpoint_with_another_vocabulary_is_an_error(data, tmp_path):
    model_dir = tmp_path / "model"
    model_dir.mkdir()
    task = make_task(data)
    rows = len(task.dictionary)
    torch.save({"model": {EMBED_KEY: torch.zeros(rows, 4)}}, model_dir / "model.pt")
    shutil.copyfile(data / "orig" / "dict.txt", model_dir / "dict.txt")
    make_task(data, finetune_from_model=str(model_dir / "model.pt")).check_start_checkpoint()  # matching: fine

    torch.save({"model": {EMBED_KEY: torch.zeros(rows + 7, 4)}}, model_dir / "model.pt")
    with pytest.raises(ValueError, match=f"{rows + 7} embedding rows.*{rows} ids"):
        make_task(data, restore_file=str(model_dir / "model.pt")).check_start_checkpoint()

    lines = (data / "orig" / "dict.txt").read_text(encoding="utf-8").splitlines()
    lines[10], lines[11] = lines[11], lines[10]
    (model_dir / "dict.txt").write_text("\n".join(lines) + "\n", encoding="utf-8")
    with pytest.raises(ValueError, match="dictionary mismatch.*entry 14"):
        make_task(data, finetune_from_model=str(model_dir / "model.pt")).check_start_checkpoint()


def test_start_checkpoint_without_dict_txt_is_checked_by_record_or_warned(data, tmp_path, caplog):
    import json
    import logging

    from translit_plugin.core.hashing import sha256_file
    from translit_plugin.data.errors import TranslitDataError
    from translit_plugin.data.fingerprint import write_data_bin_fingerprint

    model_dir = tmp_path / "model"
    model_dir.mkdir()
    rows = len(make_task(data).dictionary)
    torch.save({"model": {EMBED_KEY: torch.zeros(rows, 4)}}, model_dir / "model.pt")  # same size, no dict.txt
    with caplog.at_level(logging.WARNING):
        make_task(data, finetune_from_model=str(model_dir / "model.pt")).check_start_checkpoint()
    assert "cannot verify that" in caplog.text and f"only the embedding size ({rows} rows) matches" in caplog.text

    conversion = model_dir / "conversion.json"
    conversion.write_text(json.dumps({"dict_sha256": sha256_file(data / "orig" / "dict.txt")}))
    caplog.clear()
    make_task(data, finetune_from_model=str(model_dir / "model.pt")).check_start_checkpoint()
    assert "cannot verify" not in caplog.text
    conversion.write_text(json.dumps({"dict_sha256": "0" * 64}))
    with pytest.raises(TranslitDataError, match=r"dictionary mismatch: .*conversion\.json records dict\.txt sha256"):
        make_task(data, restore_file=str(model_dir / "model.pt")).check_start_checkpoint()

    # what `translit-ppa convert` records: the sentencepiece model, compared with the data's pairing.json
    fingerprinted = tmp_path / "data"
    shutil.copytree(data, fingerprinted)
    spm = data.parent / "spm" / "sentencepiece.bpe.model"
    write_data_bin_fingerprint(fingerprinted, fingerprinted / "orig" / "dict.txt", spm)
    conversion.write_text(json.dumps({"sentencepiece_sha256": sha256_file(spm)}))
    make_task(fingerprinted, finetune_from_model=str(model_dir / "model.pt")).check_start_checkpoint()
    conversion.write_text(json.dumps({"sentencepiece_sha256": "f" * 64}))
    with pytest.raises(TranslitDataError, match=r"vocabulary mismatch: .*records sentencepiece sha256 ffffffffffff"):
        make_task(fingerprinted, finetune_from_model=str(model_dir / "model.pt")).check_start_checkpoint()
    make_task(fingerprinted).load_dataset("train")  # and prepare's fingerprint of this data-bin verifies


def test_tokens_per_sample_beyond_the_model_positions_is_rejected(data):
    from argparse import Namespace

    from translit_plugin.models.translit_roberta import translit_roberta_tiny

    task = make_task(data, tokens_per_sample=1024)
    args = Namespace(arch="translit_roberta_tiny", max_positions=512)  # a 512-position start model
    translit_roberta_tiny(args)
    with pytest.raises(ValueError, match="exceeds the model's 512 positions"):
        task.build_model(args)


def test_start_checkpoint_of_another_network_is_refused_with_the_flags_to_pass(tiny_model_dir):
    """A LayerNorm epsilon that differs would load silently (same shapes): refused, like differing sizes."""
    import copy

    import torch

    from translit_plugin.data.errors import TranslitDataError
    from translit_plugin.models.checkpoints import check_architecture

    path = str(tiny_model_dir / "model.pt")
    start = torch.load(path, map_location="cpu", weights_only=False)["cfg"].model
    check_architecture(path, start)  # the same network: fine
    run = copy.deepcopy(start)
    run.layer_norm_eps = 1e-12
    run.encoder_ffn_embed_dim = 256
    with pytest.raises(TranslitDataError, match=r"add --encoder-ffn-embed-dim 128 --layer-norm-eps 1e-05"):
        check_architecture(path, run)
    from translit_plugin.models.arch_flags import arch_flags

    flags = " ".join(arch_flags(path))
    assert "--encoder-embed-dim 64 " in flags and "--layer-norm-eps 1e-05" in flags and "--encoder-layers 2" in flags
