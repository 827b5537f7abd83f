#!/usr/bin/env python3
"""``make bench``: run every CPU benchmark once, in one process tree, and print their reports.

Each benchmark prints ratios against a baseline measured in the same run (see ``benchmarks/RESULTS.md``):
``bench_prepare`` (1 vs 2 prepare workers), ``bench_embed`` (length-sorted vs unsorted batching),
``bench_step_optimizations`` (batch ordering and the
masked-only LM head, each before vs after), ``bench_cpu_efficiency`` (achieved FLOP/s of a step vs the measured
matmul peak, with a profile), ``bench_train_throughput`` (fairseq plugin vs the HF-Transformers way of the same
objective; needs ``make demo-tiny``'s output), ``bench_data_loading`` (time to first batch and peak RSS, fairseq
binarized vs HF ``datasets`` CSV, which it skips when ``datasets`` is not installed; needs ``make demo-tiny``'s
output), ``bench_trim_vocab`` (a training step and peak memory, full vs trimmed vocabulary, e5-small dims),
``bench_chunked_passes`` (a step with and without ``--encoder-chunk-tokens``; needs ``make demo``'s output).
``gpu_check.sh`` needs a GPU and is run by hand.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
BENCHMARKS = [
    ["bench_prepare.py"],
    ["bench_embed.py", "--sentences", "2000"],
    ["bench_step_optimizations.py", "--pairs", "4000"],
    ["bench_cpu_efficiency.py", "--steps", "20"],
    ["bench_train_throughput.py", "--pairs", "800"],
    ["bench_data_loading.py"],
    ["bench_trim_vocab.py", "--steps", "3"],
    ["bench_chunked_passes.py", "--terms", "paper"],
]


def main() -> int:
    failed = []
    for cmd in BENCHMARKS:
        print(f"\n=== {' '.join(cmd)}", flush=True)
        r = subprocess.run([sys.executable, str(HERE / cmd[0]), *cmd[1:]])
        if r.returncode:
            failed.append(cmd[0])
    if failed:
        print(f"\nfailed: {', '.join(failed)}", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
