"""Test helpers for the training tests: a tiny prepared data-bin built from the shipped demo corpus.

Layout written (what ``translit-ppa prepare`` writes): ``DATA/{orig,latn}/{train,valid}.{bin,idx}``, ``dict.txt`` in
both, ``DATA/{split}.lang.npy`` and ``DATA/langs.txt``.  The Latin side is the real uroman transliteration.
"""

from __future__ import annotations

import functools
import shutil
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
CORPUS = REPO / "examples" / "data" / "train"
LANGS = ("ara_Arab", "ell_Grek", "kor_Hang", "heb_Hebr")
UROMAN_CODES = {"ara_Arab": "ara", "ell_Grek": "ell", "kor_Hang": "kor", "heb_Hebr": "heb"}


def read_lines(lang: str, n: int, offset: int = 0) -> list[str]:
    with open(CORPUS / f"{lang}.txt", encoding="utf-8") as f:
        lines = [line.rstrip("\n") for line in f]
    return lines[offset: offset + n]


@functools.lru_cache(maxsize=1)
def _uroman():
    import uroman

    return uroman.Uroman()


def romanize(lines: list[str]) -> list[str]:
    ur = _uroman()
    return [ur.romanize_string(line) for line in lines]  # no language code: as the reference (Perl) uroman


def train_spm(out_dir: Path, vocab_size: int = 600, lines_per_lang: int = 300) -> Path:
    """A small XLM-R-layout sentencepiece model trained on original and romanized text of :data:`LANGS`."""
    import sentencepiece as spm

    out_dir.mkdir(parents=True, exist_ok=True)
    text = out_dir / "spm_train.txt"
    with open(text, "w", encoding="utf-8") as f:
        for lang in LANGS:
            orig = read_lines(lang, lines_per_lang)
            f.write("\n".join(orig + romanize(orig)) + "\n")
    spm.SentencePieceTrainer.train(
        input=str(text), model_prefix=str(out_dir / "sentencepiece.bpe"), vocab_size=vocab_size, model_type="unigram",
        character_coverage=0.9995, num_threads=1, unk_id=0, bos_id=1, eos_id=2, pad_id=-1, minloglevel=2,
    )  # single-threaded: deterministic
    return out_dir / "sentencepiece.bpe.model"


def encode(sp, dictionary, line: str) -> list[int]:
    """Sentence -> fairseq ids of ``pieces + </s>`` (what fairseq-preprocess writes with the model's dict)."""
    return [dictionary.index(p) for p in sp.EncodeAsPieces(line)] + [dictionary.eos()]


def write_split(prefix: Path, rows: list[list[int]], vocab_size: int) -> None:
    import torch
    from fairseq.data import indexed_dataset

    prefix.parent.mkdir(parents=True, exist_ok=True)
    builder = indexed_dataset.make_builder(str(prefix) + ".bin", impl="mmap", vocab_size=vocab_size)
    for ids in rows:
        builder.add_item(torch.IntTensor(ids))
    builder.finalize(str(prefix) + ".idx")


def build_data_bin(
    out_dir: Path,
    spm_model: Path,
    train_per_lang: int = 40,
    valid_per_lang: int = 8,
    langs: tuple[str, ...] = LANGS,
) -> Path:
    """Write a tiny prepared data-bin under ``out_dir`` (see module docstring) and return it."""
    from fairseq.data import Dictionary

    from translit_plugin.vocab import load_spm, write_fairseq_dict

    sp = load_spm(spm_model)
    (out_dir / "orig").mkdir(parents=True, exist_ok=True)
    (out_dir / "latn").mkdir(parents=True, exist_ok=True)
    write_fairseq_dict(spm_model, out_dir / "orig" / "dict.txt")
    shutil.copyfile(out_dir / "orig" / "dict.txt", out_dir / "latn" / "dict.txt")
    d = Dictionary.load(str(out_dir / "orig" / "dict.txt"))
    (out_dir / "langs.txt").write_text("\n".join(langs) + "\n", encoding="utf-8")
    splits = {"train": (0, train_per_lang), "valid": (1000, valid_per_lang)}
    for split, (offset, n) in splits.items():
        orig_rows, latn_rows, lang_ids = [], [], []
        for k, lang in enumerate(langs):
            orig = read_lines(lang, n, offset)
            latn = romanize(orig)
            orig_rows += [encode(sp, d, s) for s in orig]
            latn_rows += [encode(sp, d, s) for s in latn]
            lang_ids += [k] * len(orig)
        write_split(out_dir / "orig" / split, orig_rows, len(d) + 1)
        write_split(out_dir / "latn" / split, latn_rows, len(d) + 1)
        np.save(out_dir / f"{split}.lang.npy", np.asarray(lang_ids, dtype=np.int64))
    return out_dir


def cached_data_bin(base_tmp: Path, **kwargs) -> Path:
    """:func:`build_data_bin` on a small spm model, built once per pytest session under ``base_tmp``.

    Pass ``tmp_path_factory.getbasetemp()``; the first test file that asks builds it (~15 s, mostly uroman's start-up)
    and later ones reuse it.  Tests must not modify it (copy it first).
    """
    key = "_".join(f"{k}{v}" for k, v in sorted(kwargs.items())) or "default"
    root = base_tmp / f"translit_data_{key}"
    done = root / "DONE"
    if not done.exists():
        if root.exists():
            shutil.rmtree(root)
        spm_model = train_spm(root / "spm")
        build_data_bin(root / "data", spm_model, **kwargs)
        done.touch()
    return root / "data"
