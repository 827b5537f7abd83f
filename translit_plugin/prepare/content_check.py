"""Every line of a given romanisation (``encode --latn``, ``prepare --latn-input``) is checked against its original.

Equal line counts prove nothing about content: two swapped lines, a shifted block, the romanisation of another file
with as many lines, or the original file itself all keep the count.  uroman is too slow to run on every line of a
large corpus (about 3,000 lines/s), so this check uses a cheap stand-in (40,000 lines/s on one core):

* a **signature** of each line: the original is romanised character by character (``anyascii``: a table per code
  point, pinyin for Chinese), both sides are lower-cased and stripped of accents, punctuation and vowels, and the
  sets of character bigrams of what is left (the consonant skeletons, digits included) are compared by the Dice
  coefficient.  Digits, Latin-script words, URLs and placeholders pass through both romanisers, so they weigh in;
  vowels, which romanisers disagree on most, do not;
* a line is **misplaced** when the romanisation of a neighbouring line (up to two lines away) fits its original
  better than its own, by ``margin``; it is **unlike** its original when the score is below ``min_score``;
* the file fails when ``min_run`` consecutive lines are misplaced (a swap gives two, a block shifted by one line
  gives its length), when ``unlike_run`` consecutive lines are unlike their originals (a block moved further away),
  when more than ``max_unlike_fraction`` of all lines are unlike (another file's romanisation), or when more than
  ``max_same_fraction`` of the lines in a non-Latin script are their own "romanisation" (``--latn`` = ``--orig``).

Lines whose skeleton is shorter than ``min_skeleton`` characters ("OK", a lone number) carry too little to judge: they
are neither counted as failing nor break a run.  What this cannot see: swapped or shifted lines that are
(near-)identical, or whose skeletons are too short; a single wrong line among correct neighbours (the sampled uroman
comparison of :mod:`translit_plugin.prepare.latn_check` may catch it).  Calibration (README, "Checking given
romanisations"): on the demo corpus (11 languages x 4,000 lines, uroman's output as the given side) no correct file
fails (nor on the 500-line dev files); on the same files with two adjacent lines swapped, a block of 4 or 10 lines
shifted by one, a block of 4 lines taken from 50 lines further, another language's romanisation or the original given
as its own romanisation, it fails in the share of cases the README lists.
"""

from __future__ import annotations

import re
import unicodedata
from collections import deque
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

from translit_plugin.prepare.chunks import AlignmentError

_NON_WORD = re.compile(r"[\W_]+")
_DROP = re.compile(r"[aeiouy\W_]+")  # vowels (romanisers disagree most on them), punctuation, spaces
MAX_CHARS = 1000  # characters of a line used for its signature


@dataclass(frozen=True)
class ContentCheckConfig:
    """Thresholds of the every-line check (defaults calibrated on the demo corpus, see the module doc)."""

    enabled: bool = True
    margin: float = 0.2  # a neighbour's romanisation fits better by at least this much: the line is misplaced
    min_run: int = 2  # this many consecutive misplaced lines fail the file (a swap makes two)
    min_score: float = 0.3  # below this a line is unlike its original ...
    unlike_run: int = 3  # ... and this many such lines in a row fail the file
    max_unlike_fraction: float = 0.3  # or this share of all judged lines
    max_same_fraction: float = 0.5  # lines of a non-Latin script given back unchanged
    min_skeleton: int = 3  # shorter skeletons are not judged
    window: int = 2  # neighbours compared on each side


class LatnContentError(AlignmentError):
    """A given romanisation does not belong line for line to its original (exit status 3)."""

    exit_code = 3


class MissingRomaniser(ImportError):
    """``anyascii`` is not installed (exit status 2, with what to do)."""

    exit_code = 2


def _romaniser() -> tuple[str, Callable[[str], str]]:
    try:
        from anyascii import anyascii
    except ImportError as e:
        raise MissingRomaniser("the content check of given romanisations needs anyascii: pip install anyascii "
                               "(`pip install .[prepare]` brings it), or --content-check off skips it") from e
    return "anyascii", anyascii


def _normalise(text: str) -> str:
    text = unicodedata.normalize("NFKD", text.lower())
    return "".join(c for c in text if not unicodedata.combining(c))


def skeleton(text: str, romanise: Callable[[str], str] | None = None) -> str:
    """The consonant skeleton of ``text`` (romanised first when ``romanise`` is given): digits and consonants."""
    text = text[:MAX_CHARS]
    if romanise is not None and not text.isascii():
        text = romanise(_NON_WORD.sub(" ", text))  # letters and digits only: anyascii spells out emoji and symbols
    return _DROP.sub("", _normalise(text))


def _bigrams(s: str) -> frozenset[str]:
    return frozenset(s[i:i + 2] for i in range(len(s) - 1)) if len(s) > 1 else frozenset((s,))


def _dice(a: frozenset[str], b: frozenset[str]) -> float:
    if not a and not b:
        return 1.0
    return 2 * len(a & b) / (len(a) + len(b))


def _non_latin(text: str) -> bool:
    """Whether ``text`` has a letter of a script other than Latin."""
    return any(c.isalpha() and not c.isascii() and not unicodedata.name(c, "LATIN").startswith("LATIN")
               for c in text)


def same_text_error(orig_path: str, latn_path: str, lang: str | None) -> str | None:
    """Why ``latn_path`` cannot be the romanisation of ``orig_path`` when both hold the same bytes (None when it can:
    text in Latin script, e.g. English, is its own romanisation).  Checked whatever ``--content-check`` says."""
    import filecmp

    if lang is not None and lang.endswith("_Latn"):
        return None
    if not filecmp.cmp(orig_path, latn_path, shallow=False):
        return None
    with open(orig_path, encoding="utf-8", errors="replace") as f:
        head = f.read(1 << 20)
    if not _non_latin(head):
        return None
    return (f"{latn_path} holds the same text as {orig_path}, which is not in Latin script: the Latin side would be "
            "the original; give its romanisation (`translit-ppa transliterate` writes it)")


@dataclass
class _Line:
    n: int
    orig: frozenset[str]
    latn: frozenset[str]
    judged: bool
    own: float = 0.0
    done: bool = False


@dataclass
class ContentCheck:
    """Feed every pair with :meth:`add` (in file order), then :meth:`finish`; memory is a window of 5 lines."""

    lang: str
    orig_path: str
    latn_path: str
    cfg: ContentCheckConfig = field(default_factory=ContentCheckConfig)

    def __post_init__(self) -> None:
        self.romaniser, self._romanise = _romaniser()
        self._window: deque[_Line] = deque()
        self.lines = self.judged = self.unlike = self.same = self.non_latin = 0
        self._misplaced_run: list[int] = []
        self._unlike_run: list[int] = []
        self.runs: list[tuple[str, int, int]] = []  # (kind, first line, last line)

    def add(self, n: int, orig: str, latn: str) -> None:
        """One pair (line number ``n`` of the input files)."""
        self.lines += 1
        if orig == latn and orig and _non_latin(orig):
            self.same += 1
            self.non_latin += 1
        elif not orig.isascii() and _non_latin(orig):
            self.non_latin += 1
        so, sl = skeleton(orig, self._romanise), skeleton(latn)
        judged = len(so) >= self.cfg.min_skeleton or len(sl) >= self.cfg.min_skeleton
        line = _Line(n, _bigrams(so), _bigrams(sl), judged)
        line.own = _dice(line.orig, line.latn)
        self._window.append(line)
        w = self.cfg.window
        if len(self._window) > w:
            self._judge(self._window[-1 - w])
        if len(self._window) > 2 * w:
            self._window.popleft()

    def _judge(self, line: _Line) -> None:
        line.done = True
        if not line.judged:
            return
        self.judged += 1
        best = max((_dice(other.orig, line.latn) for other in self._window if other is not line and other.judged),
                   default=0.0)
        misplaced = best - line.own >= self.cfg.margin
        unlike = line.own < self.cfg.min_score
        self.unlike += unlike
        self._extend("misplaced", self._misplaced_run, line.n, misplaced, self.cfg.min_run)
        self._extend("unlike", self._unlike_run, line.n, unlike, self.cfg.unlike_run)

    def _extend(self, kind: str, run: list[int], n: int, bad: bool, limit: int) -> None:
        if bad:
            run.append(n)
            return
        if len(run) >= limit:
            self.runs.append((kind, run[0], run[-1]))
        run.clear()

    def finish(self) -> dict[str, Any]:
        """Judge the last lines; return the summary, or raise :class:`LatnContentError` naming file and lines."""
        for line in [line for line in self._window if not line.done]:
            self._judge(line)
        self._extend("misplaced", self._misplaced_run, -1, False, self.cfg.min_run)
        self._extend("unlike", self._unlike_run, -1, False, self.cfg.unlike_run)
        summary = {"lines": self.lines, "judged": self.judged, "unlike": self.unlike, "same_as_original": self.same,
                   "failed_runs": len(self.runs), "romaniser": self.romaniser,
                   "config": {k: v for k, v in asdict(self.cfg).items() if k != "enabled"}}
        problems = []
        if self.non_latin and self.same > self.cfg.max_same_fraction * self.non_latin:
            problems.append(f"{self.same} of {self.non_latin} lines in a non-Latin script are given back unchanged "
                            f"(is {self.latn_path} the original text rather than its romanisation?)")
        if self.judged and self.unlike > self.cfg.max_unlike_fraction * self.judged:
            problems.append(f"{self.unlike} of {self.judged} lines look unlike their original (another file's or "
                            "language's romanisation?)")
        if self.runs:
            shown = ", ".join(f"{a}-{b}" if a != b else str(a) for _, a, b in self.runs[:8])
            more = f" (+{len(self.runs) - 8} more)" if len(self.runs) > 8 else ""
            kinds = sorted({k for k, _, _ in self.runs})
            what = " and ".join({"misplaced": "fit a neighbouring line better than their own (swapped or shifted)",
                                 "unlike": "look unlike their original (a moved block?)"}[k] for k in kinds)
            problems.append(f"lines {shown}{more} {what}")
        if problems:
            raise LatnContentError(
                f"{self.lang}: {self.latn_path} does not match {self.orig_path} line for line: {'; '.join(problems)}. "
                "Fix the romanisation file (line i must be the romanisation of line i), or if it is right, "
                "--content-check off skips this check (README, 'Checking given romanisations')")
        return summary
