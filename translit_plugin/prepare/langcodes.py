"""Validation of ``lang_Script`` codes (ISO 639-3 + ISO 15924) and of the language codes passed to uroman.

uroman takes any string as a language code: an unknown one (``el``, ``fa``, ``xx``) silently selects its default
rules, which romanize differently from the language's own (Greek, Persian, ...).  So every code is checked against
the full ISO 639-3 table (:mod:`translit_plugin.prepare.iso_codes`, generated offline from Debian's iso-codes), with a
suggestion where the right code is known (``el`` -> ``ell``, ``per`` -> ``fas``); ``--allow-unknown-lang`` accepts
unknown codes deliberately (they are then used as they are, with a warning).
"""

from __future__ import annotations

import logging
import re
from pathlib import Path

from translit_plugin.prepare.iso_codes import ISO_639_3, ISO_15924, NAMES, PART1, PART2B

logger = logging.getLogger(__name__)

LANG_SCRIPT = re.compile(r"^([a-z]{2,3})_([A-Z][a-z]{3})$")


class LanguageCodeError(ValueError):
    """A language or script code that is not ISO 639-3 / ISO 15924 (bad input: exit status 2)."""

    exit_code = 2


def _name(code: str) -> str:
    name = NAMES.get(code)
    return f" ({name.split(' (')[0]})" if name else ""


def language_problem(lang: str) -> str | None:
    """Why ``lang`` is not an ISO 639-3 code, with the right code where one is known; None if it is one."""
    if lang in ISO_639_3:
        return None
    if lang in PART1:
        return f"'{lang}' is an ISO 639-1 code; the ISO 639-3 code is '{PART1[lang]}'{_name(PART1[lang])}"
    if lang in PART2B:
        return f"'{lang}' is an ISO 639-2/B code; the ISO 639-3 code is '{PART2B[lang]}'{_name(PART2B[lang])}"
    if lang.lower() in ISO_639_3:
        return f"'{lang}' is not lower case; did you mean '{lang.lower()}'?"
    return f"'{lang}' is not an ISO 639-3 language code"


def script_problem(script: str) -> str | None:
    if script in ISO_15924:
        return None
    fixed = script[:1].upper() + script[1:].lower()
    if fixed in ISO_15924:
        return f"'{script}' is spelled '{fixed}' in ISO 15924"
    return f"'{script}' is not an ISO 15924 script code"


def lang_script_problem(name: str) -> str | None:
    """Why ``name`` is not a valid ``lang_Script`` code (``fas_Arab``); None if it is one."""
    m = LANG_SCRIPT.match(name)
    if m is None:
        return f"'{name}' is not a lang_Script code like 'fas_Arab' (ISO 639-3 language + ISO 15924 script)"
    problems = [p for p in (language_problem(m.group(1)), script_problem(m.group(2))) if p]
    if not problems:
        return None
    lang = PART1.get(m.group(1)) or PART2B.get(m.group(1))
    rename = f" (name it {lang}_{m.group(2)})" if lang and not script_problem(m.group(2)) else ""
    return "; ".join(problems) + rename


def validate_codes(files: dict[str, Path], lcodes: dict[str, str | None], allow_unknown: bool) -> list[str]:
    """Check every language (its input file name) and every uroman code; return warnings, or raise.

    Raises :class:`LanguageCodeError` listing every problem at once unless ``allow_unknown``, in which case the
    problems are returned (and logged) as warnings and the codes are used as they are.
    """
    problems = []
    for lang, path in files.items():
        p = lang_script_problem(lang)
        if p:
            problems.append(f"{Path(path).name}: {p}")
        code = lcodes.get(lang)
        if code is not None and (code != LANG_SCRIPT.match(lang).group(1) if LANG_SCRIPT.match(lang) else True):
            q = language_problem(code)
            if q:
                problems.append(f"uroman code for {lang}: {q}")
    if not problems:
        return []
    if allow_unknown:
        for p in problems:
            logger.warning("unknown code accepted (--allow-unknown-lang): %s", p)
        return problems
    raise LanguageCodeError(
        "unknown language code(s): " + "; ".join(problems) + ". uroman would take them as they are and romanize "
        "with its default rules; rename the files (or fix --uroman-code / the group file), or pass "
        "--allow-unknown-lang to use them anyway"
    )
