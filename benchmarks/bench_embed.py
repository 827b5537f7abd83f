"""Sentence-embedding throughput: length-sorted batching vs unsorted batching, same model, same sentences, same run.

Inputs: ``--model`` (a model directory, checkpoint or HF directory; default: a random XLM-R of ``--size`` built in a
temporary directory from the shipped demo corpus) and the demo corpus ``examples/data/train/*.txt`` (real UI strings
in 11 languages, mixed so lengths vary as in a multilingual retrieval set). Output: a table of sentences/s, padding
fraction and speed-up, and optionally ``--json``. Also checks that both orders give the same embeddings.

    python benchmarks/bench_embed.py --sentences 4000 --batch-size 128
"""

from __future__ import annotations

import argparse
import json
import logging
import random
import sys
import tempfile
import time
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from translit_plugin.hub.encoding import embed_sentences, length_batches  # noqa: E402

logger = logging.getLogger("bench_embed")
SIZES = {  # layers, hidden, heads, ffn
    "tiny": (2, 64, 4, 128),
    "small": (4, 256, 4, 1024),
    "base": (12, 768, 12, 3072),
}


def corpus_sentences(n: int, seed: int = 0) -> list[str]:
    files = sorted((REPO / "examples" / "data" / "train").glob("*.txt"))
    if not files:
        raise SystemExit("demo corpus not found under examples/data/train")
    lines = [line.strip() for f in files for line in f.read_text(encoding="utf-8").splitlines() if line.strip()]
    rng = random.Random(seed)  # fixed mix of languages and lengths
    rng.shuffle(lines)
    return lines[:n]


def build_random_model(size: str, tmp: Path) -> Path:
    from translit_plugin.conversion.hf_to_fairseq import convert_hf_to_fairseq
    from translit_plugin.conversion.start_model import build_random_xlmr, train_sentencepiece

    layers, hidden, heads, ffn = SIZES[size]
    text = tmp / "spm.txt"
    text.write_text("\n".join(corpus_sentences(20000, seed=1)) + "\n", encoding="utf-8")
    spm = train_sentencepiece([text], tmp / "sentencepiece.bpe.model", vocab_size=8000)
    hf = build_random_xlmr(spm, tmp / "hf", layers=layers, hidden=hidden, heads=heads, ffn=ffn)
    return convert_hf_to_fairseq(hf, tmp / "model", check_parity=False)


def padding_fraction(hub, sentences: list[str], batch_size: int, sort: bool, max_length: int) -> float:
    lengths = [min(len(hub.encode(s)), max_length) for s in sentences]
    real = padded = 0
    for batch in length_batches(lengths, batch_size, sort):
        width = max(lengths[i] for i in batch)
        real += sum(lengths[i] for i in batch)
        padded += width * len(batch)
    return 1.0 - real / padded


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default=None, help="[NAME=]PATH of a model (default: build a random one)")
    parser.add_argument("--size", choices=sorted(SIZES), default="small", help="random model size (default: small)")
    parser.add_argument("--sentences", type=int, default=4000)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--max-length", type=int, default=512)
    parser.add_argument("--layer", type=int, default=None, help="default: 8, or the top layer if the model is smaller")
    parser.add_argument("--repeats", type=int, default=2, help="timed runs per mode (best is reported)")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    parser.add_argument("--json", type=Path, default=None, help="also write the figures here")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s | %(levelname)s | %(name)s | %(message)s")
    if args.threads:
        torch.set_num_threads(args.threads)

    from translit_plugin.evaluation.models import load_hub, parse_model_spec

    with tempfile.TemporaryDirectory() as tmp:
        model_path = args.model or str(build_random_model(args.size, Path(tmp)))
        hub = load_hub(parse_model_spec(model_path), cache_dir=Path(tmp) / "cache", device=args.device)
        layer = args.layer if args.layer is not None else min(8, hub.num_layers)
        sents = corpus_sentences(args.sentences)
        kw = dict(layer=layer, batch_size=args.batch_size, max_length=args.max_length, device=args.device,
                  progress=False)
        embed_sentences(hub, sents[: args.batch_size], **kw)  # warm-up (allocator, kernels)
        rows, outputs = {}, {}
        for mode, sort in (("length-sorted", True), ("unsorted", False)):
            best = float("inf")
            for _ in range(args.repeats):
                t0 = time.perf_counter()
                outputs[mode] = embed_sentences(hub, sents, sort_by_length=sort, **kw)
                best = min(best, time.perf_counter() - t0)
            rows[mode] = {"seconds": best, "sentences_per_s": len(sents) / best,
                          "padding_fraction": padding_fraction(hub, sents, args.batch_size, sort, args.max_length)}
        same = torch.allclose(outputs["length-sorted"], outputs["unsorted"], atol=1e-4)
    speedup = rows["unsorted"]["seconds"] / rows["length-sorted"]["seconds"]
    n_params = sum(p.numel() for p in hub.model.parameters())
    out = sys.stdout
    out.write(f"\nmodel: {model_path if args.model else 'random ' + args.size} ({hub.num_layers} layers, "
              f"{n_params / 1e6:.1f}M params), layer {layer}, {len(sents)} sentences, batch {args.batch_size}, "
              f"device {args.device}, torch threads {torch.get_num_threads()}\n")
    out.write(f"{'batching':<14} {'seconds':>8} {'sent/s':>9} {'padding':>8}\n")
    for mode, r in rows.items():
        out.write(f"{mode:<14} {r['seconds']:8.2f} {r['sentences_per_s']:9.1f} {100 * r['padding_fraction']:7.1f}%\n")
    out.write(f"speed-up of length-sorted batching: {speedup:.2f}x; identical embeddings: {same}\n")
    if args.json:
        args.json.write_text(json.dumps({"rows": rows, "speedup": speedup, "same_embeddings": same,
                                         "layer": layer, "sentences": len(sents), "batch_size": args.batch_size,
                                         "device": args.device, "params": n_params}, indent=1))
    return 0 if same else 1


if __name__ == "__main__":
    sys.exit(main())
