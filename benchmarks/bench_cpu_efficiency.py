"""CPU efficiency of a ``fairseq-train`` step: achieved FLOP/s vs this machine's measured matmul peak, and a profile.

One run measures, with the same number of torch threads throughout:

1. **Matmul peak**: the best float32 GFLOP/s of square ``torch.mm`` (sizes ``--peak-sizes``) and, for reference, of the
   GEMM shapes the training step itself runs (tokens x hidden @ hidden x FFN, ...).
2. **FLOPs per step**: ``torch.utils.flop_counter.FlopCounterMode`` over real ``trainer.train_step`` calls (forward and
   backward of all four objectives; counts matmuls and attention, i.e. what a GPU vendor's "FLOP/s" counts).
3. **Step time** of the same batches without the counter -> achieved GFLOP/s and the fraction of the peak.
4. **Where the time goes**: ``torch.profiler`` over the timed steps, split into phases (data, forward, backward,
   gradient clipping, optimizer, the rest of fairseq's ``train_step``) and, inside them, op categories (GEMM,
   attention, layer norm, GELU/dropout/elementwise, embedding, LM-head loss, copies/allocation, optimizer math).

The training side is ``bench_train_throughput.FairseqSide``: ``options.parse_args_and_arch`` +
``fairseq.trainer.Trainer`` over the task's epoch iterator, i.e. ``fairseq-train``'s loop minus logging and
checkpoints, on real demo pairs.

    python benchmarks/bench_cpu_efficiency.py --layers 4 --hidden 256 --threads 1 --steps 20
"""

from __future__ import annotations

import argparse
import collections
import json
import logging
import os
import sys
import tempfile
import time
from pathlib import Path

import torch

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
sys.path.insert(0, str(HERE))

from bench_train_throughput import (  # noqa: E402
    FairseqSide,
    common_arguments,
    start_cpu_benchmark,
    subset_data_bin,
)

logger = logging.getLogger("bench_cpu_efficiency")

# op-name fragments -> category, first match wins (self CPU time of aten ops)
CATEGORIES = [
    ("LM-head loss", ("log_softmax", "nll_loss", "cross_entropy")),
    ("attention", ("scaled_dot_product", "flash_attention", "_softmax", "softmax_backward", "baddbmm")),
    ("GEMM", ("aten::mm", "aten::addmm", "aten::bmm", "aten::matmul", "aten::linear", "aten::_addmm")),
    ("layer norm", ("layer_norm",)),
    ("GELU", ("gelu",)),
    ("dropout", ("dropout", "bernoulli", "native_dropout")),
    ("embedding", ("embedding", "index_select", "index_add", "index_put", "scatter", "gather")),
    ("optimizer math", ("_foreach", "addcdiv", "addcmul", "lerp", "sqrt")),
    ("copies / allocation", ("copy_", "empty", "zeros", "zero_", "fill_", "clone", "contiguous", "cat", "to_copy",
                             "_to_copy", "resize", "as_strided", "pad", "stack", "masked_select", "nonzero", "where")),
    ("elementwise / reductions", ("add", "mul", "div", "sub", "sum", "mean", "norm", "clamp", "ne", "eq", "neg",
                                  "pow", "exp", "tanh", "max", "min", "any", "all", "abs", "sign", "reciprocal")),
]
PHASES = ("forward", "backward", "clip", "optimizer")


def measure_matmul(n: int, m: int, k: int, seconds: float = 0.5) -> float:
    """Best GFLOP/s of ``(n x k) @ (k x m)`` float32 over repeats filling ~``seconds``."""
    a, b = torch.randn(n, k), torch.randn(k, m)
    out = torch.empty(n, m)
    torch.mm(a, b, out=out)
    best = float("inf")
    deadline = time.perf_counter() + seconds
    reps = 0
    while reps < 3 or time.perf_counter() < deadline:
        t = time.perf_counter()
        torch.mm(a, b, out=out)
        best = min(best, time.perf_counter() - t)
        reps += 1
    return 2 * n * m * k / best / 1e9


def categorize(name: str) -> str:
    for category, keys in CATEGORIES:
        if any(k in name for k in keys):
            return category
    return "other"


def instrument(side: FairseqSide, timings: dict) -> None:
    """Wrap the phases of ``trainer.train_step`` in profiler ranges and accumulate their wall time."""
    from torch.profiler import record_function

    def wrap(obj, attr: str, phase: str) -> None:
        inner = getattr(obj, attr)

        def timed(*a, **kw):
            t = time.perf_counter()
            with record_function(f"phase::{phase}"):
                r = inner(*a, **kw)
            timings[phase] += time.perf_counter() - t
            return r

        setattr(obj, attr, timed)

    trainer = side.trainer
    wrap(trainer.criterion, "forward", "forward")
    wrap(trainer.optimizer, "backward", "backward")
    wrap(trainer.optimizer, "clip_grad_norm", "clip")
    wrap(trainer.optimizer, "step", "optimizer")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    common_arguments(parser, 800, "pairs drawn from --data's train split")
    parser.add_argument("--steps", type=int, default=20, help="timed (and then profiled) steps")
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--peak-sizes", type=int, nargs="+", default=[256, 512, 1024, 2048])
    parser.add_argument("--top", type=int, default=12, help="ops listed individually")
    args = parser.parse_args(argv)
    if not start_cpu_benchmark(args, logger):
        return 2
    load0 = os.getloadavg()

    # ---- 1. matmul peak
    square = {n: measure_matmul(n, n, n) for n in args.peak_sizes}
    peak = max(square.values())
    logger.info("matmul peak (float32, %d thread(s)): %s -> peak %.1f GFLOP/s", torch.get_num_threads(),
                ", ".join(f"{n}^3 {g:.1f}" for n, g in square.items()), peak)

    from fairseq import metrics
    from torch.utils.flop_counter import FlopCounterMode

    with tempfile.TemporaryDirectory() as tmp:
        data = Path(tmp) / "data-bin"
        subset_data_bin(args.data, data, args.pairs, args.seed)
        side = FairseqSide(data, args)
        side.restart()
        for _ in range(args.warmup):
            side.step()
        batches = []
        data_s = 0.0
        for _ in range(args.steps):  # the batches every pass below reuses (fetch + collate timed here)
            t = time.perf_counter()
            try:
                batches.append(next(side.itr))
            except StopIteration:
                break
            data_s += time.perf_counter() - t
        tokens = sum(b["ntokens"] for b in batches)
        padded = sum(b[s]["src_tokens"].numel() for b in batches for s in ("orig", "latn", "tlm"))
        mean_len = padded / (3 * sum(b["nsentences"] for b in batches))

        # ---- GEMMs of the step's own shapes (rows = padded tokens of one stream's batch)
        h, rows = args.hidden, int(round(padded / (3 * len(batches))))
        vocab = len(side.task.dictionary)
        masked = max(int(0.15 * tokens / (3 * len(batches))), 1)
        shapes = {f"QKV/out {rows}x{h}x{h}": (rows, h, h), f"FFN up {rows}x{h}x{4 * h}": (rows, 4 * h, h),
                  f"FFN down {rows}x{4 * h}x{h}": (rows, h, 4 * h), f"LM head {masked}x{h}x{vocab}": (masked, vocab, h)}
        shape_gflops = {k: measure_matmul(*v) for k, v in shapes.items()}
        logger.info("matmul at the step's shapes: %s", ", ".join(f"{k} {g:.1f}" for k, g in shape_gflops.items()))

        # ---- 2. FLOPs of each batch's training step (counted; the model keeps training, FLOPs do not depend on it)
        flops = []
        by_op = collections.Counter()
        for b in batches:
            counter = FlopCounterMode(display=False)  # a fresh one per step: entering a counter resets it
            with counter, metrics.aggregate("train_inner"):
                side.trainer.train_step([b])
            flops.append(counter.get_total_flops())
            by_op.update({str(k): v for k, v in counter.get_flop_counts().get("Global", {}).items()})

        # ---- 3. time the same batches; 4. profile them (second pass, profiler on)
        timings = collections.Counter()
        step_s = []
        for b in batches:
            t = time.perf_counter()
            with metrics.aggregate("train_inner"):
                side.trainer.train_step([b])
            step_s.append(time.perf_counter() - t)
        instrument(side, timings)
        from torch.profiler import ProfilerActivity, profile

        timings.clear()
        with profile(activities=[ProfilerActivity.CPU]) as prof:
            t_all = time.perf_counter()
            for b in batches:
                with metrics.aggregate("train_inner"):
                    side.trainer.train_step([b])
            prof_total = time.perf_counter() - t_all
    load1 = os.getloadavg()

    total_flops, total_s = sum(flops), sum(step_s)
    achieved = total_flops / total_s / 1e9
    logger.info("model %d layers x %d hidden, vocab %d, %d pairs/update, %d steps, %.0f non-padding tokens/step "
                "(3 streams), mean padded length %.1f", args.layers, args.hidden, vocab, args.batch_size, len(batches),
                tokens / len(batches), mean_len)
    logger.info("FLOPs per step (counted): %.2f GFLOP; by op: %s", total_flops / len(batches) / 1e9,
                ", ".join(f"{k.split('.')[-1]} {100 * v / total_flops:.1f}%"
                          for k, v in sorted(by_op.items(), key=lambda kv: -kv[1])))
    logger.info("step time %.3f s (median %.3f) -> achieved %.2f GFLOP/s = %.1f%% of the measured %.1f GFLOP/s peak",
                total_s / len(step_s), sorted(step_s)[len(step_s) // 2], achieved, 100 * achieved / peak, peak)

    # phases (wall time, profiled pass) and op categories (self CPU time)
    events = prof.key_averages()
    cats = collections.Counter()
    for e in events:
        if e.key.startswith("aten::"):
            cats[categorize(e.key)] += e.self_cpu_time_total
    op_total = sum(cats.values())
    rest = prof_total - sum(timings[p] for p in PHASES)
    logger.info("data (fetch + collate, measured apart): %.1f%% of the step time", 100 * data_s / (data_s + total_s))
    logger.info("profiled pass: %.2f s for %d steps (profiler overhead included); phases: %s, other train_step "
                "work %.1f%%", prof_total, len(batches),
                ", ".join(f"{p} {100 * timings[p] / prof_total:.1f}%" for p in PHASES if p != "data"),
                100 * rest / prof_total)
    logger.info("op categories (self CPU time of aten ops, %.2f s): %s", op_total / 1e6,
                ", ".join(f"{c} {100 * v / op_total:.1f}%" for c, v in cats.most_common()))
    gemm_flops = sum(v for k, v in by_op.items() if k.split(".")[-1] in ("mm", "addmm", "bmm", "baddbmm"))
    if cats["GEMM"]:
        gemm_rate = gemm_flops / (cats["GEMM"] / 1e6) / 1e9
        logger.info("GEMM ops alone: %.1f%% of the counted FLOPs, %.2f GFLOP/s while they run (%.1f%% of peak); "
                    "the step's other ops take %.1f%% of the op time", 100 * gemm_flops / total_flops, gemm_rate,
                    100 * gemm_rate / peak, 100 * (1 - cats["GEMM"] / op_total))
    top = sorted((e for e in events if e.key.startswith("aten::")), key=lambda e: -e.self_cpu_time_total)[: args.top]
    for e in top:
        logger.info("  %-45s %7.1f ms self  %6d calls  [%s]", e.key, e.self_cpu_time_total / 1e3, e.count,
                    categorize(e.key))
    logger.info("load average before %.2f %.2f %.2f, after %.2f %.2f %.2f (%d cores)", *load0, *load1, os.cpu_count())
    if args.json:
        args.json.write_text(json.dumps({
            "args": {k: str(v) for k, v in vars(args).items()}, "matmul_square_gflops": square, "peak_gflops": peak,
            "matmul_shape_gflops": shape_gflops, "flops_per_step": total_flops / len(batches),
            "step_s": step_s, "achieved_gflops": achieved, "fraction_of_peak": achieved / peak,
            "data_s": data_s, "phases_s": dict(timings), "profiled_total_s": prof_total, "categories_us": dict(cats),
            "flops_by_op": dict(by_op), "load_before": load0, "load_after": load1}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
