#!/usr/bin/env python3
"""Build ``examples/data/heldout/``: a second retrieval evaluation set, from the gettext catalogues of this machine.

The demo corpus (``examples/data/train`` and ``examples/data/dev``) comes from Chromium's UI translations, and its dev
set is what training settings are chosen on.  This set comes from a different source, the gettext catalogues that
Debian packages install under ``/usr/share/locale/{locale}/LC_MESSAGES/*.mo`` (msgid = English source, msgstr =
translation), is held apart from the demo corpus by text, and is meant only for reporting, never for choosing
settings.  Burmese (``mya_Mymr``) is included as a language the training corpus does not contain.

Output (``--out``, default ``examples/data/heldout``)::

    gettext.{L}-eng_Latn.{L}          translations, one per line        (the SR-B / Tatoeba retrieval layout read by
    gettext.{L}-eng_Latn.eng_Latn     English, line i = line i above     ``translit-ppa evaluate retrieval --prefix
    langs.txt                         ``lang_Script<TAB>1`` per language  gettext --langs-file .../langs.txt``)
    sources.tsv                       lang, line, catalogue, msgid (as in the catalogue, escaped) for every line
    provenance.json                   packages and versions, counts, seed, rules
    README.md                         what the set is, counts, rules, packages and licences, rebuild command

Catalogues: every ``.mo`` of the locale except ``iso_*`` (country/language names) and ``xkeyboard-config`` (keyboard
layout names).  Plural entries are skipped (their first form is not always the singular, e.g. Arabic), as are
entries with an empty translation and the header.  Cleaning (``clean``) and the filters (``pair_problem``) are
listed in ``RULES``.  Within a language, duplicate English strings (case-insensitive) and duplicate translations are
dropped, keeping the first in the order (catalogue name, msgid).  Pairs whose English (case-insensitive) or
translation occurs as a line of any ``train/*.txt`` or ``dev/*.txt`` file of the demo corpus are dropped.  Up to
``--per-lang`` pairs per language are drawn with ``random.Random(seed).sample`` from the sorted candidate list and
written in the drawn order (so the first N lines are themselves a random sample).

Standard library only (plus ``dpkg``/``dpkg-query`` for the package records).  Rebuild with::

    python scripts/build_heldout_set.py
"""

from __future__ import annotations

import argparse
import fnmatch
import html
import json
import logging
import random
import re
import statistics
import struct
import subprocess
import sys
import unicodedata
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from build_demo_corpus import _BIDI_CONTROLS, _SPACE_BEFORE_PUNCT, script_fraction  # noqa: E402  (the same rules)

logger = logging.getLogger("build_heldout_set")

ROOT = Path(__file__).resolve().parents[1]
ENGLISH = "eng_Latn"
PREFIX = "gettext"

#: lang_Script code -> (gettext locale, Unicode script the translation's letters must mostly be in)
LANGUAGES: dict[str, tuple[str, str]] = {
    "ara_Arab": ("ar", "ARABIC"),
    "fas_Arab": ("fa", "ARABIC"),
    "amh_Ethi": ("am", "ETHIOPIC"),
    "ell_Grek": ("el", "GREEK"),
    "heb_Hebr": ("he", "HEBREW"),
    "tur_Latn": ("tr", "LATIN"),
    "zho_Hans": ("zh_CN", "CJK"),
    "zho_Hant": ("zh_TW", "CJK"),
    "kor_Hang": ("ko", "HANGUL"),
    "tha_Thai": ("th", "THAI"),
    "mya_Mymr": ("my", "MYANMAR"),
}
#: Languages absent from the training corpus (examples/data/train).
UNSEEN = ("mya_Mymr",)

MIN_ENGLISH_WORDS = 4
MAX_CHARS = 300
MIN_SCRIPT_FRACTION = 0.5

# --- cleaning patterns --------------------------------------------------------------------------------------------
# printf (C and positional), python %(name)s, system-dependent <PRIu64>-style, brace {0} / {name} / {0:d}, $1 / ${x}
_PRINTF = re.compile(
    r"%(?:\d+\$)?(?:\([A-Za-z_][A-Za-z0-9_]*\))?[-+ #0']*(?:\d+|\*)?(?:\.(?:\d+|\*))?"
    r"(?:hh|h|ll|l|L|q|j|z|Z|t|I64|I32)?(?:[diouxXeEfFgGaAcspnSCm%]|<[A-Za-z0-9_]+>)"
)
_BRACE = re.compile(r"\{[A-Za-z0-9_]*(?:[:!][^{}]*)?\}")
_DOLLAR = re.compile(r"\$(?:\d+|\{[A-Za-z0-9_]+\})")
# old-style "context|text" msgids (glib's Q_): a one-word-ish context before the first "|", then a text with a space
_CTX_PIPE = re.compile(r"^[A-Za-z][A-Za-z0-9_ -]{0,30}\|(?=[^|]*\s[^|]*$)")
# mnemonics: "(_O)" / "(&O)" after CJK labels, "_Open", "&Open" (not an HTML entity)
_MNEMONIC_PAREN = re.compile(r"\s*[(（][_&][A-Za-z0-9][)）]")
_MNEMONIC_UNDERSCORE = re.compile(r"(?<!_)_(?=[^\W\d_])")
_MNEMONIC_AMP = re.compile(r"&(?![A-Za-z][A-Za-z0-9]*;|#\d+;|#[xX][0-9A-Fa-f]+;)(?=[^\W\d_])")
# HTML / Pango markup tags only: command-line "<file>" arguments are text (and translated as such)
_TAG_NAMES = (
    "a|abbr|b|big|blockquote|body|br|center|cite|code|dd|del|div|dl|dt|em|font|h[1-6]|head|hr|html|i|img|ins|kbd|li|"
    "link|markup|ol|p|pre|q|s|samp|small|span|strike|strong|sub|sup|table|td|th|title|tr|tt|u|ul|var"
)
_TAG = re.compile(rf"</?(?:{_TAG_NAMES})(?:\s[^<>]*)?/?>", re.IGNORECASE)
_EMPTY_PAIRS = re.compile(
    r"\(\s*\)|\[\s*\]|<\s*/?\s*>|「\s*」|“\s*”|‘\s*’|\"\s*\"|«\s*»|（\s*）|《\s*》|『\s*』|„\s*“|‚\s*[‘’]|"
    r"”\s*”|’\s*’|»\s*«|\s*'\s*'|`\s*'"
)
# bidi marks/embeddings/isolates, BOM, word joiner (ZWJ/ZWNJ stay: Persian and others spell words with them)

RULES = [
    "entries: header, plural entries (msgid_plural) and empty msgstr skipped; msgctxt (\\x04) context removed",
    "old-style 'context|text' prefix removed (from the translation only when the msgid had one)",
    "placeholders removed: printf %s %d %1$s %-10s %lu %% <PRIu64>, python %(name)s, brace {0} {name} {0:d}, $1 ${x}",
    "keyboard mnemonics removed: '(_O)'/'(&O)' after CJK labels, '_' and '&' before a letter",
    "HTML/Pango markup tags (<b>, <span ...>, <a href=...>, <br/>, ...) removed, HTML entities unescaped (tags "
    "removed again after unescaping); command-line arguments such as <file> are kept as text",
    "bidi marks/embeddings/isolates, BOM and word joiner removed (ZWJ/ZWNJ kept); control characters and line/"
    "paragraph separators -> space",
    "empty brackets/quotes/angle brackets left by removed placeholders removed; whitespace collapsed; space before "
    "punctuation removed; leading/trailing ' :;,-' stripped; Unicode NFC",
    f"pair dropped if either side is empty or longer than {MAX_CHARS} characters, the English has fewer than "
    f"{MIN_ENGLISH_WORDS} words (whitespace tokens containing a letter), the English has less than half of its "
    "letters in Latin script, the translation has less than half of its letters in the language's script (Latin for "
    "tur_Latn), or the translation equals the English",
    "hold-apart: pair dropped if its English (case-insensitive) or its translation equals a line (whitespace-"
    "collapsed, NFC) of any examples/data/train/*.txt or examples/data/dev/*.txt file",
    "dedup within a language, first kept in (catalogue, msgid) order: duplicate English (case-insensitive), "
    "duplicate translation",
    "sample: random.Random(seed).sample(sorted candidates, min(per_lang, n)), written in the drawn order",
]

#: Licences read by hand from /usr/share/doc/<package>/copyright where that file is not machine-readable (DEP-5);
#: DEP-5 files are read automatically (the stanza covering po/*.po, else Files: *).
LICENCE_OVERRIDES: dict[str, str] = {
    "libavahi-common-data": "LGPL-2.1+ (avahi; text copyright file)",
    "binutils-common": "GPL-3+ (text copyright file)",
    "gettext-base": "GPL-3+ (programs; libintl LGPL-2.1+; text copyright file)",
    "gettext": "GPL-3+ (text copyright file)",
    "libgnutls30": "LGPL-2.1+ (main library; text copyright file)",
    "libgstreamer1.0-0": "LGPL-2+ (text copyright file)",
    "libgtk2.0-common": "LGPL-2+ (text copyright file)",
    "libc-l10n": "LGPL-2.1+ (glibc; text copyright file)",
    "shared-mime-info": "GPL-2+ (text copyright file)",
    "wget": "GPL-3+ (text copyright file)",
    "xdg-user-dirs": "GPL-2+ (text copyright file)",
    # DEP-5, but its "Files: *" stanza says GFDL-NIV-1.3+ and no stanza covers po/; the programs are GPL-3+
    "findutils": "GPL-3+ (find/*, lib/*; the file's Files: * says GFDL-NIV-1.3+, no po/ stanza)",
}


# ----------------------------------------------------------------------------------------------------------------
# Reading catalogues
# ----------------------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Entry:
    """One singular catalogue entry."""

    catalogue: str  # .mo file name
    msgid: str  # as in the catalogue (msgctxt\x04msgid when it has a context)
    msgstr: str


def read_mo(path: Path) -> list[tuple[str, str]]:
    """Parse a GNU ``.mo`` file into ``[(msgid, msgstr)]`` decoded with the catalogue's charset (header order kept).

    Plural entries come back with their ``\\x00``-joined forms; contexts as ``msgctxt\\x04msgid``.
    """
    data = path.read_bytes()
    magic = struct.unpack_from("<I", data, 0)[0]
    if magic == 0x950412DE:
        endian = "<"
    elif magic == 0xDE120495:
        endian = ">"
    else:
        raise ValueError(f"{path}: not a GNU .mo file (magic {magic:#x})")
    _rev, n, orig_off, trans_off = struct.unpack_from(endian + "4I", data, 4)
    raw = []
    for i in range(n):
        mlen, moff = struct.unpack_from(endian + "2I", data, orig_off + 8 * i)
        slen, soff = struct.unpack_from(endian + "2I", data, trans_off + 8 * i)
        raw.append((data[moff : moff + mlen], data[soff : soff + slen]))
    charset = "utf-8"
    for mid, mstr in raw:
        if mid == b"":
            m = re.search(rb"charset=([A-Za-z0-9_.:-]+)", mstr)
            if m and m.group(1).lower() not in (b"charset", b"us-ascii"):
                charset = m.group(1).decode("ascii")
            break
    out = []
    for mid, mstr in raw:
        try:
            out.append((mid.decode(charset), mstr.decode(charset)))
        except (UnicodeDecodeError, LookupError):
            logger.debug("%s: entry not decodable as %s; skipped", path, charset)
    return out


def catalogue_paths(locale_root: Path, locale: str) -> list[Path]:
    """The locale's ``.mo`` files, ``iso_*`` and ``xkeyboard-config`` excluded, sorted by name."""
    folder = locale_root / locale / "LC_MESSAGES"
    paths = sorted(folder.glob("*.mo"), key=lambda p: p.name)
    return [p for p in paths if not p.name.startswith("iso_") and p.stem != "xkeyboard-config"]


def read_entries(paths: list[Path]) -> tuple[list[Entry], Counter]:
    """Singular, translated entries of the catalogues; and counts of what was skipped."""
    entries: list[Entry] = []
    skipped: Counter = Counter()
    for path in paths:
        for msgid, msgstr in read_mo(path):
            if msgid == "":
                continue
            if "\x00" in msgid:
                skipped["plural"] += 1
                continue
            if not msgstr.strip():
                skipped["empty msgstr"] += 1
                continue
            entries.append(Entry(path.name, msgid, msgstr))
    return entries, skipped


# ----------------------------------------------------------------------------------------------------------------
# Cleaning
# ----------------------------------------------------------------------------------------------------------------
def normalize_line(text: str) -> str:
    """Whitespace collapsed and NFC: the form used to compare with the demo corpus."""
    return unicodedata.normalize("NFC", " ".join(text.split()))


def strip_context(msgid: str, msgstr: str) -> tuple[str, str]:
    """Remove a msgctxt (``ctx\\x04``) and an old-style ``ctx|`` prefix."""
    msgid = msgid.split("\x04", 1)[-1]
    m = _CTX_PIPE.match(msgid)
    if m:
        msgid = msgid[m.end() :]
        m2 = _CTX_PIPE.match(msgstr)
        if m2:
            msgstr = msgstr[m2.end() :]
    return msgid, msgstr


def clean(text: str) -> str:
    """One catalogue string -> one clean line ("" when nothing is left)."""
    text = _PRINTF.sub(" ", text)
    text = _BRACE.sub(" ", text)
    text = _DOLLAR.sub(" ", text)
    text = _MNEMONIC_PAREN.sub("", text)
    text = _MNEMONIC_AMP.sub("", text)
    text = _MNEMONIC_UNDERSCORE.sub("", text)
    text = _TAG.sub(" ", text)
    text = html.unescape(text)
    text = _TAG.sub(" ", text)  # escaped tags (&lt;b&gt;) become tags only after unescaping
    text = "".join(" " if unicodedata.category(c) in ("Zl", "Zp", "Cc") else c for c in text)
    text = "".join(c for c in text if c not in _BIDI_CONTROLS)
    text = " ".join(text.split())
    for _ in range(2):
        text = _EMPTY_PAIRS.sub("", text)
    text = _SPACE_BEFORE_PUNCT.sub(r"\1", text)
    text = " ".join(text.split()).strip(" :;,-")
    return unicodedata.normalize("NFC", text)


def english_words(text: str) -> int:
    """Whitespace tokens that contain a letter."""
    return sum(1 for tok in text.split() if any(c.isalpha() for c in tok))


def pair_problem(english: str, translation: str, script: str) -> str | None:
    """Why a cleaned pair is dropped (a short reason), or None to keep it."""
    if not english or not translation:
        return "empty after cleaning"
    if len(english) > MAX_CHARS or len(translation) > MAX_CHARS:
        return f"longer than {MAX_CHARS} characters"
    if english_words(english) < MIN_ENGLISH_WORDS:
        return f"English under {MIN_ENGLISH_WORDS} words"
    if script_fraction(english, "LATIN") < MIN_SCRIPT_FRACTION:
        return "English not Latin script"
    if translation == english:
        return "translation equals English"
    if script_fraction(translation, script) < MIN_SCRIPT_FRACTION:
        return "translation not in the language's script"
    return None


def escape_field(text: str) -> str:
    """Backslash, tab, newline, carriage return and other control characters escaped (``\\x04`` for a context)."""
    out = []
    for c in text:
        if c == "\\":
            out.append("\\\\")
        elif c == "\t":
            out.append("\\t")
        elif c == "\n":
            out.append("\\n")
        elif c == "\r":
            out.append("\\r")
        elif unicodedata.category(c) == "Cc":
            out.append(f"\\x{ord(c):02x}")
        else:
            out.append(c)
    return "".join(out)


# ----------------------------------------------------------------------------------------------------------------
# Demo corpus (hold-apart)
# ----------------------------------------------------------------------------------------------------------------
def normalised_lines(files: list[Path]) -> set[str]:
    """The non-empty lines of ``files``, normalised (:func:`normalize_line`)."""
    lines: set[str] = set()
    for path in files:
        for line in path.read_text(encoding="utf-8").split("\n"):
            norm = normalize_line(line)
            if norm:
                lines.add(norm)
    return lines


def demo_lines(data_dir: Path) -> tuple[set[str], set[str], list[str]]:
    """(normalised lines, their casefolded forms, files read) of ``train/*.txt`` and ``dev/*.txt``."""
    files = sorted((data_dir / "train").glob("*.txt")) + sorted((data_dir / "dev").glob("*.txt"))
    if not files:
        raise FileNotFoundError(f"no demo corpus files under {data_dir}/train or {data_dir}/dev")
    lines = normalised_lines(files)
    return lines, {s.casefold() for s in lines}, [str(p.relative_to(data_dir.parent.parent)) for p in files]


# ----------------------------------------------------------------------------------------------------------------
# Packages and licences
# ----------------------------------------------------------------------------------------------------------------
def _run(cmd: list[str]) -> str | None:
    try:
        return subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
    except (OSError, subprocess.CalledProcessError):
        return None


def dep5_licence(text: str) -> str | None:
    """Licence of ``po/*.po`` in a machine-readable (DEP-5) copyright file: last matching Files stanza wins."""
    if not text.startswith("Format:"):
        return None
    found = None
    for stanza in re.split(r"\n\s*\n", text):
        files = re.search(r"^Files:\s*((?:.*\n?)(?:[ \t]+.*\n?)*)", stanza, re.MULTILINE)
        lic = re.search(r"^License:\s*(.*)$", stanza, re.MULTILINE)
        if not files or not lic or not lic.group(1).strip():
            continue
        patterns = files.group(1).split()
        if any(fnmatch.fnmatch("po/xx.po", p) or p in ("po/*", "po/") for p in patterns):
            found = lic.group(1).strip()
        elif "*" in patterns and found is None:
            found = lic.group(1).strip()
    return found


def package_record(catalogue_path: Path) -> dict:
    """Debian package, version and licence of an installed catalogue file (``dpkg -S``, ``dpkg-query -W``)."""
    owner = _run(["dpkg", "-S", str(catalogue_path)])
    package = owner.split(":", 1)[0].strip() if owner else None
    version = _run(["dpkg-query", "-W", "-f", "${Version}", package]) if package else None
    licence = None
    copyright_path = Path("/usr/share/doc") / package / "copyright" if package else None
    if copyright_path and copyright_path.is_file():
        licence = dep5_licence(copyright_path.read_text(encoding="utf-8", errors="replace"))
    if package in LICENCE_OVERRIDES:
        licence = LICENCE_OVERRIDES[package]
    return {
        "package": package,
        "version": version.strip() if version else None,
        "licence": licence or "see copyright file",
        "copyright_file": str(copyright_path) if copyright_path else None,
    }


# ----------------------------------------------------------------------------------------------------------------
# Build
# ----------------------------------------------------------------------------------------------------------------
def build_language(
    lang: str, locale_root: Path, demo: set[str], demo_folded: set[str], per_lang: int, seed: int
) -> tuple[list[tuple[Entry, str, str]], dict, list[Path]]:
    """Candidates -> sample for one language: ``([(entry, English, translation)], stats, catalogue paths)``."""
    locale, script = LANGUAGES[lang]
    paths = catalogue_paths(locale_root, locale)
    entries, skipped = read_entries(paths)
    entries.sort(key=lambda e: (e.catalogue, e.msgid))
    drops: Counter = Counter(skipped)
    cleaned: list[tuple[Entry, str, str]] = []
    for entry in entries:
        msgid, msgstr = strip_context(entry.msgid, entry.msgstr)
        english, translation = clean(msgid), clean(msgstr)
        problem = pair_problem(english, translation, script)
        if problem:
            drops[problem] += 1
            continue
        cleaned.append((entry, english, translation))
    held_apart = [c for c in cleaned if c[1].casefold() in demo_folded or c[2] in demo]
    drops["hold-apart (in demo corpus)"] = len(held_apart)
    held_ids = {id(c) for c in held_apart}
    seen_en: set[str] = set()
    seen_tr: set[str] = set()
    candidates = []
    for item in cleaned:
        if id(item) in held_ids:
            continue
        _, english, translation = item
        if english.casefold() in seen_en or translation in seen_tr:
            drops["duplicate"] += 1
            continue
        seen_en.add(english.casefold())
        seen_tr.add(translation)
        candidates.append(item)
    rng = random.Random(seed)
    sample = rng.sample(candidates, min(per_lang, len(candidates)))
    stats = {
        "locale": locale,
        "catalogues_read": [p.name for p in paths],
        "entries_singular_translated": len(entries),
        "clean_pairs": len(cleaned),
        "candidates": len(candidates),
        "lines": len(sample),
        "dropped": dict(sorted(drops.items())),
        "median_english_words": statistics.median([english_words(s[1]) for s in sample]) if sample else 0,
        "catalogue_mix": dict(Counter(s[0].catalogue for s in sample).most_common()),
    }
    logger.info("%s (%s): %d entries, %d clean, %d held apart, %d candidates, %d written",
                lang, locale, len(entries), len(cleaned), len(held_apart), len(candidates), len(sample))
    return sample, stats, paths


def write_lines(path: Path, lines: list[str]) -> None:
    for i, line in enumerate(lines):
        if not line or line != " ".join(line.split()) or "\n" in line:
            raise AssertionError(f"{path}:{i + 1}: bad line {line!r}")
    path.write_text("".join(line + "\n" for line in lines), encoding="utf-8", newline="\n")


def build(locale_root: Path, demo_dir: Path, out: Path, per_lang: int, seed: int) -> dict:
    """Write every output file under ``out``; return the provenance record."""
    demo, demo_folded, demo_files = demo_lines(demo_dir)
    out.mkdir(parents=True, exist_ok=True)
    languages: dict[str, dict] = {}
    packages: dict[str, dict] = {}
    source_rows = []
    for lang in LANGUAGES:
        sample, stats, paths = build_language(lang, locale_root, demo, demo_folded, per_lang, seed)
        languages[lang] = stats
        for p in paths:
            if p.name not in packages:
                packages[p.name] = package_record(p)
        if not sample:
            logger.warning("%s: no usable pairs; no files written", lang)
            continue
        base = out / f"{PREFIX}.{lang}-{ENGLISH}"
        write_lines(Path(f"{base}.{lang}"), [s[2] for s in sample])
        write_lines(Path(f"{base}.{ENGLISH}"), [s[1] for s in sample])
        for i, (entry, _, _) in enumerate(sample, start=1):
            source_rows.append(f"{lang}\t{i}\t{entry.catalogue}\t{escape_field(entry.msgid)}")
    written = [lang for lang in LANGUAGES if languages[lang]["lines"]]
    (out / "langs.txt").write_text("".join(f"{lang}\t1\n" for lang in written), encoding="utf-8", newline="\n")
    (out / "sources.tsv").write_text("lang\tline\tcatalogue\tmsgid\n" + "".join(r + "\n" for r in source_rows),
                                     encoding="utf-8", newline="\n")
    used = Counter()
    for stats in languages.values():
        used.update(stats["catalogue_mix"])
    for name, rec in packages.items():
        rec["lines"] = used.get(name, 0)
    provenance = {
        "description": "held-apart retrieval evaluation set from Debian gettext catalogues (reporting only)",
        "source": str(locale_root / "{locale}" / "LC_MESSAGES" / "*.mo"),
        "excluded_catalogues": ["iso_*", "xkeyboard-config"],
        "prefix": PREFIX,
        "seed": seed,
        "per_lang": per_lang,
        "unseen_languages": list(UNSEEN),
        "held_apart_from": demo_files,
        "rules": RULES,
        "languages": languages,
        "catalogues": dict(sorted(packages.items())),
    }
    (out / "provenance.json").write_text(json.dumps(provenance, indent=2, ensure_ascii=False) + "\n",
                                         encoding="utf-8")
    (out / "README.md").write_text(render_readme(provenance), encoding="utf-8", newline="\n")
    return provenance


def render_readme(prov: dict) -> str:
    """README.md of the output directory."""
    langs = prov["languages"]
    lines = [
        "# Held-out retrieval set: gettext catalogues (reporting only)",
        "",
        "A second retrieval evaluation set, from a source other than the demo corpus: English UI/message strings and",
        "their translations from the gettext catalogues (`.mo`) that Debian packages install under",
        "`/usr/share/locale/{locale}/LC_MESSAGES/`. The demo corpus (`examples/data/train`, `examples/data/dev`) is",
        "Chromium's translations, and its dev set is what training settings are tuned on; this set is",
        "**held apart** from it (no English string or translation of this set is a line of any demo train/dev file)",
        "and is **never used to choose training settings, checkpoints or hyper-parameters: only to report results**.",
        "Burmese (`mya_Mymr`) is not in the training corpus: a language the training never saw.",
        "",
        "## Files",
        "",
        "- `gettext.{L}-eng_Latn.{L}` / `gettext.{L}-eng_Latn.eng_Latn`: line i of one is the translation of line i of",
        "  the other (UTF-8, `\\n` line ends, no empty lines); the SR-B/Tatoeba layout with the prefix `gettext`.",
        "  Each language is sampled on its own, so the sets of different languages are not parallel to each other.",
        "- `langs.txt`: `lang_Script<TAB>1` per language (for `--langs-file`).",
        "- `sources.tsv`: `lang, line, catalogue (.mo), msgid` for every line; the msgid as in the catalogue with",
        "  `\\\\`, tab, newline and other control characters escaped (`\\x04` separates a msgctxt from the msgid).",
        "- `provenance.json`: packages and versions, per-language counts and drop reasons, catalogue mix, seed, rules.",
        "",
        "Evaluate with",
        "",
        "    translit-ppa evaluate retrieval --prefix gettext --data-dir examples/data/heldout \\",
        "        --langs-file examples/data/heldout/langs.txt --models ... -o heldout-results.jsonl",
        "",
        "## Counts",
        "",
        "| file stem | locale | pairs | candidates | held apart (in demo corpus) | median English words |",
        "|-----------|--------|------:|-----------:|----------------------------:|---------------------:|",
    ]
    for lang, s in langs.items():
        note = " (unseen in training)" if lang in prov["unseen_languages"] else ""
        lines.append(f"| `{lang}`{note} | `{s['locale']}` | {s['lines']} | {s['candidates']} | "
                     f"{s['dropped'].get('hold-apart (in demo corpus)', 0)} | {s['median_english_words']:g} |")
    small = [lang for lang, s in langs.items() if s["lines"] < 150]
    if small:
        listed = ", ".join(f"`{x}` ({langs[x]['lines']})" for x in small)
        lines += ["", f"Fewer than 150 usable pairs (not padded; results on these are noisy): {listed}. Their "
                      "catalogues here are sparsely translated (see `entries_singular_translated` and `dropped` in "
                      "`provenance.json`: most translated entries are under 4 English words)."]
    held = sum(s["dropped"].get("hold-apart (in demo corpus)", 0) for s in langs.values())
    lines += ["", f"Pairs dropped by the hold-apart rule, all languages: {held} (before deduplication)."]
    lines += ["", "## Cleaning and selection rules", ""]
    lines += [f"- {rule}".replace("<", "\\<") for rule in prov["rules"]]
    lines += [
        "- catalogues: every `.mo` of the locale except `iso_*` (names of countries/languages: too short) and",
        "  `xkeyboard-config` (keyboard layout names)",
        "",
        "## Sources and licences",
        "",
        "Catalogues read (any of the 11 locales), the Debian package that installs them (`dpkg -S`), its version",
        "(`dpkg-query -W`), and the licence stated in `/usr/share/doc/<package>/copyright` (for machine-readable files",
        "the stanza covering `po/*`, else `Files: *`); `lines` is how many lines of this set come from the catalogue.",
        "Translations are distributed under the licence of the package they belong to.",
        "",
        "| catalogue | Debian package | version | licence | lines |",
        "|-----------|----------------|---------|---------|------:|",
    ]
    for name, rec in prov["catalogues"].items():
        lines.append(f"| `{name}` | `{rec['package']}` | `{rec['version']}` | {rec['licence']} | {rec['lines']} |")
    lines += [
        "",
        "## Rebuild",
        "",
        "On a Debian 12 machine with the same packages installed (the versions above):",
        "",
        "    python scripts/build_heldout_set.py            # --out examples/data/heldout --seed 0 --per-lang 500",
        "",
        "Other package versions give other catalogues, hence another set: compare `provenance.json`.",
        "",
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--locale-root", type=Path, default=Path("/usr/share/locale"),
                        help="gettext locale directory (default: %(default)s)")
    parser.add_argument("--demo-dir", type=Path, default=ROOT / "examples" / "data",
                        help="demo corpus (train/, dev/) to hold the set apart from (default: examples/data)")
    parser.add_argument("--out", type=Path, default=ROOT / "examples" / "data" / "heldout",
                        help="output directory (default: examples/data/heldout)")
    parser.add_argument("--per-lang", type=int, default=500, help="pairs per language at most (default: 500)")
    parser.add_argument("--seed", type=int, default=0, help="sampling seed (default: 0)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(message)s")
    prov = build(args.locale_root, args.demo_dir, args.out, args.per_lang, args.seed)
    total = sum(s["lines"] for s in prov["languages"].values())
    logger.info("wrote %s: %d languages, %d pairs", args.out, len(prov["languages"]), total)
    return 0


if __name__ == "__main__":
    sys.exit(main())
