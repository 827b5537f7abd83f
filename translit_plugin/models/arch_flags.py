"""``python -m translit_plugin.models.arch_flags MODEL.pt``: the ``fairseq-train`` flags that rebuild its network.

A run started with ``--finetune-from-model`` builds the model from the command line, not from the checkpoint, so
the start model's sizes, activation and LayerNorm epsilon must be repeated there (multilingual-e5-small: 384 hidden,
FFN 1536, eps 1e-12; Glot500/XLM-R base: fairseq's defaults).  The recipes call this; the task refuses a mismatch.
"""

from __future__ import annotations

import sys

#: model options that change what the network computes (the task checks the same list)
ARCH_FIELDS = ("encoder_layers", "encoder_embed_dim", "encoder_ffn_embed_dim", "encoder_attention_heads",
               "layer_norm_eps", "activation_fn")  # fmt: skip


def arch_flags(checkpoint: str) -> list[str]:
    """``--encoder-layers 12 --encoder-embed-dim 384 ...`` read from a fairseq checkpoint's saved model config."""
    import torch

    import translit_plugin.checkpoint_compat  # noqa: F401  (weights-only allow-list for fairseq's config classes)

    state = torch.load(checkpoint, map_location="cpu", mmap=True)
    model = state["cfg"]["model"]
    flags: list[str] = []
    for name in ARCH_FIELDS:
        value = getattr(model, name, None)
        if value is None:
            continue
        flags += [f"--{name.replace('_', '-')}", repr(float(value)) if name == "layer_norm_eps" else str(value)]
    return flags


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit("usage: python -m translit_plugin.models.arch_flags MODEL_DIR/model.pt")
    print(" ".join(arch_flags(sys.argv[1])))
