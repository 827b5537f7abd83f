"""Readers for the evaluation datasets, in the layouts users already hold:

- Retrieval (SR-B / Tatoeba): ``{prefix}.{L}-eng_Latn.{L}`` and ``{prefix}.{L}-eng_Latn.eng_Latn``, line-parallel.
- Language lists: ``lang_Script\\t{0|1}`` per line.
- Taxi1500: ``860_{L}_train.tsv``, ``{L}_dev.tsv``, ``{L}_test.tsv`` (TSV, no header: id, label, verse), either
  directly in the data directory or in ``{data_dir}/{L}/``.
- SIB-200: ``{data_dir}/{L}/{train,dev,test}.tsv`` with a header; columns ``category`` and ``text``.
- Tagging (WikiAnn NER, UD POS): ``{data_dir}/{split}-{L}.tsv``, ``token\\tlabel`` per line, blank line between
  sentences, ``labels.txt`` one label per line.

Every problem raises :class:`EvalDataError` naming the file (and line) and what to do, so the evaluation grid can
record it for that language and go on with the others.
"""

from __future__ import annotations

import csv
import logging
import os
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

logger = logging.getLogger(__name__)

ENGLISH = "eng_Latn"
#: Label given to a tagging line that does not have exactly two fields (the reference reader does the same).
DEFAULT_TAG = {"ner": "O", "pos": "X"}
SPLITS = ("train", "dev", "test")
_MAX_REPORTED_LINES = 5


class EvalDataError(ValueError):
    """A dataset file is missing, empty or malformed; the message names the file, line and the fix."""


@dataclass
class ClassificationData:
    """Sentences with one label each (Taxi1500, SIB-200)."""

    texts: list[str]
    labels: list[str]
    path: str
    warnings: list[str] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.texts)


@dataclass
class TaggingData:
    """Sentences as word lists with one label per word (WikiAnn NER, UD POS)."""

    sentences: list[list[str]]
    labels: list[list[str]]
    path: str
    warnings: list[str] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.sentences)


def _read_lines(path: Path) -> list[str]:
    if not path.is_file():
        raise EvalDataError(f"file not found: {path}")
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as e:
        raise EvalDataError(f"{path}: not valid UTF-8 ({e}); re-encode the file as UTF-8") from e
    lines = text.split("\n")
    if lines and lines[-1] == "":
        lines.pop()  # trailing newline
    return [line.rstrip("\r") for line in lines]


def _limit(items: list, max_examples: int | None) -> list:
    return items if max_examples is None or max_examples <= 0 else items[:max_examples]


# ----------------------------------------------------------------------------------------------------------------
# Language lists


def read_language_list(path: str | os.PathLike, flag: int | None = None) -> list[str]:
    """Read ``lang_Script\\t{0|1}`` lines; return the languages (only those with ``flag`` when given)."""
    path = Path(path)
    langs: list[str] = []
    for lineno, line in enumerate(_read_lines(path), start=1):
        if not line.strip() or line.startswith("#"):
            continue
        parts = line.split("\t")
        if len(parts) == 1:
            parts = line.split()
        if len(parts) != 2 or parts[1].strip() not in ("0", "1"):
            raise EvalDataError(f"{path}:{lineno}: expected 'lang_Script<TAB>0|1', got {line!r}")
        if flag is None or int(parts[1]) == flag:
            langs.append(parts[0].strip())
    if not langs:
        raise EvalDataError(f"{path}: no languages listed" + (f" with flag {flag}" if flag is not None else ""))
    return langs


# ----------------------------------------------------------------------------------------------------------------
# Retrieval


def retrieval_paths(data_dir: str | os.PathLike, lang: str, prefix: str = "bible") -> tuple[Path, Path]:
    """``(lang side, English side)`` file paths of one language's parallel retrieval files."""
    base = Path(data_dir) / f"{prefix}.{lang}-{ENGLISH}"
    return Path(f"{base}.{lang}"), Path(f"{base}.{ENGLISH}")


def discover_retrieval_languages(data_dir: str | os.PathLike, prefix: str = "bible") -> list[str]:
    """Languages with at least one file of the ``{prefix}.{L}-eng_Latn.*`` pair in ``data_dir`` (sorted)."""
    pattern = re.compile(rf"^{re.escape(prefix)}\.(.+)-{ENGLISH}\.(.+)$")
    langs = set()
    for p in Path(data_dir).iterdir() if Path(data_dir).is_dir() else []:
        m = pattern.match(p.name)
        if m and m.group(2) in (m.group(1), ENGLISH):
            langs.add(m.group(1))
    return sorted(langs)


def read_retrieval_pair(
    data_dir: str | os.PathLike, lang: str, prefix: str = "bible", max_examples: int | None = None
) -> tuple[list[str], list[str]]:
    """Read one language's parallel retrieval files: ``(lang sentences, English sentences)``, line i parallel."""
    lang_path, eng_path = retrieval_paths(data_dir, lang, prefix)
    if lang == ENGLISH:
        raise EvalDataError(f"{lang} has no retrieval file of its own; it is the pivot of every {prefix} pair")
    for p in (lang_path, eng_path):
        if not p.is_file():
            raise EvalDataError(
                f"{lang}: missing retrieval file {p}; expected both {lang_path.name} and {eng_path.name} in {data_dir}"
            )
    src, eng = _read_lines(lang_path), _read_lines(eng_path)
    for p, lines in ((lang_path, src), (eng_path, eng)):
        if not lines:
            raise EvalDataError(f"{lang}: retrieval file {p} is empty")
    if len(src) != len(eng):
        raise EvalDataError(
            f"{lang}: {lang_path.name} has {len(src)} lines but {eng_path.name} has {len(eng)}; the files must be "
            "line-parallel (line i of one is the translation of line i of the other)"
        )
    empty = [i + 1 for i, (a, b) in enumerate(zip(src, eng)) if not a.strip() or not b.strip()]
    if empty:
        logger.warning("%s: %d empty line(s) in %s pair (lines %s...)", lang, len(empty), prefix, empty[:5])
    return _limit(src, max_examples), _limit(eng, max_examples)


# ----------------------------------------------------------------------------------------------------------------
# Classification


def taxi1500_paths(data_dir: str | os.PathLike, lang: str) -> dict[str, Path]:
    """Paths of a language's Taxi1500 splits, in ``{data_dir}/{lang}/`` if that folder exists, else ``{data_dir}``."""
    root = Path(data_dir)
    base = root / lang if (root / lang).is_dir() else root
    return {"train": base / f"860_{lang}_train.tsv", "dev": base / f"{lang}_dev.tsv", "test": base / f"{lang}_test.tsv"}


def sib200_paths(data_dir: str | os.PathLike, lang: str) -> dict[str, Path]:
    """Paths of a language's SIB-200 splits: ``{data_dir}/{lang}/{split}.tsv``."""
    return {split: Path(data_dir) / lang / f"{split}.tsv" for split in SPLITS}


def discover_classification_languages(data_dir: str | os.PathLike, task: str) -> list[str]:
    """Languages with any split file of ``task`` (``taxi1500`` or ``sib200``) under ``data_dir`` (sorted)."""
    root = Path(data_dir)
    if not root.is_dir():
        raise EvalDataError(f"{task} data directory not found: {root}")
    langs: set[str] = set()
    if task == "sib200":
        for sub in root.iterdir():
            if sub.is_dir() and any((sub / f"{s}.tsv").is_file() for s in SPLITS):
                langs.add(sub.name)
    elif task == "taxi1500":
        pattern = re.compile(r"^(?:860_)?(.+)_(train|dev|test)\.tsv$")
        for p in list(root.glob("*.tsv")) + list(root.glob("*/*.tsv")):
            m = pattern.match(p.name)
            if m:
                langs.add(m.group(1))
    else:
        raise ValueError(f"unknown classification task {task!r}")
    return sorted(langs)


def read_taxi1500(path: str | os.PathLike, max_examples: int | None = None) -> ClassificationData:
    """Read a Taxi1500 TSV (no header; ``id, label, verse``; tabs inside the verse are kept)."""
    path = Path(path)
    texts, labels, bad = [], [], []
    for lineno, line in enumerate(_read_lines(path), start=1):
        if not line.strip():
            continue
        parts = line.split("\t")
        if len(parts) < 3 or not parts[1].strip() or not "\t".join(parts[2:]).strip():
            bad.append(lineno)
            continue
        labels.append(parts[1].strip())
        texts.append("\t".join(parts[2:]).strip())
    return _finish_classification(path, texts, labels, bad, "'id<TAB>label<TAB>verse'", max_examples)


def read_sib200(path: str | os.PathLike, max_examples: int | None = None) -> ClassificationData:
    """Read a SIB-200 TSV with a header; the ``category`` and ``text`` columns are used."""
    path = Path(path)
    lines = _read_lines(path)
    if not lines:
        raise EvalDataError(f"{path}: file is empty (a header with 'category' and 'text' columns is expected)")
    header = lines[0].split("\t")
    missing = [c for c in ("category", "text") if c not in header]
    if missing:
        raise EvalDataError(f"{path}:1: header {header} lacks column(s) {missing}; SIB-200 files need a header row")
    ci, ti = header.index("category"), header.index("text")
    texts, labels, bad = [], [], []
    # QUOTE_NONE: text is taken literally (a sentence that starts with a quote keeps it).
    reader = csv.reader(lines[1:], delimiter="\t", quoting=csv.QUOTE_NONE)
    for lineno, row in enumerate(reader, start=2):
        if not any(cell.strip() for cell in row):
            continue
        if len(row) != len(header) or not row[ci].strip() or not row[ti].strip():
            bad.append(lineno)
            continue
        labels.append(row[ci].strip())
        texts.append(row[ti].strip())
    return _finish_classification(path, texts, labels, bad, f"{len(header)} tab-separated columns", max_examples)


def _finish_classification(
    path: Path, texts: list[str], labels: list[str], bad: list[int], expected: str, max_examples: int | None
) -> ClassificationData:
    warnings = []
    if bad:
        msg = (
            f"{path}: skipped {len(bad)} malformed line(s) (expected {expected}), "
            f"lines {bad[:_MAX_REPORTED_LINES]}{'...' if len(bad) > _MAX_REPORTED_LINES else ''}"
        )
        logger.warning(msg)
        warnings.append(msg)
    if not texts:
        raise EvalDataError(f"{path}: no usable examples (empty file or every line malformed; expected {expected})")
    return ClassificationData(_limit(texts, max_examples), _limit(labels, max_examples), str(path), warnings)


def read_classification(
    task: str, data_dir: str | os.PathLike, lang: str, split: str, max_examples: int | None = None
) -> ClassificationData:
    """Read one split of one language for ``task`` (``taxi1500`` or ``sib200``)."""
    if task == "taxi1500":
        return read_taxi1500(taxi1500_paths(data_dir, lang)[split], max_examples)
    if task == "sib200":
        return read_sib200(sib200_paths(data_dir, lang)[split], max_examples)
    raise ValueError(f"unknown classification task {task!r}")


def check_labels(data: ClassificationData | TaggingData, known: Iterable[str], what: str) -> None:
    """Raise if ``data`` uses a label outside ``known`` (naming the first example that does)."""
    known = set(known)
    if isinstance(data, ClassificationData):
        for i, label in enumerate(data.labels):
            if label not in known:
                raise EvalDataError(
                    f"{data.path}: example {i + 1} has label {label!r}, which is not among the {what} "
                    f"{sorted(known)}; fix the file or add the label there"
                )
    else:
        for i, labels in enumerate(data.labels):
            for label in labels:
                if label not in known:
                    raise EvalDataError(
                        f"{data.path}: sentence {i + 1} has label {label!r}, which is not among the {what} "
                        f"{sorted(known)}; fix the file or add the label there"
                    )


# ----------------------------------------------------------------------------------------------------------------
# Tagging


def tagging_path(data_dir: str | os.PathLike, lang: str, split: str) -> Path:
    """``{data_dir}/{split}-{lang}.tsv``."""
    return Path(data_dir) / f"{split}-{lang}.tsv"


def discover_tagging_languages(data_dir: str | os.PathLike) -> list[str]:
    """Languages with any ``{split}-{lang}.tsv`` file in ``data_dir`` (sorted)."""
    root = Path(data_dir)
    if not root.is_dir():
        raise EvalDataError(f"tagging data directory not found: {root}")
    pattern = re.compile(r"^(train|dev|test)-(.+)\.tsv$")
    return sorted({m.group(2) for p in root.glob("*.tsv") if (m := pattern.match(p.name))})


def read_label_list(data_dir: str | os.PathLike) -> list[str]:
    """Read ``{data_dir}/labels.txt`` (one label per line, order kept)."""
    path = Path(data_dir) / "labels.txt"
    if not path.is_file():
        raise EvalDataError(f"label list not found: {path} (one label per line is expected)")
    labels = [line.strip() for line in _read_lines(path) if line.strip()]
    if not labels:
        raise EvalDataError(f"{path}: label list is empty")
    if len(set(labels)) != len(labels):
        raise EvalDataError(f"{path}: duplicate labels {sorted({x for x in labels if labels.count(x) > 1})}")
    return labels


def read_tagging(
    path: str | os.PathLike,
    task: str,
    label_set: Iterable[str] | None = None,
    max_examples: int | None = None,
) -> TaggingData:
    """Read a tagging file: ``token\\tlabel`` per line, blank line (or ``-DOCSTART-``) between sentences.

    As in the reference reader, a line without exactly two fields gets the default label (``O`` for NER, ``X`` for
    POS); we also warn about it, naming the lines. A line whose token is empty is skipped with a warning. A label
    outside ``label_set`` raises :class:`EvalDataError` naming the file and line.
    """
    path = Path(path)
    if task not in DEFAULT_TAG:
        raise ValueError(f"unknown tagging task {task!r}; expected one of {sorted(DEFAULT_TAG)}")
    default = DEFAULT_TAG[task]
    known = set(label_set) if label_set is not None else None
    sentences: list[list[str]] = []
    labels: list[list[str]] = []
    words: list[str] = []
    tags: list[str] = []
    defaulted: list[int] = []
    skipped: list[int] = []
    lines = _read_lines(path)
    for lineno, line in enumerate(lines + [""], start=1):
        if not line.strip() or line.startswith("-DOCSTART-"):
            if words:
                sentences.append(words)
                labels.append(tags)
                words, tags = [], []
            continue
        parts = line.split("\t")
        token = parts[0].strip()
        if not token:
            skipped.append(lineno)
            continue
        if len(parts) == 2 and parts[1].strip():
            tag = parts[1].strip()
        else:
            tag = default
            defaulted.append(lineno)
        if known is not None and tag not in known:
            raise EvalDataError(
                f"{path}:{lineno}: label {tag!r} is not in labels.txt ({len(known)} labels); "
                "fix the line or add the label to labels.txt"
            )
        words.append(token)
        tags.append(tag)
    warnings = []
    for what, where in ((f"given the default label {default!r} (not exactly two fields)", defaulted),
                        ("skipped (empty token)", skipped)):
        if where:
            msg = (f"{path}: {len(where)} line(s) {what}: lines {where[:_MAX_REPORTED_LINES]}"
                   f"{'...' if len(where) > _MAX_REPORTED_LINES else ''}")
            logger.warning(msg)
            warnings.append(msg)
    if not sentences:
        raise EvalDataError(f"{path}: no sentences (the file is empty or has no 'token<TAB>label' lines)")
    return TaggingData(_limit(sentences, max_examples), _limit(labels, max_examples), str(path), warnings)
