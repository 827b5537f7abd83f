"""The hub interface: sentencepiece tokenization around a loaded ``translit_roberta`` model."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import torch
from torch import Tensor, nn

from translit_plugin.core.names import DEFAULT_MAX_LENGTH, check_layer, truncate_keep_eos
from translit_plugin.core.use_settings import PROBE, PROBE_VIEW, USE_VIEW, VIEWS, UseSetting

from .encoding import collate, embed_sentences


class TranslitHubInterface(nn.Module):
    """Sentencepiece tokenization + the fairseq model: ``encode``, ``extract_features``, ``embed``."""

    def __init__(self, cfg, model, dictionary, spm_path: str | os.PathLike, use: UseSetting | None = None) -> None:
        super().__init__()
        from translit_plugin.vocab import build_id_map, load_spm

        self.cfg = cfg
        self.model = model
        self.dictionary = dictionary
        self.spm_path = Path(spm_path)
        self.sp = load_spm(spm_path)
        self.id_map = build_id_map(self.sp, dictionary)
        #: where the model's users read it (``use.json``; the paper's probe when the directory has none)
        self.use = use if use is not None else PROBE
        if use is not None and use is not PROBE:
            use.layer_index(self.num_layers)  # a recorded layer the model lacks fails here, not at first use

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    @property
    def max_positions(self) -> int:
        return int(self.model.encoder.max_positions())

    @property
    def num_layers(self) -> int:
        return len(self.model.encoder.sentence_encoder.layers)

    # ------------------------------------------------------------------------------------------------ tokenization
    def encode(self, sentence: str, max_length: int | None = None) -> Tensor:
        """``<s> pieces </s>`` as a LongTensor; truncated to ``max_length`` tokens (``</s>`` kept) if given."""
        from translit_plugin.vocab import encode_ids

        ids = torch.tensor(encode_ids(self.sp, self.id_map, sentence), dtype=torch.long)
        return truncate_keep_eos(ids, max_length or self.max_positions)

    def decode(self, tokens: Tensor) -> str:
        """Token ids back to text (specials dropped)."""
        tokens = tokens.tolist() if isinstance(tokens, Tensor) else list(tokens)
        specials = {self.dictionary.bos(), self.dictionary.eos(), self.dictionary.pad()}
        pieces = [self.dictionary[t] for t in tokens if t not in specials]
        return self.sp.DecodePieces(pieces)

    def pad_batch(self, seqs: Sequence[Tensor]) -> Tensor:
        """Right-pad 1-D token tensors into B x T with ``<pad>``."""
        return collate(seqs, self.dictionary.pad())

    def batch_encode(self, sentences: Sequence[str], max_length: int | None = None) -> Tensor:
        """B x T padded ids for ``sentences`` (order kept)."""
        return self.pad_batch([self.encode(s, max_length) for s in sentences])

    # ---------------------------------------------------------------------------------------------------- features
    def extract_features(self, tokens: Tensor, layer: int | None = None, return_all_hiddens: bool = False):
        """B x T x C output of ``layer`` (0 = embeddings, default the last); all T x B x C states if asked."""
        if tokens.dim() == 1:
            tokens = tokens.unsqueeze(0)
        tokens = tokens.to(self.device)
        if tokens.size(-1) > self.max_positions:
            raise ValueError(f"tokens exceeds maximum length: {tokens.size(-1)} > {self.max_positions}")
        layer = self.num_layers if layer is None else check_layer(layer, self.num_layers)
        _, extra = self.model(tokens, features_only=True, return_all_hiddens=True)
        inner = extra["inner_states"]
        if return_all_hiddens:
            return [h.transpose(0, 1) for h in inner]  # T x B x C -> B x T x C
        return inner[layer].transpose(0, 1)

    def view(self, view: str = USE_VIEW) -> UseSetting:
        """The setting of a named view: ``"use"`` (this model's use setting) or ``"probe"`` (the paper's: layer 8,
        ``mean_with_special``, no prompt)."""
        if view == USE_VIEW:
            return self.use
        if view == PROBE_VIEW:
            return PROBE
        raise ValueError(f"unknown view {view!r}; expected one of {VIEWS}")

    def embed(
        self,
        sentences: Sequence[str] | str,
        layer: int | None = None,
        pooling: str | None = None,
        batch_size: int = 128,
        max_length: int = DEFAULT_MAX_LENGTH,
        progress: bool | None = None,
        *,
        view: str = USE_VIEW,
        prompt_name: str | None = None,
        prompt: str | None = None,
    ) -> Tensor:
        """Sentence vectors (N x C, float32, input order), by default where the model is read (:attr:`use`).

        ``view``: ``"use"`` (the model's ``use.json``: e5 is read at its last layer with ``"query: "``) or
        ``"probe"`` (the paper's layer 8, no prompt); ``layer``, ``pooling``, ``prompt_name`` (a name of the
        setting's prompts, e.g. ``"passage"``) and ``prompt`` (literal text; ``""`` = none) override the view's.
        ``pooling``: ``mean_with_special`` over the attention mask including ``<s>``/``</s>`` (and the prompt's
        tokens, as sentence-transformers does), ``mean_no_special`` (the SEQ objective's pooling), or ``cls``
        (``<s>``); ``mean`` is the deprecated name of ``mean_with_special``.  A single string is one sentence (a
        1 x C result).  Sentences are sorted by length so each batch pads little; the model is in eval mode for the
        call (:func:`translit_plugin.hub.encoding.embed_sentences`).
        """
        if isinstance(sentences, str):
            sentences = [sentences]
        setting = self.view(view)
        layer = setting.layer_index(self.num_layers) if layer is None else check_layer(layer, self.num_layers)
        pooling = setting.pooling if pooling is None else pooling
        if prompt is None:  # a named prompt is always one of this model's; the probe has none by default
            prompt = self.use.prompt_text(prompt_name) if prompt_name or view == USE_VIEW else ""
        if not sentences:
            return torch.empty(0, self.model.encoder.sentence_encoder.embed_tokens.embedding_dim)
        show = progress if progress is not None else len(sentences) > 10 * batch_size
        return embed_sentences(self, sentences, layer, pooling, batch_size, max_length, progress=show, prompt=prompt)
