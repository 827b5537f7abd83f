"""One-shot GPU check: a short fp16 ``translit_align`` / ``mlm_seq_tlm`` training at base size; prints throughput.

Builds synthetic paired data in the layout ``translit-ppa prepare`` writes (random ids from a ``V``-entry dictionary,
sentence lengths drawn from a log-normal fitted to real corpora: median ~40 tokens, Latin side ~1.3x longer), then
runs ``fairseq-train`` in-process on ``translit_roberta_base`` (12 x 768) for ``--updates`` updates and reports pairs/s,
tokens/s and peak GPU memory.  Synthetic ids make the numbers independent of any corpus on the machine; the
computation per token is the same as with real text.

Usage (on a machine with a GPU and fairseq installed):  python benchmarks/gpu_train_check.py --updates 60
"""

from __future__ import annotations

import argparse
import json
import logging
import re
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

logger = logging.getLogger("gpu_train_check")


def make_data(root: Path, vocab: int, pairs: int, seed: int, max_tokens: int = 512) -> Path:
    """Write ``root/data-bin/{orig,latn}/{train,valid}.{bin,idx}``, ``dict.txt`` and language ids."""
    import torch
    from fairseq.data import Dictionary, indexed_dataset

    rng = np.random.default_rng(seed)
    data = root / "data-bin"
    d = Dictionary()
    for i in range(vocab - 5):  # + 4 specials + <mask> = vocab
        d.add_symbol(f"p{i}")
    for side in ("orig", "latn"):
        (data / side).mkdir(parents=True, exist_ok=True)
        d.save(str(data / side / "dict.txt"))
    lens_o = np.clip(rng.lognormal(np.log(40), 0.6, pairs).astype(int), 3, max_tokens - 1)
    lens_l = np.clip((lens_o * rng.uniform(1.1, 1.5, pairs)).astype(int), 3, max_tokens - 1)
    for split, n in (("train", pairs), ("valid", min(256, pairs))):
        for side, lens in (("orig", lens_o), ("latn", lens_l)):
            prefix = str(data / side / split)
            b = indexed_dataset.make_builder(prefix + ".bin", impl="mmap", vocab_size=len(d) + 1)
            for ln in lens[:n]:
                ids = rng.integers(d.nspecial, len(d), ln - 1)
                b.add_item(torch.tensor(np.append(ids, d.eos()), dtype=torch.int32))
            b.finalize(prefix + ".idx")
        np.save(data / f"{split}.lang.npy", (np.arange(n) % 10).astype(np.int16))
    (data / "langs.txt").write_text("\n".join(f"l{i}_Xxxx" for i in range(10)) + "\n")
    return data


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--updates", type=int, default=60)
    p.add_argument("--pairs-per-gpu", type=int, default=16, help="paper: 16 pairs per GPU")
    p.add_argument("--vocab", type=int, default=401145, help="Glot500's vocabulary size (embedding + LM head cost)")
    p.add_argument("--pairs", type=int, default=4000)
    p.add_argument("--precision", choices=("fp16", "bf16", "fp32"), default="fp16")
    p.add_argument("--extra", default="", help="extra fairseq-train arguments")
    p.add_argument("--smoke-cpu", action="store_true", help="tiny arch on CPU: checks this script, measures nothing")
    args = p.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s | %(message)s")

    import torch

    cuda = torch.cuda.is_available() and not args.smoke_cpu
    if not cuda and not args.smoke_cpu:
        print("no CUDA device: this check needs a GPU", file=sys.stderr)
        return 2
    repo = Path(__file__).resolve().parents[1]
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.time()
        data = make_data(Path(tmp), args.vocab, args.pairs, seed=0)
        logger.info("synthetic data ready in %.1fs", time.time() - t0)
        argv = [
            "fairseq-train", str(data), "--user-dir", str(repo / "translit_plugin"),
            "--task", "translit_align", "--criterion", "mlm_seq_tlm", "--arch", "translit_roberta_base",
            "--tokens-per-sample", "512", "--batch-size", str(args.pairs_per_gpu),
            "--optimizer", "adam", "--adam-betas", "(0.9,0.999)", "--adam-eps", "1e-8", "--weight-decay", "0.01",
            "--lr", "2e-5", "--lr-scheduler", "polynomial_decay", "--total-num-update", str(args.updates),
            "--max-update", str(args.updates), "--log-format", "json", "--log-interval", "10",
            "--no-save", "--disable-validation", "--num-workers", "2", "--seed", "1",
        ]  # fmt: skip
        if args.smoke_cpu:
            argv += ["--cpu", "--arch", "translit_roberta_tiny", "--seq-layer", "2"]
        elif args.precision == "fp16":
            argv += ["--fp16"]
        elif args.precision == "bf16":
            argv += ["--bf16"]
        argv += args.extra.split()
        from fairseq_cli import train

        sys.argv = argv
        if cuda:
            torch.cuda.reset_peak_memory_stats()
        log_lines: list[str] = []

        class Grab(logging.Handler):
            def emit(self, record: logging.LogRecord) -> None:
                log_lines.append(record.getMessage())

        logging.getLogger().addHandler(Grab())  # progress lines come from fairseq.logging.progress_bar
        t0 = time.time()
        train.cli_main()
        wall = time.time() - t0
        peak = torch.cuda.max_memory_allocated() / 2**30 if cuda else float("nan")
    stats = []
    for line in log_lines:  # fairseq's json progress lines; other log lines may hold python dict reprs
        m = re.search(r"\{\"epoch\".*\}", line)
        if m:
            rec = json.loads(m.group(0))
            if "wps" in rec and "num_updates" in rec:
                stats.append(rec)
    steady = stats[1:] or stats  # the first interval includes warm-up / cudnn autotune
    wps = np.mean([float(s["wps"]) for s in steady]) if steady else float("nan")
    ups = np.mean([float(s["ups"]) for s in steady]) if steady else float("nan")
    losses = {k: [s[k] for s in stats if k in s] for k in ("loss_mlm_orig", "loss_mlm_latn", "loss_seq", "loss_tlm")}
    result = {
        "gpu": torch.cuda.get_device_name(0) if cuda else "cpu (smoke test)",
        "torch": torch.__version__,
        "precision": args.precision,
        "pairs_per_update": args.pairs_per_gpu,
        "updates": args.updates,
        "tokens_per_s": round(float(wps), 1),
        "updates_per_s": round(float(ups), 3),
        "pairs_per_s": round(float(ups) * args.pairs_per_gpu, 1),
        "peak_gpu_memory_gib": round(peak, 2),
        "wall_s": round(wall, 1),
        "loss_terms": losses,
    }
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
