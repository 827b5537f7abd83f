"""Token ids and sentence vectors from a hub model, as the Glot500 retrieval code computes them.

Each sentence is encoded as ``<s> pieces </s>`` (truncated to ``max_length`` keeping ``</s>``), run through the
encoder, and the hidden states of one layer (``inner_states[layer]``, which equals HF ``hidden_states[layer]``;
0 = embedding output) are pooled by :func:`translit_plugin.method.pooling.sentence_vectors` (the pooling the training
objectives use): ``mean_with_special`` over every non-padding position including ``<s>`` and ``</s>`` (the
reference's attention-mask mean), ``mean_no_special`` (the same without ``<s>``/``</s>``: the SEQ objective's
pooling), or ``cls`` = the ``<s>`` state.
:meth:`translit_plugin.hub.TranslitHubInterface.embed` and the evaluation commands use :func:`embed_sentences`.

Batches are formed from length-sorted sentences by default (far less padding; results are unchanged because
padding is masked), and rows are returned in input order.
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import Callable, Sequence

import torch

from translit_plugin.core.names import (
    DEFAULT_LAYER,
    DEFAULT_MAX_LENGTH,
    MEAN_WITH_SPECIAL,
    POOLINGS,
    check_layer,
    truncate_keep_eos,
)
from translit_plugin.method.masking import SpecialIds
from translit_plugin.method.pooling import sentence_vectors

logger = logging.getLogger(__name__)

#: Old pooling names still accepted, with a warning: ``mean`` included ``<s>``/``</s>``.
DEPRECATED_POOLINGS = {"mean": MEAN_WITH_SPECIAL}


def pooling_name(pooling: str) -> str:
    """``pooling`` if it is one of :data:`POOLINGS`; a deprecated name is translated with a ``FutureWarning``."""
    if pooling in DEPRECATED_POOLINGS:
        new = DEPRECATED_POOLINGS[pooling]
        warnings.warn(f"pooling {pooling!r} is deprecated; it is {new!r}", FutureWarning, stacklevel=3)
        return new
    if pooling not in POOLINGS:
        raise ValueError(f"unknown pooling {pooling!r}; expected one of {POOLINGS}")
    return pooling


def collate(seqs: Sequence[torch.Tensor], pad: int) -> torch.Tensor:
    """Right-pad 1-D id tensors into a B x T LongTensor."""
    width = max(s.numel() for s in seqs)
    out = torch.full((len(seqs), width), pad, dtype=torch.long)
    for i, s in enumerate(seqs):
        out[i, : s.numel()] = s
    return out


def encode_all(encode: Callable[[str], torch.Tensor], sentences: Sequence[str], max_length: int) -> list:
    """Encode and truncate every sentence (``encode`` returns ``<s> ... </s>`` ids)."""
    return [truncate_keep_eos(encode(s).long(), max_length) for s in sentences]


def length_batches(lengths: Sequence[int], batch_size: int, sort_by_length: bool = True) -> list[list[int]]:
    """Index batches of at most ``batch_size``; longest first when sorting (memory peaks early, not at the end)."""
    order = sorted(range(len(lengths)), key=lambda i: -lengths[i]) if sort_by_length else list(range(len(lengths)))
    return [order[i : i + batch_size] for i in range(0, len(order), batch_size)]


@torch.no_grad()
def embed_sentences(
    hub,
    sentences: Sequence[str],
    layer: int = DEFAULT_LAYER,
    pooling: str = MEAN_WITH_SPECIAL,
    batch_size: int = 128,
    max_length: int = DEFAULT_MAX_LENGTH,
    sort_by_length: bool = True,
    device: str | torch.device | None = None,
    progress: bool = True,
    desc: str = "embed",
    prompt: str = "",
) -> torch.Tensor:
    """Embed ``sentences`` with ``hub`` (a hub interface: ``.model``, ``.dictionary``, ``.encode``) -> N x C float32.

    ``layer`` indexes ``inner_states`` (0 = embeddings, k = output of layer k).  ``prompt`` is put in front of every
    sentence before tokenization (``"query: "`` for e5; its tokens are pooled too, as sentence-transformers does).
    """
    if isinstance(sentences, str):
        raise TypeError("sentences must be a list of strings, not one string (it would be embedded per character)")
    from tqdm import tqdm

    pooling = pooling_name(pooling)
    if not sentences:
        raise ValueError("no sentences to embed")
    model = hub.model
    check_layer(layer, len(model.encoder.sentence_encoder.layers))
    device = torch.device(device) if device is not None else next(model.parameters()).device
    was_training = model.training
    model.eval()
    d = hub.dictionary
    specials = SpecialIds(bos=d.bos(), eos=d.eos(), pad=d.pad())
    max_length = min(max_length, getattr(hub, "max_positions", max_length))
    ids = encode_all(hub.encode, [prompt + s for s in sentences] if prompt else sentences, max_length)
    out: torch.Tensor | None = None
    batches = length_batches([t.numel() for t in ids], batch_size, sort_by_length)
    try:
        for batch in tqdm(batches, desc=desc, disable=not progress, leave=False):
            tokens = collate([ids[i] for i in batch], d.pad()).to(device)  # B x T
            # the layers above ``layer`` change nothing here: translit_roberta stops after it
            _, extra = model(tokens, features_only=True, return_all_hiddens=True, max_layer=layer)
            states = extra["inner_states"][layer].transpose(0, 1)  # T x B x C -> B x T x C
            vecs = sentence_vectors(states, tokens, pooling, specials).cpu()
            if out is None:
                out = torch.empty(len(sentences), vecs.size(1), dtype=torch.float32)
            out[torch.tensor(batch)] = vecs
    finally:
        model.train(was_training)
    return out
