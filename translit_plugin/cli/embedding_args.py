"""The embedding options shared by ``evaluate`` (retrieval) and ``select-checkpoint``: where sentence vectors are
read (``--view``, ``--layer``, ``--pooling``, ``--prompt-name``) and ``--embed-batch-size``."""

from __future__ import annotations

import argparse


def add_embedding_arguments(parser: argparse._ActionsContainer) -> None:
    """``--view``, ``--layer``, ``--pooling``, ``--prompt-name`` and ``--embed-batch-size``."""
    from translit_plugin.cli.argtypes import NONNEG, POSITIVE
    from translit_plugin.core.names import CLS, MEAN_WITH_SPECIAL

    parser.add_argument("--view", choices=("use", "probe"), default="use",
                        help="where sentence vectors are read: 'use' = the model's use setting (use.json, recorded "
                             "at conversion: multilingual-e5 is read at its last layer with the 'query: ' prompt; a "
                             "model without one is read like the probe), 'probe' = the paper's (layer 8, mean over "
                             "every token, no prompt) (default: %(default)s)")
    parser.add_argument("--layer", type=NONNEG, default=None,
                        help="hidden layer (0 = embeddings), overriding the view's")
    parser.add_argument("--pooling", choices=(MEAN_WITH_SPECIAL, CLS, "mean"), default=None,
                        help="mean over every token including <s> and </s>, or the <s> vector ('mean': deprecated "
                             "name of mean_with_special), overriding the view's")
    parser.add_argument("--prompt-name", default=None,
                        help="one of the model's prompts (e5: query, passage) put in front of every sentence; '' = "
                             "none (default: the view's: the model's default prompt in 'use', none in 'probe')")
    parser.add_argument("--embed-batch-size", type=POSITIVE, default=128, help="(default: %(default)s)")
