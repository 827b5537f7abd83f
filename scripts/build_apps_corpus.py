#!/usr/bin/env python3
"""Build ``examples/data/train-apps/``: the demo training corpus widened to four applications.

The demo corpus (``examples/data/train``) is 4,000 Chromium UI strings per language. This corpus keeps those lines and
adds up to 4,000 strings per language from three other applications' gettext catalogues, read from Debian packages:
LibreOffice (``libreoffice-l10n-{locale}``, half of the added lines), VLC (``vlc-l10n``, a quarter) and Cinnamon
(``cinnamon-l10n``: Cinnamon and Nemo, a quarter); a short share is filled from the others in the order LibreOffice,
Cinnamon, VLC. English (``eng_Latn``) gets the English source strings (msgids) of the added lines, up to 4,000.

Held apart: no added line equals (after whitespace normalisation, NFC and casefolding) a line of the dev set
(``examples/data/dev``) or of the held-out set (``examples/data/heldout``), and no added line's English source does
either, so neither evaluation set gains a training string. Burmese stays out (the held-out set's unseen language).

Per catalogue entry (singular, translated, header skipped): the context is stripped, LibreOffice's ``~`` accelerator
markers removed, then the held-out set's cleaning (``build_heldout_set.clean``: placeholders, mnemonics, markup,
control characters). Kept when both sides are non-empty, the translation is at most 300 characters, differs from the
English, has at least half of its letters in the language's script, and the English has at least two words.
Duplicate translations within an application are dropped. Each application's candidates are shuffled with
``random.Random(f"{seed}-{lang}")``, the quotas taken, Chromium's lines and the added lines joined and shuffled with
the same generator. Rebuild (Debian 12; package versions in ``provenance.json``)::

    mkdir debs && cd debs && apt-get download vlc-l10n cinnamon-l10n \\
        libreoffice-l10n-{ar,fa,am,el,he,tr,zh-cn,zh-tw,ko,th} && cd ..
    python scripts/build_apps_corpus.py --debs debs
"""

from __future__ import annotations

import argparse
import json
import logging
import random
import subprocess
import sys
import tempfile
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from build_demo_corpus import script_fraction  # noqa: E402  (the same rules)
from build_heldout_set import (  # noqa: E402
    LANGUAGES,
    MAX_CHARS,
    UNSEEN,
    clean,
    english_words,
    normalised_lines,
    normalize_line,
    read_mo,
    strip_context,
    write_lines,
)

logger = logging.getLogger("build_apps_corpus")

ROOT = Path(__file__).resolve().parents[1]
ENGLISH = "eng_Latn"
PER_LANG = 4000
#: application -> share of the added lines (the rest of the quota is filled in FILL_ORDER)
QUOTA = {"libreoffice": 2, "vlc": 1, "cinnamon": 1}
FILL_ORDER = ("libreoffice", "cinnamon", "vlc")
LICENCES = {
    "libreoffice": "MPL-2.0 (LibreOffice translations)",
    "vlc": "GPL-2.0-or-later (VLC translations)",
    "cinnamon": "GPL-2.0-or-later (Cinnamon and Nemo translations)",
}


def held_lines(data_dir: Path) -> set[str]:
    """Casefolded normalised lines of the dev and held-out sets (both sides)."""
    files = sorted((data_dir / "dev").glob("*.txt")) + sorted((data_dir / "heldout").glob("gettext.*"))
    if not files:
        raise FileNotFoundError(f"no dev or held-out files under {data_dir}")
    return {line.casefold() for line in normalised_lines(files)}


def app_catalogues(root: Path, locale: str) -> dict[str, list[Path]]:
    """The ``.mo`` files of each application for ``locale`` under an extracted package tree ``root``."""
    share = root / "usr/share/locale" / locale / "LC_MESSAGES"
    return {
        "libreoffice": sorted((root / "usr/lib/libreoffice/program/resource" / locale / "LC_MESSAGES").glob("*.mo")),
        "vlc": [share / "vlc.mo"] if (share / "vlc.mo").exists() else [],
        "cinnamon": sorted(p for p in share.glob("*.mo") if p.name != "vlc.mo"),
    }


def candidates(app: str, paths: list[Path], script: str, held: set[str]) -> tuple[list[tuple[str, str]], Counter]:
    """Clean ``(translation, English)`` candidates of one application, in catalogue order; and drop counts."""
    seen: set[str] = set()
    out: list[tuple[str, str]] = []
    drops: Counter = Counter()
    for path in paths:
        for msgid, msgstr in read_mo(path):
            if not msgid or "\x00" in msgid or not msgstr.strip():
                continue
            msgid, msgstr = strip_context(msgid, msgstr)
            if app == "libreoffice":
                msgid, msgstr = msgid.replace("~", ""), msgstr.replace("~", "")
            english, translation = clean(msgid), clean(msgstr)
            if not english or not translation or len(translation) > MAX_CHARS or english_words(english) < 2 \
                    or translation == english:
                drops["empty, long, under two English words or untranslated"] += 1
            elif script_fraction(translation, script) < 0.5:
                drops["translation not in the language's script"] += 1
            elif translation.casefold() in held or english.casefold() in held:
                drops["in the dev or held-out set"] += 1
            elif translation in seen:
                drops["duplicate"] += 1
            else:
                seen.add(translation)
                out.append((translation, english))
    return out, drops


def build_language(lang: str, root: Path, data_dir: Path, held: set[str], per_lang: int, seed: int
                   ) -> tuple[list[str], list[str], dict]:
    """(the language's corpus lines, the English of its added lines, stats)."""
    locale, script = LANGUAGES[lang]
    pools: dict[str, list[tuple[str, str]]] = {}
    drops: dict[str, dict[str, int]] = {}
    for app, paths in app_catalogues(root, locale).items():
        pools[app], dropped = candidates(app, paths, script, held)
        drops[app] = dict(sorted(dropped.items()))
    rng = random.Random(f"{seed}-{lang}")
    for pool in pools.values():
        rng.shuffle(pool)
    total = sum(QUOTA.values())
    picked = {app: pools[app][: per_lang * QUOTA[app] // total] for app in pools}
    short = per_lang - sum(len(v) for v in picked.values())
    for app in FILL_ORDER:
        if short <= 0:
            break
        extra = pools[app][len(picked[app]) : len(picked[app]) + short]
        picked[app] += extra
        short -= len(extra)
    chromium = (data_dir / "train" / f"{lang}.txt").read_text(encoding="utf-8").rstrip("\n").split("\n")
    have = {normalize_line(s) for s in chromium}
    added = [t for app in picked for t, _ in picked[app] if t not in have]
    lines = chromium + added
    rng.shuffle(lines)
    stats = {"locale": locale, "chromium_lines": len(chromium), "added_lines": len(added), "lines": len(lines),
             "candidates": {app: len(pools[app]) for app in pools}, "picked": {app: len(picked[app]) for app in pools},
             "dropped": drops}
    logger.info("%s: %d Chromium + %d added (%s)", lang, len(chromium), len(added),
                ", ".join(f"{app} {len(picked[app])} of {len(pools[app])}" for app in pools))
    english = [e for app in picked for _, e in picked[app]]
    return lines, english, stats


def package_versions(debs: Path) -> dict[str, str]:
    versions = {}
    for deb in sorted(debs.glob("*.deb")):
        out = subprocess.run(["dpkg-deb", "-f", str(deb), "Package", "Version"], check=True, capture_output=True,
                             text=True).stdout
        fields = dict(line.split(": ", 1) for line in out.strip().split("\n"))
        versions[fields["Package"]] = fields["Version"]
    return versions


def build(debs: Path, data_dir: Path, out: Path, per_lang: int, seed: int) -> dict:
    held = held_lines(data_dir)
    out.mkdir(parents=True, exist_ok=True)
    languages: dict[str, dict] = {}
    english_pool: dict[str, None] = {}
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        for deb in sorted(debs.glob("*.deb")):
            subprocess.run(["dpkg-deb", "-x", str(deb), str(root)], check=True)
        for lang in LANGUAGES:
            if lang in UNSEEN:
                continue
            lines, english, languages[lang] = build_language(lang, root, data_dir, held, per_lang, seed)
            write_lines(out / f"{lang}.txt", lines)
            for e in english:
                english_pool.setdefault(e, None)
    chromium = (data_dir / "train" / f"{ENGLISH}.txt").read_text(encoding="utf-8").rstrip("\n").split("\n")
    have = {normalize_line(s) for s in chromium}
    added = [e for e in english_pool if e not in have and e.casefold() not in held]
    rng = random.Random(f"{seed}-eng")
    rng.shuffle(added)
    lines = chromium + added[:per_lang]
    rng.shuffle(lines)
    write_lines(out / f"{ENGLISH}.txt", lines)
    languages[ENGLISH] = {"chromium_lines": len(chromium), "added_lines": min(per_lang, len(added)),
                          "lines": len(lines)}
    provenance = {
        "description": "the demo training corpus (Chromium) plus LibreOffice, VLC and Cinnamon strings",
        "source": "Debian chromium-l10n (via examples/data/train), libreoffice-l10n-*, vlc-l10n, cinnamon-l10n",
        "licence": "mixed, by line: Chromium BSD-3-Clause, LibreOffice MPL-2.0, VLC and Cinnamon GPL-2.0-or-later",
        "packages": package_versions(debs), "licences": LICENCES, "per_lang": per_lang, "seed": seed,
        "quota": QUOTA, "fill_order": list(FILL_ORDER), "held_apart_from": ["examples/data/dev",
                                                                            "examples/data/heldout"],
        "languages": languages,
    }
    (out / "provenance.json").write_text(json.dumps(provenance, indent=2, ensure_ascii=False) + "\n",
                                         encoding="utf-8")
    return provenance


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--debs", type=Path, required=True,
                        help="directory of the downloaded .deb files (see the module docstring)")
    parser.add_argument("--data-dir", type=Path, default=ROOT / "examples" / "data",
                        help="the demo data (train/, dev/, heldout/) (default: examples/data)")
    parser.add_argument("--out", type=Path, default=ROOT / "examples" / "data" / "train-apps",
                        help="output directory (default: examples/data/train-apps)")
    parser.add_argument("--per-lang", type=int, default=PER_LANG, help="added lines per language at most")
    parser.add_argument("--seed", type=int, default=1, help="shuffling seed (default: 1)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(message)s")
    prov = build(args.debs, args.data_dir, args.out, args.per_lang, args.seed)
    logger.info("wrote %s: %d files, %d lines", args.out, len(prov["languages"]),
                sum(s["lines"] for s in prov["languages"].values()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
