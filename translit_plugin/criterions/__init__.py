"""Criterions (registered on import): ``mlm_seq_tlm``."""

from . import mlm_seq_tlm  # noqa: F401
