"""``mlm_seq_tlm``: MLM on the original, MLM on the Latin transliteration, sentence-level contrast (SEQ), TLM, and
optionally the anchored term, composed from the loss-term units of :mod:`translit_plugin.method.terms`.

Total loss = ``w_o * MLM_orig + w_l * MLM_latn + w_t * TLM + w_s * SEQ + w_a * ANCHOR`` (reference: the first four
weights 1, the anchored term off).  A zero weight skips that term's forward pass, which gives the paper's ablations:
MLM (``--seq-weight 0 --tlm-weight 0``), MLM+SEQ (``--tlm-weight 0``), MLM+TLM (``--seq-weight 0``) and MLM+SEQ+TLM.
What each term computes and logs is in its unit; the flags are the units' options plus the two below.

* Multi-worker training (``--seq-gather``): ``exact`` (default) gathers every worker's SEQ vectors with an
  autograd-aware all-gather, so the update equals the single-process update on the global batch (MLM terms are then
  normalised by the global masked-token counts, one small all-reduce, and the anchored term's teacher vectors are
  gathered too); ``reference`` reproduces the paper's code (each worker back-propagates the global SEQ loss through
  its own vectors only, i.e. ``1/W`` of the exact SEQ gradient, and MLM terms are per-worker means averaged);
  ``local`` uses only the worker's own pairs as negatives.
* ``--encoder-chunk-tokens``: every encoder pass in length-sorted chunks without padding
  (:mod:`translit_plugin.criterions.encoder_passes`).
"""

import dataclasses
import logging
import os
import typing
from dataclasses import dataclass, field

import torch
import torch.distributed as dist
from fairseq import metrics
from fairseq.criterions import FairseqCriterion, register_criterion
from fairseq.dataclass import ChoiceEnum, FairseqDataclass
from torch import Tensor

from translit_plugin.criterions.encoder_passes import EncoderPasses
from translit_plugin.method.gather import GATHERS, Workers
from translit_plugin.method.masking import SpecialIds
from translit_plugin.method.terms import TERMS, anchor
from translit_plugin.method.terms.base import Step, TermSetup, logged_total, merge_needs

logger = logging.getLogger(__name__)


@dataclass
class PassOptions:
    """The criterion's own options: how workers share a batch and how the encoder passes run."""

    seq_gather: str = field(
        default="exact",
        metadata={
            "help": "multi-worker SEQ: 'exact' (autograd all-gather: the single-process gradient of the global batch), "
            "'reference' (the paper's code: 1/W of it), 'local' (each worker's own pairs only)",
            "choices": GATHERS,
        },
    )
    encoder_chunk_tokens: int = field(
        default=0,
        metadata={
            "help": "run every encoder pass (MLM, TLM, SEQ, the anchor term's and its teacher's) in length-sorted "
            "chunks of at most this many tokens, padding included (0 = one padded pass per stream): random batches "
            "are mostly padding, chunks skip it; same loss and gradient"
        },
    )


def fairseq_config(name: str, option_classes: list[type]) -> type[FairseqDataclass]:
    """One :class:`FairseqDataclass` with the fields of ``option_classes`` (plain dataclasses; a field's ``choices``
    metadata becomes a ``ChoiceEnum``, which fairseq turns into the flag's choices)."""
    specs, seen = [], set()
    for options in option_classes:
        hints = typing.get_type_hints(options)
        for f in dataclasses.fields(options):
            if f.name in seen:
                raise ValueError(f"option {f.name} is declared twice ({options.__name__})")
            seen.add(f.name)
            meta = {k: v for k, v in f.metadata.items() if k != "choices"}
            kind = ChoiceEnum(list(f.metadata["choices"])) if "choices" in f.metadata else hints[f.name]
            specs.append((f.name, kind, field(default=f.default, default_factory=f.default_factory, metadata=meta)))
    return dataclasses.make_dataclass(name, specs, bases=(FairseqDataclass,), namespace={"__module__": __name__})


#: The criterion's config: the options of every registered term, then :class:`PassOptions`.
MlmSeqTlmConfig = fairseq_config("MlmSeqTlmConfig", [t.options for t in TERMS] + [PassOptions])


@register_criterion("mlm_seq_tlm", dataclass=MlmSeqTlmConfig)
class MlmSeqTlmCriterion(FairseqCriterion):
    """The weighted sum of the active loss terms on batches of ``translit_align`` (see module docstring).

    Built by fairseq from its config (``cfg``); in code, ``MlmSeqTlmCriterion(task, seq_layer=2, ...)`` takes the
    options as keywords (the rest keep their defaults).

    What it reads from ``task`` (``translit_align`` provides both): ``source_dictionary``, and, when the anchored term
    is on without ``--anchor-teacher``, ``start_checkpoints()`` (the run's start model(s),
    :meth:`~translit_plugin.tasks.translit_align.TranslitAlignTask.start_checkpoints`; the first that exists is the
    teacher).
    """

    def __init__(self, task, cfg: MlmSeqTlmConfig | None = None, **options) -> None:
        super().__init__(task)
        if cfg is not None and options:
            raise TypeError("pass either a config or options, not both")
        self.cfg = cfg if cfg is not None else MlmSeqTlmConfig(**options)
        d = task.source_dictionary
        self.specials = SpecialIds(bos=d.bos(), eos=d.eos(), pad=d.pad())
        self.gather = str(self.cfg.seq_gather)
        self.passes = EncoderPasses(self.specials, int(self.cfg.encoder_chunk_tokens))
        weights = {t.name: float(getattr(self.cfg, t.weight_option)) for t in TERMS}
        if any(w < 0 for w in weights.values()):
            raise ValueError(f"loss weights must be >= 0, got {weights}")
        if not any(weights.values()):
            raise ValueError("all loss weights are 0: nothing to train")
        # the terms are plain objects in a plain list, so what they hold (the anchored term's teacher) stays out of
        # the module tree: not trained, not checkpointed, not moved or cast by fairseq, not wrapped by DDP
        setup = TermSetup(self.specials, load_model=self._load_teacher, teacher_dir=self._teacher_dir,
                          tokenize=self._tokenize)  # fmt: skip
        self.terms = [t for t in (cls(self.cfg, setup) for cls in TERMS) if t.weight > 0]
        self.needs = merge_needs(self.terms)

    @classmethod
    def build_criterion(cls, cfg: MlmSeqTlmConfig, task) -> "MlmSeqTlmCriterion":
        """fairseq's constructor: options out of range, or any other bad option the terms refuse, are one
        :class:`~translit_plugin.data.errors.TranslitDataError` (under fairseq-train: one logged line, exit 2)."""
        return _build_checked(cls, cfg, task)

    def _load_teacher(self, path: str | None):
        """The anchored term's teacher: ``path`` or, by default, the run's start checkpoint."""
        return load_teacher(self._teacher_path(path), self.task)

    def _teacher_dir(self, path: str | None) -> str:
        """The model directory of the teacher checkpoint (its ``use.json`` and tokenizer)."""
        return os.path.dirname(os.path.abspath(self._teacher_path(path)))

    def _tokenize(self, text: str, path: str | None) -> list[int]:
        """The data dictionary's ids of ``text``'s sentencepiece pieces (no ``<s>``/``</s>``), by the sentencepiece
        model of the teacher's directory (the model the data was binarized with)."""
        from translit_plugin.vocab import build_id_map, encode_ids, load_spm

        spm_path = os.path.join(self._teacher_dir(path), "sentencepiece.bpe.model")
        if not os.path.isfile(spm_path):
            raise FileNotFoundError(anchor.prompt_spm_missing(spm_path))
        sp = load_spm(spm_path)
        d = self.task.source_dictionary
        ids = encode_ids(sp, build_id_map(sp, d), text)
        inner = [int(i) for i in ids[1:-1]]
        if d.unk() in inner:
            raise ValueError(anchor.prompt_pieces_unknown(text, sp.EncodeAsPieces(text)))
        return inner

    def _teacher_path(self, path: str | None) -> str:
        if not path:
            starts = [p for p in self.task.start_checkpoints() if os.path.isfile(p)]
            path = starts[0] if starts else None
        if not path:
            raise ValueError(anchor.NO_TEACHER)
        return path

    def _workers(self) -> Workers:
        """This step's data parallelism (one worker when not distributed)."""
        if not (dist.is_available() and dist.is_initialized()):
            return Workers(None, 1, self.gather)
        from fairseq.distributed import utils as dist_utils

        group = dist_utils.get_data_parallel_group()
        return Workers(group, dist_utils.get_world_size(group), self.gather)

    def forward(self, model, sample: dict, reduce: bool = True):
        """Compute the weighted loss of one batch -> ``(loss, sample_size, logging_output)``.

        ``sample_size`` is 1 per worker and micro-batch, except in ``exact`` gathering where it is this worker's share
        of the global batch (so the shares of all workers add up to 1 and fairseq's gradient normalisation yields the
        global-batch gradient).
        """
        workers = self._workers()
        n_local = int(sample["nsentences"])
        mlm, vectors = self.passes.run(model, sample, self.needs)
        step = Step(model=model, sample=sample, mlm=mlm, vectors=vectors, workers=workers, specials=self.specials,
                    encode=self.passes.sentence_vectors, n_local=n_local)  # fmt: skip
        step.totals, step.n_global = self._totals(step, sample["orig"]["src_tokens"].device)

        losses, logging_output = [], {}
        for term in self.terms:
            out = term.compute(step)
            if out is not None:
                losses.append(term.weight * out[0])
                logging_output.update(out[1])
        loss = sum(losses)
        sample_size = n_local / max(step.n_global, 1) if workers.exact else 1.0
        logging_output.update(loss=loss.detach(), sample_size=sample_size, ntokens=sample["ntokens"],
                              nsentences=n_local)  # fmt: skip
        return loss, sample_size, logging_output

    def _totals(self, step: Step, device: torch.device) -> tuple[dict[str, Tensor], int]:
        """The terms' counts and the number of pairs, summed over workers under exact gathering (one all-reduce)."""
        counts = {k: v for term in self.terms for k, v in term.counts(step).items()}
        if not step.workers.exact:
            return counts, step.n_local
        # global normalisers: the sum over workers of sum_ce / global_count is the global-batch mean
        zero = torch.zeros((), device=device)
        stats = torch.stack([*counts.values(), zero + step.n_local]).double()
        dist.all_reduce(stats, group=step.workers.group)
        totals = {k: stats[i].to(torch.float32) for i, k in enumerate(counts)}
        return totals, int(stats[-1].item())

    @staticmethod
    def reduce_metrics(logging_outputs) -> None:
        """Aggregate across workers and micro-batches: the loss averaged over sample sizes, then each term's metrics."""
        sample_size = logged_total(logging_outputs, "sample_size")
        loss = logged_total(logging_outputs, "loss")
        metrics.log_scalar("loss", loss / max(sample_size, 1e-8), sample_size, round=4)
        for term in TERMS:
            for name, value, weight in term.reduce(logging_outputs):
                metrics.log_scalar(name, value, weight, round=4)

    @staticmethod
    def logging_outputs_can_be_summed() -> bool:
        return True


def check_options(cfg, task) -> None:
    """Refuse option values no run can use, naming the option: negative weights, temperatures <= 0, a layer the
    model does not have (``task.model_layers``, known once the task built the model), ``--mask-prob 0`` with a
    masked term on."""
    from translit_plugin.data.errors import TranslitDataError

    def flag(name: str) -> str:
        return "--" + name.replace("_", "-")

    weights = {t.weight_option: float(getattr(cfg, t.weight_option)) for t in TERMS}
    for name, value in weights.items():
        if not value >= 0:
            raise TranslitDataError(f"{flag(name)} {value:g}: must be >= 0 (0 turns the term off)")
    for weight, name in (("seq_weight", "seq_temperature"), ("anchor_weight", "anchor_temperature")):
        value = getattr(cfg, name, None)
        if weights.get(weight, 0) > 0 and value is not None and not float(value) > 0:
            raise TranslitDataError(f"{flag(name)} {float(value):g}: must be > 0")
    masked = [w for w in ("mlm_orig_weight", "mlm_latn_weight", "tlm_weight") if weights.get(w, 0) > 0]
    mask_prob = getattr(getattr(task, "cfg", None), "mask_prob", None)
    if masked and mask_prob is not None and float(mask_prob) == 0:
        raise TranslitDataError(f"--mask-prob 0 masks no token: {', '.join(map(flag, masked))} would have nothing "
                                "to predict; pass --mask-prob in (0, 1] (reference: 0.15) or set those weights to 0")
    layers = getattr(task, "model_layers", None)
    if not isinstance(layers, int):
        return
    wanted: list[tuple[str, object]] = []
    if weights.get("seq_weight", 0) > 0:
        wanted.append(("--seq-layer", getattr(cfg, "seq_layer", None)))
    if weights.get("anchor_weight", 0) > 0 and getattr(cfg, "anchor_layer", None) is not None:
        for part in str(cfg.anchor_layer).split(","):  # indices, or names the term resolves ('last', 'use')
            part = part.strip()
            if part.lstrip("-").isdigit():
                wanted.append(("--anchor-layer", int(part)))
            elif part not in ("last", "use"):
                raise TranslitDataError(f"--anchor-layer {cfg.anchor_layer!r}: expected layer indices (or 'last'), "
                                        "comma-separated")
    for name, layer in wanted:
        if isinstance(layer, int) and not 0 <= layer <= layers:
            raise TranslitDataError(f"{name} {layer}: the model has {layers} layers (valid: 0..{layers}, 0 = the "
                                    "embeddings); the reference uses 8 for 12-layer models")


def _build_checked(cls, cfg, task):
    """``check_options``, then the criterion; a ``ValueError`` of its terms becomes a ``TranslitDataError``."""
    from translit_plugin.data.errors import TranslitDataError, clean_exit

    @clean_exit
    def build():
        check_options(cfg, task)
        try:
            return cls(task, cfg)
        except TranslitDataError:
            raise
        except (ValueError, FileNotFoundError) as e:
            raise TranslitDataError(f"criterion mlm_seq_tlm: {' '.join(str(e).split())}") from e

    return build()


def load_teacher(path: str, task):
    """The frozen teacher: the model in checkpoint ``path``, in eval mode, without gradients (CPU until first use)."""
    from translit_plugin.models.checkpoints import load_model

    if not os.path.isfile(path):
        raise FileNotFoundError(anchor.teacher_not_found(path))
    teacher, _ = load_model(path, task.source_dictionary,
                            lambda rows, entries: anchor.teacher_rows_differ(path, rows, entries))
    teacher.eval()
    for p in teacher.parameters():
        p.requires_grad_(False)
    logger.info("anchor teacher: %s (%d layers, frozen)", path, len(teacher.encoder.sentence_encoder.layers))
    return teacher
