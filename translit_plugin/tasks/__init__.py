"""Tasks (registered on import): ``translit_align``."""

from . import translit_align  # noqa: F401
