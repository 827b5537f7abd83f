"""The pipeline of ``translit-ppa encode``: (original, Latin) text -> the sentencepiece piece files
``fairseq-preprocess`` binarizes.

The second step of the ``fairseq-preprocess`` path (README, "With fairseq-preprocess").  Inputs: ``--orig`` and
``--latn``, either two directories of ``{lang_Script}.txt`` files (languages in sorted order, as ``prepare``) or two
files, line i of ``--latn`` being the transliteration of line i of ``--orig`` (``translit-ppa transliterate`` writes
it; a line-count difference is an error, never a shift).  Outputs, for one ``--split``:

    OUT/{split}.orig  OUT/{split}.latn   one pair per line: sentencepiece pieces joined by spaces
    OUT/{split}.encode.json              counts per language, dropped pairs (input line numbers) and why
    DATA/pairing.json                    the split's fingerprint (translit_plugin.data.fingerprint), from the ids
    DATA/{split}.lang.npy, DATA/langs.txt   language ids (directories, or a file with --lang), as prepare writes them

``fairseq-preprocess --only-source --srcdict MODEL/dict.txt`` then turns ``OUT/{split}.orig`` into exactly the ids
``prepare`` stores (``pieces + </s>``; prepare's data-bin and this path's are byte-identical for the same lines).
Each line follows prepare's line contract (:mod:`translit_plugin.core.lines`: a raw line is made one clean line,
so no piece can hold whitespace that fairseq's ``Dictionary.encode_line`` would split on) and prepare's encoding
(:class:`translit_plugin.prepare.encode.SideEncoder`): a line longer than ``--max-length`` - 1 ids is cut to its first
``--max-length`` - 2 pieces (``</s>`` and the task's ``<s>`` make ``--max-length``) or, with ``--overlong drop``,
dropped.  A pair is dropped on both sides together when the original is empty or longer than ``--max-chars``, its
transliteration is empty, or either side encodes to nothing.

Resumable: each language is encoded into ``OUT/.work/{split}/`` with a record of what it depends on (inputs, model,
options; :mod:`translit_plugin.prepare.records`); a rerun re-encodes only what changed, then reassembles.
``--workers`` encodes languages in parallel.

The command line is :mod:`translit_plugin.cli.encode`; one language's encoding is
:func:`translit_plugin.prepare.encode_pairs.encode_language` (prepare's
:class:`~translit_plugin.prepare.encode.SideEncoder`).
"""

from __future__ import annotations

import logging
import os
import shutil
from pathlib import Path
from typing import Any

import numpy as np

from translit_plugin.core.names import DEFAULT_MAX_LENGTH, LATN, ORIG, SIDES
from translit_plugin.prepare.encode_pairs import DROP_REASONS, LangJob, encode_language, piece_paths
from translit_plugin.prepare.latn_check import LatnCheckConfig
from translit_plugin.prepare.records import done_path, looks_written_here

logger = logging.getLogger(__name__)


def check_configs(content_check: bool = True, latn_lines: int | None = LatnCheckConfig.lines,
                  latn_min_similarity: float = LatnCheckConfig.min_similarity) -> dict[str, Any]:
    """``LangJob`` fields of the checks that ``--latn`` is the romanisation of ``--orig`` line for line (README,
    'Checking given romanisations'): the every-line content check (``content_check``) and a uroman sample of
    ``latn_lines`` pairs per language (0: off, None: every pair) failing below ``latn_min_similarity``."""
    from translit_plugin.prepare.content_check import ContentCheckConfig

    return {"content_check": ContentCheckConfig() if content_check else None,
            "latn_check": LatnCheckConfig(lines=latn_lines, min_similarity=latn_min_similarity)
            if latn_lines != 0 else None}


def pair_inputs(orig: Path, latn: Path, lang: str | None, langs: list[str] | None) -> dict[str | None, tuple[Path,
                                                                                                            Path]]:
    """``{lang: (orig file, latn file)}``; the key is None for single files without ``--lang``."""
    from translit_plugin.prepare.inputs import discover_languages

    if orig.is_dir() != latn.is_dir():
        raise SystemExit(f"--orig {orig} and --latn {latn}: give two directories or two files")
    if orig.exists() and latn.exists() and orig.resolve() == latn.resolve():
        raise SystemExit(f"--latn {latn} is --orig itself: the Latin side would be the original text; give its "
                         "romanisation (`translit-ppa transliterate` writes it)")
    if orig.is_dir():
        if lang is not None:
            raise SystemExit("--lang is for single files; directories name their languages ({lang_Script}.txt)")
        files = discover_languages(orig, langs)
        latn_files = discover_languages(latn, list(files))
        pairs: dict[str | None, tuple[Path, Path]] = {k: (files[k], latn_files[k]) for k in files}
    else:
        for p in (orig, latn):
            if not p.is_file():
                raise SystemExit(f"{p}: no such file")
        pairs = {lang: (orig, latn)}
    from translit_plugin.prepare.content_check import same_text_error

    for key, (o, la) in pairs.items():
        problem = same_text_error(str(o), str(la), key)
        if problem:
            raise SystemExit(problem)
    return pairs


def _lang_table(data_bin: Path, langs: list[str]) -> list[str]:
    """Names of language ids: DATA/langs.txt kept as is (other splits use its ids), new languages appended."""
    path = data_bin / "langs.txt"
    if not path.is_file():
        return list(langs)
    names = [x.strip() for x in path.read_text(encoding="utf-8").splitlines() if x.strip()]
    new = [x for x in langs if x not in names]
    if new:
        logger.warning("%s: appending languages %s (ids of the languages already listed do not change)", path, new)
    return names + new


def _encode_languages(jobs: list[LangJob], split: str, workers: int, progress: bool) -> list[dict[str, Any]]:
    """:func:`~translit_plugin.prepare.encode_pairs.encode_language` for every job (``workers`` processes when there are
    several languages)."""
    from tqdm import tqdm

    from translit_plugin.prepare.parallel import run_parallel

    records: list[dict[str, Any]] = []

    def collect(record: dict[str, Any], bar) -> None:
        records.append(record)
        bar.update(1)

    run_parallel(encode_language, jobs, min(workers, len(jobs)),
                 lambda: tqdm(total=len(jobs), unit="lang", desc=f"encode {split}", disable=not progress),
                 collect, ordered=True)
    return records


def _assemble(jobs: list[LangJob], targets: dict[str, Path], work: Path) -> dict[str, Any]:
    """Write ``OUT/{split}.{orig,latn}`` from the languages' piece files, in order; return the split's fingerprint
    entry, computed from the ids."""
    from translit_plugin.core.files import tmp_path
    from translit_plugin.data.fingerprint import SideHasher, split_entry

    hashers = {side: SideHasher() for side in SIDES}
    tmps = {side: tmp_path(targets[side]) for side in SIDES}
    for side in SIDES:
        with open(tmps[side], "wb") as f:
            for job in jobs:
                paths = piece_paths(job)
                with open(paths[f"{side}.txt"], "rb") as part:
                    shutil.copyfileobj(part, f)
                sizes = np.fromfile(paths[f"{side}.sizes"], dtype="<i4")
                ids = np.fromfile(paths[f"{side}.ids"], dtype="<i4")
                if int(sizes.sum()) != len(ids):
                    raise RuntimeError(f"{paths[f'{side}.ids']}: inconsistent with its sizes; delete {work} and rerun")
                hashers[side].add_sizes(sizes)
                hashers[side].add_ids(ids)
    entry = split_entry(hashers[ORIG].result(), hashers[LATN].result())
    for side in SIDES:
        os.replace(tmps[side], targets[side])
    return entry


def _write_lang_ids(data_bin: Path, split: str, names: list[str], records: list[dict[str, Any]]) -> None:
    """``DATA/{split}.lang.npy`` and ``DATA/langs.txt`` as prepare writes them (none without languages)."""
    from translit_plugin.core.files import atomic_write_text, tmp_path

    lang_npy = data_bin / f"{split}.lang.npy"
    data_bin.mkdir(parents=True, exist_ok=True)
    if not names:
        if lang_npy.exists():
            logger.warning("removing %s: these inputs have no language (pass --lang to record one)", lang_npy)
            lang_npy.unlink()
        return
    table = _lang_table(data_bin, names)
    index = {name: i for i, name in enumerate(table)}
    dtype = np.int16 if len(table) < 2**15 else np.int32
    lang_ids = np.concatenate([np.full(r["kept"], index[lang], dtype=dtype) for lang, r in zip(names, records)])
    atomic_write_text(data_bin / "langs.txt", "".join(f"{x}\n" for x in table))
    tmp = tmp_path(lang_npy)
    with open(tmp, "wb") as f:
        np.save(f, lang_ids)
    os.replace(tmp, lang_npy)


ENCODE_COMMAND = "encode"
_OUT_FILES = ("*.orig", "*.latn", "*.encode.json")
_DATA_FILES = ("pairing.json", "langs.txt", "*.lang.npy")


def _looks_like_encode_output(out: Path) -> bool:
    """``OUT`` of this command from before lock files: piece files, summaries and ``.work`` only."""
    return looks_written_here(out, files=_OUT_FILES, dirs=(".work",), need=".work")


def _looks_like_encode_data_bin(data_bin: Path) -> bool:
    """``DATA`` of this command from before lock files: what encode and fairseq-preprocess write there, and not a
    ``prepare`` data-bin (prepare records it beside it)."""
    return (not done_path(data_bin).exists()
            and looks_written_here(data_bin, files=_DATA_FILES, dirs=SIDES, need="pairing.json"))


def encode_split(pairs: dict[str | None, tuple[Path, Path]], split: str, model_dir: Path, out: Path, data_bin: Path,
                 max_length: int = DEFAULT_MAX_LENGTH, overlong: str = "truncate", max_chars: int = 10000,
                 workers: int = 1, progress: bool = True, checks: dict[str, Any] | None = None) -> dict[str, Any]:
    """Encode every language of ``pairs`` and assemble ``OUT/{split}.{orig,latn}``, the split's fingerprint in
    ``DATA/pairing.json``, and its language ids; return the ``OUT/{split}.encode.json`` record.

    ``OUT`` and ``DATA`` are held by this run and must be this command's (new, empty, or written by it before):
    :func:`translit_plugin.core.safe_output.held_output_dir`; nothing is written into anyone else's folder.
    ``checks``: :func:`check_configs` (default: the every-line content check and a uroman sample of 300 pairs)."""
    from contextlib import ExitStack

    from translit_plugin.core.safe_output import check_not_input, check_own_folder, held_output_dir
    from translit_plugin.prepare.inputs import model_files

    if max_length < 3:
        raise SystemExit(f"--max-length {max_length}: must be >= 3 (<s>, one piece, </s>)")
    model_files(model_dir)  # before any folder is made
    inputs = [p for pair in pairs.values() for p in pair] + [model_dir]
    folders = {out: _looks_like_encode_output, data_bin: _looks_like_encode_data_bin}
    if out.resolve() == data_bin.resolve():
        folders = {out: lambda d: _looks_like_encode_output(d) or _looks_like_encode_data_bin(d)}
    for folder, legacy in folders.items():
        check_not_input(folder, inputs, "--output" if folder is out else "--data-bin", allow_inside=True)
        check_own_folder(folder, ENCODE_COMMAND, legacy)
    with ExitStack() as stack:
        for folder, legacy in folders.items():
            stack.enter_context(held_output_dir(folder, ENCODE_COMMAND, legacy))
        return _encode_split_held(pairs, split, model_dir, out, data_bin, max_length, overlong, max_chars, workers,
                                  progress, checks)


def _encode_split_held(pairs: dict[str | None, tuple[Path, Path]], split: str, model_dir: Path, out: Path,
                       data_bin: Path, max_length: int, overlong: str, max_chars: int, workers: int,
                       progress: bool, checks: dict[str, Any] | None = None) -> dict[str, Any]:
    from translit_plugin.core.files import atomic_write_json
    from translit_plugin.core.hashing import sha1_file, stable_key
    from translit_plugin.data.fingerprint import write_pairing
    from translit_plugin.prepare.inputs import model_files

    if max_length < 3:
        raise SystemExit(f"--max-length {max_length}: must be >= 3 (<s>, one piece, </s>)")
    spm_model, dict_path = model_files(model_dir)
    targets = {side: out / f"{split}.{side}" for side in SIDES}
    inputs = {Path(p).resolve() for pair in pairs.values() for p in pair}
    for target in targets.values():
        if target.resolve() in inputs:
            raise SystemExit(f"--output {out}: {target} is one of the inputs; choose another output directory")
    model_key = stable_key({"spm": sha1_file(spm_model), "dict": sha1_file(dict_path)})
    if checks is None:
        checks = check_configs()
    work = out / ".work" / split
    jobs = [LangJob(lang=lang or "all", orig=str(o), latn=str(la), prefix=str(work / (lang or "all")),
                    spm_model=str(spm_model), dict_path=str(dict_path), model_key=model_key, max_length=max_length,
                    overlong=overlong, max_chars=max_chars, lcode=_lcode(lang), **checks)
            for lang, (o, la) in pairs.items()]
    records = _encode_languages(jobs, split, workers, progress)

    out.mkdir(parents=True, exist_ok=True)
    entry = _assemble(jobs, targets, work)
    _write_lang_ids(data_bin, split, [lang for lang in pairs if lang is not None], records)
    write_pairing(data_bin, {split: entry}, dict_path, spm_model)

    summary = {
        "split": split, "pairs": entry["pairs"], "orig": [str(p[0]) for p in pairs.values()],
        "latn": [str(p[1]) for p in pairs.values()], "model_dir": str(model_dir), "max_length": max_length,
        "overlong": overlong, "max_chars": max_chars,
        "per_language": {r["lang"]: {k: r[k] for k in ("lines", "kept", "drops", "truncated", "dropped_lines")}
                         for r in records},
        "outputs": {side: str(targets[side]) for side in SIDES},
    }
    atomic_write_json(out / f"{split}.encode.json", summary, indent=2, ensure_ascii=False)
    drops = {k: sum(r["drops"][k] for r in records) for k in DROP_REASONS}
    logger.info("encode %s: %d pairs -> %s, %s (dropped: %s); fingerprint in %s", split, entry["pairs"],
                targets[ORIG], targets[LATN], drops, data_bin / "pairing.json")
    if entry["pairs"] == 0:
        logger.warning("encode %s: no pairs; fairseq-preprocess would write an empty split the task refuses", split)
    return summary


def _lcode(lang: str | None) -> str | None:
    """uroman code of a ``lang_Script`` (None: no code, for inputs without a language or an unusual name)."""
    from translit_plugin.transliterate import uroman_code

    try:
        return uroman_code(lang) if lang else None
    except ValueError:
        return None


def preprocess_hint(split: str, model_dir: Path, out: Path, data_bin: Path) -> str:
    """The ``fairseq-preprocess`` command that binarizes ``split`` (fairseq knows the splits train, valid, test: one
    ``--{split}pref`` each; other names go in as train and are renamed, or by ``--validpref`` for ``valid1``...)."""
    known = {"train": "train", "test": "test"}
    flag = known.get(split, "valid")
    cmd = (f"fairseq-preprocess --only-source --srcdict {model_dir / 'dict.txt'} --{flag}pref {out / split}.S "
           f"--destdir {data_bin}/S --dataset-impl mmap --workers N")
    if flag == "valid" and split != "valid":
        return (f"for each side S in orig latn: {cmd}, then rename {data_bin}/S/valid.bin and .idx to {split}.bin "
                f"and .idx (fairseq-preprocess names them valid); all splits of a side can go in one run (see README)")
    return f"for each side S in orig latn: {cmd} (all splits of a side can go in one run, see README)"
