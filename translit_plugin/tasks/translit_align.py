"""``translit_align``: post-training on (original, Latin transliteration) pairs: MLM on both, SEQ and TLM.

Reads what ``translit-ppa prepare`` writes::

    DATA/orig/{train,valid}.{bin,idx}  + DATA/orig/dict.txt     original-script side, one sentence per line
    DATA/latn/{train,valid}.{bin,idx}  + DATA/latn/dict.txt     its uroman transliteration, line-aligned
    DATA/{split}.lang.npy (optional)   per-pair language ids (int), with DATA/langs.txt naming them (id i = line i)

Each binarized line is ``pieces + </s>``; the task prepends ``<s>``.  The dictionary is ``DATA/orig/dict.txt`` plus
``<mask>`` (like fairseq's ``masked_lm``), so its ids are the HF XLM-R ids (see :mod:`translit_plugin.vocab`).
Batches are built by :class:`translit_plugin.data.pair_dataset.TranslitPairDataset` (masking, TLM) and consumed by the
``mlm_seq_tlm`` criterion.

Start from a converted model with ``--finetune-from-model MODEL_DIR/model.pt`` (resumable: a relaunch continues from
``checkpoint_last.pt``) or ``--restore-file MODEL_DIR/model.pt --reset-optimizer --reset-dataloader --reset-meters
--reset-lr-scheduler``.  The task checks that the start checkpoint's embedding matrix has one row per dictionary entry
and that ``MODEL_DIR/dict.txt`` (when present) lists the same pieces as the data's ``dict.txt``; without it, the
model directory's ``conversion.json`` (``dict_sha256`` or ``sentencepiece_sha256``) is compared with the data's
record, else a warning says the vocabulary could not be verified.

Pairing: besides equal sentence counts and one dictionary for both sides, each split is compared with the data-bin's
``pairing.json`` (:mod:`translit_plugin.data.fingerprint`, written by ``translit-ppa prepare`` and
``translit-ppa encode``): the task recomputes it from the ``.bin``/``.idx`` files and refuses a side that holds other
lines (another split, a shift by one line, another dictionary).  Without the file it warns that the pairing cannot be
verified, and still refuses a split whose sentence lengths correlate far better with the neighbouring line of the
other side than with the same line (a shift by one; :func:`~translit_plugin.data.fingerprint.looks_shifted`).
``fairseq-preprocess`` output works the same way (README, "With fairseq-preprocess").

Errors the user has to fix raise :class:`~translit_plugin.data.errors.TranslitDataError` with a one-line message; under
``fairseq-train`` they are logged and the process exits with status 2 (no traceback; ``TRANSLIT_PPA_TRACEBACK=1``
re-raises them).
"""

import logging
import os
from dataclasses import dataclass, field
from typing import Optional

from fairseq.data import Dictionary
from fairseq.dataclass import ChoiceEnum, FairseqDataclass
from fairseq.tasks import FairseqTask, register_task
from omegaconf import II, MISSING

from translit_plugin.core.names import DEFAULT_MAX_LENGTH, LATN, ORIG, SIDES
from translit_plugin.data import fingerprint, splits
from translit_plugin.data.errors import MissingDataError, PairingError, TranslitDataError, clean_exit
from translit_plugin.data.pair_dataset import MaskingConfig, TranslitPairDataset
from translit_plugin.data.resampling import resample_languages
from translit_plugin.models import checkpoints

logger = logging.getLogger(__name__)

LONG_SEQUENCE_CHOICES = ChoiceEnum(["truncate", "error"])
MASK_SAMPLING_CHOICES = ChoiceEnum(["bernoulli", "exact_count"])
TLM_ORDER_CHOICES = ChoiceEnum(["random", "orig_first", "latn_first"])
BATCH_ORDER_CHOICES = ChoiceEnum(["random", "length"])
AUTOCAST_CHOICES = ChoiceEnum(["none", "bf16"])
PAIRING_CHECK_CHOICES = ChoiceEnum(["full", "counts"])


@dataclass
class TranslitAlignConfig(FairseqDataclass):
    data: str = field(
        default=MISSING,
        metadata={"help": "data-bin directory written by `translit-ppa prepare` (holds orig/ and latn/)"},
    )
    tokens_per_sample: int = field(
        default=DEFAULT_MAX_LENGTH,
        metadata={
            "help": "longest sequence of each stream, <s> and </s> included (reference: 512); at most the model's "
            "--max-positions"
        },
    )
    long_sequences: LONG_SEQUENCE_CHOICES = field(
        default="truncate",
        metadata={
            "help": "a side longer than --tokens-per-sample: 'truncate' (reference: keep the first pieces and "
            "</s>; the TLM concatenation is cut at --tokens-per-sample) or 'error' (stop, naming the lines)"
        },
    )
    mask_prob: float = field(default=0.15, metadata={"help": "probability of selecting a (non-special) token for MLM"})
    leave_unmasked_prob: float = field(default=0.1, metadata={"help": "share of selected tokens left unchanged"})
    random_token_prob: float = field(default=0.1, metadata={"help": "share of selected tokens replaced at random"})
    mask_sampling: MASK_SAMPLING_CHOICES = field(
        default="bernoulli",
        metadata={
            "help": "'bernoulli' (reference: each token independently) or 'exact_count' (fairseq masked_lm style: "
            "int(p * n + U) tokens per sequence; specials are never selected either way)"
        },
    )
    tlm_order: TLM_ORDER_CHOICES = field(
        default="random",
        metadata={"help": "order of the two sides in the TLM sequence: 'random' per pair and epoch (reference)"},
    )
    tlm_reset_positions: bool = field(
        default=False,
        metadata={"help": "restart positions for the second TLM segment (reference ablation; default: continue)"},
    )
    batch_order: BATCH_ORDER_CHOICES = field(
        default="random",
        metadata={
            "help": "'random': batches of uniformly drawn pairs, new ones every epoch (the reference code's Trainer; "
            "SEQ's in-batch negatives vary in length and content); 'length': pairs sorted by total length (less "
            "padding, but every in-batch negative of SEQ then has the positive's length)"
        },
    )
    lang_sampling_temperature: float = field(
        default=1.0,
        metadata={
            "help": "resample training pairs per epoch so language k has probability ~ (n_k/N)^(1/T); 1 = natural "
            "distribution (the paper); needs DATA/train.lang.npy"
        },
    )
    pairing_check: PAIRING_CHECK_CHOICES = field(
        default="full",
        metadata={
            "help": "'full': before training, recompute each split's fingerprint from the .bin/.idx files and "
            "compare it with DATA/pairing.json (reads the data-bin once); 'counts': only equal sentence counts"
        },
    )
    reuse_dataloader: bool = field(
        default=False,
        metadata={
            "help": "reuse the DataLoader across epochs; keep False with --num-workers > 0, otherwise persistent "
            "workers keep the first epoch's masks"
        },
    )
    autocast: AUTOCAST_CHOICES = field(
        default="none",
        metadata={
            "help": "'bf16': forward passes under torch.autocast in bfloat16 (float32's range: no loss scaling, no "
            "skipped updates), weights, gradients and optimizer in float32; GPUs with bf16 (Ampere and newer) and "
            "CPUs with bf16 instructions. fairseq 0.12's own --bf16 means TPU, and its --fp16 needs CUDA"
        },
    )
    seed: int = II("common.seed")
    # fairseq reads these annotations at run time and understands Optional[...], not "X | None"
    restore_file: Optional[str] = II("checkpoint.restore_file")  # noqa: UP045
    finetune_from_model: Optional[str] = II("checkpoint.finetune_from_model")  # noqa: UP045
    save_dir: Optional[str] = II("checkpoint.save_dir")  # noqa: UP045


def _resolved(cfg, key: str) -> str | None:
    """A string field of ``cfg``, or None when unset or an interpolation that cannot be resolved (task built alone)."""
    try:
        value = getattr(cfg, key, None)
    except Exception:  # omegaconf InterpolationKeyError: no `checkpoint` section outside fairseq-train
        return None
    if not isinstance(value, str) or not value or value.startswith("${"):
        return None
    return value


def validate_config(cfg) -> None:
    """Reject option values that cannot work (one message per option, naming it)."""
    defaults = TranslitAlignConfig
    for name in ("mask_prob", "leave_unmasked_prob", "random_token_prob"):
        value = float(getattr(cfg, name, getattr(defaults, name)))
        if not 0.0 <= value <= 1.0:
            raise TranslitDataError(f"--{name.replace('_', '-')} {value:g}: must be a probability in [0, 1]")
    leave = float(getattr(cfg, "leave_unmasked_prob", defaults.leave_unmasked_prob))
    rand = float(getattr(cfg, "random_token_prob", defaults.random_token_prob))
    total = leave + rand
    if total > 1.0:
        raise TranslitDataError(
            f"--leave-unmasked-prob {leave:g} + --random-token-prob {rand:g} = "
            f"{total:g}: the shares of selected tokens left unchanged and replaced at random must sum to at most 1"
        )
    tokens = int(getattr(cfg, "tokens_per_sample", defaults.tokens_per_sample))
    if tokens <= 2:
        raise TranslitDataError(f"--tokens-per-sample {tokens}: must be > 2 (<s>, at least one piece, </s>)")
    temperature = float(getattr(cfg, "lang_sampling_temperature", defaults.lang_sampling_temperature))
    if not temperature > 0.0:
        raise TranslitDataError(
            f"--lang-sampling-temperature {temperature:g}: must be > 0 (1 = natural distribution)"
        )


@register_task("translit_align", dataclass=TranslitAlignConfig)
class TranslitAlignTask(FairseqTask):
    """Post-training on original/Latin pairs (see module docstring); pair with ``--criterion mlm_seq_tlm``."""

    cfg: TranslitAlignConfig

    def __init__(self, cfg: TranslitAlignConfig, dictionary: Dictionary) -> None:
        super().__init__(cfg)
        self.dictionary = dictionary
        self.mask_idx = dictionary.add_symbol("<mask>")
        self.lang_names: list[str] | None = splits.load_lang_names(cfg.data.split(":")[0])  # DATA/langs.txt
        self._pairing_checked: dict[str, tuple] = {}

    # ------------------------------------------------------------------------------------------------------ setup
    @classmethod
    def dictionary_path(cls, data: str) -> str:
        """``DATA/orig/dict.txt``; a model directory's ``dict.txt`` (hub loading passes it as ``data``) also works."""
        for candidate in (os.path.join(data, ORIG, "dict.txt"), os.path.join(data, "dict.txt")):
            if os.path.isfile(candidate):
                return candidate
        raise MissingDataError(
            f"no dictionary under {data!r}: expected {os.path.join(data, ORIG, 'dict.txt')} (written by "
            "`translit-ppa prepare`); pass the prepared data-bin directory as DATA"
        )

    @classmethod
    @clean_exit
    def setup_task(cls, cfg: TranslitAlignConfig, **kwargs) -> "TranslitAlignTask":
        validate_config(cfg)
        data = cfg.data.split(":")[0]
        path = cls.dictionary_path(data)
        dictionary = Dictionary.load(path)
        latn_dict = os.path.join(data, LATN, "dict.txt")
        if os.path.isfile(latn_dict) and Dictionary.load(latn_dict).symbols != dictionary.symbols:
            raise PairingError(f"{path} and {latn_dict} differ: both sides must be binarized with the model's "
                               "dictionary (fairseq-preprocess --srcdict MODEL/dict.txt, or prepare --model-dir)")
        logger.info("dictionary %s: %d types (+ <mask>)", path, len(dictionary))
        return cls(cfg, dictionary)

    # ------------------------------------------------------------------------------------------------------- data
    @clean_exit
    def load_dataset(self, split: str, epoch: int = 1, combine: bool = False, **kwargs) -> None:
        """Load ``split`` of both sides, check they pair up, and wrap them (see module docstring)."""
        data = self.cfg.data.split(":")[0]
        (orig, orig_path, orig_parts), (latn, latn_path, latn_parts) = (
            splits.load_side(data, s, split, combine, self.dictionary) for s in SIDES
        )
        splits.check_counts(split, orig, orig_path, orig_parts, latn, latn_path, latn_parts)
        if getattr(self.cfg, "pairing_check", "full") != "counts":  # (absent from older checkpoints' configs)
            splits.check_pairing(data, split, {ORIG: orig_parts, LATN: latn_parts}, {ORIG: orig, LATN: latn},
                                 self._pairing_checked)
        splits.check_lengths(split, orig, latn, self.cfg.tokens_per_sample, self.cfg.long_sequences)
        lang = splits.load_lang_ids(data, split, len(orig), parts=len(orig_parts), lang_names=self.lang_names)
        dataset = TranslitPairDataset(
            orig,
            latn,
            self.dictionary,
            mask_idx=self.mask_idx,
            seed=self.cfg.seed,
            max_positions=self.cfg.tokens_per_sample,
            masking=MaskingConfig(
                mask_prob=self.cfg.mask_prob,
                leave_unmasked_prob=self.cfg.leave_unmasked_prob,
                random_token_prob=self.cfg.random_token_prob,
                sampling=str(self.cfg.mask_sampling),
            ),
            tlm_order=str(self.cfg.tlm_order),
            tlm_reset_positions=self.cfg.tlm_reset_positions,
            lang=lang,
            shuffle=split == "train",
            batch_order=str(self.cfg.batch_order),
            name=f"{self.cfg.data}:{split}",
        )
        logger.info("%s: %d pairs from %s and %s", split, len(dataset), orig_path, latn_path)
        if split == "train" and self.cfg.lang_sampling_temperature != 1.0:
            dataset = resample_languages(dataset, lang, self.cfg.lang_sampling_temperature, data=self.cfg.data,
                                         seed=self.cfg.seed, epoch=epoch,
                                         sort_by_length=self.cfg.batch_order == "length", lang_names=self.lang_names)
        self.datasets[split] = dataset

    # ------------------------------------------------------------------------------------------------------ model
    @clean_exit
    def build_model(self, cfg, from_checkpoint: bool = False):
        model = super().build_model(cfg, from_checkpoint)
        rows = model.encoder.sentence_encoder.embed_tokens.num_embeddings
        if rows != len(self.dictionary):
            raise TranslitDataError(f"the model has {rows} embedding rows but the data's dictionary (+ <mask>) has "
                                    f"{len(self.dictionary)} entries: binarize the data with the model's dict.txt")
        model_max = model.max_positions() if hasattr(model, "max_positions") else None
        if isinstance(model_max, int) and model_max < self.cfg.tokens_per_sample:
            raise TranslitDataError(
                f"--tokens-per-sample {self.cfg.tokens_per_sample} exceeds the model's {model_max} positions; "
                f"pass --tokens-per-sample {model_max} (or less)"
            )
        self.model_layers = len(model.encoder.sentence_encoder.layers)  # the criterion checks its layer options
        if not from_checkpoint:
            self.check_start_checkpoint(cfg, model)
            self.check_resumed_checkpoint()
        return model

    def start_checkpoints(self) -> list[str]:
        """The start model(s) the run was launched from: ``--finetune-from-model``, then an explicit
        ``--restore-file`` (fairseq's default ``checkpoint_last.pt`` is the run's own checkpoint, not a start)."""
        candidates = [_resolved(self.cfg, "finetune_from_model")]
        restore = _resolved(self.cfg, "restore_file")
        if restore is not None and os.path.basename(restore) != "checkpoint_last.pt":
            candidates.append(restore)
        return [c for c in candidates if c]

    def check_start_checkpoint(self, model_cfg=None, model=None) -> None:
        """Fail early, with both paths named, when the start checkpoint's vocabulary is not the data's, or (given
        ``model_cfg``, the run's model config) when its architecture differs from the run's, or (given ``model``,
        the network the run built) when any of its tensors has another shape (positions, sizes, layers)."""
        data = self.cfg.data.split(":")[0]
        data_dict = self.dictionary_path(data)
        for path in self.start_checkpoints():
            checkpoints.check_start_checkpoint(path, self.dictionary, data, data_dict, model_cfg, model)

    def data_identity(self) -> dict:
        """What this run trains on, recorded in every checkpoint (``task_state["translit_data"]``): the data-bin's
        vocabulary and train-split fingerprint (``pairing.json``), and the sentencepiece model of the start model
        directory (else the one the data records); compared on resume and by the hub."""
        if getattr(self, "_data_identity", None) is None:
            self._data_identity = fingerprint.data_identity(self.cfg.data.split(":")[0], self.start_checkpoints(),
                                                            rows=len(self.dictionary))
        return self._data_identity

    def state_dict(self) -> dict:
        return {**(super().state_dict() or {}), fingerprint.IDENTITY_KEY: self.data_identity()}

    def resumed_checkpoint(self) -> str | None:
        """The run's own ``checkpoint_last.pt`` that fairseq will resume from, if there is one."""
        save_dir = _resolved(self.cfg, "save_dir")
        restore = _resolved(self.cfg, "restore_file") or "checkpoint_last.pt"
        if save_dir is None or restore != "checkpoint_last.pt":
            return None
        path = os.path.join(save_dir, restore)
        return path if os.path.isfile(path) else None

    @clean_exit
    def check_resumed_checkpoint(self) -> None:
        """Refuse to resume ``checkpoint_last.pt`` written by a run on another data-bin (another train split or
        vocabulary): its data position, optimizer state and schedule belong to that data."""
        path = self.resumed_checkpoint()
        if path is None:
            return
        try:
            recorded = checkpoints.recorded_data_identity(path)
        except Exception as err:  # unreadable here: fairseq reports it when it loads the file
            logger.debug("could not read %s (%s); skipping the data-bin check", path, err)
            return
        differ = fingerprint.identity_differences(recorded, self.data_identity())
        if differ:
            raise PairingError(
                f"{path} was trained on another data-bin ({recorded.get('data')}; {', '.join(differ)} differ from "
                f"{self.cfg.data}): resuming would continue that run's data order and optimizer on other data; use "
                f"a new --save-dir (to start from its weights on this data: --finetune-from-model {path} with a new "
                "--save-dir), or train on the data-bin it was trained on"
            )

    # --------------------------------------------------------------------------------------------------- plumbing
    @property
    def source_dictionary(self) -> Dictionary:
        return self.dictionary

    @property
    def target_dictionary(self) -> Dictionary:
        return self.dictionary

    def max_positions(self) -> int:
        return self.cfg.tokens_per_sample

    # ---------------------------------------------------------------------------------------------------- steps
    def _autocast(self, model):
        """``torch.autocast`` for ``--autocast bf16`` on the model's device, else a no-op context."""
        import contextlib

        import torch

        if self.cfg.autocast != "bf16":
            return contextlib.nullcontext()
        device = next(model.parameters()).device.type
        return torch.autocast(device_type=device, dtype=torch.bfloat16)

    def train_step(self, sample, model, criterion, optimizer, update_num, ignore_grad=False):
        """fairseq's step, with the forward under ``--autocast`` (the losses are computed in float32 regardless)."""
        if self.cfg.autocast == "none":
            return super().train_step(sample, model, criterion, optimizer, update_num, ignore_grad)
        import torch

        if next(model.parameters()).dtype != torch.float32:
            raise TranslitDataError("--autocast bf16 keeps the model in float32: drop --fp16 / --bf16 / --amp")
        model.train()
        model.set_num_updates(update_num)
        with torch.autograd.profiler.record_function("forward"), self._autocast(model):
            loss, sample_size, logging_output = criterion(model, sample)
        if ignore_grad:
            loss *= 0
        with torch.autograd.profiler.record_function("backward"):
            optimizer.backward(loss)
        return loss, sample_size, logging_output

    def valid_step(self, sample, model, criterion):
        with self._autocast(model):
            return super().valid_step(sample, model, criterion)

    def begin_epoch(self, epoch: int, model) -> None:
        model.set_epoch(epoch)
