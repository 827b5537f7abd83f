"""The error the ``translit_align`` task raises for problems the user has to fix (data, start model, options).

Its message is one line: what is wrong, which file or option, and what to do.  Under ``fairseq-train`` the task logs it
and exits with status 2 instead of printing a traceback (:func:`clean_exit`, which the task and the criterion wrap
their entry points in; set ``TRANSLIT_PPA_TRACEBACK=1`` to get the traceback).  It subclasses ``ValueError`` so
callers that caught the plain ``ValueError`` the task raised before keep working.
"""

from __future__ import annotations

import functools
import logging
import os
import sys

logger = logging.getLogger("translit_plugin.tasks.translit_align")  # the name these lines always had


class TranslitDataError(ValueError):
    """Bad training data, start model or task options; the message says what, where, and what to do."""

    exit_code = 2  # `translit-ppa` and the task's clean exit under fairseq-train: bad input


class MissingDataError(TranslitDataError, FileNotFoundError):
    """A file the task needs is missing (also a ``FileNotFoundError``)."""


class PairingError(TranslitDataError):
    """The two sides of a data-bin do not pair up (counts, dictionary, or the recorded fingerprint differ)."""


def _exit_instead_of_raising() -> bool:
    """True under a fairseq console command (fairseq-train, fairseq-hydra-train, ...) unless TRANSLIT_PPA_TRACEBACK."""
    if os.environ.get("TRANSLIT_PPA_TRACEBACK"):
        return False
    prog = sys.argv[0] if sys.argv else ""
    return os.path.basename(prog).startswith("fairseq-") or "fairseq_cli" in prog


def clean_exit(fn):
    """Under fairseq-train, turn a :class:`TranslitDataError` into one logged line and exit status 2 (no traceback);
    elsewhere (tests, library use) re-raise it."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except TranslitDataError as e:
            if not _exit_instead_of_raising():
                raise
            logger.error("translit_align: %s", e)
            raise SystemExit(e.exit_code) from None

    return wrapper
