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

import functools
import itertools
import json
import logging
import os
import sys
from dataclasses import dataclass, field
from typing import Optional

import numpy as np
from fairseq.data import ConcatDataset, Dictionary, FairseqDataset, data_utils, indexed_dataset
from fairseq.data.resampling_dataset import ResamplingDataset
from fairseq.dataclass import ChoiceEnum, FairseqDataclass
from fairseq.tasks import FairseqTask, register_task
from omegaconf import II, MISSING

from translit_plugin.core.hashing import sha256_file
from translit_plugin.core.names import DEFAULT_MAX_LENGTH, EMBED_KEY, LATN, ORIG, SIDES
from translit_plugin.data import fingerprint
from translit_plugin.data.errors import MissingDataError, PairingError, TranslitDataError
from translit_plugin.data.pair_dataset import MaskingConfig, TranslitPairDataset, temperature_sampling_weights
from translit_plugin.data.pread_dataset import PreadIndexedDataset

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


def _exit_instead_of_raising() -> bool:
    """True under a fairseq console command (fairseq-train, fairseq-hydra-train, ...) unless TRANSLIT_PPA_TRACEBACK."""
    if os.environ.get("TRANSLIT_PPA_TRACEBACK"):
        return False
    prog = sys.argv[0] if sys.argv else ""
    return os.path.basename(prog).startswith("fairseq-") or "fairseq_cli" in prog


def clean_exit(fn):
    """Under fairseq-train, turn a :class:`TranslitDataError` into one logged line and exit status 2 (no traceback);
    elsewhere (tests, library use) re-raise it."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except TranslitDataError as e:
            if not _exit_instead_of_raising():
                raise
            logger.error("translit_align: %s", e)
            raise SystemExit(e.exit_code) from None

    return wrapper


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
        self.lang_names: list[str] | None = self._load_lang_names()
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

    def _load_lang_names(self) -> list[str] | None:
        path = os.path.join(self.cfg.data.split(":")[0], "langs.txt")
        if not os.path.isfile(path):
            return None
        with open(path, encoding="utf-8") as f:
            return [line.strip() for line in f if line.strip()]

    def _load_lang_ids(self, split: str, n: int, parts: int = 1) -> np.ndarray | None:
        """``DATA/{split}.lang.npy`` (for a split in parts: ``{split}.lang.npy``, ``{split}1.lang.npy``, ...)."""
        data = self.cfg.data.split(":")[0]
        paths = [os.path.join(data, f"{split}{k if k else ''}.lang.npy") for k in range(parts)]
        present = [os.path.isfile(p) for p in paths]
        if not any(present):
            return None
        if not all(present):
            missing = [p for p, ok in zip(paths, present) if not ok]
            raise TranslitDataError(f"{missing[0]} is missing while {paths[present.index(True)]} exists: give every "
                                    f"part of split {split!r} its language ids, or none")
        arrays = []
        for path in paths:
            try:
                lang = np.load(path)  # kept in its stored (narrow) integer dtype; never unpickled
            except (ValueError, OSError, EOFError) as e:
                raise TranslitDataError(f"{path}: not a numpy array of language ids ({' '.join(str(e).split())}); "
                                        "re-run prepare (or encode), or delete it to train without "
                                        "language ids") from None
            if not np.issubdtype(lang.dtype, np.integer):
                raise TranslitDataError(f"{path}: language ids must be integers, found dtype {lang.dtype}; re-run "
                                        "prepare")
            if lang.ndim != 1:
                raise TranslitDataError(f"{path}: expected one language id per pair, found shape {lang.shape}")
            arrays.append(lang)
        lang = arrays[0] if parts == 1 else np.concatenate(arrays)
        path = paths[0] if parts == 1 else ", ".join(paths)
        if len(lang) != n:
            raise TranslitDataError(f"{path}: expected {n} language ids (one per pair), found shape {lang.shape}")
        if self.lang_names is not None and len(lang) and (lang.min() < 0 or lang.max() >= len(self.lang_names)):
            raise TranslitDataError(f"{path}: language ids outside 0..{len(self.lang_names) - 1} (langs.txt)")
        return lang

    # ------------------------------------------------------------------------------------------------------- data
    def _load_side(self, side: str, split: str, combine: bool):
        data = self.cfg.data.split(":")[0]
        prefix = os.path.join(data, side, split)
        if os.path.isfile(prefix + ".bin") and os.path.getsize(prefix + ".bin") == 0:
            raise TranslitDataError(
                f"split {split!r} is empty ({prefix}.bin has no sentences): prepare a non-empty {split} split or "
                + ("pass --disable-validation" if split != "train" else "check the input corpus")
            )
        if indexed_dataset.infer_dataset_impl(prefix) == "mmap":
            # fairseq's format, read without mapping it into the process (see translit_plugin/data/pread_dataset.py)
            parts, prefixes = [], []
            for k in itertools.count():
                path_k = prefix + (str(k) if k > 0 else "")
                if not PreadIndexedDataset.exists(path_k):
                    break
                parts.append(PreadIndexedDataset(path_k))
                prefixes.append(path_k)
                logger.info("loaded %s sentences from %s", f"{len(parts[-1]):,}", path_k)
                if not combine:
                    break
            dataset = parts[0] if len(parts) == 1 else ConcatDataset(parts)
        else:  # other fairseq formats (raw, lazy, cached) through fairseq's loader
            impl = indexed_dataset.infer_dataset_impl(prefix)
            # fairseq's "cached" reader needs a prefetch() no batch iterator here makes (KeyError: 0); the
            # "lazy" reader reads the same files item by item
            dataset = data_utils.load_indexed_dataset(prefix, self.dictionary, combine=combine,
                                                      dataset_impl="lazy" if impl == "cached" else impl)
            prefixes = [prefix]
        if dataset is None:
            raise MissingDataError(
                f"{prefix}.{{bin,idx}} not found: `translit-ppa prepare` writes {side}/{split}.bin/.idx under DATA "
                f"(split {split!r}; for no validation pass --disable-validation)"
            )
        return dataset, prefix, prefixes

    @clean_exit
    def load_dataset(self, split: str, epoch: int = 1, combine: bool = False, **kwargs) -> None:
        """Load ``split`` of both sides, check they pair up, and wrap them (see module docstring)."""
        (orig, orig_path, orig_parts), (latn, latn_path, latn_parts) = (
            self._load_side(s, split, combine) for s in SIDES
        )
        if len(orig_parts) != len(latn_parts):
            raise PairingError(
                f"split {split!r}: orig has {len(orig_parts)} part(s) ({', '.join(orig_parts)}) but latn has "
                f"{len(latn_parts)} ({', '.join(latn_parts)}); binarize the same parts on both sides"
            )
        if len(orig) != len(latn):
            raise PairingError(
                f"{orig_path}.bin has {len(orig)} sentences but {latn_path}.bin has {len(latn)}: the sides must be "
                "line-aligned; re-run `translit-ppa prepare` so both are written from the same pairs"
            )
        if len(orig) == 0:
            raise TranslitDataError(
                f"split {split!r} is empty ({orig_path}.bin has no sentences): prepare a non-empty {split} split or "
                + ("pass --disable-validation" if split != "train" else "check the input corpus")
            )
        self._check_pairing(split, {ORIG: orig_parts, LATN: latn_parts}, {ORIG: orig, LATN: latn})
        self._check_lengths(split, orig, latn)
        lang = self._load_lang_ids(split, len(orig), parts=len(orig_parts))
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
            dataset = self._resample_languages(dataset, lang, epoch)
        self.datasets[split] = dataset

    def _check_pairing(self, split: str, prefixes: dict[str, list[str]], datasets: dict) -> None:
        """Compare ``split`` with ``DATA/pairing.json`` (once per split and file state); warn when there is none."""
        if getattr(self.cfg, "pairing_check", "full") == "counts":  # (absent from older checkpoints' configs)
            return
        data = self.cfg.data.split(":")[0]
        stamp = tuple((p, os.path.getsize(p + ".bin"), os.path.getmtime(p + ".bin"))
                      for side in SIDES for p in prefixes[side] if os.path.isfile(p + ".bin"))
        if self._pairing_checked.get(split) == stamp:
            return
        dict_paths = {side: os.path.join(data, side, "dict.txt") for side in SIDES}
        dict_paths = {side: p for side, p in dict_paths.items() if os.path.isfile(p)}
        parts = len(prefixes[ORIG])
        # a split stored in parts (train, train1, ...: fairseq's --combine) is recorded part by part
        unverified = []
        for k in range(parts):
            name = split if k == 0 else f"{split}{k}"
            status = fingerprint.check_split(data, name, {side: [prefixes[side][k]] for side in SIDES}, dict_paths,
                                             datasets if parts == 1 else None)
            if status != "verified":
                unverified.append((name, status))
        if not unverified:
            logger.info("%s: pairing verified against %s", split, fingerprint.pairing_path(data))
        else:
            corr = fingerprint.length_correlations(datasets[ORIG].sizes, datasets[LATN].sizes)
            if fingerprint.looks_shifted(corr):
                raise PairingError(
                    f"split {split!r} looks shifted by one line: the lengths of orig line i agree with latn line i+-1 "
                    f"(r={corr['shifted']:.2f}) far better than with latn line i (r={corr['aligned']:.2f}), and no "
                    f"{fingerprint.FILENAME} entry verifies the pairing; rebuild both sides from the same lines "
                    "(`translit-ppa encode` + fairseq-preprocess, or prepare), or pass --pairing-check counts"
                )
            for name, status in unverified:
                what = "not found" if status == "no file" else f"has no entry for split {name!r}"
                logger.warning(
                    "%s %s: the pairing of orig/%s and latn/%s cannot be verified beyond equal sentence counts; write "
                    "it with `translit-ppa encode` (fairseq-preprocess path) or re-run `translit-ppa prepare`",
                    fingerprint.pairing_path(data), what, name, name,
                )
        self._pairing_checked[split] = stamp

    def _check_lengths(self, split: str, orig, latn) -> None:
        """Warn about sentences without pieces; a side longer than ``--tokens-per-sample``: warn, or error with
        ``--long-sequences error``."""
        limit = self.cfg.tokens_per_sample - 1  # the binaries hold pieces + </s>; <s> is added here
        for side, ds in zip(SIDES, (orig, latn)):
            sizes = np.asarray(ds.sizes)
            too_long = np.flatnonzero(sizes > limit)
            empty = int((sizes <= 1).sum())
            if empty:
                logger.warning("%s/%s: %d sentences have no pieces (only </s>); prepare normally drops them",
                               side, split, empty)
            if len(too_long) == 0:
                continue
            lines = ", ".join(str(i + 1) for i in too_long[:10])
            msg = (f"{side}/{split}: {len(too_long)} sentences exceed --tokens-per-sample "
                   f"{self.cfg.tokens_per_sample} (with <s> and </s>); lines {lines}"
                   f"{' ...' if len(too_long) > 10 else ''}")
            if self.cfg.long_sequences == "error":
                raise TranslitDataError(msg + "; shorten them or pass --long-sequences truncate")
            logger.warning("%s; truncating them (reference behaviour)", msg)

    def _resample_languages(self, dataset: TranslitPairDataset, lang: np.ndarray | None, epoch: int):
        if lang is None:
            raise MissingDataError(
                f"--lang-sampling-temperature {self.cfg.lang_sampling_temperature} needs per-pair language ids "
                f"({os.path.join(self.cfg.data, 'train.lang.npy')}), written by `translit-ppa prepare` or "
                "`translit-ppa encode` (directory inputs or --lang); or use --lang-sampling-temperature 1"
            )
        weights, q = temperature_sampling_weights(lang, self.cfg.lang_sampling_temperature)
        names = self.lang_names or [str(i) for i in range(max(q) + 1)]
        logger.info("language sampling (T=%g): %s", self.cfg.lang_sampling_temperature,
                    ", ".join(f"{names[k]}={p:.3f}" for k, p in sorted(q.items())))
        return LanguageResamplingDataset(dataset, weights=weights, seed=self.cfg.seed, epoch=epoch,
                                         sort_by_length=self.cfg.batch_order == "length")

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
        data_dict = self.dictionary_path(self.cfg.data.split(":")[0])
        for path in self.start_checkpoints():
            if not os.path.isfile(path):
                continue  # fairseq reports a missing file itself
            model_dict = os.path.join(os.path.dirname(os.path.abspath(path)), "dict.txt")
            if os.path.isfile(model_dict) and os.path.abspath(model_dict) != os.path.abspath(data_dict):
                theirs = Dictionary.load(model_dict).symbols
                if theirs != self.dictionary.symbols[: len(theirs)] or len(theirs) + 1 != len(self.dictionary):
                    first = next(
                        (i for i, (a, b) in enumerate(zip(theirs, self.dictionary.symbols)) if a != b),
                        min(len(theirs), len(self.dictionary.symbols)),
                    )
                    raise TranslitDataError(
                        f"dictionary mismatch: {model_dict} (the model's) and {data_dict} (the data's) differ from "
                        f"entry {first} on; binarize the data with the model's dictionary (`translit-ppa prepare "
                        "--model-dir MODEL_DIR`)"
                    )
            if model_cfg is not None:
                _check_architecture(path, model_cfg)
            rows = _checkpoint_embedding_rows(path)
            if rows is not None and rows != len(self.dictionary):
                raise TranslitDataError(
                    f"{path} has {rows} embedding rows but {data_dict} + <mask> gives {len(self.dictionary)} ids: the "
                    "data was binarized with a different vocabulary than the model's; re-run `translit-ppa prepare` "
                    "with this model's dict.txt"
                )
            if model is not None:
                shapes = _checkpoint_shapes(path)
                if shapes is not None:
                    check_checkpoint_shapes(path, shapes, model)
            if not os.path.isfile(model_dict):
                self._check_vocabulary_record(path, data_dict, rows)

    def _check_vocabulary_record(self, path: str, data_dict: str, rows: int | None) -> None:
        """A start checkpoint without ``dict.txt`` next to it: compare the fingerprints its directory's
        ``conversion.json`` records (``dict_sha256``, ``sentencepiece_sha256``) with the data's; else warn."""
        model_dir = os.path.dirname(os.path.abspath(path))
        conversion = os.path.join(model_dir, "conversion.json")
        record: dict = {}
        if os.path.isfile(conversion):
            try:
                with open(conversion, encoding="utf-8") as f:
                    record = json.load(f)
            except (OSError, ValueError):
                record = {}
        data = self.cfg.data.split(":")[0]
        pairing = fingerprint.read_pairing(data) or {}
        data_dicts = {sha256_file(data_dict), pairing.get("dictionary", {}).get("dict_sha256")}
        fix = ("put the model's dict.txt next to the checkpoint, or binarize the data with the model's dictionary "
               "(`translit-ppa prepare/encode --model-dir MODEL_DIR`)")
        theirs = record.get("dict_sha256")
        if isinstance(theirs, str):
            if theirs not in data_dicts:
                raise TranslitDataError(f"dictionary mismatch: {conversion} records dict.txt sha256 {theirs[:12]}..., "
                                        f"the data's {data_dict} differs; {fix}")
            return
        theirs, ours = record.get("sentencepiece_sha256"), pairing.get("sentencepiece_sha256")
        if isinstance(theirs, str) and isinstance(ours, str):
            if theirs != ours:
                raise TranslitDataError(
                    f"vocabulary mismatch: {conversion} records sentencepiece sha256 {theirs[:12]}... but "
                    f"{fingerprint.pairing_path(data)} records {ours[:12]}... (the data was encoded with another "
                    f"model's sentencepiece and dict.txt); {fix}"
                )
            return
        logger.warning(
            "cannot verify that %s has the data's vocabulary: no dict.txt next to it%s; only the embedding size (%s "
            "rows) matches %s + <mask>; %s",
            path, " and its conversion.json records no fingerprint comparable with the data's" if record else
            " nor a conversion.json", rows if rows is not None else "?", data_dict,
            "put the model's dict.txt next to the checkpoint to check it",
        )

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
        from translit_plugin.checkpoint_compat import map_checkpoint

        try:
            recorded = (map_checkpoint(path).get("task_state") or {}).get(fingerprint.IDENTITY_KEY)
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


class LanguageResamplingDataset(ResamplingDataset):
    """fairseq's ``ResamplingDataset`` (a new weighted draw of pairs each epoch), made usable by fairseq's trainer.

    The base class stores its ``batch_by_size`` flag in an attribute of that name, which hides
    ``FairseqDataset.batch_by_size()``: fairseq's ``get_batch_iterator`` then calls a bool (``TypeError: 'bool' object
    is not callable``).  Here the flag is ``sort_by_length``, batching runs over the resampled indices (the base
    class would forward them to the wrapped dataset as if they were its own), and ``ordered_indices`` follows the
    task's ``--batch-order``: a permutation (``random``) or sorted by total length.
    """

    def __init__(self, dataset, weights, seed: int = 0, epoch: int = 1, sort_by_length: bool = False) -> None:
        super().__init__(dataset, weights=weights, replace=True, seed=seed, epoch=epoch)
        del self.batch_by_size  # the base class's flag; the method of that name is FairseqDataset's again
        self.sort_by_length = sort_by_length

    def ordered_indices(self) -> np.ndarray:
        """Called by fairseq under ``numpy_seed(seed + epoch)``: reproducible."""
        order = np.random.permutation(len(self))
        if not self.sort_by_length:
            return order
        return order[np.argsort(self.num_tokens_vec(order), kind="stable")]

    def batch_by_size(self, indices, max_tokens=None, max_sentences=None, required_batch_size_multiple=1):
        return FairseqDataset.batch_by_size(self, indices, max_tokens=max_tokens, max_sentences=max_sentences,
                                            required_batch_size_multiple=required_batch_size_multiple)

    def num_tokens_vec(self, indices: np.ndarray) -> np.ndarray:
        return self.dataset.num_tokens_vec(self._cur_indices.array[indices])

    def filter_indices_by_size(self, indices: np.ndarray, max_sizes):
        return indices, []


def _check_architecture(path: str, model_cfg) -> None:
    """The run's model must be the start checkpoint's network: the same sizes, activation and LayerNorm epsilon.

    Sizes that differ would fail later with a shape error; an epsilon that differs (multilingual-e5: 1e-12, fairseq's
    default: 1e-5) would load silently and change every hidden state, so both are refused here with the flags to pass.
    """
    from translit_plugin.models.arch_flags import as_flags, checkpoint_network, network

    try:
        theirs = checkpoint_network(path)
    except Exception as err:  # unreadable here: fairseq reports it when it loads the file
        logger.debug("could not read %s (%s); skipping the architecture check", path, err)
        return
    ours = network(model_cfg)
    differ = {name: value for name, value in theirs.items() if name in ours and ours[name] != value}
    if differ:
        what = ", ".join(f"{n} {t} (this run: {ours[n]})" for n, t in differ.items())
        raise TranslitDataError(
            f"{path} is a different network than this run builds: {what}; add {' '.join(as_flags(differ))} (all of "
            f"them: `python -m translit_plugin.models.arch_flags {path}`)"
        )


def _checkpoint_embedding_rows(path: str) -> int | None:
    """Number of token-embedding rows in a fairseq checkpoint, read lazily (memory-mapped), or None if unreadable."""
    from translit_plugin.checkpoint_compat import map_checkpoint

    try:
        state = map_checkpoint(path)
    except Exception as err:  # legacy (non-zip) format or an unreadable file: fairseq will report it
        logger.debug("could not memory-map %s (%s); skipping the vocabulary check", path, err)
        return None
    weights = (state.get("model") or {}).get(EMBED_KEY)
    return None if weights is None else int(weights.shape[0])



def _checkpoint_shapes(path: str) -> dict[str, tuple[int, ...]] | None:
    """``{name: shape}`` of a fairseq checkpoint's model tensors (memory-mapped, nothing read), or None if
    unreadable (fairseq reports that when it loads the file)."""
    from translit_plugin.checkpoint_compat import map_checkpoint

    try:
        model = map_checkpoint(path).get("model") or {}
    except Exception as err:
        logger.debug("could not memory-map %s (%s); skipping the shape check", path, err)
        return None
    return {k: tuple(v.shape) for k, v in model.items() if hasattr(v, "shape")}


def check_checkpoint_shapes(path: str, checkpoint: dict, model) -> None:
    """Every tensor ``checkpoint`` (``{name: tensor or shape}``) shares with ``model`` must have its shape; else one
    line naming the flag to set (``--max-positions`` for the position table) before fairseq fails to load it."""
    from translit_plugin.models.arch_flags import POSITIONS_KEY

    ours = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    theirs = {k: tuple(getattr(v, "shape", v)) for k, v in checkpoint.items()}
    differ = sorted(k for k in theirs.keys() & ours.keys() if theirs[k] != ours[k])
    if not differ:
        return
    if POSITIONS_KEY in differ:
        pad = getattr(model.encoder.sentence_encoder.embed_tokens, "padding_idx", 1)
        offset = pad + 1  # learned positions start after the padding id: 514 rows = 512 positions
        have, build = theirs[POSITIONS_KEY][0] - offset, ours[POSITIONS_KEY][0] - offset
        raise TranslitDataError(
            f"{path} has {have} positions ({theirs[POSITIONS_KEY][0]} rows of {POSITIONS_KEY}) but this run builds "
            f"{build}: add --max-positions {have} (--tokens-per-sample may stay at or below {have})"
        )
    shown = "; ".join(f"{k} {list(theirs[k])} (this run: {list(ours[k])})" for k in differ[:3])
    raise TranslitDataError(
        f"{path} is a different network than this run builds ({len(differ)} tensors differ: {shown}"
        f"{' ...' if len(differ) > 3 else ''}); add the flags `python -m translit_plugin.models.arch_flags {path}` "
        "prints"
    )
