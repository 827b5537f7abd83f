"""ANCHOR (not in the paper): the trained model's sentence vectors pulled to a frozen teacher's vector of the clean
original sentence.

The teacher (``--anchor-teacher``, default the start model) embeds each *clean* original sentence; the trained
model's vectors of the Latin side (and, with ``--anchor-sides both``, of the original side) are pulled to it by
:func:`anchor_loss` (MSE, cosine or InfoNCE against the batch's teacher vectors).  A model that already aligns
languages (an embedding model such as multilingual-e5) keeps that alignment while romanised input is brought into
it; SEQ alone only asks the two scripts to agree with each other, wherever they go.  The teacher runs in eval mode
without gradients, in the trained model's dtype, on its device; it is held by this plain object, so it stays outside
the criterion's module tree (not trained, not checkpointed, not wrapped by DDP).

Logs ``anchor_sum`` (sum of this worker's per-pair losses), ``anchor_count`` and ``anchor_correct``; reported as
``loss_anchor`` and ``anchor_acc`` (share of Latin sentences whose vector retrieves their own teacher vector among
the batch's).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Literal, Optional

import torch
import torch.nn.functional as F
from torch import Tensor

from translit_plugin.core.names import DEFAULT_LAYER, LATN, MEAN_NO_SPECIAL, MEAN_WITH_SPECIAL, ORIG, POOLINGS
from translit_plugin.method.gather import all_gather_no_grad
from translit_plugin.method.masking import unmasked
from translit_plugin.method.pooling import VectorRequest
from translit_plugin.method.terms.base import Metric, Step, StreamNeeds, Term, TermSetup, logged_total

AnchorLoss = Literal["mse", "cosine", "infonce"]
logger = logging.getLogger(__name__)


def parse_layers(spec: str | int) -> list[int | str]:
    """``--anchor-layer``: ``"8"`` -> ``[8]``, ``"8,last"`` -> ``[8, "last"]``, ``"use"`` -> ``["use"]``."""
    out: list[int | str] = []
    for part in str(spec).split(","):
        part = part.strip()
        if part in ("last", "use"):
            out.append(part)
        elif part.isdigit():
            out.append(int(part))
        else:
            raise ValueError(f"--anchor-layer {spec!r}: expected indices, 'last' or 'use', comma-separated")
    if not out or len(set(out)) != len(out):
        raise ValueError(f"--anchor-layer {spec!r}: give each layer once")
    return out


def insert_prompt(tokens: Tensor, prompt: Tensor, specials, max_length: int | None = None) -> Tensor:
    """``B x T`` ids ``<s> x </s> <pad>...`` -> ``B x (T + P)`` ids ``<s> prompt x </s> <pad>...``: the ids a
    tokenizer gives ``prompt_text + sentence`` (sentencepiece starts the sentence's first piece with its own ``▁``).
    Rows longer than ``max_length`` are cut to it keeping ``</s>`` (as the hub truncates the prompted text)."""
    if tokens.dim() != 2 or not bool(tokens[:, 0].eq(specials.bos).all()):
        raise ValueError("insert_prompt expects B x T rows that start with <s>")
    out = torch.cat([tokens[:, :1], prompt.unsqueeze(0).expand(tokens.shape[0], -1), tokens[:, 1:]], dim=1)
    if max_length is not None and out.shape[1] > max_length:
        cut = out.ne(specials.pad).sum(dim=1) > max_length
        out = out[:, :max_length].clone()
        out[cut, -1] = specials.eos
    return out


def anchor_loss(
    student: Tensor,
    teacher: Tensor,
    *,
    loss: AnchorLoss = "mse",
    temperature: float = 0.05,
    rows: slice | None = None,
    total: int | None = None,
) -> Tensor:
    """Pull the trained model's sentence vectors towards fixed teacher vectors, in float32.

    Row ``i`` of ``student`` belongs with row ``rows.start + i`` of ``teacher`` (its own pair).

    * ``"mse"``: squared error averaged over the C dimensions (``nn.MSELoss`` per row, as in Reimers & Gurevych 2020).
    * ``"cosine"``: ``1 - cos(student_i, teacher_i)``.
    * ``"infonce"``: cross-entropy of ``cos(student_i, teacher_j) / temperature`` over all teacher rows ``j``, target
      ``j = i``: the student's vector must be nearer its own teacher vector than the other pairs' (the teacher's
      vectors, gathered from every worker, are the negatives; they carry no gradient).

    Args:
        student: ``(n, C)`` vectors of this worker's pairs (differentiable).
        teacher: ``(N, C)`` target vectors of every pair (detached; the gathered global batch in multi-worker runs).
        loss: one of the three forms above.
        temperature: InfoNCE temperature (embedding models use 0.01-0.05).
        rows: where this worker's pairs sit in ``teacher`` (default: all of it, ``n == N``).
        total: the normaliser (default ``N``): per-pair losses are summed and divided by it, so the values of all
            workers over disjoint ``rows`` add up to the global mean.
    Returns:
        scalar float32 tensor.
    """
    if student.dim() != 2 or teacher.dim() != 2 or student.shape[1] != teacher.shape[1]:
        raise ValueError(f"student {tuple(student.shape)} and teacher {tuple(teacher.shape)} must be n x C and N x C")
    rows = rows if rows is not None else slice(0, teacher.shape[0])
    idx = torch.arange(teacher.shape[0], device=teacher.device)[rows]  # (n,)
    if idx.numel() != student.shape[0]:
        raise ValueError(f"{student.shape[0]} student rows but rows {rows} selects {idx.numel()} teacher rows")
    student, teacher = student.float(), teacher.detach().float()
    total = teacher.shape[0] if total is None else total
    if loss == "mse":
        per_pair = (student - teacher[idx]).pow(2).mean(dim=-1)
    elif loss == "cosine":
        per_pair = 1.0 - F.cosine_similarity(student, teacher[idx], dim=-1)
    elif loss == "infonce":
        if temperature <= 0:
            raise ValueError(f"temperature must be > 0, got {temperature}")
        scores = F.normalize(student, dim=-1) @ F.normalize(teacher, dim=-1).t() / temperature  # (n, N)
        per_pair = F.cross_entropy(scores, idx, reduction="none")
    else:
        raise ValueError(f"unknown anchor loss {loss!r} (expected 'mse', 'cosine' or 'infonce')")
    return per_pair.sum() / max(total, 1)


@torch.no_grad()
def teacher_retrieval_correct(student: Tensor, teacher: Tensor, rows: slice | None = None) -> Tensor:
    """Number of ``student`` rows whose cosine-nearest ``teacher`` row is their own (row ``rows.start + i``)."""
    student = F.normalize(student.float(), dim=-1)
    own = torch.arange(teacher.shape[0], device=student.device)[rows if rows is not None else slice(None)]
    return (student @ F.normalize(teacher.float(), dim=-1).t()).argmax(dim=-1).eq(own).sum()


# ----------------------------------------------------------------------------------- the teacher's errors (this term's)
# The criterion loads the teacher and tokenizes the prompt (fairseq side); what it says when it cannot is the term's.
NO_TEACHER = ("--anchor-weight > 0 needs a teacher: pass --anchor-teacher MODEL_DIR/model.pt (the start model) "
              "or start with --finetune-from-model")


def teacher_not_found(path: str) -> str:
    return f"--anchor-teacher {path}: no such checkpoint (pass the start model's model.pt)"


def teacher_rows_differ(path: str, rows: int, entries: int) -> str:
    return (f"--anchor-teacher {path}: {rows} embedding rows but the data's dictionary has {entries} entries; the "
            "teacher must be the start model (same vocabulary)")


def prompt_spm_missing(spm_path: str) -> str:
    return f"--anchor-prompt: no sentencepiece model at {spm_path} (the teacher's directory)"


def prompt_pieces_unknown(text: str, pieces: list[str]) -> str:
    return (f"--anchor-prompt {text!r}: pieces {pieces} are not all in the data's dictionary; trim the vocabulary "
            "with the model's use.json present (trim-vocab keeps its prompts)")


@dataclass
class AnchorOptions:
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
    anchor_layer: str = field(
        default=str(DEFAULT_LAYER),
        metadata={
            "help": "layer(s) whose output gives the anchored vectors: an index (0 = embeddings), 'last', a comma "
            "list such as '8,last' (one pass, the loss averaged over the layers), or 'use' (the layer of the "
            "teacher directory's use.json: where the model's users read it)"
        },
    )
    anchor_prompt: str = field(
        default="",
        metadata={
            "help": "text put in front of every sentence (after <s>) for the teacher and the trained model, as the "
            "model's users do (e5: 'query: '); 'use': the default prompt of the teacher directory's use.json; "
            "'' = none. Tokenized with the sentencepiece model next to the teacher checkpoint"
        },
    )
    anchor_pooling: str = field(
        default=MEAN_WITH_SPECIAL,
        metadata={
            "help": f"'{MEAN_WITH_SPECIAL}': mean over every non-padding token, <s> and </s> included (the retrieval "
            f"evaluation's pooling); '{MEAN_NO_SPECIAL}': without <s>/</s> (SEQ's pooling); 'cls': the <s> vector",
            "choices": POOLINGS,
        },
    )
    anchor_loss: str = field(
        default="infonce",
        metadata={
            "help": "'infonce': cosine / --anchor-temperature, the batch's other teacher vectors as negatives; 'mse': "
            "squared error per dimension (multilingual distillation); 'cosine': 1 - cosine",
            "choices": ("infonce", "mse", "cosine"),
        },
    )
    anchor_temperature: float = field(default=0.05, metadata={"help": "temperature of the InfoNCE anchor"})
    anchor_sides: str = field(
        default="both",
        metadata={
            "help": "'both': Latin and original sides pulled to the teacher's vector; 'latn': only Latin",
            "choices": ("both", "latn"),
        },
    )
    anchor_input: str = field(
        default="clean",
        metadata={
            "help": "'clean': the trained model sees the unmasked sentences (extra encoder passes up to "
            "--anchor-layer); 'masked': reuse the MLM passes' masked inputs (cheaper, noisier)",
            "choices": ("clean", "masked"),
        },
    )
    anchor_teacher_cache: bool = field(
        default=False,
        metadata={"help": "keep each sentence's teacher vector in memory after its first use (fixed corpus)"},
    )


class AnchorTerm(Term):
    """The anchored term (see the module docstring)."""

    name = "anchor"
    options = AnchorOptions
    weight_option = "anchor_weight"

    def __init__(self, cfg, setup: TermSetup) -> None:
        super().__init__(cfg, setup)
        self.layer_spec = str(cfg.anchor_layer)
        self.prompt_spec = str(getattr(cfg, "anchor_prompt", "") or "")
        self.pooling = str(cfg.anchor_pooling)
        self.requests = self._requests(parse_layers(self.layer_spec), None)
        self.prompt_ids: Tensor | None = None
        self.max_positions: int | None = None
        self.loss_kind = str(cfg.anchor_loss)
        self.temperature = cfg.anchor_temperature
        self.sides = (LATN, ORIG) if str(cfg.anchor_sides) == "both" else (LATN,)
        self.input = str(cfg.anchor_input)
        self.cache: dict[bytes, Tensor] | None = {} if cfg.anchor_teacher_cache else None
        self.teacher = None
        if self.weight > 0:
            if self.temperature <= 0:
                raise ValueError(f"--anchor-temperature must be > 0, got {self.temperature}")
            if setup.load_model is None:
                raise ValueError("the anchored term needs a teacher model, and nothing can load one here")
            self.teacher = setup.load_model(cfg.anchor_teacher)
            self._resolve_use_setting(cfg, setup)
        if self.prompt_ids is not None and self.input == "masked":
            raise ValueError("--anchor-prompt needs --anchor-input clean (the masked passes' inputs have no prompt)")

    @property
    def request(self) -> VectorRequest:
        """The first (or only) layer's request."""
        return self.requests[0]

    def _requests(self, layers: list[int | str], num_layers: int | None) -> list[VectorRequest]:
        out = []
        for layer in layers:
            if not isinstance(layer, int):
                if num_layers is None:
                    layer = -1  # resolved against the teacher once it is loaded
                else:
                    layer = num_layers
            out.append(VectorRequest(layer, self.pooling, "--anchor-layer"))
        return out

    def _resolve_use_setting(self, cfg, setup: TermSetup) -> None:
        """``last`` / ``use`` layers and the ``use`` / literal prompt, against the teacher and its directory."""
        layers = parse_layers(self.layer_spec)
        needs_teacher_dir = "use" in layers or self.prompt_spec == "use"
        setting = None
        if needs_teacher_dir:
            if setup.teacher_dir is None:
                raise ValueError("--anchor-layer use / --anchor-prompt use need the teacher's model directory")
            from translit_plugin.core.use_settings import find_use_setting

            teacher_dir = setup.teacher_dir(cfg.anchor_teacher)
            setting = find_use_setting(teacher_dir)
        if any(not isinstance(layer, int) for layer in layers):
            num_layers = len(self.teacher.encoder.sentence_encoder.layers)
            resolved = [setting.layer_index(num_layers) if layer == "use" else layer for layer in layers]
            self.requests = self._requests(resolved, num_layers)
        text = setting.prompt_text() if self.prompt_spec == "use" else self.prompt_spec
        if text:
            if setup.tokenize is None:
                raise ValueError("--anchor-prompt needs a tokenizer (the sentencepiece model next to the teacher)")
            ids = setup.tokenize(text, cfg.anchor_teacher)
            if not ids:
                raise ValueError(f"--anchor-prompt {text!r} gives no tokens")
            self.prompt_ids = torch.tensor(ids, dtype=torch.long)
            self.max_positions = int(self.teacher.encoder.max_positions())
        logger.info("anchored term: layers %s, pooling %s, prompt %r", [r.layer for r in self.requests],
                    self.pooling, text)  # fmt: skip

    def needs(self) -> dict[str, StreamNeeds]:
        if self.input != "masked":
            return {}  # clean input: the term runs its own passes
        return {side: StreamNeeds(vectors=self._keyed()) for side in self.sides}

    def _keyed(self) -> dict[str, VectorRequest]:
        """The vector keys of the masked passes: ``anchor`` for one layer, ``anchor@L`` for each of several."""
        if len(self.requests) == 1:
            return {self.name: self.requests[0]}
        return {f"{self.name}@{r.layer}": r for r in self.requests}

    def compute(self, step: Step) -> tuple[Tensor, dict]:
        pad = step.specials.pad
        teachers = self._teacher_vectors(self._input(unmasked(step.sample[ORIG], pad), step), step)  # [N x C]
        rows, total = None, teachers[0].shape[0]
        if step.workers.exact:
            gathered = [all_gather_no_grad(t, step.workers.group) for t in teachers]
            teachers, rows = [t for t, _ in gathered], gathered[0][1]
            total = step.n_global
        student: dict[str, list[Tensor]] = {}
        for side in self.sides:
            if self.input == "clean":
                student[side] = self._encode(step, step.model, self._input(unmasked(step.sample[side], pad), step))
            else:
                student[side] = [step.vectors[side][key] for key in self._keyed()]
        loss = 0.0
        for side in self.sides:
            for s_vec, t_vec in zip(student[side], teachers):
                loss = loss + anchor_loss(s_vec, t_vec, loss=self.loss_kind, temperature=self.temperature,
                                          rows=rows, total=total)  # fmt: skip
        loss = loss / (len(self.sides) * len(teachers))
        logging = {
            "anchor_sum": loss.detach() * total,  # sum of per-pair losses of this worker's pairs
            "anchor_count": student[LATN][-1].shape[0],
            # retrieval at the last layer listed in --anchor-layer
            "anchor_correct": teacher_retrieval_correct(student[LATN][-1], teachers[-1], rows),
        }
        return loss, logging

    def _input(self, tokens: Tensor, step: Step) -> Tensor:
        """``tokens`` with the prompt after ``<s>`` (unchanged without a prompt)."""
        if self.prompt_ids is None:
            return tokens
        return insert_prompt(tokens, self.prompt_ids.to(tokens.device), step.specials, self.max_positions)

    def _encode(self, step: Step, model, tokens: Tensor) -> list[Tensor]:
        """One pass of ``model`` up to the deepest anchored layer -> the vectors of every anchored layer."""
        if len(self.requests) == 1:
            return [step.encode(model, tokens, self.requests[0])]
        return list(step.encode(model, tokens, tuple(self.requests)))

    @classmethod
    def reduce(cls, logs: list[dict]) -> list[Metric]:
        if not any("anchor_sum" in log for log in logs):
            return []
        count = logged_total(logs, "anchor_count")
        return [
            ("loss_anchor", logged_total(logs, "anchor_sum") / max(count, 1.0), count),
            ("anchor_acc", logged_total(logs, "anchor_correct") / max(count, 1.0), count),
        ]

    @torch.no_grad()
    def _teacher_vectors(self, tokens: Tensor, step: Step) -> list[Tensor]:
        """The teacher's vectors of ``tokens`` (B x T), moved to the trained model's device and dtype first; with
        ``--anchor-teacher-cache`` each sentence's vector is computed once."""
        teacher = self.teacher
        param = next(step.model.parameters())
        if next(teacher.parameters()).device != param.device or next(teacher.parameters()).dtype != param.dtype:
            teacher.to(device=param.device, dtype=param.dtype)
            teacher.eval()
        keys = None
        if self.cache is not None:
            keys = [row[row.ne(step.specials.pad)].cpu().numpy().tobytes() for row in tokens]
            if all(k in self.cache for k in keys):
                stacked = torch.stack([self.cache[k] for k in keys]).to(tokens.device)  # B x L x C
                return list(stacked.unbind(dim=1))
        vecs = self._encode(step, teacher, tokens)
        if keys is not None:
            both = torch.stack(vecs, dim=1)
            for k, v in zip(keys, both):
                self.cache[k] = v.detach().cpu() if v.device.type != "cpu" else v.detach().clone()
        return vecs
