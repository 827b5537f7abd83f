#!/usr/bin/env python3
"""Throughput of ``prepare``'s transliteration + binarization stage with 1 and 2 workers, in one run.

Input: the shipped demo corpus (``examples/data/train``, the 10 languages of ``examples/groups/demo-chromium.json``)
and a model directory (``--model-dir``; default: a small sentencepiece model trained here on the demo corpus).
Cleaning and sampling run once; then the chunk stage (uroman + sentencepiece + fairseq binarization) runs from
scratch for each worker count.  uroman is loaded before the clock starts (workers inherit it through fork), so the
figures are steady-state sentences/s.  Target: >= 1.7x with 2 workers on 2 free cores.

    python benchmarks/bench_prepare.py [--lines-per-lang 4000] [--workers 1 2] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


def build_model_dir(out: Path) -> Path:
    from translit_plugin.conversion.start_model import train_sentencepiece
    from translit_plugin.vocab import write_fairseq_dict

    out.mkdir(parents=True, exist_ok=True)
    files = sorted((REPO / "examples" / "data" / "train").glob("*.txt"))
    train_sentencepiece(files, out / "sentencepiece.bpe.model", vocab_size=8000, max_sentences=50_000)
    write_fairseq_dict(out / "sentencepiece.bpe.model", out / "dict.txt")
    return out


def _cpu_seconds() -> float:
    """User + system CPU time of this process and its reaped children (the pool workers)."""
    import resource

    own, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model-dir", type=Path, default=None, help="default: train a small spm model on the demo")
    parser.add_argument("--lines-per-lang", type=int, default=4000, help="sentences per language (default: all 4000)")
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--chunk-size", type=int, default=250)
    parser.add_argument("--json", type=Path, default=None, help="also write the results here")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)

    from translit_plugin.core.hashing import sha1_file
    from translit_plugin.prepare.chunk_plan import build_plan, run_chunks
    from translit_plugin.prepare.chunks import ChunkSettings, get_encoder, get_transliterator
    from translit_plugin.prepare.groups import load_group
    from translit_plugin.prepare.pipeline import PrepareConfig, run_prepare
    from translit_plugin.prepare.sample import SampleConfig
    from translit_plugin.transliterate import uroman_version

    load0 = f"{os.getloadavg()[0]:.2f}"
    group = load_group(REPO / "examples" / "groups" / "demo-chromium.json")
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        model_dir = args.model_dir or build_model_dir(tmp / "model")
        inp = tmp / "input"
        inp.mkdir()
        for lang in group.languages:
            with open(REPO / "examples" / "data" / "train" / f"{lang}.txt", encoding="utf-8") as f:
                lines = f.read().split("\n")[: args.lines_per_lang]
            (inp / f"{lang}.txt").write_text("\n".join(lines) + "\n", encoding="utf-8")
        cfg = PrepareConfig(input=inp, model_dir=model_dir, output=tmp / "out", group=None, progress=False,
                            sample=SampleConfig(min_sentences=10**9, valid_size=0, chunk_size=args.chunk_size),
                            uroman_codes=dict(group.uroman_codes), stop_after="sample")
        records = run_prepare(cfg)["sample"]
        langs = sorted(records)
        tasks = build_plan(langs, records, group.uroman_codes, cfg.output / "work")
        n = sum(t.n_lines for t in tasks)
        settings = ChunkSettings(
            spm_model=str(model_dir / "sentencepiece.bpe.model"), dict_path=str(model_dir / "dict.txt"),
            spm_sha1=sha1_file(model_dir / "sentencepiece.bpe.model"), dict_sha1=sha1_file(model_dir / "dict.txt"),
            max_length=512, overlong="truncate", uroman_cache_size=65536, uroman_version=uroman_version())
        tr = get_transliterator(settings)  # loaded once, outside the timed region
        get_encoder(settings)
        for task in tasks[:: max(1, len(tasks) // 20)]:  # warm up uroman's lazily built per-script tables
            with open(task.src, encoding="utf-8") as f:
                tr.transliterate_lines(f.read().split("\n")[:20], task.lcode)
        results = []
        for workers in args.workers:
            tr.reset_cache()  # every run starts with an empty token cache (forked workers inherit this one)
            for sub in ("translit", "bin"):
                shutil.rmtree(cfg.output / "work" / sub, ignore_errors=True)
            cpu0 = _cpu_seconds()
            start = time.perf_counter()
            done = run_chunks(tasks, settings, workers, progress=False)
            elapsed = time.perf_counter() - start
            cpu = _cpu_seconds() - cpu0
            assert sum(r["lines"] for r in done.values()) == n
            results.append({"workers": workers, "sentences": n, "seconds": round(elapsed, 2),
                            "sentences_per_s": round(n / elapsed, 1), "cpu_seconds": round(cpu, 2),
                            "sentences_per_cpu_s": round(n / cpu, 1)})
    base = results[0]["sentences_per_s"]
    print(f"prepare transliterate+binarize, demo corpus: {len(langs)} languages, {n} sentences, "
          f"chunk size {args.chunk_size}, {os.cpu_count()} CPUs visible")
    print(f"load average before/after: {load0} / {os.getloadavg()[0]:.2f} (other processes compete for the cores)")
    print(f"{'workers':>7} {'seconds':>8} {'sent/s':>8} {'speed-up':>8} {'CPU s':>8} {'sent/CPU-s':>10}")
    for r in results:
        print(f"{r['workers']:>7} {r['seconds']:>8.2f} {r['sentences_per_s']:>8.1f} "
              f"{r['sentences_per_s'] / base:>7.2f}x {r['cpu_seconds']:>8.2f} {r['sentences_per_cpu_s']:>10.1f}")
    print("speed-up = wall-clock throughput relative to 1 worker; sent/CPU-s (this process + workers) shows the "
          "parallel overhead independently of competing load.")
    if args.json:
        args.json.write_text(json.dumps({"results": results, "languages": langs, "cpus": os.cpu_count()}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
