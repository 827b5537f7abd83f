#!/usr/bin/env python3
"""Demo evaluation: retrieval before and after post-training, in two views, on two held-apart sets.

**Views** (how the sentence vectors are read; every table names its view):

* ``use``: where the model's users read it, from its ``use.json`` (multilingual-e5: the last layer, mean pooling over
  every token, ``"query: "`` in front of both sides, as its model card and sentence-transformers configuration say);
* ``probe``: the paper's probe (layer 8, mean pooling with ``<s>``/``</s>``, no prompt).

**Sets**: ``dev`` (``examples/data/dev``: 500 Chromium strings held apart from the training corpus by message id,
line i of every file is the same message) and ``heldout`` (``examples/data/heldout``: UI strings of other
applications' gettext catalogues, another source than the training corpus, with Burmese, a language the training
never saw; never used to choose settings).

**Metrics** per non-English language, top-1 (and top-10) accuracy of cosine nearest neighbours:

* ``orig2eng`` / ``eng2orig``: the sentence in its own script finds its English translation (and back): what a good
  multilingual encoder already does and post-training must keep;
* ``uroman2eng`` / ``eng2uroman``: its uroman romanisation (the training's scheme) finds the English translation;
* ``anyascii2eng``: its romanisation by another scheme the training never used (``anyascii``, Unicode -> ASCII);
* ``orig2uroman``: the sentence finds its own romanisation among that language's romanisations.

Outputs: tables on stdout, ``OUT/demo_results.json`` and ``OUT/demo_retrieval.png``.
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
ENGLISH = "eng_Latn"
VIEWS = ("use", "probe")
ROMANISATIONS = ("uroman", "anyascii")
METRICS = ("orig2eng", "eng2orig", "uroman2eng", "eng2uroman", "anyascii2eng", "orig2uroman")
TABLE_COLS = (("orig2eng_top1", "orig->eng"), ("uroman2eng_top1", "uroman->eng"),
              ("anyascii2eng_top1", "anyascii->eng"))
_LANG = re.compile(r"[a-z]{3}_[A-Z][a-z]{3}")


def _read_lines(path: Path) -> list[str]:
    """Lines split on ``\n`` only (the corpus contract; U+2028 etc. were normalised when the corpus was built)."""
    lines = path.read_text(encoding="utf-8").split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    return lines


def read_dev(dev: Path, n: int) -> dict[str, tuple[list[str], list[str]]]:
    """``{lang: (sentences, English translations)}`` from line-parallel ``{lang}.txt`` files."""
    langs = sorted(f.stem for f in dev.glob("*.txt") if _LANG.fullmatch(f.stem))
    if ENGLISH not in langs:
        raise SystemExit(f"{dev}: {ENGLISH}.txt missing")
    text = {lang: _read_lines(dev / f"{lang}.txt")[:n] for lang in langs}
    m = min(len(v) for v in text.values())
    return {lang: (text[lang][:m], text[ENGLISH][:m]) for lang in langs if lang != ENGLISH}


def read_heldout(root: Path, n: int, prefix: str = "gettext",
                 min_pairs: int = 100) -> dict[str, tuple[list[str], list[str]]]:  # fmt: skip
    """``{lang: (sentences, English translations)}`` from ``{prefix}.{L}-eng_Latn.{L}`` / ``.eng_Latn`` pairs;
    a language with fewer than ``min_pairs`` pairs is left out (one hit would move its top-1 by > 1 point)."""
    out = {}
    for f in sorted(root.glob(f"{prefix}.*-{ENGLISH}.{ENGLISH}")):
        lang = f.name[len(prefix) + 1 : -len(f"-{ENGLISH}.{ENGLISH}")]
        if not _LANG.fullmatch(lang) or lang == ENGLISH:
            continue
        native = _read_lines(root / f"{prefix}.{lang}-{ENGLISH}.{lang}")
        eng = _read_lines(f)
        if len(native) != len(eng):
            raise SystemExit(f"{f}: {len(eng)} lines but its {lang} side has {len(native)}")
        if len(native) < min_pairs:
            logger.warning("%s: %s has only %d pairs (< %d): left out", root, lang, len(native), min_pairs)
            continue
        out[lang] = (native[:n], eng[:n])
    if not out:
        raise SystemExit(f"{root}: no {prefix}.L-{ENGLISH}.L files")
    return out


def romanise(data: dict[str, tuple[list[str], list[str]]], schemes=ROMANISATIONS) -> dict[str, dict[str, list[str]]]:
    """``{scheme: {lang: romanised sentences}}`` for uroman (the training's scheme) and, if asked, anyascii (a
    Unicode-to-ASCII romanisation the training never used)."""
    from translit_plugin.transliterate import Transliterator, uroman_code

    translit = Transliterator()
    out: dict[str, dict[str, list[str]]] = {"uroman": {}}
    for lang, (native, _) in data.items():
        out["uroman"][lang] = [translit.transliterate(s, uroman_code(lang)) for s in native]
    if "anyascii" in schemes:
        from anyascii import anyascii

        out["anyascii"] = {lang: [anyascii(s) for s in native] for lang, (native, _) in data.items()}
    return out


def _load(spec: Path, assets: Path | None):
    """A model directory (model.pt + its dict/spm/use.json) or a checkpoint trained on ``assets``' vocabulary."""
    from translit_plugin.hub import from_pretrained

    if spec.is_dir():
        return from_pretrained(spec)
    assets = assets or spec.parent
    return from_pretrained(spec.parent, spec.name, sentencepiece_model=assets / "sentencepiece.bpe.model",
                           dictionary=assets / "dict.txt")  # fmt: skip


def probe_layer(hub) -> int:
    """The probe's layer: 8 (the paper's, for 12-layer models), or the middle + 1 of a smaller model."""
    return 8 if hub.num_layers >= 12 else hub.num_layers // 2 + 1


def view_layer(hub, view: str) -> int | None:
    """The layer override of ``view`` for ``hub``: the probe layer where the view is the probe (also a model without
    a use setting), else None (the use setting's layer)."""
    from translit_plugin.core.use_settings import PROBE

    return probe_layer(hub) if view == "probe" or hub.use is PROBE else None


def describe_view(hub, view: str) -> str:
    layer = view_layer(hub, view)
    text = hub.view(view).describe(hub.num_layers) if layer is None or layer == 8 else \
        hub.view(view).describe().replace("layer 8", f"layer {layer}")
    return text


def evaluate_view(hub, data: dict, roman: dict, view: str) -> dict:
    """Top-1/top-10 of every metric for every language of one set, the vectors read in ``view``."""
    from translit_plugin.evaluation.retrieval import topk_accuracy

    cache: dict[tuple, object] = {}

    def emb(key: tuple, lines: list[str]):
        if key not in cache:
            cache[key] = hub.embed(lines, view=view, layer=view_layer(hub, view), progress=False)
        return cache[key]

    out: dict = {}
    for lang, (native, eng) in data.items():
        e = emb(("eng", tuple(eng)), eng)
        o = emb(("orig", lang), native)
        u = emb(("uroman", lang), roman["uroman"][lang])
        pairs = {"orig2eng": (o, e), "eng2orig": (e, o), "uroman2eng": (u, e), "eng2uroman": (e, u),
                 "orig2uroman": (o, u)}  # fmt: skip
        if "anyascii" in roman:
            pairs["anyascii2eng"] = (emb(("anyascii", lang), roman["anyascii"][lang]), e)
        out[lang] = {"sentences": len(native)}
        for name, (q, d) in pairs.items():
            acc = topk_accuracy(q, d, ks=(1, 10))
            out[lang][f"{name}_top1"], out[lang][f"{name}_top10"] = acc["top1"], acc["top10"]
    return out


def summarise(results: dict, sets: list[str], schemes=ROMANISATIONS) -> dict:
    """Averages over the non-Latin languages (and all languages) per set, view and model, with romanised/native."""
    summary: dict = {}
    for set_name in sets:
        for view in VIEWS:
            langs = list(results["start"][set_name][view])
            groups = {"Avg non-Latin": [lg for lg in langs if not lg.endswith("_Latn")], "Average": langs}
            for label, group in groups.items():
                row = summary.setdefault(set_name, {}).setdefault(view, {}).setdefault(label, {})
                for metric in (m + "_top1" for m in METRICS if "anyascii" not in m or "anyascii" in schemes):
                    row[metric] = {m: sum(100 * results[m][set_name][view][lg][metric] for lg in group) / len(group)
                                   for m in ("start", "aligned")}  # fmt: skip
                for scheme in schemes:
                    row[f"{scheme}_over_native"] = {m: row[f"{scheme}2eng_top1"][m] / max(row["orig2eng_top1"][m], 1e-9)
                                                    for m in ("start", "aligned")}  # fmt: skip
    return summary


def table(results: dict, summary: dict, set_name: str, describe: dict[str, str], schemes=ROMANISATIONS) -> str:
    """Per-language rows; for each view, start -> aligned of orig/uroman(/anyascii) -> English (top-1 %)."""
    langs = list(results["start"][set_name]["use"])
    cols = [c for c in TABLE_COLS if "anyascii" not in c[0] or "anyascii" in schemes]
    width = 23 * len(cols) + 2
    head1 = f"{'':<14}" + "".join(f"| {'view ' + v + ': ' + describe[v]:<{width}}" for v in VIEWS)
    head2 = f"{'language':<14}" + "".join("| " + "".join(f"{c:>23}" for _, c in cols) + "  " for _ in VIEWS)
    lines = [head1, head2, "-" * len(head2)]

    def cell(pair: tuple[float, float]) -> str:
        return f"{pair[0]:>8.1f} -> {pair[1]:>5.1f} ({pair[1] - pair[0]:+5.1f})"

    for lang in langs:
        row = f"{lang:<14}"
        for view in VIEWS:
            r = {m: results[m][set_name][view][lang] for m in ("start", "aligned")}
            row += "| " + "".join(cell((100 * r["start"][c], 100 * r["aligned"][c])) for c, _ in cols) + "  "
        lines.append(row)
    for label in ("Avg non-Latin", "Average"):
        row = f"{label:<14}"
        for view in VIEWS:
            s = summary[set_name][view][label]
            row += "| " + "".join(cell((s[c]["start"], s[c]["aligned"])) for c, _ in cols) + "  "
        lines.append(row)
    row = f"{'roman/native':<14}"
    for view in VIEWS:
        s = summary[set_name][view]["Avg non-Latin"]
        ratios = (s[f"{k}_over_native"] for k in schemes)
        row += "| " + " " * 23 + "".join(f"{r['start']:>14.2f} -> {r['aligned']:>5.2f} " for r in ratios) + "  "
    lines.append(row)
    return "\n".join(lines)


def plot(results: dict, summary: dict, sets: list[str], out: Path, schemes=ROMANISATIONS) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(len(sets), len(VIEWS), figsize=(14, 4.2 * len(sets)), squeeze=False)
    shown = [c for c in TABLE_COLS if "anyascii" not in c[0] or "anyascii" in schemes]
    cols = [c for c, _ in shown]
    for i, set_name in enumerate(sets):
        for j, view in enumerate(VIEWS):
            ax = axes[i][j]
            s = summary[set_name][view]["Avg non-Latin"]
            x = range(len(cols))
            for off, name, color in ((-0.2, "start", "#999999"), (0.2, "aligned", "#1f77b4")):
                ax.bar([k + off for k in x], [s[c][name] for c in cols], width=0.4, label=name, color=color)
            ax.set_xticks(list(x), [label for _, label in shown])
            ax.set_ylim(0, 100)
            ax.set_title(f"{set_name}, view '{view}': top-1 %, avg of non-Latin languages")
            if j == 0:
                ax.set_ylabel("accuracy (%)")
    axes[0][0].legend()
    fig.tight_layout()
    fig.savefig(out, dpi=100)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--start", type=Path, required=True, help="start model directory (model.pt, dict.txt, spm)")
    p.add_argument("--checkpoint", type=Path, required=True,
                   help="post-trained model: a model directory (e.g. `translit-ppa untrim` output) or a checkpoint")
    p.add_argument("--assets", type=Path, default=None,
                   help="model directory whose dict.txt + sentencepiece model a checkpoint was trained with "
                   "(default: --start)")  # fmt: skip
    p.add_argument("--dev", type=Path, default=REPO / "examples" / "data" / "dev")
    p.add_argument("--heldout", default=str(REPO / "examples" / "data" / "heldout"),
                   help="second set (gettext.L-eng_Latn.L files); '' to skip")  # fmt: skip
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--max-sentences", type=int, default=500, help="per language and set")
    p.add_argument("--skip-start", type=Path, default=None, help="reuse the start model's results from this JSON")
    p.add_argument("--romanisations", nargs="+", choices=ROMANISATIONS, default=list(ROMANISATIONS),
                   help="uroman (the training's) and anyascii (never trained on) (default: both)")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s | %(levelname)s | %(name)s | %(message)s")

    import torch

    torch.manual_seed(0)
    sets = {"dev": read_dev(args.dev, args.max_sentences)}
    if args.heldout:
        sets["heldout"] = read_heldout(Path(args.heldout), args.max_sentences)
    schemes = tuple(dict.fromkeys(["uroman", *args.romanisations]))
    roman = {name: romanise(data, schemes) for name, data in sets.items()}

    results: dict = {}
    describe: dict[str, str] = {}
    previous = json.loads(args.skip_start.read_text()) if args.skip_start else None
    for name, spec, assets in (("start", args.start, None), ("aligned", args.checkpoint, args.assets or args.start)):
        if name == "start" and previous is not None:  # only the sets and languages evaluated now
            old = previous["results"]["start"]
            missing = [k for k in sets if k not in old]
            if missing:
                raise SystemExit(f"--skip-start {args.skip_start} has no results for the set(s) {missing}")
            results["start"] = {k: {v: {lg: r for lg, r in old[k][v].items() if lg in sets[k]} for v in VIEWS}
                                for k in sets}  # fmt: skip
            continue
        hub = _load(spec, assets)
        describe = {view: describe_view(hub, view) for view in VIEWS}
        results[name] = {set_name: {view: evaluate_view(hub, data, roman[set_name], view) for view in VIEWS}
                         for set_name, data in sets.items()}  # fmt: skip
        logger.info("%s evaluated (%s)", name, "; ".join(f"{v}: {d}" for v, d in describe.items()))
        del hub
    if previous is not None and previous.get("views") and previous["views"] != describe:
        raise SystemExit(f"--skip-start was read in other views ({previous['views']}) than this model ({describe})")

    summary = summarise(results, list(sets), schemes)
    for set_name, data in sets.items():
        lo, hi = min(len(v[0]) for v in data.values()), max(len(v[0]) for v in data.values())
        print(f"\n{set_name}: retrieval of English translations (top-1 %, start -> aligned, change), "
              f"{lo if lo == hi else f'{lo}-{hi}'} sentences per language")  # fmt: skip
        print(table(results, summary, set_name, describe, schemes))
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "demo_results.json").write_text(
        json.dumps({"views": describe, "sets": {k: {lg: len(v[0]) for lg, v in d.items()} for k, d in sets.items()},
                    "results": results, "summary": summary}, indent=1) + "\n"  # fmt: skip
    )
    plot(results, summary, list(sets), args.out / "demo_retrieval.png", schemes)
    print(f"\nwrote {args.out / 'demo_results.json'} and {args.out / 'demo_retrieval.png'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
