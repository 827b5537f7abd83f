"""The fairseq side of a model directory: its saved config, the state-dict check and the checkpoint it is saved as."""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import TYPE_CHECKING

from . import ConversionError
from .keys import EMBED_KEY, VOCAB_KEYS, Dims

if TYPE_CHECKING:
    import torch

#: the package directory: fairseq's ``--user-dir``, recorded in every converted model's config
PLUGIN_DIR = Path(__file__).resolve().parents[1]


def fairseq_cfg(
    data_dir: Path,
    arch: str,
    dims: Dims,
    num_layers: int,
    heads: int,
    dropout: float,
    attn_dropout: float,
    layer_norm_eps: float = 1e-5,
    activation_fn: str = "gelu",
):
    """A complete fairseq config (as ``fairseq-train`` would save) for a converted model directory."""
    from fairseq import options
    from fairseq.dataclass.utils import convert_namespace_to_omegaconf

    import translit_plugin.plugin  # noqa: F401  (registers the arch)

    max_positions = dims.P - 2  # learned positions reserve padding_idx + 1 rows
    argv = [
        str(data_dir),
        "--user-dir", str(PLUGIN_DIR),
        "--task", "masked_lm",
        "--criterion", "masked_lm",
        "--arch", arch,
        "--tokens-per-sample", str(max_positions),
        "--max-positions", str(max_positions),
        "--encoder-layers", str(num_layers),
        "--encoder-embed-dim", str(dims.C),
        "--encoder-ffn-embed-dim", str(dims.F),
        "--encoder-attention-heads", str(heads),
        "--dropout", str(dropout),
        "--attention-dropout", str(attn_dropout),
        "--activation-dropout", "0.0",
        "--activation-fn", activation_fn,
        "--layer-norm-eps", repr(float(layer_norm_eps)),
        "--optimizer", "adam",
        "--cpu",
    ]  # fmt: skip
    parser = options.get_training_parser()
    args = options.parse_args_and_arch(parser, input_args=argv)
    with warnings.catch_warnings():  # hydra's deprecation chatter about fairseq's legacy config layout
        warnings.simplefilter("ignore", UserWarning)
        return convert_namespace_to_omegaconf(args)


def verify_state_dict(cfg, state: dict[str, torch.Tensor]) -> None:
    """Every key and shape of ``state`` must be what ``translit_roberta`` built from ``cfg`` expects.

    The reference model is built with a 5-entry dictionary (specials + ``<mask>``) so checking Glot500's 401k-row
    embedding costs no second copy of it; vocabulary-sized dimensions are compared against the state's own ``V``.
    """
    from fairseq.data import Dictionary

    from translit_plugin.models.translit_roberta import TranslitRobertaModel

    small = Dictionary()
    small.add_symbol("<mask>")
    model = TranslitRobertaModel.build_for_dictionary(cfg.model, small, int(cfg.model.max_positions))
    vocab = state[EMBED_KEY].shape[0]
    expected = {k: tuple(vocab if d == len(small) and k in VOCAB_KEYS else d for d in v.shape)
                for k, v in model.state_dict().items()}  # fmt: skip
    got = {k: tuple(v.shape) for k, v in state.items()}
    missing, unexpected = sorted(set(expected) - set(got)), sorted(set(got) - set(expected))
    wrong = [f"{k}: {got[k]} != {expected[k]}" for k in sorted(set(got) & set(expected)) if got[k] != expected[k]]
    if missing or unexpected or wrong:
        raise ConversionError(
            f"state dict does not fit translit_roberta: missing {missing}, unexpected {unexpected}, shapes {wrong}"
        )


def new_checkpoint(cfg, state: dict[str, torch.Tensor]) -> dict:
    """A fairseq checkpoint holding ``state`` as a model that has not been trained yet (what ``model.pt`` holds)."""
    return {
        "cfg": cfg,
        "model": state,
        "args": None,
        "optimizer_history": [
            {"criterion_name": "MaskedLmLoss", "optimizer_name": "None", "lr_scheduler_state": {}, "num_updates": 0}
        ],
        "last_optimizer_state": None,
        "extra_state": {"train_iterator": {"epoch": 1, "iterations_in_epoch": 0, "version": 2}},
    }


def state_sha256(state: dict[str, torch.Tensor]) -> str:
    """SHA-256 of a state dict's content: each tensor's name, dtype, shape and bytes, in name order.

    What identity checks compare (with the tokenizer's hash) instead of a checkpoint file's bytes, which also hold
    its config (paths, versions): a re-conversion of the same weights has the same content hash."""
    import hashlib

    import torch

    h = hashlib.sha256()
    for name in sorted(state):
        t = state[name]
        if not torch.is_tensor(t):
            continue
        t = t.detach().cpu().contiguous()
        h.update(f"{name}\0{t.dtype}\0{tuple(t.shape)}\0".encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return h.hexdigest()


def checkpoint_content_sha256(path: str | Path) -> str:
    """:func:`state_sha256` of a fairseq checkpoint file's model tensors."""
    from translit_plugin.checkpoint_compat import load_fairseq_checkpoint

    return state_sha256(load_fairseq_checkpoint(path)["model"])


def num_updates(checkpoint: dict) -> int | None:
    """The update count a fairseq checkpoint was saved at (None if it does not say)."""
    return (checkpoint.get("optimizer_history") or [{}])[-1].get("num_updates")
