"""``python -m translit_plugin.cli`` == ``translit-ppa``."""

import sys

from translit_plugin.cli import main

sys.exit(main())
