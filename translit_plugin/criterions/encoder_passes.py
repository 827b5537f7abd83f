"""The encoder passes behind the loss terms: one pass per stream a term needs, delivering the MLM cross-entropy
over the stream's selected tokens and the requested sentence vectors.

With ``--encoder-chunk-tokens`` every pass runs in length-sorted chunks cut to their longest row, so padding (most
of a random batch's tokens) costs nothing; trailing padding changes no output and every loss is a sum over rows or
tokens, so the results equal one padded pass (tested).
"""

from __future__ import annotations

import torch
from torch import Tensor

from translit_plugin.core.names import SIDES
from translit_plugin.method.masking import SpecialIds, mlm_loss_sum
from translit_plugin.method.pooling import VectorRequest
from translit_plugin.method.terms.base import StreamNeeds


class EncoderPasses:
    """Runs a ``translit_roberta`` model on the streams of a batch (see module docstring).

    Args:
        specials: ``<s>``, ``</s>`` and padding ids.
        chunk_tokens: chunk budget in padded tokens (0 = one padded pass per stream).
    """

    def __init__(self, specials: SpecialIds, chunk_tokens: int = 0) -> None:
        if chunk_tokens < 0:
            raise ValueError(f"--encoder-chunk-tokens must be >= 0, got {chunk_tokens}")
        self.specials = specials
        self.pad = specials.pad
        self.chunk_tokens = chunk_tokens

    def run(self, model, sample: dict, needs: dict[str, StreamNeeds]) -> tuple[dict, dict]:
        """Run the streams ``needs`` names -> ``({stream: (ce_sum, count)} for MLM streams, {stream: {key: B x C}})``.

        Without chunking, the original and Latin passes share one ``return_all_hiddens`` / ``max_layer`` setting (the
        deepest layer either needs), so their dropout draws do not depend on which term asked for what.
        """
        mlm_out: dict[str, tuple] = {}
        vectors_out: dict[str, dict] = {}
        if self.chunk_tokens > 0:
            for name, need in needs.items():
                sums, vectors_out[name] = self._chunked_stream(model, sample[name], need.mlm, need.vectors)
                if need.mlm:
                    mlm_out[name] = sums
            return mlm_out, vectors_out
        sides = [n for n in SIDES if n in needs]
        groups = [sides] + [[n] for n in needs if n not in SIDES]
        for names in filter(None, groups):
            layers = [request.layer for n in names for request in needs[n].vectors.values()]
            for n in names:
                need = needs[n]
                logits, inner = self._pass(model, sample[n], need.mlm, need_hidden=bool(layers),
                                           max_layer=max(layers) if layers else None)  # fmt: skip
                if need.mlm:
                    mlm_out[n] = mlm_loss_sum(logits, sample[n]["target"], self.pad)
                tokens = sample[n]["src_tokens"]
                vectors_out[n] = {key: r.pool(inner, tokens, self.specials) for key, r in need.vectors.items()}
        return mlm_out, vectors_out

    def sentence_vectors(self, model, tokens: Tensor, request: VectorRequest | tuple[VectorRequest, ...]):
        """``B x C`` float32 vectors of ``tokens`` (``B x T``) as ``request`` says, the encoder stopping at its
        layer (an extra pass, e.g. of clean inputs or of a teacher); chunked like every pass.  Given a tuple of
        requests: one pass up to the deepest of their layers, and the list of their vectors."""
        requests = request if isinstance(request, tuple) else (request,)
        if self.chunk_tokens <= 0 or tokens.shape[0] < 2:
            deepest = max(r.layer for r in requests)
            _, extra = model(tokens, features_only=True, return_all_hiddens=True, max_layer=deepest)
            out = [r.pool(extra["inner_states"], tokens, self.specials) for r in requests]
        else:
            keyed = {f"v{i}": r for i, r in enumerate(requests)}
            _, vectors = self._chunked_stream(model, {"src_tokens": tokens}, False, keyed)
            out = [vectors[k] for k in keyed]
        return out if isinstance(request, tuple) else out[0]

    def _pass(self, model, stream: dict, mlm: bool, need_hidden: bool, max_layer: int | None):
        """One padded pass -> ``(M x V logits over the selected positions or None, inner states or None)``; a pass
        without MLM stops at ``max_layer`` when given."""
        kwargs = {"positions": stream["positions"]} if "positions" in stream else {}
        if not mlm and max_layer is not None:
            kwargs["max_layer"] = max_layer  # only hidden states up to that layer are needed
        selected = stream["target"].ne(self.pad)
        logits, extra = model(stream["src_tokens"], features_only=not mlm, return_all_hiddens=need_hidden,
                              masked_tokens=selected if mlm else None, **kwargs)  # fmt: skip
        return (logits if mlm else None), (extra["inner_states"] if need_hidden else None)

    def _chunks(self, tokens: Tensor) -> tuple[list[tuple[Tensor, int]], Tensor]:
        """Length-sorted chunks of the rows of ``tokens`` (B x T) within the chunk budget in padded tokens:
        ``[(row indices, width), ...]`` and the permutation that puts chunk-ordered rows back in batch order."""
        lengths = tokens.ne(self.pad).sum(dim=1).tolist()  # one host sync per pass
        order = sorted(range(len(lengths)), key=lambda i: -lengths[i])
        chunks, start = [], 0
        while start < len(order):
            width = max(lengths[order[start]], 1)
            end = start + max(1, self.chunk_tokens // width)
            chunks.append((torch.tensor(order[start:end], device=tokens.device), width))
            start = end
        inverse = torch.empty(len(order), dtype=torch.long)
        inverse[torch.tensor(order)] = torch.arange(len(order))
        return chunks, inverse.to(tokens.device)

    def _chunked_stream(self, model, stream: dict, mlm: bool, vectors: dict) -> tuple[tuple | None, dict]:
        """One stream in length-sorted chunks without their padding: ``((ce_sum, count) or None, {key: B x C})``.

        ``vectors`` maps a key to a :class:`VectorRequest`; a stream without MLM stops at the deepest such layer.
        """
        tokens = stream["src_tokens"]
        chunks, inverse = self._chunks(tokens)
        kwargs: dict = {"features_only": not mlm, "return_all_hiddens": bool(vectors)}
        if not mlm and vectors:
            kwargs["max_layer"] = max(request.layer for request in vectors.values())
        ce_sum, count = None, None
        pooled: dict[str, list] = {key: [] for key in vectors}
        for rows, width in chunks:
            sub = tokens.index_select(0, rows)[:, :width]
            extra_kwargs = dict(kwargs)
            if "positions" in stream:
                extra_kwargs["positions"] = stream["positions"].index_select(0, rows)[:, :width]
            if mlm:
                sub_target = stream["target"].index_select(0, rows)[:, :width]
                extra_kwargs["masked_tokens"] = sub_target.ne(self.pad)
            logits, extra = model(sub, **extra_kwargs)
            if mlm:
                part, n = mlm_loss_sum(logits, sub_target, self.pad)
                ce_sum, count = (part, n) if ce_sum is None else (ce_sum + part, count + n)
            for key, request in vectors.items():
                pooled[key].append(request.pool(extra["inner_states"], sub, self.specials))
        out = {key: torch.cat(parts, dim=0).index_select(0, inverse) for key, parts in pooled.items()}
        return ((ce_sum, count) if mlm else None), out
