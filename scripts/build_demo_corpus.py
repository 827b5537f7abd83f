#!/usr/bin/env python3
"""Build the shipped demo corpus ``examples/data/`` from Chromium's UI translations (Debian ``chromium-l10n``).

Input: the ``chromium-l10n`` Debian package, either the ``.deb`` file itself or a directory it was unpacked into
(anything containing ``usr/lib/chromium/locales/*.pak``, or that ``locales`` directory).  Get it with::

    apt-get download chromium-l10n          # e.g. chromium-l10n_156.0.8078.108-1~deb12u1_all.deb
    python scripts/build_demo_corpus.py --source chromium-l10n_*.deb

Output (``--out``, default ``examples/data``)::

    train/{lang_Script}.txt   monolingual training text, one cleaned UI string per line (no held-out string)
    dev/{lang_Script}.txt     held-apart retrieval dev set: line i of every file is the same message id
    dev/message_ids.txt       the Chromium message id (and its .grd source) of each dev line
    provenance.json           package version, per-language counts, cleaning rules, seed
    LICENSE                   Chromium's BSD-3-Clause licence (the translations are part of Chromium)

Each locale ``.pak`` (format version 5) maps a numeric message id to a UTF-8 string; the same id is the same message
in every locale, so the locales form a ~10-way parallel set.  Cleaning (``clean_message``) unescapes HTML entities,
drops HTML tags and bidi controls, removes ``$1``-style placeholders and the empty brackets/quotes they leave, drops
ICU plural/select messages, collapses all whitespace (newlines, U+2028, ...) to one space, and keeps a string only if
enough of its letters are in the language's script (untranslated English is dropped for the other languages).
Only the plain locale files are read (``ar.pak``, not the grammatical-gender variants ``ar_MASCULINE.pak``).
Standard library only, so it runs anywhere.
"""

from __future__ import annotations

import argparse
import gzip
import html
import io
import json
import logging
import random
import re
import struct
import sys
import tarfile
import unicodedata
from collections import Counter
from pathlib import Path

logger = logging.getLogger("build_demo_corpus")

#: lang_Script code -> (Chromium locale, Unicode script name required for most letters, or None for Latin)
LANGUAGES: dict[str, tuple[str, str | None]] = {
    "ara_Arab": ("ar", "ARABIC"),
    "fas_Arab": ("fa", "ARABIC"),
    "amh_Ethi": ("am", "ETHIOPIC"),
    "ell_Grek": ("el", "GREEK"),
    "heb_Hebr": ("he", "HEBREW"),
    "tur_Latn": ("tr", "LATIN"),
    "zho_Hans": ("zh-CN", "CJK"),
    "zho_Hant": ("zh-TW", "CJK"),
    "kor_Hang": ("ko", "HANGUL"),
    "tha_Thai": ("th", "THAI"),
    "eng_Latn": ("en-GB", "LATIN"),
}
ENGLISH = "eng_Latn"

_TAG = re.compile(r"</?[A-Za-z][^<>]*>")
_PLACEHOLDER = re.compile(r"\$\d+")
_ICU = re.compile(r"\{\s*[A-Za-z_0-9]+\s*,\s*(plural|select|selectordinal)\s*,")
_EMPTY_PAIRS = re.compile(r"\(\s*\)|\[\s*\]|「\s*」|“\s*”|‘\s*’|\"\s*\"|«\s*»|（\s*）|《\s*》|『\s*』|\s*'\s*'")
_SPACE_BEFORE_PUNCT = re.compile(r"\s+([,.;:!?،؛؟、。，：；！？])")
_URL = re.compile(r"[a-z]+://|www\.", re.IGNORECASE)
# Bidi marks/embeddings/isolates and BOM/word joiner: UI strings carry them for rendering only.  ZWJ/ZWNJ stay (Persian
# and others spell words with them).
_BIDI_CONTROLS = set("\u200e\u200f\u061c\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069\ufeff\u2060")


# ----------------------------------------------------------------------------------------------------------------
# Reading the package
# ----------------------------------------------------------------------------------------------------------------
def read_pak(data: bytes, name: str = "<pak>") -> dict[int, str]:
    """Parse a Chromium ``.pak`` (version 4 or 5) into ``{message_id: text}``; aliases resolve to their target.

    v5 layout: ``uint32 version, uint8 encoding, 3 pad, uint16 n_resources, uint16 n_aliases``, then
    ``n_resources + 1`` entries ``(uint16 id, uint32 offset)`` (the last one is a sentinel giving the end), then
    ``n_aliases`` entries ``(uint16 id, uint16 entry_index)``.  Resources may be gzip-compressed.
    """
    version = struct.unpack_from("<I", data, 0)[0]
    if version == 5:
        encoding = data[4]
        n_res, n_alias = struct.unpack_from("<HH", data, 8)
        off = 12
    elif version == 4:
        n_res, encoding = struct.unpack_from("<IB", data, 4)
        n_alias, off = 0, 9
    else:
        raise ValueError(f"{name}: unsupported .pak version {version} (expected 4 or 5)")
    if encoding not in (0, 1):  # 0 = binary, 1 = UTF-8, 2 = UTF-16
        raise ValueError(f"{name}: unsupported text encoding {encoding}")
    entries = [struct.unpack_from("<HI", data, off + 6 * i) for i in range(n_res + 1)]
    out: dict[int, str] = {}
    for i in range(n_res):
        rid, start = entries[i]
        blob = data[start : entries[i + 1][1]]
        if blob[:2] == b"\x1f\x8b":
            blob = gzip.decompress(blob)
        try:
            out[rid] = blob.decode("utf-8")
        except UnicodeDecodeError:
            logger.debug("%s: message %d is not UTF-8 text; skipped", name, rid)
    alias_off = off + 6 * (n_res + 1)
    for j in range(n_alias):
        rid, index = struct.unpack_from("<HH", data, alias_off + 4 * j)
        target = entries[index][0]
        if target in out:
            out[rid] = out[target]
    return out


def _deb_members(deb: Path) -> dict[str, bytes]:
    """Members of a Debian ``ar`` archive."""
    data = deb.read_bytes()
    if not data.startswith(b"!<arch>\n"):
        raise ValueError(f"{deb}: not a Debian package (no ar magic)")
    pos, members = 8, {}
    while pos + 60 <= len(data):
        header = data[pos : pos + 60]
        name = header[:16].decode("ascii").strip().rstrip("/")
        size = int(header[48:58].decode("ascii").strip())
        members[name] = data[pos + 60 : pos + 60 + size]
        pos += 60 + size + (size & 1)
    return members


def load_locales(source: Path, locales: list[str]) -> tuple[dict[str, bytes], dict[str, bytes], str]:
    """Return ``({locale: pak bytes}, {locale: pak.info bytes}, description of the source)``."""
    wanted = {f"{loc}.pak" for loc in locales} | {f"{loc}.pak.info" for loc in locales}
    files: dict[str, bytes] = {}
    if source.is_file():
        members = _deb_members(source)
        data_name = next((n for n in members if n.startswith("data.tar")), None)
        if data_name is None:
            raise ValueError(f"{source}: no data.tar.* member; is this chromium-l10n?")
        with tarfile.open(fileobj=io.BytesIO(members[data_name]), mode="r:*") as tar:
            for member in tar:
                base = member.name.rsplit("/", 1)[-1]
                if member.isfile() and "/locales/" in member.name and base in wanted:
                    files[base] = tar.extractfile(member).read()
        described = source.name
    else:
        candidates = [source, source / "usr/lib/chromium/locales", source / "locales"]
        locale_dir = next((d for d in candidates if (d / f"{locales[0]}.pak").is_file()), None)
        if locale_dir is None:
            raise FileNotFoundError(f"{source}: no {locales[0]}.pak found (looked in {[str(c) for c in candidates]})")
        for name in wanted:
            if (locale_dir / name).is_file():
                files[name] = (locale_dir / name).read_bytes()
        described = str(locale_dir)
    missing = sorted(f"{loc}.pak" for loc in locales if f"{loc}.pak" not in files)
    if missing:
        raise FileNotFoundError(f"{source}: missing locale files {missing}")
    paks = {loc: files[f"{loc}.pak"] for loc in locales}
    infos = {loc: files[f"{loc}.pak.info"] for loc in locales if f"{loc}.pak.info" in files}
    return paks, infos, described


def parse_info(data: bytes) -> dict[int, tuple[str, str]]:
    """``.pak.info`` lines ``IDS_NAME,id,source.grd`` -> ``{id: (IDS_NAME, source)}``."""
    out = {}
    for line in data.decode("utf-8").splitlines():
        parts = line.split(",")
        if len(parts) >= 3 and parts[1].isdigit():
            out[int(parts[1])] = (parts[0], parts[2])
    return out


# ----------------------------------------------------------------------------------------------------------------
# Cleaning
# ----------------------------------------------------------------------------------------------------------------
def _script_of(ch: str) -> str | None:
    try:
        name = unicodedata.name(ch)
    except ValueError:
        return None
    if name.startswith(("CJK", "HALFWIDTH", "FULLWIDTH", "IDEOGRAPHIC")):
        return "CJK"
    return name.split(" ", 1)[0]


def script_fraction(text: str, script: str) -> float:
    """Fraction of the letters in ``text`` that belong to ``script`` (0 when there are no letters)."""
    letters = [c for c in text if c.isalpha()]
    if not letters:
        return 0.0
    return sum(1 for c in letters if _script_of(c) == script) / len(letters)


def clean_message(text: str) -> str:
    """One UI string -> one clean line ("" when nothing usable is left)."""
    if _ICU.search(text):
        return ""  # plural/select messages: several variants glued together, not a sentence
    text = _TAG.sub(" ", text)
    text = html.unescape(text)
    text = _TAG.sub(" ", text)  # escaped tags (&lt;b&gt;) become tags only after unescaping
    text = _PLACEHOLDER.sub("", text)
    text = "".join(" " if unicodedata.category(c) in ("Zl", "Zp", "Cc") else c for c in text)
    text = "".join(c for c in text if c not in _BIDI_CONTROLS)
    text = " ".join(text.split())
    for _ in range(2):
        text = _EMPTY_PAIRS.sub("", text)
    text = _SPACE_BEFORE_PUNCT.sub(r"\1", text)
    text = " ".join(text.split()).strip(" :;,-–—")
    return unicodedata.normalize("NFC", text)


def keep(text: str, lang: str, english: str | None, min_script_fraction: float) -> bool:
    """Whether a cleaned string is real text in ``lang`` (its script, not a copy of English, not a URL)."""
    script = LANGUAGES[lang][1]
    if len(text) < 2 or not any(c.isalpha() for c in text) or _URL.search(text):
        return False
    if lang != ENGLISH and english is not None and text == english:
        return False  # untranslated
    return script_fraction(text, script) >= min_script_fraction


# ----------------------------------------------------------------------------------------------------------------
# Build
# ----------------------------------------------------------------------------------------------------------------
def build(
    source: Path, out: Path, dev_size: int, seed: int, min_script_fraction: float, max_train_per_lang: int | None
) -> dict:
    """Write ``train/``, ``dev/``, ``provenance.json`` under ``out``; return the provenance record."""
    codes = list(LANGUAGES)
    locales = [LANGUAGES[c][0] for c in codes]
    paks, infos, described = load_locales(source, locales)
    info = parse_info(next(iter(infos.values()))) if infos else {}
    raw = {code: read_pak(paks[LANGUAGES[code][0]], f"{LANGUAGES[code][0]}.pak") for code in codes}
    english_raw = raw[ENGLISH]
    english_clean = {mid: clean_message(t) for mid, t in english_raw.items()}

    cleaned: dict[str, dict[int, str]] = {}
    for code in codes:
        kept = {}
        for mid, text in raw[code].items():
            line = clean_message(text)
            if line and keep(line, code, english_clean.get(mid), min_script_fraction):
                kept[mid] = line
        cleaned[code] = kept
        logger.info("%s: %d messages, %d kept after cleaning", code, len(raw[code]), len(kept))

    # Dev set: ids usable in every language, English with >= 4 words, and a distinct text per language (so a
    # retrieval query has exactly one right answer).
    common = set.intersection(*(set(c) for c in cleaned.values()))
    candidates = []
    for mid in sorted(common):
        if len(cleaned[ENGLISH][mid].split()) < 4:
            continue
        candidates.append(mid)
    seen: dict[str, set[str]] = {c: set() for c in codes}
    unique = []
    for mid in candidates:
        if all(cleaned[c][mid] not in seen[c] for c in codes):
            unique.append(mid)
            for c in codes:
                seen[c].add(cleaned[c][mid])
    rng = random.Random(seed)
    if len(unique) < dev_size:
        raise ValueError(f"only {len(unique)} messages usable for the dev set, {dev_size} requested")
    dev_ids = sorted(rng.sample(unique, dev_size))

    (out / "train").mkdir(parents=True, exist_ok=True)
    (out / "dev").mkdir(parents=True, exist_ok=True)
    counts = {}
    for code in codes:
        dev_lines = [cleaned[code][mid] for mid in dev_ids]
        dev_texts = set(dev_lines)
        train, seen_train = [], set()
        for mid in sorted(cleaned[code]):
            line = cleaned[code][mid]
            if mid in dev_ids or line in dev_texts or line in seen_train:
                continue  # held apart (also by text) and deduplicated
            seen_train.add(line)
            train.append(line)
        if max_train_per_lang is not None and len(train) > max_train_per_lang:
            keep_idx = sorted(random.Random(f"{seed}-{code}").sample(range(len(train)), max_train_per_lang))
            train = [train[i] for i in keep_idx]
        for path, lines in ((out / "train" / f"{code}.txt", train), (out / "dev" / f"{code}.txt", dev_lines)):
            for i, line in enumerate(lines):
                assert line == " ".join(line.split()) and line, (path, i, line)
            path.write_text("".join(line + "\n" for line in lines), encoding="utf-8", newline="\n")
        counts[code] = {
            "locale": LANGUAGES[code][0],
            "messages": len(raw[code]),
            "kept": len(cleaned[code]),
            "train_lines": len(train),
            "dev_lines": len(dev_lines),
            "train_bytes": (out / "train" / f"{code}.txt").stat().st_size,
        }
    with open(out / "dev" / "message_ids.txt", "w", encoding="utf-8") as f:
        for mid in dev_ids:
            name, grd = info.get(mid, ("?", "?"))
            f.write(f"{mid}\t{name}\t{grd}\n")
    grd_counts = Counter(info.get(mid, ("?", "?"))[1] for mid in dev_ids)
    provenance = {
        "source": "Debian package chromium-l10n (Chromium UI translations), BSD-3-Clause",
        "source_file": described,
        "languages": counts,
        "dev_size": dev_size,
        "dev_sources_top": grd_counts.most_common(10),
        "seed": seed,
        "min_script_fraction": min_script_fraction,
        "max_train_per_lang": max_train_per_lang,
        "cleaning": [
            "ICU plural/select messages dropped",
            "HTML tags removed, HTML entities unescaped",
            "$1-style placeholders removed, then the empty brackets/quotes they leave",
            "bidi marks/embeddings/isolates, BOM and word joiner removed (ZWJ/ZWNJ kept); control characters and line/"
            "paragraph separators -> space",
            "whitespace collapsed; NFC",
            "kept if >= 2 chars, has a letter, no URL, not identical to the English string (non-English), and "
            "at least min_script_fraction of its letters are in the language's script",
            "train: dev strings removed (by id and by text), duplicates removed",
        ],
    }
    (out / "provenance.json").write_text(json.dumps(provenance, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    return provenance


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--source", type=Path, required=True,
                        help="chromium-l10n .deb, or the directory it was unpacked into")
    parser.add_argument("--out", type=Path, default=Path(__file__).resolve().parents[1] / "examples" / "data")
    parser.add_argument("--dev-size", type=int, default=500, help="parallel dev strings held apart (default: 500)")
    parser.add_argument("--seed", type=int, default=1, help="seed for the dev sample (default: 1)")
    parser.add_argument("--min-script-fraction", type=float, default=0.5,
                        help="letters in the language's script needed to keep a string (default: 0.5)")
    parser.add_argument("--max-train-per-lang", type=int, default=4000,
                        help="cap on training lines per language, to keep the shipped corpus small (default: 4000)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(message)s")
    prov = build(args.source, args.out, args.dev_size, args.seed, args.min_script_fraction, args.max_train_per_lang)
    total = sum(v["train_bytes"] for v in prov["languages"].values())
    logger.info("wrote %s: %d languages, %.2f MB of training text", args.out, len(prov["languages"]), total / 1e6)
    return 0


if __name__ == "__main__":
    sys.exit(main())
