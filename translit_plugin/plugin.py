"""The fairseq side of the package: registers the ``translit_roberta`` model, the ``translit_align`` task and the
``mlm_seq_tlm`` criterion, and makes fairseq checkpoints loadable on torch >= 2.6
(:mod:`translit_plugin.checkpoint_compat`).

``fairseq-train --user-dir translit_plugin`` imports it through ``translit_plugin/__init__.py``.  Code that builds or
loads models in its own process (the hub, evaluation, tests) imports it explicitly: ``import translit_plugin.plugin``.
"""

from translit_plugin import checkpoint_compat

checkpoint_compat.install()

from translit_plugin import criterions, models, tasks  # noqa: E402,F401  (registration happens on import)
