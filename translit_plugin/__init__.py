"""translit-ppa: fairseq plugin for transliteration-based post-training alignment (Xhelili, Liu, Schütze 2024).

The package is both fairseq's ``--user-dir`` and the home of the ``translit-ppa`` tools; importing it imports
nothing heavy.  The fairseq components are registered by :mod:`translit_plugin.plugin`, imported here only when
fairseq is already loaded: that is the ``fairseq-train --user-dir translit_plugin`` case (fairseq imports us).
"""

import logging
import sys

# fairseq's speech task logs an install hint for tensorboardX when fairseq.tasks is imported; none of our commands
# needs it.  Set here, before any of our modules can import fairseq.
logging.getLogger("fairseq.tasks.text_to_speech").setLevel(logging.WARNING)

if "fairseq" in sys.modules:
    from translit_plugin import plugin  # noqa: F401

__version__ = "0.1.0"
