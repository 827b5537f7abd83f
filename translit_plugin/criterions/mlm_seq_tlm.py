"""``mlm_seq_tlm``: MLM on the original, MLM on the Latin transliteration, sentence-level contrast (SEQ) and TLM.

Total loss = ``w_o * MLM_orig + w_l * MLM_latn + w_s * SEQ + w_t * TLM`` (reference: all weights 1).  A zero weight
skips that term's forward pass, which gives the paper's ablations: MLM (``--seq-weight 0 --tlm-weight 0``), MLM+SEQ
(``--tlm-weight 0``), MLM+TLM (``--seq-weight 0``) and MLM+SEQ+TLM.

* MLM terms: mean cross-entropy over the stream's selected tokens; the LM head runs only on those positions.
* SEQ: sentence vectors from ``inner_states[seq_layer]`` of the *masked* original and Latin inputs (the forward the
  MLM terms use), pooled in float32 (mean over content tokens, or ``<s>``), compared with
  :func:`translit_plugin.losses.seq_contrastive_loss`.
* Multi-worker SEQ (``--seq-gather``): ``exact`` (default) gathers every worker's vectors with an autograd-aware
  all-gather, so the update equals the single-process update on the global batch (MLM terms are then normalised by
  the global masked-token counts, one small all-reduce); ``reference`` reproduces the paper's code (each worker
  back-propagates the global SEQ loss through its own vectors only, i.e. ``1/W`` of the exact SEQ gradient, and MLM
  terms are per-worker means averaged); ``local`` uses only the worker's own pairs as negatives.

* ANCHOR (``--anchor-weight``, off by default; not in the paper): a frozen copy of the start model (the teacher,
  ``--anchor-teacher``, default the ``--finetune-from-model`` checkpoint) embeds each *clean* original sentence; the
  trained model's vectors of the Latin side (and, with ``--anchor-sides both``, of the original side) are pulled to
  it (:func:`translit_plugin.losses.anchor_loss`: MSE, cosine or InfoNCE against the batch's teacher vectors).  A
  model that already aligns languages (an embedding model such as multilingual-e5) keeps that alignment while
  romanised input is brought into it; SEQ alone only asks the two scripts to agree with each other, wherever they
  go.  The teacher is kept outside the module tree: not trained, not in checkpoints, not wrapped by DDP; it runs in
  eval mode without gradients, in the trained model's dtype, on its device.

Logged (natural-log units): ``loss``, ``loss_mlm_orig``, ``loss_mlm_latn``, ``loss_seq``, ``loss_tlm``, ``loss_anchor``,
``seq_acc`` (share of pairs whose original retrieves its own Latin side in the batch, gathered batch when gathering)
and ``anchor_acc`` (share of Latin sentences whose vector retrieves their own teacher vector among the batch's).
"""

import logging
import os
from dataclasses import dataclass, field
from typing import Optional

import torch
import torch.distributed as dist
import torch.nn.functional as F
from fairseq import metrics
from fairseq.criterions import FairseqCriterion, register_criterion
from fairseq.dataclass import ChoiceEnum, FairseqDataclass
from torch import Tensor

from translit_plugin.losses import (
    all_gather_no_grad,
    all_gather_reference,
    all_gather_with_grad,
    anchor_loss,
    content_mask,
    pool_hidden,
    retrieval_correct,
    seq_contrastive_loss,
)

logger = logging.getLogger(__name__)

POOLING_CHOICES = ChoiceEnum(["mean", "cls"])
SIMILARITY_CHOICES = ChoiceEnum(["dot", "cosine"])
NEGATIVES_CHOICES = ChoiceEnum(["all", "cross"])
GATHER_CHOICES = ChoiceEnum(["exact", "reference", "local"])
ENCODER_BATCHING_CHOICES = ChoiceEnum(["stacked", "separate"])
ANCHOR_POOLING_CHOICES = ChoiceEnum(["mean_with_special", "mean_no_special", "cls"])
ANCHOR_LOSS_CHOICES = ChoiceEnum(["infonce", "mse", "cosine"])
ANCHOR_SIDES_CHOICES = ChoiceEnum(["both", "latn"])
ANCHOR_INPUT_CHOICES = ChoiceEnum(["clean", "masked"])
MLM_TERMS = ("orig", "latn", "tlm")


@dataclass
class MlmSeqTlmConfig(FairseqDataclass):
    mlm_orig_weight: float = field(default=1.0, metadata={"help": "weight of MLM on the original script (0 = off)"})
    mlm_latn_weight: float = field(default=1.0, metadata={"help": "weight of MLM on the transliteration (0 = off)"})
    seq_weight: float = field(default=1.0, metadata={"help": "weight of the sentence-level contrastive loss (0 = off)"})
    tlm_weight: float = field(default=1.0, metadata={"help": "weight of TLM on the concatenated pair (0 = off)"})
    seq_layer: int = field(
        default=8, metadata={"help": "SEQ sentence vectors from this layer's output (0 = embeddings; reference: 8)"}
    )
    seq_pooling: POOLING_CHOICES = field(
        default="mean",
        metadata={"help": "'mean' over tokens other than <s>, </s>, padding (reference launch) or 'cls' (<s>)"},
    )
    seq_similarity: SIMILARITY_CHOICES = field(
        default="dot", metadata={"help": "'dot' (reference) or 'cosine' (reference option use_cosine)"}
    )
    seq_temperature: float = field(default=1.0, metadata={"help": "softmax temperature of SEQ (reference: 1)"})
    seq_negatives: NEGATIVES_CHOICES = field(
        default="all",
        metadata={
            "help": "'all': reference 2N x 2N NT-Xent (same-script sentences are negatives too); 'cross': only the "
            "other script's sentences (the paper's formula)"
        },
    )
    seq_gather: GATHER_CHOICES = field(
        default="exact",
        metadata={
            "help": "multi-worker SEQ: 'exact' (autograd all-gather: the single-process gradient of the global batch), "
            "'reference' (the paper's code: 1/W of it), 'local' (each worker's own pairs only)"
        },
    )
    encoder_batching: ENCODER_BATCHING_CHOICES = field(
        default="separate",
        metadata={
            "help": "'separate': one encoder pass per stream; 'stacked': original and Latin in one padded pass "
            "(same result; see benchmarks for which is faster on your hardware)"
        },
    )
    anchor_weight: float = field(
        default=0.0,
        metadata={
            "help": "weight of the anchored alignment term (0 = off, the paper's recipe): sentence vectors pulled to "
            "a frozen start model's vector of the original sentence"
        },
    )
    # fairseq reads these annotations at run time and understands Optional[...], not "X | None"
    anchor_teacher: Optional[str] = field(  # noqa: UP045
        default=None,
        metadata={"help": "teacher checkpoint (default: the --finetune-from-model checkpoint, i.e. the start model)"},
    )
    anchor_layer: int = field(
        default=8, metadata={"help": "layer whose output gives the anchored vectors (0 = embeddings)"}
    )
    anchor_pooling: ANCHOR_POOLING_CHOICES = field(
        default="mean_with_special",
        metadata={
            "help": "'mean_with_special': mean over every non-padding token, <s> and </s> included (the retrieval "
            "evaluation's pooling); 'mean_no_special': without <s>/</s> (SEQ's 'mean'); 'cls': the <s> vector"
        },
    )
    anchor_loss: ANCHOR_LOSS_CHOICES = field(
        default="infonce",
        metadata={
            "help": "'infonce': cosine / --anchor-temperature, the batch's other teacher vectors as negatives; 'mse': "
            "squared error per dimension (multilingual distillation); 'cosine': 1 - cosine"
        },
    )
    anchor_temperature: float = field(default=0.05, metadata={"help": "temperature of the InfoNCE anchor"})
    anchor_sides: ANCHOR_SIDES_CHOICES = field(
        default="both",
        metadata={"help": "'both': Latin and original sides pulled to the teacher's vector; 'latn': only Latin"},
    )
    anchor_input: ANCHOR_INPUT_CHOICES = field(
        default="clean",
        metadata={
            "help": "'clean': the trained model sees the unmasked sentences (extra encoder passes up to "
            "--anchor-layer); 'masked': reuse the MLM passes' masked inputs (cheaper, noisier)"
        },
    )
    encoder_chunk_tokens: int = field(
        default=0,
        metadata={
            "help": "run every encoder pass (MLM, TLM, SEQ, the anchor term's and its teacher's) in length-sorted "
            "chunks of at most this many tokens, padding included (0 = one padded pass per stream): random batches "
            "are mostly padding (3/4 of the tokens on the demo corpus), chunks skip it; same loss and gradient"
        },
    )
    anchor_teacher_cache: bool = field(
        default=False,
        metadata={"help": "keep each sentence's teacher vector in memory after its first use (fixed corpus)"},
    )


@register_criterion("mlm_seq_tlm", dataclass=MlmSeqTlmConfig)
class MlmSeqTlmCriterion(FairseqCriterion):
    """MLM(orig) + MLM(Latin) + SEQ + TLM on batches of ``translit_align`` (see module docstring)."""

    def __init__(
        self,
        task,
        mlm_orig_weight: float = 1.0,
        mlm_latn_weight: float = 1.0,
        seq_weight: float = 1.0,
        tlm_weight: float = 1.0,
        seq_layer: int = 8,
        seq_pooling: str = "mean",
        seq_similarity: str = "dot",
        seq_temperature: float = 1.0,
        seq_negatives: str = "all",
        seq_gather: str = "exact",
        encoder_batching: str = "separate",
        anchor_weight: float = 0.0,
        anchor_teacher: str | None = None,
        anchor_layer: int = 8,
        anchor_pooling: str = "mean_with_special",
        anchor_loss: str = "infonce",
        anchor_temperature: float = 0.05,
        anchor_sides: str = "both",
        anchor_input: str = "clean",
        encoder_chunk_tokens: int = 0,
        anchor_teacher_cache: bool = False,
    ) -> None:
        super().__init__(task)
        self.weights = {"orig": mlm_orig_weight, "latn": mlm_latn_weight, "seq": seq_weight, "tlm": tlm_weight,
                        "anchor": anchor_weight}  # fmt: skip
        if any(w < 0 for w in self.weights.values()):
            raise ValueError(f"loss weights must be >= 0, got {self.weights}")
        if not any(self.weights.values()):
            raise ValueError("all loss weights are 0: nothing to train")
        if seq_temperature <= 0:
            raise ValueError(f"--seq-temperature must be > 0, got {seq_temperature}")
        self.seq_layer = seq_layer
        self.seq_pooling = str(seq_pooling)
        self.seq_similarity = str(seq_similarity)
        self.seq_temperature = seq_temperature
        self.seq_negatives = str(seq_negatives)
        self.seq_gather = str(seq_gather)
        self.encoder_batching = str(encoder_batching)
        d = task.source_dictionary
        self.special_ids = (d.bos(), d.eos(), d.pad())
        self._warned_small_batch = False
        self.anchor_layer = anchor_layer
        self.anchor_pooling = str(anchor_pooling)
        self.anchor_loss = str(anchor_loss)
        self.anchor_temperature = anchor_temperature
        self.anchor_sides = ("latn", "orig") if str(anchor_sides) == "both" else ("latn",)
        self.anchor_input = str(anchor_input)
        if encoder_chunk_tokens < 0:
            raise ValueError(f"--encoder-chunk-tokens must be >= 0, got {encoder_chunk_tokens}")
        self.encoder_chunk_tokens = encoder_chunk_tokens
        self.anchor_cache: dict[bytes, Tensor] | None = {} if anchor_teacher_cache else None
        # a plain list keeps the teacher out of the module tree: not trained, not checkpointed, not moved or cast by
        # fairseq, not wrapped by DDP
        self._teacher: list = []
        if anchor_weight > 0:
            if anchor_temperature <= 0:
                raise ValueError(f"--anchor-temperature must be > 0, got {anchor_temperature}")
            starts = [p for p in getattr(task, "start_checkpoints", list)() if os.path.isfile(p)]
            path = anchor_teacher or (starts[0] if starts else None)
            if not path:
                raise ValueError(
                    "--anchor-weight > 0 needs a teacher: pass --anchor-teacher MODEL_DIR/model.pt (the start model) "
                    "or start with --finetune-from-model"
                )
            self._teacher.append(load_teacher(path, task))

    # -------------------------------------------------------------------------------------------------- helpers
    @staticmethod
    def _data_parallel():
        """(group, world size) of data parallelism; (None, 1) when not distributed."""
        if not (dist.is_available() and dist.is_initialized()):
            return None, 1
        from fairseq.distributed import utils as dist_utils

        group = dist_utils.get_data_parallel_group()
        return group, dist_utils.get_world_size(group)

    def _encode(self, model, streams: list[dict], mlm: list[bool], need_hidden: bool, max_layer: int | None = None):
        """Run the encoder on ``streams`` (one pass each, or one stacked pass) -> per stream (logits, inner_states).

        ``logits`` is ``M x V`` over that stream's selected positions (None where ``mlm`` is False) and
        ``inner_states`` the list of ``T x B x C`` states (None unless ``need_hidden``); a stream without MLM stops at
        ``max_layer`` when given (separate passes only).
        """
        if self.encoder_batching == "stacked" and len(streams) > 1 and not any("positions" in s for s in streams):
            width = max(s["src_tokens"].shape[1] for s in streams)
            tokens = torch.cat([F.pad(s["src_tokens"], (0, width - s["src_tokens"].shape[1]), value=self.padding_idx)
                                for s in streams])  # (sum B) x T
            selected = torch.cat([F.pad(s["target"], (0, width - s["target"].shape[1]), value=self.padding_idx)
                                  for s in streams]).ne(self.padding_idx)
            any_mlm = any(mlm)
            if any_mlm and not all(mlm):  # only the streams that train MLM go through the LM head
                keep = torch.cat([torch.full((s["src_tokens"].shape[0], 1), m, device=tokens.device)
                                  for s, m in zip(streams, mlm)])
                selected = selected & keep
            logits, extra = model(tokens, features_only=not any_mlm, return_all_hiddens=need_hidden,
                                  masked_tokens=selected if any_mlm else None)
            sizes = [s["src_tokens"].shape[0] for s in streams]
            # the LM head's rows follow the row-major selection: first stream 0's selected tokens, then stream 1's
            counts = [int(c.sum()) for c in selected.split(sizes)] if any_mlm else [0] * len(streams)
            out = []
            row = 0
            for i, s in enumerate(streams):
                b, t = s["src_tokens"].shape
                lg = logits[sum(counts[:i]): sum(counts[: i + 1])] if mlm[i] else None
                hs = [h[:t, row: row + b] for h in extra["inner_states"]] if need_hidden else None
                out.append((lg, hs))
                row += b
            return out
        out = []
        for s, m in zip(streams, mlm):
            kwargs = {"positions": s["positions"]} if "positions" in s else {}
            if not m and max_layer is not None:
                kwargs["max_layer"] = max_layer  # only hidden states up to that layer are needed
            selected = s["target"].ne(self.padding_idx)
            logits, extra = model(s["src_tokens"], features_only=not m, return_all_hiddens=need_hidden,
                                  masked_tokens=selected if m else None, **kwargs)
            out.append((logits if m else None, extra["inner_states"] if need_hidden else None))
        return out

    def _run_streams(self, model, sample: dict, needs: dict) -> tuple[dict, dict]:
        """Run the streams ``needs`` names (``name -> (mlm, {key: (layer, pool)})``) through the encoder.

        Returns ``({name: (ce_sum, count)} for MLM streams, {name: {key: B x C vectors}})``.  With
        ``--encoder-chunk-tokens`` every stream runs in length-sorted chunks without padding; otherwise the original
        and Latin streams run as ``--encoder-batching`` says (one pass each, or stacked) and TLM in one pass.
        """
        mlm_out: dict[str, tuple] = {}
        vectors_out: dict[str, dict] = {}
        if self.encoder_chunk_tokens > 0:
            for name, (mlm, vectors) in needs.items():
                sums, vectors_out[name] = self._chunked_stream(model, sample[name], mlm, vectors)
                if mlm:
                    mlm_out[name] = sums
            return mlm_out, vectors_out
        groups = [[n for n in ("orig", "latn") if n in needs], ["tlm"] if "tlm" in needs else []]
        for names in filter(None, groups):
            layers = [layer for n in names for layer, _ in needs[n][1].values()]
            encoded = self._encode(model, [sample[n] for n in names], [needs[n][0] for n in names],
                                   need_hidden=bool(layers), max_layer=max(layers) if layers else None)  # fmt: skip
            for n, (logits, inner) in zip(names, encoded):
                mlm, vectors = needs[n]
                if mlm:
                    mlm_out[n] = self._mlm_sum(logits, sample[n])
                vectors_out[n] = {key: pool(inner, sample[n]["src_tokens"]) for key, (_, pool) in vectors.items()}
        return mlm_out, vectors_out

    def _mlm_sum(self, logits: Tensor, stream: dict) -> tuple[Tensor, Tensor]:
        """Summed float32 cross-entropy over the selected positions, and their number."""
        target = stream["target"]
        targets = target[target.ne(self.padding_idx)]  # M, row-major like the LM head's selection
        if logits.shape[0] != targets.shape[0]:
            raise RuntimeError(f"LM head returned {logits.shape[0]} rows for {targets.shape[0]} selected tokens")
        loss = F.cross_entropy(logits.float(), targets, reduction="sum")
        return loss, torch.tensor(float(targets.numel()), device=logits.device)

    @staticmethod
    def _layer(inner_states: list[Tensor], layer: int, flag: str) -> Tensor:
        """B x T x C output of ``layer`` (0 = embeddings), or a clear error naming the ``flag`` that chose it."""
        if not 0 <= layer < len(inner_states):
            raise ValueError(
                f"{flag} {layer} but the model has {len(inner_states) - 1} layers (valid: 0..{len(inner_states) - 1}); "
                "the reference uses 8 for 12-layer models"
            )
        return inner_states[layer].transpose(0, 1)  # T x B x C -> B x T x C

    def _pool(self, inner_states: list[Tensor], tokens: Tensor) -> Tensor:
        hidden = self._layer(inner_states, self.seq_layer, "--seq-layer")
        return pool_hidden(hidden, content_mask(tokens, self.special_ids), self.seq_pooling)  # B x C, float32

    def _warn_small_batch(self, n: int) -> None:
        if not self._warned_small_batch:
            logger.warning(
                "SEQ skipped on a batch of %d pair(s): a contrastive loss needs at least 2 pairs to contrast (loss 0, "
                "accuracy 1 otherwise); use --batch-size >= 2 (the paper: 16 per GPU)", n
            )  # fmt: skip
            self._warned_small_batch = True

    def _anchor_pool(self, inner_states: list[Tensor], tokens: Tensor) -> Tensor:
        """``anchor_layer`` output of ``tokens`` (B x T) pooled to B x C float32 as ``--anchor-pooling`` says."""
        hidden = self._layer(inner_states, self.anchor_layer, "--anchor-layer")
        if self.anchor_pooling == "cls":
            return pool_hidden(hidden, tokens.ne(self.padding_idx), "cls")
        mask = tokens.ne(self.padding_idx) if self.anchor_pooling == "mean_with_special" else content_mask(
            tokens, self.special_ids
        )
        return pool_hidden(hidden, mask, "mean")

    def _pooled(self, model, tokens: Tensor, layer: int | None = None, pool=None) -> Tensor:
        """B x C sentence vectors of ``tokens`` (B x T) from ``layer`` (default ``--anchor-layer``) pooled by ``pool``
        (default the anchor's pooling), the encoder stopping at that layer.

        With ``--encoder-chunk-tokens`` the rows run in length-sorted chunks, each cut to its own longest row, so
        padding costs nothing; the vectors come back in the batch's order (trailing padding changes no output).
        """
        layer = self.anchor_layer if layer is None else layer
        pool = pool or self._anchor_pool
        kwargs = {"features_only": True, "return_all_hiddens": True, "max_layer": layer}
        budget = self.encoder_chunk_tokens
        if budget <= 0 or tokens.shape[0] < 2:
            _, extra = model(tokens, **kwargs)
            return pool(extra["inner_states"], tokens)
        _, vectors = self._chunked_stream(model, {"src_tokens": tokens}, False, {"v": (layer, pool)})
        return vectors["v"]

    def _chunks(self, tokens: Tensor) -> tuple[list[tuple[Tensor, int]], Tensor]:
        """Length-sorted chunks of the rows of ``tokens`` (B x T) within ``--encoder-chunk-tokens`` padded tokens:
        ``[(row indices, width), ...]`` and the permutation that puts chunk-ordered rows back in batch order."""
        lengths = tokens.ne(self.padding_idx).sum(dim=1).tolist()  # one host sync per pass
        order = sorted(range(len(lengths)), key=lambda i: -lengths[i])
        chunks, start = [], 0
        while start < len(order):
            width = max(lengths[order[start]], 1)
            end = start + max(1, self.encoder_chunk_tokens // width)
            chunks.append((torch.tensor(order[start:end], device=tokens.device), width))
            start = end
        inverse = torch.empty(len(order), dtype=torch.long)
        inverse[torch.tensor(order)] = torch.arange(len(order))
        return chunks, inverse.to(tokens.device)

    def _chunked_stream(self, model, stream: dict, mlm: bool, vectors: dict) -> tuple[tuple | None, dict]:
        """One stream in length-sorted chunks without their padding: ``((ce_sum, count) or None, {key: B x C})``.

        ``vectors`` maps a key to ``(layer, pool)``; a stream without MLM stops at the deepest such layer.  Trailing
        padding changes no output, and every loss here is a sum over rows or tokens, so the result equals one padded
        pass (tested).
        """
        tokens = stream["src_tokens"]
        chunks, inverse = self._chunks(tokens)
        kwargs: dict = {"features_only": not mlm, "return_all_hiddens": bool(vectors)}
        if not mlm and vectors:
            kwargs["max_layer"] = max(layer for layer, _ in vectors.values())
        ce_sum, count = None, None
        pooled: dict[str, list] = {key: [] for key in vectors}
        for rows, width in chunks:
            sub = tokens.index_select(0, rows)[:, :width]
            extra_kwargs = dict(kwargs)
            if "positions" in stream:
                extra_kwargs["positions"] = stream["positions"].index_select(0, rows)[:, :width]
            if mlm:
                sub_target = stream["target"].index_select(0, rows)[:, :width]
                extra_kwargs["masked_tokens"] = sub_target.ne(self.padding_idx)
            logits, extra = model(sub, **extra_kwargs)
            if mlm:
                part, n = self._mlm_sum(logits, {"target": sub_target})
                ce_sum, count = (part, n) if ce_sum is None else (ce_sum + part, count + n)
            for key, (_layer, pool) in vectors.items():
                pooled[key].append(pool(extra["inner_states"], sub))
        out = {key: torch.cat(parts, dim=0).index_select(0, inverse) for key, parts in pooled.items()}
        return ((ce_sum, count) if mlm else None), out

    @staticmethod
    def _clean(stream: dict, pad: int) -> Tensor:
        """The unmasked ids of a stream: ``target`` holds the original id wherever a token was selected."""
        target = stream["target"]
        return torch.where(target.ne(pad), target, stream["src_tokens"])

    @torch.no_grad()
    def _teacher_vectors(self, tokens: Tensor, model) -> Tensor:
        teacher = self._teacher[0]
        param = next(model.parameters())
        if next(teacher.parameters()).device != param.device or next(teacher.parameters()).dtype != param.dtype:
            teacher.to(device=param.device, dtype=param.dtype)
            teacher.eval()
        keys = None
        if self.anchor_cache is not None:
            keys = [row[row.ne(self.padding_idx)].cpu().numpy().tobytes() for row in tokens]
            if all(k in self.anchor_cache for k in keys):
                return torch.stack([self.anchor_cache[k] for k in keys]).to(tokens.device)
        vecs = self._pooled(teacher, tokens)
        if keys is not None:
            for k, v in zip(keys, vecs):
                self.anchor_cache[k] = v.detach().cpu() if v.device.type != "cpu" else v.detach().clone()
        return vecs

    def _anchor(self, model, sample: dict, vectors: dict, group, world: int, n_global: int) -> tuple[Tensor, dict]:
        """The anchor term (this worker's share of it in exact gathering) and its logging entries."""
        pad = self.padding_idx
        teacher_vec = self._teacher_vectors(self._clean(sample["orig"], pad), model)  # N x C
        exact = world > 1 and self.seq_gather == "exact"
        rows, total = None, teacher_vec.shape[0]
        teacher_all = teacher_vec
        if exact:
            teacher_all, rows = all_gather_no_grad(teacher_vec, group)
            total = n_global
        student = {}
        for side in self.anchor_sides:
            if self.anchor_input == "clean":
                student[side] = self._pooled(model, self._clean(sample[side], pad))
            else:
                student[side] = vectors[side]["anchor"]
        term = 0.0
        for side in self.anchor_sides:
            term = term + anchor_loss(student[side], teacher_all, loss=self.anchor_loss,
                                      temperature=self.anchor_temperature, rows=rows, total=total)  # fmt: skip
        term = term / len(self.anchor_sides)
        with torch.no_grad():
            latn = F.normalize(student["latn"].float(), dim=-1)
            own = torch.arange(teacher_all.shape[0], device=latn.device)[rows if rows is not None else slice(None)]
            hits = (latn @ F.normalize(teacher_all.float(), dim=-1).t()).argmax(dim=-1).eq(own).sum()
        logging = {
            "anchor_sum": term.detach() * total,  # sum of per-pair losses of this worker's pairs
            "anchor_count": student["latn"].shape[0],
            "anchor_correct": hits,
        }
        return term, logging

    # ---------------------------------------------------------------------------------------------------- forward
    def forward(self, model, sample: dict, reduce: bool = True):
        """Compute the weighted loss of one batch -> ``(loss, sample_size, logging_output)``.

        ``sample_size`` is 1 per worker and micro-batch, except in ``exact`` gathering where it is this worker's share
        of the global batch (so the shares of all workers add up to 1 and fairseq's gradient normalisation yields the
        global-batch gradient).
        """
        w = self.weights
        use_seq = w["seq"] > 0
        use_anchor = w["anchor"] > 0
        reuse_masked = use_anchor and self.anchor_input == "masked"
        group, world = self._data_parallel()
        exact = world > 1 and self.seq_gather == "exact"
        n_local = int(sample["nsentences"])

        # ---- encoder passes: per stream, what the terms take from it (MLM sums, SEQ / anchor sentence vectors)
        needs: dict[str, tuple[bool, dict]] = {}
        for name in ("orig", "latn"):
            vectors = {}
            if use_seq:
                vectors["seq"] = (self.seq_layer, self._pool)
            if reuse_masked and name in self.anchor_sides:
                vectors["anchor"] = (self.anchor_layer, self._anchor_pool)
            if w[name] > 0 or vectors:
                needs[name] = (w[name] > 0, vectors)
        if w["tlm"] > 0:
            needs["tlm"] = (True, {})
        mlm_out, vectors_out = self._run_streams(model, sample, needs)

        # ---- MLM terms: summed cross-entropies and counts
        sums: dict[str, Tensor] = {n: mlm_out[n][0] for n in MLM_TERMS if n in mlm_out}
        counts: dict[str, Tensor] = {n: mlm_out[n][1] for n in MLM_TERMS if n in mlm_out}
        denominators = dict(counts)
        n_global = n_local
        if exact:
            # Global normalisers: the sum over workers of sum_ce / global_count is the global-batch mean.
            device = sample["orig"]["src_tokens"].device
            zero = torch.zeros((), device=device)
            stats = torch.stack([counts.get(n, zero) for n in MLM_TERMS] + [zero + n_local]).double()
            dist.all_reduce(stats, group=group)
            denominators = {n: stats[i].to(torch.float32) for i, n in enumerate(MLM_TERMS) if n in counts}
            n_global = int(stats[-1].item())
        terms = {n: sums[n] / denominators[n].clamp(min=1.0) for n in sums}

        # ---- SEQ
        seq_logging = {}
        if use_seq:
            o_vec, l_vec = vectors_out["orig"]["seq"], vectors_out["latn"]["seq"]  # N x C each
            both = torch.cat([o_vec, l_vec], dim=1)  # N x 2C: one collective for both sides
            rows = None
            if world > 1 and self.seq_gather == "exact":
                both, rows = all_gather_with_grad(both, group)
            elif world > 1 and self.seq_gather == "reference":
                both, rows = all_gather_reference(both, group)
            o_all, l_all = both.split(o_vec.shape[1], dim=1)
            if o_all.shape[0] < 2:
                self._warn_small_batch(o_all.shape[0])
                use_seq = False
        if use_seq:
            # exact: this worker's rows of the global loss (the rows of all workers add up to it);
            # reference / local: the whole (gathered / local) loss on every worker, as the reference code does.
            terms["seq"] = seq_contrastive_loss(
                o_all, l_all, temperature=self.seq_temperature, similarity=self.seq_similarity,
                negatives=self.seq_negatives, rows=rows if self.seq_gather == "exact" else None,
            )
            share = n_local / max(o_all.shape[0], 1)
            logged_seq = terms["seq"].detach() if self.seq_gather == "exact" else terms["seq"].detach() * share
            seq_logging = {
                "seq_loss": logged_seq,
                "seq_weight": share if world > 1 and self.seq_gather != "local" else 1.0,
                "seq_correct": retrieval_correct(o_all.detach(), l_all.detach(), similarity=self.seq_similarity,
                                                 rows=rows),
                "seq_count": n_local,
            }

        # ---- ANCHOR: the trained model's vectors pulled to the frozen start model's vector of the clean original
        anchor_logging = {}
        if use_anchor:
            terms["anchor"], anchor_logging = self._anchor(model, sample, vectors_out, group, world, n_global)

        loss = sum(w[n] * t for n, t in terms.items())
        sample_size = n_local / max(n_global, 1) if exact else 1.0

        logging_output = {
            "loss": loss.detach(),
            "sample_size": sample_size,
            "ntokens": sample["ntokens"],
            "nsentences": n_local,
            **seq_logging,
            **anchor_logging,
        }
        for name in sums:
            logging_output[f"mlm_{name}_sum"] = sums[name].detach()
            logging_output[f"mlm_{name}_count"] = counts[name]
        return loss, sample_size, logging_output

    # ---------------------------------------------------------------------------------------------------- logging
    @staticmethod
    def reduce_metrics(logging_outputs) -> None:
        """Aggregate across workers and micro-batches: token-weighted MLM means, batch-averaged SEQ and loss."""

        def total(key: str) -> float:
            return float(sum(float(log.get(key, 0)) for log in logging_outputs))

        sample_size = total("sample_size")
        metrics.log_scalar("loss", total("loss") / max(sample_size, 1e-8), sample_size, round=4)
        for name, label in (("orig", "loss_mlm_orig"), ("latn", "loss_mlm_latn"), ("tlm", "loss_tlm")):
            count = total(f"mlm_{name}_count")
            if any(f"mlm_{name}_sum" in log for log in logging_outputs):
                metrics.log_scalar(label, total(f"mlm_{name}_sum") / max(count, 1.0), count, round=4)
        if any("seq_loss" in log for log in logging_outputs):
            weight = total("seq_weight")
            metrics.log_scalar("loss_seq", total("seq_loss") / max(weight, 1e-8), weight, round=4)
            count = total("seq_count")
            metrics.log_scalar("seq_acc", total("seq_correct") / max(count, 1.0), count, round=4)
        if any("anchor_sum" in log for log in logging_outputs):
            count = total("anchor_count")
            metrics.log_scalar("loss_anchor", total("anchor_sum") / max(count, 1.0), count, round=4)
            metrics.log_scalar("anchor_acc", total("anchor_correct") / max(count, 1.0), count, round=4)

    @staticmethod
    def logging_outputs_can_be_summed() -> bool:
        return True


def load_teacher(path: str, task):
    """The frozen teacher: the model in checkpoint ``path``, in eval mode, without gradients (CPU until first use)."""
    from fairseq import checkpoint_utils

    from translit_plugin.models.translit_roberta import TranslitRobertaModel

    if not os.path.isfile(path):
        raise FileNotFoundError(f"--anchor-teacher {path}: no such checkpoint (pass the start model's model.pt)")
    state = checkpoint_utils.load_checkpoint_to_cpu(path)
    rows = state["model"]["encoder.sentence_encoder.embed_tokens.weight"].shape[0]
    if rows != len(task.source_dictionary):
        raise ValueError(
            f"--anchor-teacher {path}: {rows} embedding rows but the data's dictionary has "
            f"{len(task.source_dictionary)} entries; the teacher must be the start model (same vocabulary)"
        )
    teacher = TranslitRobertaModel.build_model(state["cfg"].model, task)
    teacher.load_state_dict(state["model"], strict=True, model_cfg=state["cfg"].model)
    teacher.eval()
    for p in teacher.parameters():
        p.requires_grad_(False)
    logger.info("anchor teacher: %s (%d layers, frozen)", path, len(teacher.encoder.sentence_encoder.layers))
    return teacher
