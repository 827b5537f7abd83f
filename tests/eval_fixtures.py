"""Writers of evaluation fixtures in the real dataset formats, from real text available offline.

- Retrieval (SR-B / Tatoeba layout): any line-parallel text; by default the shipped Chromium dev set
  (``examples/data/dev/{lang}.txt``, line i = the same message in every language, BSD-3-Clause).
- Taxi1500 / SIB-200 layouts: the same parallel Chromium strings labelled by the Chromium resource file each message
  comes from (``dev/message_ids.txt``), the 4 most frequent files as classes: real text with a label shared across
  languages, like Taxi1500's verse topics.
- Tagging (NER / POS): the Turkish Web Treebank sample in ``tests/data`` (Apache-2.0). POS = UPOS; NER = BIO spans
  of ``Proper=True`` rows. A second target ``trx_Latn`` is the same Turkish written without diacritics (ı->i, ş->s,
  ...), as Turkish is often typed: a real orthographic shift between source and target.
"""

from __future__ import annotations

import random
from collections import Counter
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
DEV = REPO / "examples" / "data" / "dev"
TREEBANK = Path(__file__).resolve().parent / "data" / "turkish_web_sample.conllu"
ASCII_FOLD = str.maketrans("ıİşŞğĞçÇöÖüÜâÂîÎûÛ", "iIsSgGcCoOuUaAiIuU")


def parallel_dev(langs: list[str] | None = None, n: int | None = None) -> dict[str, list[str]]:
    """``lang -> lines`` of the Chromium dev set (line i parallel across languages)."""
    langs = langs or sorted(p.stem for p in DEV.glob("*_*.txt"))
    out = {}
    for lang in langs:
        lines = (DEV / f"{lang}.txt").read_text(encoding="utf-8").split("\n")
        out[lang] = [x for x in lines if x][: n or None]
    return out


def write_retrieval(out_dir: Path, parallel: dict[str, list[str]], prefix: str = "bible") -> Path:
    """``{prefix}.{L}-eng_Latn.{L}`` and ``.eng_Latn`` for every non-English language of ``parallel``."""
    out_dir.mkdir(parents=True, exist_ok=True)
    eng = parallel["eng_Latn"]
    for lang, lines in parallel.items():
        if lang == "eng_Latn":
            continue
        assert len(lines) == len(eng)
        base = out_dir / f"{prefix}.{lang}-eng_Latn"
        Path(f"{base}.{lang}").write_text("\n".join(lines) + "\n", encoding="utf-8")
        Path(f"{base}.eng_Latn").write_text("\n".join(eng) + "\n", encoding="utf-8")
    return out_dir


def chromium_classification(langs: list[str], n_classes: int = 4) -> tuple[dict[str, list[str]], list[str]]:
    """Parallel texts and their labels (resource file of each message; the ``n_classes`` most frequent kept)."""
    ids = [line.split("\t") for line in (DEV / "message_ids.txt").read_text(encoding="utf-8").splitlines()]
    files = [Path(row[2]).stem for row in ids]
    keep = {f for f, _ in Counter(files).most_common(n_classes)}
    rows = [i for i, f in enumerate(files) if f in keep]
    random.Random(0).shuffle(rows)  # the dev set is ordered by resource file; mix classes across the splits
    texts = parallel_dev(langs)
    return {lang: [texts[lang][i] for i in rows] for lang in langs}, [files[i] for i in rows]


def _splits(n: int) -> dict[str, slice]:
    a, b = int(n * 0.6), int(n * 0.8)
    return {"train": slice(0, a), "dev": slice(a, b), "test": slice(b, n)}


def write_taxi1500(out_dir: Path, texts: dict[str, list[str]], labels: list[str]) -> Path:
    """``860_{L}_train.tsv``, ``{L}_dev.tsv``, ``{L}_test.tsv``: ``id<TAB>label<TAB>text``, no header."""
    out_dir.mkdir(parents=True, exist_ok=True)
    for lang, lines in texts.items():
        for split, sl in _splits(len(lines)).items():
            name = f"860_{lang}_train.tsv" if split == "train" else f"{lang}_{split}.tsv"
            rows = [f"{i}\t{labels[i]}\t{lines[i]}" for i in range(len(lines))[sl]]
            (out_dir / name).write_text("\n".join(rows) + "\n", encoding="utf-8")
    return out_dir


def write_sib200(out_dir: Path, texts: dict[str, list[str]], labels: list[str]) -> Path:
    """``{L}/{split}.tsv`` with the header ``index_id<TAB>category<TAB>text``."""
    for lang, lines in texts.items():
        (out_dir / lang).mkdir(parents=True, exist_ok=True)
        for split, sl in _splits(len(lines)).items():
            rows = ["index_id\tcategory\ttext"] + [f"{i}\t{labels[i]}\t{lines[i]}" for i in range(len(lines))[sl]]
            (out_dir / lang / f"{split}.tsv").write_text("\n".join(rows) + "\n", encoding="utf-8")
    return out_dir


def treebank_sentences(task: str) -> list[list[tuple[str, str]]]:
    """The Turkish sample as ``[(token, label), ...]`` per sentence: UPOS (``pos``) or BIO ``ENT`` spans (``ner``)."""
    sentences = []
    for block in TREEBANK.read_text(encoding="utf-8").strip().split("\n\n"):
        rows = [line.split("\t") for line in block.splitlines() if line and not line.startswith("#")]
        if task == "pos":
            sentences.append([(r[1], r[3]) for r in rows])
            continue
        sent, prev = [], False
        for r in rows:
            proper = r[5] == "Proper=True"
            sent.append((r[1], ("I-ENT" if prev else "B-ENT") if proper else "O"))
            prev = proper
        sentences.append(sent)
    return sentences


def tagging_labels(task: str) -> list[str]:
    if task == "ner":
        return ["O", "B-ENT", "I-ENT"]
    return sorted({tag for s in treebank_sentences("pos") for _, tag in s})


def _tsv(sentences: list[list[tuple[str, str]]]) -> str:
    return "".join("".join(f"{w}\t{t}\n" for w, t in s) + "\n" for s in sentences)


def write_tagging(out_dir: Path, task: str, n_train: int = 60, n_dev: int = 20, n_test: int = 40) -> Path:
    """``{split}-tur_Latn.tsv`` (train/dev/test) + ``test-trx_Latn.tsv`` (diacritics folded) + ``labels.txt``."""
    out_dir.mkdir(parents=True, exist_ok=True)
    sents = treebank_sentences(task)
    train, dev = sents[:n_train], sents[n_train : n_train + n_dev]
    test = sents[n_train + n_dev : n_train + n_dev + n_test]
    for split, part in (("train", train), ("dev", dev), ("test", test)):
        (out_dir / f"{split}-tur_Latn.tsv").write_text(_tsv(part), encoding="utf-8")
    folded = [[(w.translate(ASCII_FOLD), t) for w, t in s] for s in test]
    (out_dir / "test-trx_Latn.tsv").write_text(_tsv(folded), encoding="utf-8")
    (out_dir / "labels.txt").write_text("\n".join(tagging_labels(task)) + "\n", encoding="utf-8")
    return out_dir
