#!/usr/bin/env python3
"""Where would half precision overflow?  One real batch of the paper's four terms in float16 / bfloat16 on CPU.

The model (``--model``, e.g. multilingual-e5-small trimmed by ``make demo``: ``demo-out/e5-trim/model.pt``) is cast
to ``--dtype`` whole, as fairseq's ``--fp16`` does, and a batch of ``--pairs`` random pairs of ``--data`` goes through
``mlm_seq_tlm`` forward and backward with the loss multiplied by ``--scale`` (fairseq's initial loss scale: 128).
Printed: the loss terms, the first module whose output or output gradient is not finite (if any), the largest
forward outputs and output gradients by module, and the scaled gradient norm.  Run on demand; not part of CI.

    python benchmarks/probe_precision.py --model demo-out/e5-trim/model.pt --data demo-out/prep/data-bin --dtype fp16
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", required=True, help="fairseq checkpoint (model.pt of a model directory)")
    p.add_argument("--data", required=True, help="data-bin the model's dictionary binarized")
    p.add_argument("--dtype", choices=("fp16", "bf16", "fp32"), default="fp16")
    p.add_argument("--scale", type=float, default=128.0, help="loss scale (fairseq's --fp16-init-scale: 128)")
    p.add_argument("--pairs", type=int, default=16)
    p.add_argument("--seq-layer", type=int, default=8)
    p.add_argument("--threads", type=int, default=1)
    args = p.parse_args()
    torch.set_num_threads(args.threads)

    from fairseq import checkpoint_utils
    from omegaconf import OmegaConf

    import translit_plugin.plugin  # noqa: F401  (registers the components)
    from translit_plugin.criterions.mlm_seq_tlm import MlmSeqTlmCriterion
    from translit_plugin.tasks.translit_align import TranslitAlignConfig, TranslitAlignTask

    dtype = {"fp16": torch.float16, "bf16": torch.bfloat16, "fp32": torch.float32}[args.dtype]
    task = TranslitAlignTask.setup_task(OmegaConf.structured(TranslitAlignConfig(data=args.data, seed=1)))
    task.load_dataset("train")
    models, _ = checkpoint_utils.load_model_ensemble([args.model], task=task)
    model = models[0].to(dtype).train()
    crit = MlmSeqTlmCriterion(task, seq_layer=args.seq_layer)
    ds = task.datasets["train"]
    batch = ds.collater([ds[int(i)] for i in np.random.default_rng(0).choice(len(ds), args.pairs)])

    first_bad: list = []
    out_max: dict[str, float] = {}
    grad_max: dict[str, float] = {}

    def watch(name: str, store: dict, where: str):
        def hook(module, inputs, outputs):
            for t in outputs if isinstance(outputs, tuple) else (outputs,):
                if torch.is_tensor(t) and t.is_floating_point():
                    value = float(t.detach().abs().float().max())
                    store[name] = max(store.get(name, 0.0), value)
                    if not np.isfinite(value) and not first_bad:
                        first_bad.append(f"{where} of {name}")
        return hook

    for name, module in model.named_modules():
        if name and not list(module.children()):
            module.register_forward_hook(watch(name, out_max, "output"))
            module.register_full_backward_hook(watch(name, grad_max, "output gradient"))
    loss, _, log = crit(model, batch)
    (loss * args.scale).backward()
    norm = torch.sqrt(sum((q.grad.float() ** 2).sum() for q in model.parameters() if q.grad is not None))
    print(f"dtype {args.dtype}, loss scale {args.scale}, {args.pairs} pairs: loss {loss.item():.4f}")
    print("first non-finite:", first_bad[0] if first_bad else "none")
    print("largest outputs:", ", ".join(f"{k} {v:.1f}" for k, v in sorted(out_max.items(), key=lambda kv: -kv[1])[:5]))
    print("largest output gradients (scaled):",
          ", ".join(f"{k} {v:.1f}" for k, v in sorted(grad_max.items(), key=lambda kv: -kv[1])[:5]))  # fmt: skip
    print(f"scaled gradient norm: {float(norm):.1f}")


if __name__ == "__main__":
    main()
