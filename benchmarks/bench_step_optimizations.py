"""Profile-guided training-step changes, each measured before and after in the same run (CPU).

``bench_cpu_efficiency.py`` shows where a step's time goes: GEMMs ~70% (at ~64% of the machine's matmul peak while
they run), then dropout, elementwise ops and copies.  GEMM time is proportional to the rows fed to it, so the changes
measured here remove rows:

1. **Batch ordering** (a candidate, not shipped): sort by total length *and then* by the original side's length,
   instead of by total length alone (``TranslitPairDataset.ordered_indices``).  Each stream is padded to its longest
   member; pairs with equal totals split them differently between the sides, so the secondary key removes most of the
   remaining padding.  Measured: padding of the whole train split under both orderings (exact, no timing), and an
   epoch of ``fairseq``'s Trainer over ``--pairs`` pairs with each ordering (same model, same pairs, blocks
   interleaved), and the language mix of the batches.  Not shipped: it only matters under ``--batch-order length``,
   whose equal-length batches already change what SEQ learns (see RESULTS.md); the default is random batches.
2. **Masked-only LM head** (``masked_tokens=`` in ``mlm_seq_tlm``): the LM head (dense + GELU + LayerNorm + the
   vocabulary projection) runs only on the ~15% selected positions.  "Before" runs it on every position and selects
   afterwards (the reference code's ``labels=`` way; same loss).  Measured: step time on the same batches.

    python benchmarks/bench_step_optimizations.py --pairs 4000 --layers 4 --hidden 256 --threads 1
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
sys.path.insert(0, str(HERE))

from bench_train_throughput import (  # noqa: E402
    FairseqSide,
    common_arguments,
    run_interleaved,
    start_cpu_benchmark,
    subset_data_bin,
)

logger = logging.getLogger("bench_step_optimizations")
STREAMS = ("orig", "latn", "tlm")


def two_key_ordering(self) -> np.ndarray:
    """The candidate ``ordered_indices``: shuffle, then a stable sort by total length, then the original side's."""
    order = np.random.permutation(len(self)) if self.shuffle else np.arange(len(self))
    lengths = self.stream_lengths(order)
    return order[np.lexsort((lengths["orig"], self.sizes[order]))]


def split_padding(dataset, ordering, batch_size: int, seed: int = 1) -> float:
    """Padding share of the three streams when ``dataset`` is cut into ``batch_size`` batches in that order."""
    from fairseq.data import data_utils

    with data_utils.numpy_seed(seed):
        order = ordering(dataset)
    lengths = dataset.stream_lengths(order)
    n = len(order) // batch_size * batch_size
    real = padded = 0
    for s in STREAMS:
        rows = lengths[s][:n].reshape(-1, batch_size).astype(np.int64)
        real += int(rows.sum())
        padded += int(rows.max(axis=1).sum()) * batch_size
    return 1 - real / padded


def language_mix(dataset, ordering, batch_size: int, seed: int = 1) -> tuple[float, float] | None:
    """(mean distinct languages per batch, share of single-language batches) under ``ordering``; None without
    per-pair language ids.  SEQ's negatives are the other pairs of the batch, so this is what the ordering does to
    the contrastive task."""
    from fairseq.data import data_utils

    if dataset.lang is None:
        return None
    with data_utils.numpy_seed(seed):
        order = ordering(dataset)
    n = len(order) // batch_size * batch_size
    langs = np.asarray(dataset.lang)[order[:n]].reshape(-1, batch_size)
    distinct = np.array([len(np.unique(row)) for row in langs])
    return float(distinct.mean()), float((distinct == 1).mean())


def full_position_head(model) -> None:
    """Make ``model``'s LM head run on every position and select the masked rows afterwards (same output)."""
    head = model.encoder.lm_head
    inner = head.forward

    def forward(features, masked_tokens=None, **kwargs):
        logits = inner(features, **kwargs)
        return logits if masked_tokens is None else logits[masked_tokens, :]

    head.forward = forward


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    common_arguments(parser, 4000, "pairs for the timed epochs")
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--block", type=int, default=10, help="steps per side before switching")
    parser.add_argument("--head-steps", type=int, default=30, help="steps timed per LM-head variant")
    args = parser.parse_args(argv)
    if not start_cpu_benchmark(args, logger):
        return 2
    load0 = os.getloadavg()

    from fairseq import metrics
    from omegaconf import OmegaConf

    import translit_plugin.plugin  # noqa: F401  (registers the components)
    from translit_plugin.data.pair_dataset import TranslitPairDataset
    from translit_plugin.tasks.translit_align import TranslitAlignConfig, TranslitAlignTask

    results: dict = {"args": {k: str(v) for k, v in vars(args).items()}}
    # ---- 1a. padding of the whole split under both orderings
    args.batch_order = "length"  # the ordering comparison is about length-sorted batches
    task = TranslitAlignTask.setup_task(OmegaConf.structured(TranslitAlignConfig(data=str(args.data), seed=1,
                                                                                 batch_order="length")))
    task.load_dataset("train")
    full = task.datasets["train"]
    pad_before = split_padding(full, TranslitPairDataset.ordered_indices, args.batch_size)
    pad_after = split_padding(full, two_key_ordering, args.batch_size)
    logger.info("ordering, whole train split (%d pairs, %d per batch): padding %.1f%% by total length -> %.1f%% by "
                "total then original length; padded tokens per epoch x%.3f", len(full), args.batch_size,
                100 * pad_before, 100 * pad_after, (1 - pad_before) / (1 - pad_after))
    results["split_padding"] = {"before": pad_before, "after": pad_after, "pairs": len(full)}
    mix = {k: language_mix(full, f, args.batch_size) for k, f in
           (("before", TranslitPairDataset.ordered_indices), ("after", two_key_ordering))}
    if mix["before"] is not None:
        logger.info("ordering, language mix per batch (SEQ's negatives): by total %.1f languages (%.0f%% single-"
                    "language batches); by total then original %.1f languages (%.0f%% single-language batches)",
                    mix["before"][0], 100 * mix["before"][1], mix["after"][0], 100 * mix["after"][1])
        results["language_mix"] = mix

    with tempfile.TemporaryDirectory() as tmp:
        data = Path(tmp) / "data-bin"
        subset_data_bin(args.data, data, args.pairs, args.seed)
        # ---- 1b. an epoch with each ordering (the ordering is fixed when the epoch iterator is built)
        shipped = TranslitPairDataset.ordered_indices
        before = FairseqSide(data, args)
        TranslitPairDataset.ordered_indices = two_key_ordering
        try:
            candidate = FairseqSide(data, args)
        finally:
            TranslitPairDataset.ordered_indices = shipped
        for side in (before, candidate):  # warm-up
            side.restart()
            for _ in range(3):
                side.step()
        totals = run_interleaved({"before": before, "after": candidate}, args.epochs, args.block)
        b, a = totals["before"], totals["after"]
        after = before  # the LM-head comparison below runs on the shipped ordering
        logger.info("ordering, %d-pair epoch(s): by total %.2f pairs/s (padding %.1f%%), by total then original "
                    "%.2f pairs/s (padding %.1f%%): %.3fx", b["pairs"], b["pairs_per_s"], 100 * b["padding"],
                    a["pairs_per_s"], 100 * a["padding"], a["pairs_per_s"] / b["pairs_per_s"])
        results["ordering_epoch"] = totals

        # ---- 2. masked-only LM head vs every position, same batches, alternating per step
        after.restart()
        batches = []
        for _ in range(args.head_steps):
            try:
                batches.append(next(after.itr))
            except StopIteration:
                break
        masked_model = after.trainer.model
        head = masked_model.encoder.lm_head
        masked_forward = head.forward
        full_position_head(masked_model)
        full_forward = head.forward
        seconds = {"masked": 0.0, "all": 0.0}
        for i, batch in enumerate(batches):
            for variant in (("masked", "all") if i % 2 else ("all", "masked")):
                head.forward = masked_forward if variant == "masked" else full_forward
                t = time.perf_counter()
                with metrics.aggregate("train_inner"):
                    after.trainer.train_step([batch])
                seconds[variant] += time.perf_counter() - t
        head.forward = masked_forward
        vocab = len(after.task.dictionary)
        logger.info("LM head, %d batches, vocabulary %d: every position %.3f s/step, masked only %.3f s/step: %.2fx",
                    len(batches), vocab, seconds["all"] / len(batches), seconds["masked"] / len(batches),
                    seconds["all"] / seconds["masked"])
        results["lm_head"] = {"vocab": vocab, "steps": len(batches), **seconds}
    load1 = os.getloadavg()
    logger.info("load average before %.2f %.2f %.2f, after %.2f %.2f %.2f (%d cores)", *load0, *load1, os.cpu_count())
    results.update(load_before=load0, load_after=load1)
    if args.json:
        args.json.write_text(json.dumps(results, indent=1, default=float))
    return 0


if __name__ == "__main__":
    sys.exit(main())
