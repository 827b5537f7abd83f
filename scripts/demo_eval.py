#!/usr/bin/env python3
"""Demo evaluation: retrieval on the held-apart Chromium dev set, before and after post-training.

Inputs: the start model directory (``translit-ppa convert`` output), a post-trained checkpoint, the dev set
(``examples/data/dev/{lang}.txt``, line i parallel across languages).  Two retrieval tasks per language, cosine
similarity of mean-pooled layer-``--layer`` states (the paper's protocol):

* original -> Latin: each dev sentence must find its own uroman transliteration among all of that language's
  transliterations (what the SEQ objective trains directly);
* language -> English: each sentence must find its English translation (cross-lingual alignment; the demo model is
  tiny and trained for minutes, so expect small gains here).

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


def _read_lines(path: Path) -> list[str]:
    """Lines split on ``\n`` only (the corpus contract; U+2028 etc. were normalised when the corpus was built)."""
    lines = path.read_text(encoding="utf-8").split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    return lines


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--start", type=Path, required=True, help="start model directory (model.pt, dict.txt, spm)")
    p.add_argument("--checkpoint", type=Path, required=True, help="post-trained checkpoint")
    p.add_argument("--dev", type=Path, default=REPO / "examples" / "data" / "dev")
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--layer", type=int, default=None, help="hidden layer (default: the middle of the model + 1)")
    p.add_argument("--max-sentences", type=int, default=500)
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s | %(levelname)s | %(name)s | %(message)s")

    import torch

    from translit_plugin.evaluation.retrieval import topk_accuracy
    from translit_plugin.hub import from_pretrained
    from translit_plugin.transliterate import Transliterator, uroman_code

    torch.manual_seed(0)
    langs = sorted(f.stem for f in args.dev.glob("*.txt") if re.fullmatch(r"[a-z]{3}_[A-Z][a-z]{3}", f.stem))
    if "eng_Latn" not in langs:
        raise SystemExit(f"{args.dev}: eng_Latn.txt missing")
    text = {lang: _read_lines(args.dev / f"{lang}.txt")[: args.max_sentences] for lang in langs}
    n = min(len(v) for v in text.values())
    text = {k: v[:n] for k, v in text.items()}
    translit = Transliterator()
    latn = {lang: [translit.transliterate(s, uroman_code(lang)) for s in text[lang]] for lang in langs}

    models = {
        "start": from_pretrained(args.start),
        "aligned": from_pretrained(
            args.checkpoint.parent, args.checkpoint.name,
            sentencepiece_model=args.start / "sentencepiece.bpe.model", dictionary=args.start / "dict.txt",
        ),
    }  # fmt: skip
    results: dict[str, dict[str, dict[str, float]]] = {}
    for name, hub in models.items():
        layer = args.layer if args.layer is not None else hub.num_layers // 2 + 1
        emb = {lang: hub.embed(text[lang], layer=layer) for lang in langs}
        emb_l = {lang: hub.embed(latn[lang], layer=layer) for lang in langs if lang != "eng_Latn"}
        results[name] = {}
        for lang in langs:
            if lang == "eng_Latn":
                continue
            o2l = topk_accuracy(emb[lang], emb_l[lang], ks=(1, 10))
            x2e = topk_accuracy(emb[lang], emb["eng_Latn"], ks=(1, 10))
            results[name][lang] = {"orig2latn_top1": o2l["top1"], "orig2latn_top10": o2l["top10"],
                                   "lang2eng_top1": x2e["top1"], "lang2eng_top10": x2e["top10"]}  # fmt: skip
        results[name]["layer"] = layer  # type: ignore[assignment]

    targets = [lang for lang in langs if lang != "eng_Latn"]
    cols = ("orig2latn_top1", "orig2latn_top10", "lang2eng_top10")
    header = f"{'language':<14}" + "".join(f"{c + ' start->aligned':>34}" for c in cols)
    lines = [f"Retrieval on {n} held-apart dev sentences per language (layer {results['start']['layer']}, cosine):",
             header, "-" * len(header)]  # fmt: skip
    for lang in targets:
        row = f"{lang:<14}"
        for c in cols:
            row += f"{100 * results['start'][lang][c]:>22.1f} -> {100 * results['aligned'][lang][c]:>6.1f}  "
        lines.append(row)
    # Latin-script languages are kept apart: their "transliteration" is nearly the text itself, so a random model
    # already retrieves it by shared tokens and training can only move away from that.
    non_latin = [t for t in targets if not t.endswith("_Latn")]
    for label, group in (("Avg non-Latin", non_latin), ("Average", targets)):
        row = f"{label:<14}"
        for c in cols:
            a, b = (sum(100 * results[m][t][c] for t in group) / len(group) for m in ("start", "aligned"))
            row += f"{a:>22.1f} -> {b:>6.1f}  "
        lines.append(row)
    print("\n".join(lines))
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "demo_results.json").write_text(json.dumps({"sentences": n, "results": results}, indent=2) + "\n")

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(12, 4.2), sharey=True)
    x = range(len(targets))
    for ax, c, title in ((axes[0], "orig2latn_top10", "original -> Latin, top-10"),
                         (axes[1], "lang2eng_top10", "language -> English, top-10")):  # fmt: skip
        for off, name, color in ((-0.2, "start", "#999999"), (0.2, "aligned", "#1f77b4")):
            ax.bar([i + off for i in x], [100 * results[name][t][c] for t in targets], width=0.4, label=name,
                   color=color)  # fmt: skip
        ax.set_xticks(list(x), targets, rotation=45, ha="right")
        ax.set_title(title)
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
