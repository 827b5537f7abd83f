"""Names and defaults that travel through training, evaluation and the tools, each defined once.

**Layers.** Hidden layer ``0`` is the embedding output and layer ``k`` the output of transformer layer ``k``.
:data:`DEFAULT_LAYER` (8) is where the paper takes sentence vectors, for SEQ in training and for retrieval in
evaluation; the anchored objective uses it too.

**Pooling.** Two mean poolings exist and both are the paper's: SEQ averages the content tokens only (the reference
training code), retrieval averages every non-padding token including ``<s>`` and ``</s>`` (the reference evaluation).
Their names say which: :data:`MEAN_NO_SPECIAL`, :data:`MEAN_WITH_SPECIAL`; :data:`CLS` is the ``<s>`` vector.

**Streams.** A training pair is an original-script sentence (:data:`ORIG`) and its Latin transliteration
(:data:`LATN`); :data:`TLM` is the two concatenated.  The same names are the data-bin's side directories.

**Length budget.** One sentence's token budget counts ``<s>`` and ``</s>``.  The tools call it ``max_length``
(``--max-length``); fairseq-train's flag for it is fairseq's own ``--tokens-per-sample``; a model's
``max_positions`` is the upper limit any budget must respect.  Truncation to a budget keeps the final ``</s>``.
"""

from __future__ import annotations

DEFAULT_LAYER = 8

#: The token embedding matrix in a fairseq checkpoint's state dict: one row per vocabulary entry (the LM head's output
#: projection ``encoder.lm_head.weight`` is the same tensor).
EMBED_KEY = "encoder.sentence_encoder.embed_tokens.weight"

MEAN_NO_SPECIAL = "mean_no_special"
MEAN_WITH_SPECIAL = "mean_with_special"
CLS = "cls"
POOLINGS = (MEAN_WITH_SPECIAL, MEAN_NO_SPECIAL, CLS)

ORIG = "orig"
LATN = "latn"
TLM = "tlm"
SIDES = (ORIG, LATN)

DEFAULT_MAX_LENGTH = 512  # XLM-R's max_positions (514) minus the two padding offsets


def truncate_keep_eos(ids, max_length: int):
    """``ids`` (a 1-D numpy array or torch tensor that ends in ``</s>``) cut to ``max_length``: the first
    ``max_length - 1`` ids, then the final ``</s>`` (how the paper's code and HF truncate).  Shorter input is returned
    as it is."""
    if len(ids) <= max_length:
        return ids
    return ids[[*range(max_length - 1), len(ids) - 1]]


def check_layer(layer: int, num_layers: int, what: str = "layer") -> int:
    """``layer`` if it exists in a model of ``num_layers`` transformer layers (0 = embeddings), else ValueError."""
    if not 0 <= int(layer) <= num_layers:
        raise ValueError(f"{what} {layer} does not exist: the model has layers 0 (embeddings) to {num_layers}")
    return int(layer)

#: The records that mark a model directory as written by ``convert``, ``trim-vocab`` or ``untrim`` (each command
#: writes one; ``conversion/lineage.py`` follows them back to where a checkpoint came from).
CONVERT_MARKER = "conversion.json"
TRIM_MARKER = "trim.json"
UNTRIM_MARKER = "untrim.json"
