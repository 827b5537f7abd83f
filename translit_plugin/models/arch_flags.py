"""``python -m translit_plugin.models.arch_flags MODEL.pt``: the ``fairseq-train`` flags that rebuild its network.

A run started with ``--finetune-from-model`` builds the model from the command line, not from the checkpoint, so
the start model's sizes, positions, activation and LayerNorm epsilon must be repeated there (multilingual-e5-small:
384 hidden, FFN 1536, eps 1e-12; Glot500/XLM-R base: fairseq's defaults).  The recipes call this; the task refuses a
mismatch.
"""

from __future__ import annotations

import sys

from translit_plugin.models.translit_roberta import DEFAULT_LAYER_NORM_EPS

#: model options that change what the network computes (the task checks the same list)
ARCH_FIELDS = ("encoder_layers", "encoder_embed_dim", "encoder_ffn_embed_dim", "encoder_attention_heads",
               "layer_norm_eps", "activation_fn")  # fmt: skip


def network(model_cfg) -> dict:
    """The ``ARCH_FIELDS`` a model config sets (LayerNorm eps as a float; configs from before the option: fairseq's
    1e-5)."""
    values = {name: getattr(model_cfg, name, None) for name in ARCH_FIELDS}
    values["layer_norm_eps"] = float(values["layer_norm_eps"] or DEFAULT_LAYER_NORM_EPS)
    return {name: value for name, value in values.items() if value is not None}


def checkpoint_network(checkpoint: str) -> dict:
    """:func:`network` of a fairseq checkpoint's saved model config ({} when it saved none)."""
    from translit_plugin.checkpoint_compat import map_checkpoint

    state = map_checkpoint(checkpoint)
    model = getattr(state.get("cfg"), "model", None) if state.get("cfg") is not None else None
    return network(model) if model is not None else {}


def as_flags(values: dict) -> list[str]:
    """``{"encoder_embed_dim": 384, ...}`` -> ``["--encoder-embed-dim", "384", ...]``."""
    flags: list[str] = []
    for name, value in values.items():
        flags += [f"--{name.replace('_', '-')}", repr(value) if isinstance(value, float) else str(value)]
    return flags


#: the learned position table: ``max_positions + padding_idx + 1`` rows (XLM-R: 514 for 512 positions)
POSITIONS_KEY = "encoder.sentence_encoder.embed_positions.weight"
POSITION_OFFSET = 2  # padding_idx (1) + 1: the first position row a token uses


def checkpoint_positions(checkpoint: str) -> int | None:
    """The number of positions of a fairseq checkpoint's position table (None without one)."""
    from translit_plugin.checkpoint_compat import map_checkpoint

    table = (map_checkpoint(checkpoint).get("model") or {}).get(POSITIONS_KEY)
    return None if table is None else int(table.shape[0]) - POSITION_OFFSET


def arch_flags(checkpoint: str) -> list[str]:
    """``--encoder-layers 12 --encoder-embed-dim 384 ... --max-positions 512`` read from a fairseq checkpoint's saved
    model config and position table (without ``--max-positions`` a run builds ``--tokens-per-sample`` positions)."""
    values = checkpoint_network(checkpoint)
    positions = checkpoint_positions(checkpoint)
    if positions is not None:
        values["max_positions"] = positions
    return as_flags(values)


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit("usage: python -m translit_plugin.models.arch_flags MODEL_DIR/model.pt")
    print(" ".join(arch_flags(sys.argv[1])))
