"""Data loading: time to first batch and peak RSS for 10k / 100k / 1M pairs, fairseq binarized vs HF ``datasets`` CSV.

Input: the demo's prepared data-bin (``--data``) and its HF tokenizer (``--hf-dir``).  For each size N the same N
pairs (drawn with replacement from the demo's train pairs, so lengths are those of real text) are written twice:

* fairseq: ``orig/train.{bin,idx}`` + ``latn/train.{bin,idx}`` with ``fairseq.data.indexed_dataset.make_builder``
  (mmap), i.e. what ``translit-ppa prepare`` writes;
* HF: ``pairs.csv`` with the raw text (``orig``, ``latn`` columns), decoded from the same pairs.

Then each loader runs in a fresh subprocess (so its peak RSS is its own) and is timed from after its imports (torch,
fairseq / transformers + datasets: reported separately, several seconds on a loaded machine) to its first training
batch:

* ``fairseq``: ``TranslitAlignTask`` -> ``load_dataset('train')`` -> ``get_batch_iterator`` (16 pairs) -> ``next``,
  then ``--more-batches`` further batches, after which the process's RSS is read again (what training adds as it
  reads the corpus);
* ``fairseq-mmap``: the same with fairseq's own ``MMapIndexedDataset`` reader instead of the plugin's
  ``PreadIndexedDataset`` (the baseline of that change, measured in the same run);
* ``hf-cold``: ``datasets.load_dataset('csv')`` -> ``.map`` with the HF tokenizer (batched, one process) ->
  ``DataLoader`` with a per-batch padding + masking collator -> ``next``, with an empty ``datasets`` cache (a first
  launch, which is what the paper's code does on every new corpus);
* ``hf-warm``: the same again, reusing that cache (a relaunch).

Writing the files is not timed (for fairseq it is ``prepare``'s job).  Targets: fairseq first batch < 2 s at every
size; RSS growth < 10% from 100k to 1M pairs.  Without the ``datasets`` package the HF rows are skipped.

    python benchmarks/bench_data_loading.py --sizes 10000 100000 1000000
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import importlib.util
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(HERE))

DEFAULT_DATA = REPO / "demo-tiny-out" / "prep" / "data-bin"
DEFAULT_HF = REPO / "demo-tiny-out" / "start-hf"
BATCH = 16


def _rss_split_mb() -> dict:
    """Current anonymous (private heap) and file-backed (mapped files, libraries: shared page cache) resident MB."""
    with open("/proc/self/status") as f:
        fields = {line.split(":")[0]: int(line.split()[1]) / 1024
                  for line in f if line.startswith(("RssAnon", "RssFile"))}
    return {"rss_anon_mb": fields.get("RssAnon", float("nan")), "rss_file_mb": fields.get("RssFile", float("nan"))}


def _peak_rss_mb() -> float:
    """This process's peak RSS (VmHWM).  Not ``getrusage``: Linux carries ``ru_maxrss`` over ``fork`` + ``exec``, so a
    worker would report at least its parent's RSS."""
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith("VmHWM:")) / 1024  # KiB -> MiB


@contextlib.contextmanager
def bounded_mmap_warmup():
    """Within the block, fairseq's mmap datasets warm the page cache with the plugin's
    :func:`~translit_plugin.data.mmap_io.warmup_file` (one reusable 1 MiB buffer instead of fresh 100 MiB reads)."""
    from fairseq.data import indexed_dataset

    from translit_plugin.data.mmap_io import warmup_file

    original = indexed_dataset._warmup_mmap_file
    indexed_dataset._warmup_mmap_file = warmup_file
    try:
        yield
    finally:
        indexed_dataset._warmup_mmap_file = original


# ------------------------------------------------------------------------------------------------------ workers
def worker_fairseq(root: Path, reader: str, more_batches: int) -> dict:
    t0 = time.perf_counter()
    from omegaconf import OmegaConf

    import translit_plugin.plugin  # noqa: F401
    from translit_plugin.data import splits
    from translit_plugin.tasks.translit_align import TranslitAlignConfig, TranslitAlignTask

    if reader == "mmap":  # the baseline: fairseq's memory-mapped reader (with the plugin's bounded warm-up)
        from fairseq.data import indexed_dataset

        class FairseqMmap:
            exists = staticmethod(indexed_dataset.MMapIndexedDataset.exists)

            def __new__(cls, prefix):
                with bounded_mmap_warmup():
                    return indexed_dataset.MMapIndexedDataset(prefix)

        splits.PreadIndexedDataset = FairseqMmap

    t_import = time.perf_counter() - t0
    rss_import = _peak_rss_mb()
    split_import = _rss_split_mb()
    task = TranslitAlignTask.setup_task(OmegaConf.structured(TranslitAlignConfig(data=str(root / "fairseq"), seed=1)))
    task.load_dataset("train")
    itr = task.get_batch_iterator(task.datasets["train"], max_sentences=BATCH, seed=1, num_workers=0)
    epoch = itr.next_epoch_itr(shuffle=True)
    batch = next(epoch)
    assert batch["nsentences"] == BATCH
    out = {"first_batch_s": time.perf_counter() - t0, "import_s": t_import, "rss_after_import_mb": rss_import,
           "peak_rss_mb": _peak_rss_mb(), **split_import, **{f"{k}_end": v for k, v in _rss_split_mb().items()}}
    t = time.perf_counter()
    n = sum(1 for _, _ in zip(range(more_batches), epoch))
    out.update(more_batches=n, more_batches_s=time.perf_counter() - t, peak_rss_after_more_mb=_peak_rss_mb(),
               **{f"{k}_after_more": v for k, v in _rss_split_mb().items()})
    return out


def worker_hf(root: Path, hf_dir: Path, cache: Path) -> dict:
    t0 = time.perf_counter()
    import datasets
    import torch
    from bench_train_throughput import HFCollator
    from transformers import AutoTokenizer

    t_import = time.perf_counter() - t0
    rss_import = _peak_rss_mb()
    split_import = _rss_split_mb()
    datasets.disable_progress_bars()
    tok = AutoTokenizer.from_pretrained(str(hf_dir))
    ds = datasets.load_dataset("csv", data_files=str(root / "pairs.csv"), split="train", cache_dir=str(cache))

    def tokenize(rows):
        return {"orig": tok(rows["orig"], truncation=True, max_length=512)["input_ids"],
                "latn": tok(rows["latn"], truncation=True, max_length=512)["input_ids"]}

    ds = ds.map(tokenize, batched=True, num_proc=None)
    loader = torch.utils.data.DataLoader(ds, batch_size=BATCH, shuffle=True, num_workers=0,
                                         collate_fn=HFCollator(tok, 512, seed=1))
    batch = next(iter(loader))
    assert len(batch["orig"]["input_ids"]) == BATCH
    return {"first_batch_s": time.perf_counter() - t0, "import_s": t_import, "rss_after_import_mb": rss_import,
            "peak_rss_mb": _peak_rss_mb(), **split_import, **{f"{k}_end": v for k, v in _rss_split_mb().items()}}


# ------------------------------------------------------------------------------------------------------- build
def build(src: Path, root: Path, n: int, seed: int, write_csv: bool) -> None:
    """Write ``n`` pairs resampled from ``src``'s train split as a fairseq data-bin and (optionally) a raw-text CSV."""
    import shutil

    import numpy as np
    from fairseq.data import Dictionary, data_utils, indexed_dataset

    dictionary = Dictionary.load(str(src / "orig" / "dict.txt"))
    sides = {s: data_utils.load_indexed_dataset(str(src / s / "train"), dictionary) for s in ("orig", "latn")}
    idx = np.random.RandomState(seed).randint(0, len(sides["orig"]), size=n)
    uniq = np.unique(idx)
    items = {s: {int(i): ds[int(i)] for i in uniq} for s, ds in sides.items()}
    for side in sides:
        out = root / "fairseq" / side
        out.mkdir(parents=True, exist_ok=True)
        shutil.copy(src / side / "dict.txt", out / "dict.txt")
        builder = indexed_dataset.make_builder(str(out / "train.bin"), impl="mmap", vocab_size=len(dictionary))
        for i in idx:
            builder.add_item(items[side][int(i)])
        builder.finalize(str(out / "train.idx"))
    if write_csv:
        text = {s: {i: dictionary.string(t[:-1], bpe_symbol="sentencepiece") for i, t in items[s].items()}
                for s in items}
        with open(root / "pairs.csv", "w", encoding="utf-8", newline="") as f:
            w = csv.writer(f)
            w.writerow(["orig", "latn"])
            for i in idx:
                w.writerow([text["orig"][int(i)], text["latn"][int(i)]])


def run_worker(kind: str, root: Path, args, cache: Path) -> dict:
    cmd = [sys.executable, __file__, "--worker", kind, "--root", str(root), "--hf-dir", str(args.hf_dir),
           "--cache", str(cache), "--more-batches", str(args.more_batches)]
    env = dict(os.environ, OMP_NUM_THREADS="1", TOKENIZERS_PARALLELISM="false")
    r = subprocess.run(cmd, capture_output=True, text=True, env=env)
    if r.returncode:
        raise RuntimeError(f"{kind} worker failed:\n{r.stderr[-3000:]}")
    return json.loads(r.stdout.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA, help="prepared data-bin (default: the demo's)")
    parser.add_argument("--hf-dir", type=Path, default=DEFAULT_HF, help="HF tokenizer matching --data")
    parser.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000, 1_000_000])
    parser.add_argument("--no-hf", action="store_true", help="skip the HF datasets pipeline")
    parser.add_argument("--tmp", type=Path, default=None, help="where to write the corpora (default: system tmp)")
    parser.add_argument("--json", type=Path, default=None, help="also write the results here")
    parser.add_argument("--more-batches", type=int, default=2000,
                        help="fairseq rows: batches read after the first one before RSS is read again")
    parser.add_argument("--worker", choices=["fairseq", "fairseq-mmap", "hf"], help=argparse.SUPPRESS)
    parser.add_argument("--root", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--cache", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)

    if args.worker in ("fairseq", "fairseq-mmap"):
        print(json.dumps(worker_fairseq(args.root, "mmap" if args.worker == "fairseq-mmap" else "pread",
                                        args.more_batches)))
        return 0
    if args.worker == "hf":
        print(json.dumps(worker_hf(args.root, args.hf_dir, args.cache)))
        return 0

    if not (args.data / "orig" / "train.bin").is_file():
        print(f"need a prepared data-bin at {args.data}: run `make demo` first, or pass --data", file=sys.stderr)
        return 2
    hf = not args.no_hf and importlib.util.find_spec("datasets") is not None
    if not args.no_hf and not hf:
        print("the `datasets` package is not installed: skipping the HF CSV pipeline "
              "(`.venv/bin/pip install datasets` to include it; it is not part of `make install`)")
    load0 = os.getloadavg()
    results = []
    for n in args.sizes:
        with tempfile.TemporaryDirectory(dir=args.tmp) as tmp:
            root = Path(tmp)
            t = time.perf_counter()
            build(args.data, root, n, seed=1, write_csv=hf)
            build_s = time.perf_counter() - t
            kinds = ["fairseq", "fairseq-mmap"] + (["hf", "hf"] if hf else [])
            for kind, label in zip(kinds, ["fairseq", "fairseq-mmap", "hf-cold", "hf-warm"]):
                r = run_worker(kind, root, args, root / "hf-cache")
                r.update(pairs=n, loader=label, write_s=build_s)
                results.append(r)
                r["load_s"] = r["first_batch_s"] - r["import_s"]
                r["data_rss_mb"] = r["peak_rss_mb"] - r["rss_after_import_mb"]
                print(f"{n:>9,} pairs  {label:<12} first batch {r['load_s']:7.2f} s after imports "
                      f"({r['first_batch_s']:.2f} s with them)  peak RSS {r['peak_rss_mb']:6.0f} MB "
                      f"({r['data_rss_mb']:+.0f} MB over the imports; at the first batch anonymous "
                      f"{r['rss_anon_mb_end'] - r['rss_anon_mb']:+.0f} MB, file-backed "
                      f"{r['rss_file_mb_end'] - r['rss_file_mb']:+.0f} MB)", flush=True)
                if "more_batches" in r:
                    print(f"{'':>28}after {r['more_batches']} more batches ({r['more_batches_s']:.1f} s): peak RSS "
                          f"{r['peak_rss_after_more_mb']:6.0f} MB (anonymous "
                          f"{r['rss_anon_mb_after_more'] - r['rss_anon_mb']:+.0f} MB, file-backed "
                          f"{r['rss_file_mb_after_more'] - r['rss_file_mb']:+.0f} MB over the imports)", flush=True)
    load1 = os.getloadavg()
    for label in ("fairseq", "fairseq-mmap", "hf-cold", "hf-warm"):
        rows = {r["pairs"]: r for r in results if r["loader"] == label}
        if 100_000 in rows and 1_000_000 in rows:
            growth = rows[1_000_000]["peak_rss_mb"] / rows[100_000]["peak_rss_mb"] - 1
            print(f"{label}: peak RSS growth 100k -> 1M pairs: {100 * growth:+.1f}% (target < 10%)")
        worst = max((r["load_s"] for r in rows.values()), default=float("nan"))
        print(f"{label}: slowest first batch {worst:.2f} s after imports (target < 2 s)")
    print(f"load average before {load0[0]:.2f} {load0[1]:.2f} {load0[2]:.2f}, after {load1[0]:.2f} {load1[1]:.2f} "
          f"{load1[2]:.2f} ({os.cpu_count()} cores)")
    if args.json:
        args.json.write_text(json.dumps({"results": results, "load_before": load0, "load_after": load1}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
