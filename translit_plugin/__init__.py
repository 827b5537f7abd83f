"""translit-ppa: fairseq plugin for transliteration-based post-training alignment (Xhelili, Liu, Schütze 2024).

Loaded by ``fairseq-train --user-dir translit_plugin``: registers the ``translit_roberta`` model, the
``translit_align`` task and the ``mlm_seq_tlm`` criterion, and makes fairseq checkpoints loadable on torch >= 2.6
(see :mod:`translit_plugin.checkpoint_compat`).
"""

import logging

from . import checkpoint_compat

# fairseq's speech task logs an install hint for tensorboardX at import time; it concerns none of our commands.
logging.getLogger("fairseq.tasks.text_to_speech").setLevel(logging.WARNING)
checkpoint_compat.install()

from . import criterions, models, tasks  # noqa: E402,F401

__version__ = "0.1.0"
