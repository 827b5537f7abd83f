"""Training throughput: ``fairseq`` Trainer + ``translit_align`` / ``mlm_seq_tlm`` vs the HF-Transformers way, one run.

Both sides train the same objective (MLM on the original, MLM on the Latin transliteration, SEQ on layer ``--layers``
mean-pooled states, TLM on the concatenated pair), the same random XLM-R-shaped model (``--layers`` x ``--hidden``,
vocabulary of the data's dictionary), on the same pairs, with AdamW (lr 2e-5, wd 0.01), linear decay, gradient
clipping at 1.0, dropout 0.1 and the same number of torch threads, on CPU.

* fairseq side: the real components, driven like ``fairseq_cli/train.py`` does: ``options.parse_args_and_arch`` with
  ``--user-dir translit_plugin``, ``fairseq.trainer.Trainer``, its epoch iterator (``--batch-size``, 0 workers) and
  ``trainer.train_step``.  Data: a data-bin holding ``--pairs`` pairs drawn from ``--data``.
* HF side, written the way the paper's code is: the HF tokenizer (``--hf-dir``) on the raw text of the same pairs
  (decoded from the data-bin, so both sides see the same sentences), a collator that pads each batch and masks with
  ``DataCollatorForLanguageModeling.torch_mask_tokens``, a shuffled ``DataLoader``, three separate
  ``XLMRobertaForMaskedLM`` forwards per step (orig, Latin, TLM; ``labels=`` so the LM head runs on every position)
  and a Trainer-style loop (``clip_grad_norm_``, ``AdamW``, linear schedule).

The two loops alternate in blocks of ``--block`` steps so both share the machine's noise; each side makes ``--epochs``
passes over the pairs after ``--warmup`` untimed steps.  Output: pairs/s, tokens/s (non-padding tokens of the three
streams), padding share, and the ratio fairseq / HF.  Tokenization of the raw text is done once before timing
(like ``datasets.map``) and reported separately.

    python benchmarks/bench_train_throughput.py --pairs 800 --layers 4 --hidden 256 --threads 1
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import random
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

logger = logging.getLogger("bench_train_throughput")
DEFAULT_DATA = REPO / "demo-tiny-out" / "prep" / "data-bin"
DEFAULT_HF = REPO / "demo-tiny-out" / "start-hf"


# ---------------------------------------------------------------------------------------------------------- data
def subset_data_bin(src: Path, out: Path, n: int, seed: int) -> tuple[list[str], list[str]]:
    """Copy ``n`` random train pairs of ``src`` into a new data-bin ``out``; return their decoded (orig, latn) text."""
    from fairseq.data import Dictionary, data_utils, indexed_dataset

    dictionary = Dictionary.load(str(src / "orig" / "dict.txt"))
    sides = {s: data_utils.load_indexed_dataset(str(src / s / "train"), dictionary) for s in ("orig", "latn")}
    total = len(sides["orig"])
    idx = np.random.RandomState(seed).choice(total, size=min(n, total), replace=False)
    texts = {}
    for side, ds in sides.items():
        (out / side).mkdir(parents=True, exist_ok=True)
        shutil.copy(src / side / "dict.txt", out / side / "dict.txt")
        builder = indexed_dataset.make_builder(str(out / side / "train.bin"), impl="mmap", vocab_size=len(dictionary))
        texts[side] = []
        for i in idx:
            item = ds[int(i)]
            builder.add_item(item)
            # the binaries hold pieces + </s>; decode the pieces back to raw text for the HF tokenizer
            texts[side].append(dictionary.string(item[:-1], bpe_symbol="sentencepiece"))
        builder.finalize(str(out / side / "train.idx"))
    return texts["orig"], texts["latn"]


# -------------------------------------------------------------------------------------- shared by the CPU benchmarks
def common_arguments(parser: argparse.ArgumentParser, pairs: int, pairs_help: str) -> None:
    """The options every CPU training benchmark shares: data, model size, batch, threads, seed, JSON output."""
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA, help="prepared data-bin (default: the demo's)")
    parser.add_argument("--pairs", type=int, default=pairs, help=pairs_help)
    parser.add_argument("--layers", type=int, default=4)
    parser.add_argument("--hidden", type=int, default=256)
    parser.add_argument("--batch-size", type=int, default=16, help="pairs per update (the paper: 16 per GPU)")
    parser.add_argument("--threads", type=int, default=1, help="torch threads")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--json", type=Path, default=None, help="also write the results here")
    parser.add_argument("--batch-order", default="random", choices=["random", "length"],
                        help="fairseq side: the task's --batch-order (default: random, the reference's batches)")


def start_cpu_benchmark(args, log: logging.Logger, hf_dir: Path | None = None) -> bool:
    """Logging, the input check (``args.data``, and ``hf_dir`` when given) and ``args.threads``; False if inputs
    are missing (the caller exits with 2)."""
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    for name in ("fairseq", "translit_plugin"):
        logging.getLogger(name).setLevel(logging.WARNING)
    if not (args.data / "orig" / "train.bin").is_file():
        log.error("need a prepared data-bin at %s: run `make demo` first, or pass --data", args.data)
        return False
    if hf_dir is not None and not (hf_dir / "tokenizer_config.json").is_file():
        log.error("need the HF model directory matching --data (%s): run `make demo` first, or pass --hf-dir", hf_dir)
        return False
    torch.set_num_threads(args.threads)
    return True


def run_interleaved(sides: dict, epochs: int, block: int) -> dict:
    """Alternate ``block`` steps of each side (objects with ``restart()`` and ``step()``) until each has made
    ``epochs`` passes; per side: pairs, tokens, padded tokens, steps, seconds and the derived rates."""
    totals = {n: {"pairs": 0, "tokens": 0, "padded": 0, "steps": 0, "seconds": 0.0} for n in sides}
    for _ in range(epochs):
        for side in sides.values():
            side.restart()
        live = set(sides)
        while live:
            for name in list(sides):
                if name not in live:
                    continue
                for _ in range(block):
                    t = time.perf_counter()
                    r = sides[name].step()
                    dt = time.perf_counter() - t
                    if r is None:
                        live.discard(name)
                        break
                    tot = totals[name]
                    tot["seconds"] += dt
                    tot["steps"] += 1
                    tot["pairs"] += r[0]
                    tot["tokens"] += r[1]
                    tot["padded"] += r[2]
    for tot in totals.values():
        tot["pairs_per_s"] = tot["pairs"] / tot["seconds"]
        tot["tokens_per_s"] = tot["tokens"] / tot["seconds"]
        tot["padding"] = 1 - tot["tokens"] / tot["padded"]
    return totals


# -------------------------------------------------------------------------------------------------- fairseq side
class FairseqSide:
    """``fairseq.trainer.Trainer`` over the task's own epoch iterator, as ``fairseq_cli/train.py`` runs it."""

    def __init__(self, data: Path, args) -> None:
        from fairseq import options, tasks
        from fairseq.dataclass.utils import convert_namespace_to_omegaconf
        from fairseq.trainer import Trainer

        h = args.hidden
        argv = [
            str(data), "--user-dir", str(REPO / "translit_plugin"), "--task", "translit_align",
            "--criterion", "mlm_seq_tlm", "--arch", "translit_roberta_base", "--encoder-layers", str(args.layers),
            "--encoder-embed-dim", str(h), "--encoder-ffn-embed-dim", str(4 * h),
            "--encoder-attention-heads", str(max(h // 64, 1)), "--dropout", "0.1", "--attention-dropout", "0.1",
            "--seq-layer", str(args.layers), "--optimizer", "adam", "--adam-betas", "(0.9,0.999)",
            "--adam-eps", "1e-8", "--weight-decay", "0.01", "--lr", "2e-5", "--lr-scheduler", "polynomial_decay",
            "--total-num-update", "100000", "--clip-norm", "1.0", "--batch-size", str(args.batch_size),
            "--num-workers", "0", "--seed", str(args.seed), "--cpu", "--disable-validation", "--no-save",
            "--batch-order", args.batch_order,
        ]
        parser = options.get_training_parser()
        cfg = convert_namespace_to_omegaconf(options.parse_args_and_arch(parser, input_args=argv))
        self.task = tasks.setup_task(cfg.task)
        model = self.task.build_model(cfg.model)
        criterion = self.task.build_criterion(cfg.criterion)
        self.trainer = Trainer(cfg, self.task, model, criterion)
        self.epoch_itr = self.trainer.get_train_iterator(epoch=1, load_dataset=True)
        self.params = sum(p.numel() for p in model.parameters())
        self.itr = None

    def restart(self) -> None:
        self.itr = self.epoch_itr.next_epoch_itr(shuffle=True)

    def step(self) -> tuple[int, int, int] | None:
        """One update; (pairs, non-padding tokens, padded tokens) or None at the end of the epoch."""
        from fairseq import metrics

        try:
            sample = next(self.itr)
        except StopIteration:
            return None
        with metrics.aggregate("train_inner"):
            self.trainer.train_step([sample])
        padded = sum(sample[s]["src_tokens"].numel() for s in ("orig", "latn", "tlm"))
        return sample["nsentences"], sample["ntokens"], padded


# ------------------------------------------------------------------------------------------------------- HF side
class HFCollator:
    """The paper's style: pad each stream of the batch, build TLM as ``ids_A + ids_B[1:]``, mask each stream."""

    def __init__(self, tokenizer, max_length: int, seed: int) -> None:
        from transformers import DataCollatorForLanguageModeling

        self.tok = tokenizer
        self.max_length = max_length
        self.mlm = DataCollatorForLanguageModeling(tokenizer, mlm_probability=0.15, return_tensors="pt")
        self.rng = random.Random(seed)

    def _stream(self, ids: list[list[int]]) -> dict:
        batch = self.tok.pad({"input_ids": ids}, return_tensors="pt")
        special = torch.tensor([self.tok.get_special_tokens_mask(x, already_has_special_tokens=True) for x in
                                batch["input_ids"].tolist()], dtype=torch.bool)
        inputs, labels = self.mlm.torch_mask_tokens(batch["input_ids"].clone(), special_tokens_mask=special)
        return {"input_ids": inputs, "attention_mask": batch["attention_mask"], "labels": labels,
                "special_tokens_mask": special}

    def __call__(self, examples: list[dict]) -> dict:
        tlm = []
        for ex in examples:
            a, b = (ex["orig"], ex["latn"]) if self.rng.random() < 0.5 else (ex["latn"], ex["orig"])
            tlm.append((a + b[1:])[: self.max_length])
        return {"orig": self._stream([ex["orig"] for ex in examples]),
                "latn": self._stream([ex["latn"] for ex in examples]), "tlm": self._stream(tlm)}


def mean_pool(hidden: torch.Tensor, batch: dict) -> torch.Tensor:
    """B x T x C -> B x C: mean over tokens that are neither special nor padding (reference launch: layer 8, mean)."""
    keep = (~batch["special_tokens_mask"] & batch["attention_mask"].bool()).unsqueeze(-1).float()
    return (hidden.float() * keep).sum(1) / keep.sum(1).clamp(min=1.0)


def nt_xent(o: torch.Tensor, latn: torch.Tensor) -> torch.Tensor:
    """Reference SEQ: rows [o_1, l_1, o_2, l_2, ...], dot product, tau 1, diagonal out, mean CE * 0.5."""
    g = torch.stack([o, latn], dim=1).reshape(-1, o.shape[1])  # 2N x C, interleaved
    s = g @ g.T
    s = s.masked_fill(torch.eye(len(g), dtype=torch.bool), float("-inf"))
    target = torch.arange(len(g)) ^ 1  # row 2i <-> 2i+1
    return torch.nn.functional.cross_entropy(s.float(), target) * 0.5


class HFSide:
    """``XLMRobertaForMaskedLM`` + tokenizer + per-batch padding collator + three forwards + Trainer-style loop."""

    def __init__(self, orig: list[str], latn: list[str], args) -> None:
        from transformers import AutoTokenizer, XLMRobertaConfig, XLMRobertaForMaskedLM, get_linear_schedule_with_warmup

        self.tok = AutoTokenizer.from_pretrained(str(args.hf_dir))
        t = time.perf_counter()
        enc_o = self.tok(orig, truncation=True, max_length=args.max_length)["input_ids"]
        enc_l = self.tok(latn, truncation=True, max_length=args.max_length)["input_ids"]
        self.tokenize_s = time.perf_counter() - t
        self.examples = [{"orig": a, "latn": b} for a, b in zip(enc_o, enc_l)]
        h = args.hidden
        config = XLMRobertaConfig(
            vocab_size=len(self.tok), hidden_size=h, num_hidden_layers=args.layers,
            num_attention_heads=max(h // 64, 1), intermediate_size=4 * h, max_position_embeddings=514,
            type_vocab_size=1, layer_norm_eps=1e-5, hidden_dropout_prob=0.1, attention_probs_dropout_prob=0.1,
            pad_token_id=self.tok.pad_token_id, bos_token_id=self.tok.bos_token_id, eos_token_id=self.tok.eos_token_id,
        )
        torch.manual_seed(args.seed)
        self.model = XLMRobertaForMaskedLM(config).train()
        self.params = sum(p.numel() for p in self.model.parameters())
        self.seq_layer = args.layers
        decay = [p for n, p in self.model.named_parameters() if not any(k in n for k in ("bias", "LayerNorm"))]
        rest = [p for n, p in self.model.named_parameters() if any(k in n for k in ("bias", "LayerNorm"))]
        self.opt = torch.optim.AdamW([{"params": decay, "weight_decay": 0.01}, {"params": rest, "weight_decay": 0.0}],
                                     lr=2e-5, betas=(0.9, 0.999), eps=1e-8)
        self.sched = get_linear_schedule_with_warmup(self.opt, 0, 100000)
        collate = HFCollator(self.tok, args.max_length, args.seed)
        if args.hf_batching == "random":  # the reference: Trainer's default shuffled, unsorted batches
            self.loader = torch.utils.data.DataLoader(
                self.examples, batch_size=args.batch_size, shuffle=True, num_workers=0, collate_fn=collate,
                generator=torch.Generator().manual_seed(args.seed),
            )
        else:  # an ablation: batches of similar length, like the fairseq side (cf. Trainer's group_by_length)
            self.loader = torch.utils.data.DataLoader(
                self.examples, batch_sampler=self._length_batches(args.batch_size, args.seed), num_workers=0,
                collate_fn=collate,
            )
        self.itr = None

    def _length_batches(self, batch_size: int, seed: int) -> list[list[int]]:
        rng = np.random.RandomState(seed)
        order = rng.permutation(len(self.examples))
        lengths = np.array([len(ex["orig"]) + len(ex["latn"]) for ex in self.examples])
        order = order[np.argsort(lengths[order], kind="mergesort")]
        batches = [order[i: i + batch_size].tolist() for i in range(0, len(order), batch_size)]
        return [batches[i] for i in rng.permutation(len(batches))]

    def restart(self) -> None:
        self.itr = iter(self.loader)

    def step(self) -> tuple[int, int, int] | None:
        try:
            batch = next(self.itr)
        except StopIteration:
            return None
        out = {}
        for name in ("orig", "latn", "tlm"):  # three separate forwards, as the reference code does
            b = batch[name]
            out[name] = self.model(input_ids=b["input_ids"], attention_mask=b["attention_mask"], labels=b["labels"],
                                   output_hidden_states=name != "tlm")
        seq = nt_xent(mean_pool(out["orig"].hidden_states[self.seq_layer], batch["orig"]),
                      mean_pool(out["latn"].hidden_states[self.seq_layer], batch["latn"]))
        loss = out["orig"].loss + out["latn"].loss + out["tlm"].loss + seq
        loss.backward()
        torch.nn.utils.clip_grad_norm_(self.model.parameters(), 1.0)
        self.opt.step()
        self.sched.step()
        self.model.zero_grad(set_to_none=True)
        streams = [batch[s] for s in ("orig", "latn", "tlm")]
        return (len(batch["orig"]["input_ids"]), sum(int(s["attention_mask"].sum()) for s in streams),
                sum(s["input_ids"].numel() for s in streams))


# ---------------------------------------------------------------------------------------------------------- main
def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    common_arguments(parser, 800, "pairs drawn from --data's train split")
    parser.add_argument("--hf-dir", type=Path, default=DEFAULT_HF,
                        help="HF model directory whose tokenizer matches --data's dict.txt (default: the demo's)")
    parser.add_argument("--max-length", type=int, default=512)
    parser.add_argument("--epochs", type=int, default=1, help="timed passes over the pairs, per side")
    parser.add_argument("--warmup", type=int, default=3, help="untimed steps per side first")
    parser.add_argument("--block", type=int, default=5, help="steps per side before switching to the other")
    parser.add_argument("--hf-batching", default="random", choices=["random", "length"],
                        help="HF side: 'random' batches (the reference) or length-sorted ones (ablation)")
    args = parser.parse_args(argv)
    if not start_cpu_benchmark(args, logger, hf_dir=args.hf_dir):
        return 2
    load0 = os.getloadavg()

    with tempfile.TemporaryDirectory() as tmp:
        data = Path(tmp) / "data-bin"
        orig, latn = subset_data_bin(args.data, data, args.pairs, args.seed)
        sides = {"fairseq": FairseqSide(data, args), "hf": HFSide(orig, latn, args)}
        if sides["fairseq"].params != sides["hf"].params:
            logger.info("parameters: fairseq %d, HF %d (HF adds a token-type row and the LM-head's own bias layout)",
                        sides["fairseq"].params, sides["hf"].params)
        for side in sides.values():  # warm-up on a throw-away pass
            side.restart()
            for _ in range(args.warmup):
                side.step()
        totals = run_interleaved(sides, args.epochs, args.block)
        tokenize_s = sides["hf"].tokenize_s
    load1 = os.getloadavg()

    f, h = totals["fairseq"], totals["hf"]
    ratio = f["pairs_per_s"] / h["pairs_per_s"]
    logger.info("model %d layers x %d hidden (%d params), vocab %d, %d pairs x %d epoch(s), %d pairs/update, "
                "%d thread(s), interleaved blocks of %d steps, HF batches %s", args.layers, args.hidden,
                sides["fairseq"].params, len(sides["fairseq"].task.dictionary), f["pairs"] // args.epochs,
                args.epochs, args.batch_size, torch.get_num_threads(), args.block, args.hf_batching)
    for name, tot in totals.items():
        logger.info("%-8s %4d steps %7.1f s | %6.2f pairs/s | %8.0f tokens/s | padding %4.1f%%", name, tot["steps"],
                    tot["seconds"], tot["pairs_per_s"], tot["tokens_per_s"], 100 * tot["padding"])
    logger.info("HF tokenization of the raw pairs (once, untimed above): %.2f s", tokenize_s)
    logger.info("fairseq / HF throughput: %.2fx (target >= 1.5x, stretch 2x)", ratio)
    logger.info("load average before %.2f %.2f %.2f, after %.2f %.2f %.2f (%d cores)", *load0, *load1, os.cpu_count())
    if args.json:
        args.json.write_text(json.dumps({"args": {k: str(v) for k, v in vars(args).items()}, "results": totals,
                                         "ratio": ratio, "load_before": load0, "load_after": load1}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
