#!/usr/bin/env python3
"""Demo evaluation: retrieval on the held-apart Chromium dev set, before and after post-training.

Inputs: the start model directory (``translit-ppa convert`` output), the post-trained model (a checkpoint, with the
model directory whose ``dict.txt`` / sentencepiece model it was trained with, or an untrimmed model directory), the dev
set (``examples/data/dev/{lang}.txt``, line i parallel across languages).  Per non-English language, cosine
similarity of mean-pooled layer-``--layer`` states (the paper's protocol), top-1 / top-10 accuracy:

* ``orig2eng`` / ``eng2orig``: the sentence in its own script finds its English translation (and back): what a good
  multilingual encoder already does and post-training must keep;
* ``latn2eng`` / ``eng2latn``: the uroman romanisation of the sentence finds the English translation (and back): the
  script barrier this method removes;
* ``orig2latn``: the sentence finds its own romanisation among all of that language's romanisations (what SEQ trains).

Outputs: a table on stdout, ``OUT/demo_results.json`` and ``OUT/demo_retrieval.png``.
"""

from __future__ import annotations

import argparse
import json
import logging
import re
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

logger = logging.getLogger("demo_eval")
METRICS = ("orig2eng", "eng2orig", "latn2eng", "eng2latn", "orig2latn")


def _read_lines(path: Path) -> list[str]:
    """Lines split on ``\n`` only (the corpus contract; U+2028 etc. were normalised when the corpus was built)."""
    lines = path.read_text(encoding="utf-8").split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    return lines


def _load(spec: Path, assets: Path | None):
    """A model directory (model.pt + its dict/spm) or a checkpoint file trained on ``assets``' vocabulary."""
    from translit_plugin.hub import from_pretrained

    if spec.is_dir():
        return from_pretrained(spec)
    assets = assets or spec.parent
    return from_pretrained(spec.parent, spec.name, sentencepiece_model=assets / "sentencepiece.bpe.model",
                           dictionary=assets / "dict.txt")  # fmt: skip


def evaluate(hub, text: dict, latn: dict, layer: int) -> dict:
    from translit_plugin.evaluation.retrieval import topk_accuracy

    emb = {lang: hub.embed(text[lang], layer=layer) for lang in text}
    emb_l = {lang: hub.embed(latn[lang], layer=layer) for lang in latn}
    out: dict = {"layer": layer}
    eng = emb["eng_Latn"]
    for lang in latn:
        pairs = {"orig2eng": (emb[lang], eng), "eng2orig": (eng, emb[lang]), "latn2eng": (emb_l[lang], eng),
                 "eng2latn": (eng, emb_l[lang]), "orig2latn": (emb[lang], emb_l[lang])}  # fmt: skip
        out[lang] = {}
        for name, (q, d) in pairs.items():
            acc = topk_accuracy(q, d, ks=(1, 10))
            out[lang][f"{name}_top1"], out[lang][f"{name}_top10"] = acc["top1"], acc["top10"]
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--start", type=Path, required=True, help="start model directory (model.pt, dict.txt, spm)")
    p.add_argument("--checkpoint", type=Path, required=True,
                   help="post-trained model: a model directory (e.g. `translit-ppa untrim` output) or a checkpoint")
    p.add_argument("--assets", type=Path, default=None,
                   help="model directory whose dict.txt + sentencepiece model a checkpoint was trained with "
                   "(default: --start)")  # fmt: skip
    p.add_argument("--dev", type=Path, default=REPO / "examples" / "data" / "dev")
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--layer", type=int, default=None, help="hidden layer (default: 8, or the middle + 1 of a model "
                   "with fewer than 12 layers)")  # fmt: skip
    p.add_argument("--max-sentences", type=int, default=500)
    p.add_argument("--skip-start", type=Path, default=None, help="reuse the start model's results from this JSON")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s | %(levelname)s | %(name)s | %(message)s")

    import torch

    from translit_plugin.transliterate import Transliterator, uroman_code

    torch.manual_seed(0)
    langs = sorted(f.stem for f in args.dev.glob("*.txt") if re.fullmatch(r"[a-z]{3}_[A-Z][a-z]{3}", f.stem))
    if "eng_Latn" not in langs:
        raise SystemExit(f"{args.dev}: eng_Latn.txt missing")
    text = {lang: _read_lines(args.dev / f"{lang}.txt")[: args.max_sentences] for lang in langs}
    n = min(len(v) for v in text.values())
    text = {k: v[:n] for k, v in text.items()}
    translit = Transliterator()
    latn = {lang: [translit.transliterate(s, uroman_code(lang)) for s in text[lang]] for lang in langs
            if lang != "eng_Latn"}  # fmt: skip

    results: dict = {}
    for name, spec, assets in (("start", args.start, None), ("aligned", args.checkpoint, args.assets or args.start)):
        if name == "start" and args.skip_start:
            results["start"] = json.loads(args.skip_start.read_text())["results"]["start"]
            continue
        hub = _load(spec, assets)
        layer = args.layer if args.layer is not None else (8 if hub.num_layers >= 12 else hub.num_layers // 2 + 1)
        results[name] = evaluate(hub, text, latn, layer)
        del hub

    targets = list(latn)
    cols = ("orig2eng_top1", "latn2eng_top1", "eng2latn_top1", "orig2latn_top1")
    header = f"{'language':<14}" + "".join(f"{c + ' start->aligned':>30}" for c in cols)
    lines = [f"Retrieval on {n} held-apart dev sentences per language (layer {results['start']['layer']}, "
             "mean pooling, cosine; top-1 accuracy, %):", header, "-" * len(header)]  # fmt: skip
    for lang in targets:
        row = f"{lang:<14}"
        for c in cols:
            row += f"{100 * results['start'][lang][c]:>18.1f} -> {100 * results['aligned'][lang][c]:>6.1f}  "
        lines.append(row)
    # Latin-script languages are kept apart: their "transliteration" is nearly the text itself.
    non_latin = [t for t in targets if not t.endswith("_Latn")]
    summary = {}
    for label, group in (("Avg non-Latin", non_latin), ("Average", targets)):
        row = f"{label:<14}"
        summary[label] = {}
        for c in cols:
            a, b = (sum(100 * results[m][t][c] for t in group) / len(group) for m in ("start", "aligned"))
            summary[label][c] = {"start": a, "aligned": b}
            row += f"{a:>18.1f} -> {b:>6.1f}  "
        lines.append(row)
    print("\n".join(lines))
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "demo_results.json").write_text(
        json.dumps({"sentences": n, "results": results, "summary": summary}, indent=2) + "\n"
    )

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels = (("orig2eng_top1", "original -> English"), ("latn2eng_top1", "uroman -> English"),
              ("orig2latn_top1", "original -> its uroman"))  # fmt: skip
    fig, axes = plt.subplots(1, len(panels), figsize=(15, 4.2), sharey=True)
    x = range(len(targets))
    for ax, (c, title) in zip(axes, panels):
        for off, name, color in ((-0.2, "start", "#999999"), (0.2, "aligned", "#1f77b4")):
            ax.bar([i + off for i in x], [100 * results[name][t][c] for t in targets], width=0.4, label=name,
                   color=color)  # fmt: skip
        ax.set_xticks(list(x), targets, rotation=45, ha="right")
        ax.set_title(f"{title}, top-1")
        ax.set_ylim(0, 100)
    axes[0].set_ylabel("accuracy (%)")
    axes[0].legend()
    fig.suptitle(f"Demo: retrieval on {n} held-apart Chromium strings, before and after post-training")
    fig.tight_layout()
    fig.savefig(args.out / "demo_retrieval.png", dpi=110)
    print(f"\nwrote {args.out / 'demo_results.json'} and {args.out / 'demo_retrieval.png'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
