"""``PreadIndexedDataset`` reads fairseq's mmap data-bins exactly like fairseq does, in and across processes, and
fails loudly on damaged files."""

import pickle
import shutil

import numpy as np
import pytest
import torch
from fairseq.data import indexed_dataset
from omegaconf import OmegaConf
from translit_helpers import cached_data_bin, write_split

import translit_plugin.plugin  # noqa: F401  (registers the components)
from translit_plugin.data.pread_dataset import PreadIndexedDataset
from translit_plugin.tasks.translit_align import TranslitAlignConfig, TranslitAlignTask


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    return cached_data_bin(tmp_path_factory.getbasetemp())


def test_items_and_sizes_equal_fairseqs_reader(data):
    for side in ("orig", "latn"):
        prefix = f"{data}/{side}/train"
        ours, theirs = PreadIndexedDataset(prefix), indexed_dataset.MMapIndexedDataset(prefix)
        assert len(ours) == len(theirs) > 0
        assert np.array_equal(ours.sizes, theirs.sizes)
        for i in range(len(theirs)):
            a, b = ours[i], theirs[i]
            assert a.dtype == b.dtype == torch.int64 and torch.equal(a, b), f"{side} line {i + 1}"
        with pytest.raises(IndexError):
            ours[len(ours)]


def test_pickled_copy_reopens_the_files(data):
    ds = PreadIndexedDataset(f"{data}/orig/train")
    copy = pickle.loads(pickle.dumps(ds))
    assert len(copy) == len(ds) and all(torch.equal(copy[i], ds[i]) for i in (0, 3, len(ds) - 1))


def test_damaged_files_are_named_with_the_line(tmp_path):
    prefix = tmp_path / "train"
    write_split(prefix, [[5, 6, 2], [7, 8, 9, 2], [10, 2]], vocab_size=50)
    ds = PreadIndexedDataset(str(prefix))
    assert [t.tolist() for t in (ds[0], ds[1], ds[2])] == [[5, 6, 2], [7, 8, 9, 2], [10, 2]]
    del ds
    binary = tmp_path / "train.bin"
    binary.write_bytes(binary.read_bytes()[:-3])  # the last sentence loses its bytes
    ds = PreadIndexedDataset(str(prefix))
    assert ds[0].tolist() == [5, 6, 2]
    with pytest.raises(ValueError, match=r"train\.bin: line 3 .* truncated"):
        ds[2]
    idx = tmp_path / "train.idx"
    idx.write_bytes(idx.read_bytes()[:-4])
    with pytest.raises(ValueError, match="index is truncated"):
        PreadIndexedDataset(str(prefix))
    idx.write_bytes(b"not an index at all, just text")
    with pytest.raises(ValueError, match="not a fairseq mmap index"):
        PreadIndexedDataset(str(prefix))


def test_task_uses_it_and_forked_workers_give_the_same_batches(data, tmp_path):
    cfg = OmegaConf.structured(TranslitAlignConfig(data=str(data), seed=1))
    task = TranslitAlignTask.setup_task(cfg)
    task.load_dataset("train")
    ds = task.datasets["train"]
    assert isinstance(ds.orig, PreadIndexedDataset) and isinstance(ds.latn, PreadIndexedDataset)

    def batches(workers):
        itr = task.get_batch_iterator(ds, max_sentences=8, seed=3, num_workers=workers, epoch=1,
                                      disable_iterator_cache=True)
        return [b for _, b in zip(range(6), itr.next_epoch_itr(shuffle=True))]

    for a, b in zip(batches(0), batches(2), strict=True):
        for s in ("orig", "latn", "tlm"):
            assert torch.equal(a[s]["src_tokens"], b[s]["src_tokens"]) and torch.equal(a[s]["target"], b[s]["target"])

    # --combine: train, train1, ... are concatenated, as fairseq's loader does
    combined = tmp_path / "combined"
    shutil.copytree(data, combined)
    for side in ("orig", "latn"):
        for ext in ("bin", "idx"):
            shutil.copy(combined / side / f"train.{ext}", combined / side / f"train1.{ext}")
    (combined / "train.lang.npy").unlink(missing_ok=True)
    task2 = TranslitAlignTask.setup_task(OmegaConf.structured(TranslitAlignConfig(data=str(combined), seed=1)))
    task2.load_dataset("train", combine=True)
    assert len(task2.datasets["train"]) == 2 * len(ds)
