"""The post-training method as plain PyTorch (torch and numpy only, no fairseq), one module per idea.

* :mod:`.masking` -- MLM masking of a sequence, the content-token mask, the unmasked ids of a masked stream, the
  MLM cross-entropy over the selected positions.
* :mod:`.pooling` -- sentence vectors from one layer's hidden states, by a named pooling
  (:data:`~translit_plugin.core.names.MEAN_NO_SPECIAL`, :data:`~translit_plugin.core.names.MEAN_WITH_SPECIAL`,
  :data:`~translit_plugin.core.names.CLS`).
* :mod:`.gather` -- collecting sentence vectors from every data-parallel worker (exact, reference or no gradient).
* :mod:`.terms` -- one unit per loss term (MLM on each script, TLM, SEQ, the anchored term): its options, what it
  takes from the encoder passes, its computation and its logging.  The ``mlm_seq_tlm`` criterion composes them.

Semantics follow the paper's reference code (Xhelili, Liu, Schütze 2024, arXiv 2406.19759).
"""
