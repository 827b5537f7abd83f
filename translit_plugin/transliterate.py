"""uroman wrapper: romanize text to Latin script with an explicit language code (``prepare``, ``transliterate``).

Uses the official Python port of uroman (PyPI ``uroman``; Hermjakob et al., 2018), loaded once per process (~3 s,
~70 MB).  Facts that shape this wrapper:

* The language code changes the output for some languages (Persian, Greek, Turkish, ...), so it is always passed
  explicitly; :func:`uroman_code` derives it from a ``lang_Script`` code (``fas_Arab`` -> ``fas``).  ``None`` reproduces
  the paper's setup, which called the Perl uroman without a code.
* uroman's token cache (``cache_size``, on by default in its CLI, 65,536 entries) romanizes each space/punctuation
  delimited token separately and memoizes it: 2-3x faster for space-separated scripts.  The result depends only on
  the input string (a cached token gives the same result as recomputing it), never on what was romanized before, so
  outputs are identical across processes, worker counts and resumed runs.  Cache on and off differ slightly
  (e.g. spacing after Chinese full-width punctuation); the default (on) is what uroman's CLI and reference file use.
* uroman 1.3 raises on some real text (e.g. Chinese ``百分之`` not followed by a number: ``AttributeError`` in its
  number handling). Such a line is romanized token by token (whitespace kept), a failing token by its longest prefixes
  that uroman takes, so one string never stops a corpus; each case is logged and counted (``fallbacks``). Lines uroman
  takes are untouched.
* :meth:`Transliterator.romanize` returns uroman's raw string; :meth:`Transliterator.transliterate` additionally
  makes it one clean line (``core.lines.to_single_line``) so the Latin side obeys the same line contract as the
  original side.
"""

from __future__ import annotations

import logging
import re
import unicodedata
from collections.abc import Sequence

from translit_plugin.core.lines import to_single_line

logger = logging.getLogger(__name__)

#: uroman's CLI default cache size.
DEFAULT_CACHE_SIZE = 65536

_LANG_SCRIPT = re.compile(r"^([a-z]{2,3})(?:_([A-Z][a-z]{3}))?$")
_SPACES = re.compile(r"(\s+)")
#: How many of uroman's failures a Transliterator logs at WARNING (the rest at DEBUG; ``fallbacks`` counts all).
_FALLBACK_WARNINGS = 10


def uroman_code(lang_script: str) -> str:
    """ISO 639-3 code that uroman takes, from a Glot500-style ``lang_Script`` code (``zho_Hani`` -> ``zho``)."""
    m = _LANG_SCRIPT.match(lang_script)
    if m is None:
        raise ValueError(
            f"language {lang_script!r} is not a lang_Script code like 'fas_Arab' (ISO 639-3 + ISO 15924); name the "
            "input file {lang_Script}.txt or give the uroman code explicitly"
        )
    return m.group(1)


def uroman_version() -> str:
    """Version string of the installed uroman package."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("uroman")
    except PackageNotFoundError:  # pragma: no cover - uroman importable but not installed as a distribution
        import uroman

        return str(getattr(uroman, "__version__", "unknown"))


class Transliterator:
    """One loaded uroman instance: ``transliterate(text, lcode)`` -> single-line Latin text.

    Args:
        cache_size: uroman's token cache size (0 disables the cache; see the module docstring).
        data_dir: uroman resource directory (default: the one shipped with the package).
    """

    def __init__(self, cache_size: int = DEFAULT_CACHE_SIZE, data_dir: str | None = None) -> None:
        try:
            import uroman
        except ImportError as e:  # pragma: no cover - depends on the environment
            raise ImportError("transliteration needs uroman: pip install uroman (or `make install`)") from e
        self.cache_size = int(cache_size)
        self.fallbacks = 0  # lines uroman raised on, romanized piecewise instead (see romanize)
        self.version = uroman_version()
        self._uroman = uroman.Uroman(data_dir, cache_size=self.cache_size)  # data_dir None = the packaged data
        # Uroman(**args) only turns the cache on through `cache_size`; make sure the instance matches what we asked.
        if bool(getattr(self._uroman, "cache_p", self.cache_size != 0)) != (self.cache_size != 0):
            self._uroman.reset_cache(self.cache_size)

    def reset_cache(self) -> None:
        """Empty uroman's token cache (outputs do not change; only speed does, e.g. for fair benchmarks)."""
        self._uroman.reset_cache(self.cache_size)

    def romanize(self, text: str, lcode: str | None) -> str:
        """uroman's raw output for ``text`` in NFC (may contain repeated or trailing spaces): uroman leaves decomposed
        (NFD) Hangul as jamo and romanizes decomposed Arabic or Greek differently, so every text is composed first."""
        if not text.isascii():
            text = unicodedata.normalize("NFC", text)
        try:
            return self._uroman.romanize_string(text, lcode=lcode)
        except Exception as exc:  # noqa: BLE001 - uroman's own bugs, e.g. AttributeError on Chinese '百分之 N'
            self.fallbacks += 1
            log = logger.warning if self.fallbacks <= _FALLBACK_WARNINGS else logger.debug
            log("uroman failed on %r (lcode %s; %s: %s): romanized token by token instead%s", text[:120], lcode,
                type(exc).__name__, exc, " (further cases at DEBUG)" if self.fallbacks == _FALLBACK_WARNINGS else "")
            return "".join(part if part.isspace() else self._romanize_token(part, lcode)
                           for part in _SPACES.split(text) if part)

    def _romanize_token(self, token: str, lcode: str | None) -> str:
        """A space-free piece that uroman failed on (or a part of one): the longest prefixes uroman romanizes, left to
        right; a single character it still fails on is kept as it is."""
        out = []
        while token:
            for end in range(len(token), 0, -1):
                try:
                    out.append(self._uroman.romanize_string(token[:end], lcode=lcode))
                    break
                except Exception:  # noqa: BLE001 - see romanize
                    if end == 1:
                        out.append(token[0])
            token = token[end:]
        return "".join(out)

    def transliterate(self, text: str, lcode: str | None) -> str:
        """Romanize one line; the result is a clean single line ("" when uroman produces nothing)."""
        return to_single_line(self.romanize(text, lcode))

    def transliterate_lines(self, lines: Sequence[str], lcode: str | None) -> list[str]:
        """Romanize each line; exactly one output per input (checked: a short output would shift every pair)."""
        out = [self.transliterate(line, lcode) for line in lines]
        if len(out) != len(lines):  # pragma: no cover - defensive, the comprehension cannot drop items
            raise RuntimeError(f"uroman returned {len(out)} lines for {len(lines)} inputs")
        return out
