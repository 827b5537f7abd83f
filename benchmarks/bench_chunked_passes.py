#!/usr/bin/env python3
"""Training step with and without ``--encoder-chunk-tokens``: the same random batches, the same loss, less padding.

Random pairs (the reference's batches, which SEQ needs) are mostly padding: on the demo corpus ~75% of a 32-pair
batch's positions.  ``--encoder-chunk-tokens N`` runs every encoder pass in length-sorted chunks of at most N padded
tokens; the loss and gradient are those of one padded pass (tested in ``tests/test_criterion_reference.py``).  This
measures a full step (criterion forward + backward + Adam) of ``--terms`` on ``--batches`` random batches, each
variant on the same batches, alternating, ``--rounds`` times, and prints seconds per step and the ratio.

Defaults need ``make demo``'s output (the trimmed multilingual-e5-small and its data-bin).

    python benchmarks/bench_chunked_passes.py --terms paper      # MLM + MLM + SEQ + TLM
    python benchmarks/bench_chunked_passes.py --terms anchor     # the anchored term alone (the demo's setting)
"""

from __future__ import annotations

import argparse
import copy
import sys
import time
from pathlib import Path

import numpy as np
import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

TERMS = {
    "paper": {},
    "anchor": {"mlm_orig_weight": 0.0, "mlm_latn_weight": 0.0, "seq_weight": 0.0, "tlm_weight": 0.0,
               "anchor_weight": 1.0},
    "seq": {"mlm_orig_weight": 0.0, "mlm_latn_weight": 0.0, "tlm_weight": 0.0},
}  # fmt: skip


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default=str(REPO / "demo-out" / "e5-trim" / "model.pt"))
    p.add_argument("--data", default=str(REPO / "demo-out" / "prep" / "data-bin"))
    p.add_argument("--terms", choices=sorted(TERMS), default="paper")
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--batches", type=int, default=3)
    p.add_argument("--rounds", type=int, default=2)
    p.add_argument("--chunk-tokens", type=int, default=1024)
    p.add_argument("--threads", type=int, default=2)
    args = p.parse_args()
    torch.set_num_threads(args.threads)

    from fairseq import checkpoint_utils
    from omegaconf import OmegaConf

    import translit_plugin.plugin  # noqa: F401  (registers the components)
    from translit_plugin.criterions.mlm_seq_tlm import MlmSeqTlmCriterion
    from translit_plugin.tasks.translit_align import TranslitAlignConfig, TranslitAlignTask

    task = TranslitAlignTask.setup_task(OmegaConf.structured(TranslitAlignConfig(data=args.data, seed=1,
                                                                                 tokens_per_sample=128)))  # fmt: skip
    task.load_dataset("train")
    models, _ = checkpoint_utils.load_model_ensemble([args.model], task=task)
    base = models[0].train()
    ds = task.datasets["train"]
    rng = np.random.default_rng(0)
    batches = [ds.collater([ds[int(i)] for i in rng.choice(len(ds), args.batch_size, replace=False)])
               for _ in range(args.batches)]  # fmt: skip
    pad = task.source_dictionary.pad()
    padding = np.mean([float(b[s]["src_tokens"].eq(pad).float().mean()) for b in batches for s in ("orig", "latn")])
    extra = {"anchor_teacher": args.model} if args.terms == "anchor" else {}
    variants = {}
    for name, chunk in (("one padded pass", 0), (f"chunks of {args.chunk_tokens}", args.chunk_tokens)):
        model = copy.deepcopy(base)
        crit = MlmSeqTlmCriterion(task, encoder_chunk_tokens=chunk, **TERMS[args.terms], **extra)
        variants[name] = (model, crit, torch.optim.Adam(model.parameters(), lr=1e-5), [])
    for _ in range(args.rounds):
        for model, crit, opt, times in variants.values():
            for batch in batches:
                torch.manual_seed(0)  # same dropout in both variants
                start = time.perf_counter()
                loss, _, _ = crit(model, batch)
                loss.backward()
                opt.step()
                opt.zero_grad()
                times.append(time.perf_counter() - start)
    print(f"terms {args.terms}, {args.batches} batches of {args.batch_size} random pairs (orig/latn padding "
          f"{100 * padding:.0f}%), {args.rounds} rounds, {args.threads} threads")
    med = {name: float(np.median(v[3])) for name, v in variants.items()}
    for name, value in med.items():
        print(f"  {name:<20} {value:7.2f} s/step")
    first, second = med.values()
    print(f"  ratio (one pass / chunks): {first / second:.2f}x")


if __name__ == "__main__":
    main()
