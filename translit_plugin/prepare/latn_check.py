"""Given transliterations (``--latn-input``) are compared with uroman on a sample of lines before they are used.

Equal line counts do not prove that line i of the transliteration belongs to line i of the input: two swapped lines,
or one line split in two and a later one dropped, keep the count.  So while stage 1 reads both files in lockstep it
keeps a seeded reservoir sample of the kept pairs (``lines`` per language, or all of them); the original side of each
is romanized with uroman and compared with the given Latin text by a character-level similarity
(:func:`similarity`: ``difflib`` ratio after lower-casing, stripping diacritics and punctuation).  Any sampled pair
below ``min_similarity`` fails the run with :class:`LatnMismatchError`, naming the worst lines by file and line number.

Calibration on the demo corpus (9 scripts, 300 lines each): a correct pair scores >= 0.57 even when the given text
comes from uroman with a different language code (Persian with and without ``fas``), >= 0.86 for every other language;
a pair shifted by one line scores 0.33 in the median.  Hence the default 0.5.  Near-duplicate neighbouring lines
(common in UI strings) can hide a swap, and lines outside the sample are not checked: ``--latn-check all`` compares
every line (uroman then runs on the whole corpus).
"""

from __future__ import annotations

import difflib
import logging
import random
import re
import unicodedata
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from translit_plugin.prepare.chunks import AlignmentError

if TYPE_CHECKING:
    from translit_plugin.transliterate import Transliterator

logger = logging.getLogger(__name__)

_NON_WORD = re.compile(r"[\W_]+")
MAX_CHARS = 400  # compare at most this many (normalised) characters per line: difflib is quadratic


@dataclass(frozen=True)
class LatnCheckConfig:
    """How given transliterations are checked against uroman (part of the clean stage's up-to-date key)."""

    lines: int | None = 300  # pairs per language; 0 = no check, None = every pair
    min_similarity: float = 0.5
    seed: int = 1


class LatnMismatchError(AlignmentError):
    """Given transliterations do not match their input lines (misaligned files or a different script)."""

    exit_code = 3


def normalise(text: str) -> str:
    """Lower case, no diacritics, punctuation and symbols as single spaces."""
    text = unicodedata.normalize("NFKD", text.lower())
    text = "".join(c for c in text if not unicodedata.combining(c))
    return " ".join(_NON_WORD.sub(" ", text).split())


def similarity(a: str, b: str) -> float:
    """Character-level similarity in [0, 1] of two Latin strings (1.0 for two empty ones)."""
    a, b = normalise(a)[:MAX_CHARS], normalise(b)[:MAX_CHARS]
    if not a and not b:
        return 1.0
    return difflib.SequenceMatcher(None, a, b, autojunk=False).ratio()


class PairSample:
    """A seeded reservoir sample of ``(line number, original, given Latin)`` over one pass of the files."""

    def __init__(self, lang: str, cfg: LatnCheckConfig) -> None:
        self.size = cfg.lines
        self.rng = random.Random(cfg.seed * 1_000_003 + zlib.crc32(lang.encode("utf-8")))
        self.items: list[tuple[int, str, str]] = []
        self.seen = 0

    def add(self, line_no: int, orig: str, latn: str) -> None:
        self.seen += 1
        if self.size is None or len(self.items) < self.size:
            self.items.append((line_no, orig, latn))
            return
        j = self.rng.randrange(self.seen)
        if j < self.size:
            self.items[j] = (line_no, orig, latn)


_TRANSLITERATOR: dict[str, object] = {}


def _transliterator():
    from translit_plugin.transliterate import Transliterator

    if "tr" not in _TRANSLITERATOR:
        _TRANSLITERATOR["tr"] = Transliterator()
    return _TRANSLITERATOR["tr"]


def check_sample(lang: str, src: Path, latn_src: Path, sample: PairSample, lcode: str | None,
                 cfg: LatnCheckConfig, transliterator: Transliterator | None = None) -> dict:
    """Compare the sampled pairs with uroman; raise :class:`LatnMismatchError` if any is below the threshold."""
    tr = transliterator or _transliterator()
    scored = []
    for line_no, orig, latn in sorted(sample.items):
        ours = tr.transliterate(orig, lcode)
        scored.append((similarity(latn, ours), line_no, latn, ours))
    bad = sorted(s for s in scored if s[0] < cfg.min_similarity)
    summary = {"checked": len(scored), "below_threshold": len(bad), "min_similarity": cfg.min_similarity,
               "lowest": round(min((s[0] for s in scored), default=1.0), 3)}
    if bad:

        def clip(text: str) -> str:
            return repr(text if len(text) <= 40 else text[:37] + "...")

        worst = "; ".join(f"{latn_src}:{n} ({sim:.2f}: given {clip(given)}, uroman {clip(ours)})"
                          for sim, n, given, ours in bad[:5])
        raise LatnMismatchError(
            f"{lang}: {len(bad)} of {len(scored)} checked lines of the given transliteration do not match uroman's "
            f"romanization of {src} (similarity < {cfg.min_similarity}): {worst}. The files are probably misaligned "
            "(lines swapped, split, merged or dropped); fix the transliteration file, or lower "
            "--latn-min-similarity (--latn-check 0 skips this check)"
        )
    logger.info("%s: %d given transliterations compared with uroman, lowest similarity %.2f (threshold %.2f)", lang,
                len(scored), summary["lowest"], cfg.min_similarity)
    return summary
