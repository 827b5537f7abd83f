"""Models: ``translit_roberta`` (HF-identical XLM-R / Glot500 in fairseq)."""

from . import translit_roberta  # noqa: F401
