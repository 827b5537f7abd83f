"""The error the ``translit_align`` task raises for problems the user has to fix (data, start model, options).

Its message is one line: what is wrong, which file or option, and what to do.  Under ``fairseq-train`` the task logs it
and exits with status 2 instead of printing a traceback (see :func:`translit_plugin.tasks.translit_align.clean_exit`;
set ``TRANSLIT_PPA_TRACEBACK=1`` to get the traceback).  It subclasses ``ValueError`` so callers that caught the
plain ``ValueError`` the task raised before keep working.
"""

from __future__ import annotations


class TranslitDataError(ValueError):
    """Bad training data, start model or task options; the message says what, where, and what to do."""

    exit_code = 2  # `translit-ppa` and the task's clean exit under fairseq-train: bad input


class MissingDataError(TranslitDataError, FileNotFoundError):
    """A file the task needs is missing (also a ``FileNotFoundError``)."""


class PairingError(TranslitDataError):
    """The two sides of a data-bin do not pair up (counts, dictionary, or the recorded fingerprint differ)."""
