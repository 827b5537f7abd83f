"""``translit_roberta``: fairseq RoBERTa that computes exactly what HF ``XLMRobertaForMaskedLM`` computes.

Differences from fairseq's own ``roberta`` model, all needed to be the *same network* as the HF checkpoint users start
from (Glot500 / XLM-R):

* The embedding output at padding positions is not zeroed (fairseq's ``TransformerEncoder`` zeroes it; HF does not),
  so every hidden state equals HF's, padding included.
* Position ids may be given explicitly (``positions=``), for the TLM ablation that restarts positions for the second
  segment.
* HF adds ``token_type_embeddings[0]`` to every token; conversion folds that row into every position row (exact for
  the outputs).  The folded row is kept in the buffer ``encoder.folded_token_type`` so ``export-hf`` can split it out
  again.
* ``extra["inner_states"]`` is always T x B x C, ``[0]`` = embedding output, ``[k]`` = output of layer ``k``.
* ``--layer-norm-eps`` (HF ``layer_norm_eps``; XLM-R/Glot500 1e-5, multilingual-e5 1e-12) is honoured by every
  LayerNorm, the LM head's included; it is part of the saved model config, so checkpoints keep it.
* The LM head's activation is always GELU (erf), as in HF's ``XLMRobertaLMHead``, whatever ``--activation-fn`` the
  encoder layers use.
"""

from __future__ import annotations

import logging

import torch
from fairseq import utils
from fairseq.models import register_model, register_model_architecture
from fairseq.models.roberta.model import RobertaEncoder, RobertaModel, base_architecture
from torch import Tensor

from translit_plugin.core.names import DEFAULT_MAX_LENGTH

logger = logging.getLogger(__name__)

#: fairseq's (and XLM-R's) LayerNorm epsilon; HF checkpoints may differ (multilingual-e5: 1e-12).
DEFAULT_LAYER_NORM_EPS = 1e-5


def set_layer_norm_eps(module: torch.nn.Module, eps: float) -> int:
    """Set ``eps`` on every LayerNorm under ``module`` (fairseq builds them with 1e-5); return how many."""
    n = 0
    for m in module.modules():
        if isinstance(m, torch.nn.LayerNorm) or (hasattr(m, "normalized_shape") and hasattr(m, "eps")):
            m.eps = eps
            n += 1
    return n


class TranslitRobertaEncoder(RobertaEncoder):
    """RoBERTa encoder with HF-identical embeddings, optional explicit positions and a token-type buffer."""

    def __init__(self, args, dictionary) -> None:
        super().__init__(args, dictionary)
        # The HF token-type row folded into the position rows at conversion (zeros for models trained from scratch).
        self.register_buffer("folded_token_type", torch.zeros(args.encoder_embed_dim), persistent=True)
        set_layer_norm_eps(self, float(getattr(args, "layer_norm_eps", DEFAULT_LAYER_NORM_EPS)))

    def build_lm_head(self, embed_dim, output_dim, activation_fn, weight):
        # HF's XLMRobertaLMHead applies erf-GELU whatever config.hidden_act says
        return super().build_lm_head(embed_dim, output_dim, "gelu", weight)

    def embed(self, src_tokens: Tensor, positions: Tensor | None = None) -> Tensor:
        """B x T token ids -> B x T x C embedding output (before dropout), HF semantics."""
        enc = self.sentence_encoder
        x = enc.embed_scale * enc.embed_tokens(src_tokens)
        if enc.embed_positions is not None:
            if positions is None:
                x = x + enc.embed_positions(src_tokens)
            else:
                if positions.shape != src_tokens.shape:
                    raise ValueError(f"positions {tuple(positions.shape)} != src_tokens {tuple(src_tokens.shape)}")
                # LearnedPositionalEmbedding.forward builds positions itself; index the table directly instead.
                x = x + torch.nn.functional.embedding(positions, enc.embed_positions.weight)
        if enc.layernorm_embedding is not None:
            x = enc.layernorm_embedding(x)
        return x

    def extract_features(
        self,
        src_tokens: Tensor,
        return_all_hiddens: bool = False,
        positions: Tensor | None = None,
        max_layer: int | None = None,
        **unused,
    ):
        """B x T ids -> (B x T x C features, {"inner_states": [T x B x C, ...]}).

        ``max_layer``: stop after that layer (a sentence vector from layer 8 of 12 needs only 8; the features are then
        that layer's output and the final encoder LayerNorm, which XLM-R does not have, is not applied).
        """
        enc = self.sentence_encoder
        padding_mask = src_tokens.eq(self.dictionary.pad())  # B x T
        has_pads = bool(padding_mask.any())
        x = enc.dropout_module(self.embed(src_tokens, positions))
        if enc.quant_noise is not None:
            x = enc.quant_noise(x)
        x = x.transpose(0, 1)  # B x T x C -> T x B x C
        inner_states = [x] if return_all_hiddens else None
        layers = enc.layers if max_layer is None else enc.layers[:max_layer]
        for layer in layers:
            x = layer(x, encoder_padding_mask=padding_mask if has_pads else None)
            if isinstance(x, tuple):  # layers built with return_fc give (x, fc_result)
                x = x[0]
            if return_all_hiddens:
                inner_states.append(x)
        if enc.layer_norm is not None and len(layers) == len(enc.layers):
            x = enc.layer_norm(x)
            if return_all_hiddens:
                inner_states[-1] = x
        features = x.transpose(0, 1)  # T x B x C -> B x T x C
        return features, {"inner_states": inner_states}

    def forward(
        self,
        src_tokens: Tensor,
        features_only: bool = False,
        return_all_hiddens: bool = False,
        masked_tokens: Tensor | None = None,
        positions: Tensor | None = None,
        max_layer: int | None = None,
        **unused,
    ):
        if max_layer is not None and not features_only:
            raise ValueError("max_layer stops the encoder early: only with features_only=True")
        x, extra = self.extract_features(
            src_tokens, return_all_hiddens=return_all_hiddens, positions=positions, max_layer=max_layer
        )
        if not features_only:
            x = self.output_layer(x, masked_tokens=masked_tokens)
        return x, extra


@register_model("translit_roberta")
class TranslitRobertaModel(RobertaModel):
    """XLM-R / Glot500 encoder for transliteration-based post-training (see module docstring)."""

    @classmethod
    def hub_models(cls) -> dict:
        return {}

    @staticmethod
    def add_args(parser) -> None:
        RobertaModel.add_args(parser)
        parser.add_argument(
            "--layer-norm-eps", type=float, metavar="EPS",
            help=f"epsilon of every LayerNorm (HF layer_norm_eps; default {DEFAULT_LAYER_NORM_EPS}, as XLM-R)",
        )  # fmt: skip

    @classmethod
    def build_model(cls, args, task):
        from omegaconf import OmegaConf

        if OmegaConf.is_config(args):
            OmegaConf.set_struct(args, False)
        _xlmr_defaults(args)  # fill what the chosen arch left unset (not its sizes: positions stay the arch's)
        if not utils.safe_hasattr(args, "max_positions"):
            if not utils.safe_hasattr(args, "tokens_per_sample"):
                args.tokens_per_sample = task.max_positions()
            args.max_positions = args.tokens_per_sample
        if getattr(args, "encoder_normalize_before", False):
            raise ValueError("translit_roberta reproduces XLM-R (post-LN); --encoder-normalize-before is not supported")
        encoder = TranslitRobertaEncoder(args, task.source_dictionary)
        if OmegaConf.is_config(args):
            OmegaConf.set_struct(args, True)
        return cls(args, encoder)

    @classmethod
    def build_for_dictionary(cls, model_cfg, dictionary, max_positions: int | None = None) -> TranslitRobertaModel:
        """The network ``model_cfg`` describes over ``dictionary``, outside training (random weights).

        ``max_positions`` defaults to the config's (else :data:`~translit_plugin.core.names.DEFAULT_MAX_LENGTH`).
        """
        if max_positions is None:
            max_positions = int(getattr(model_cfg, "max_positions", None) or DEFAULT_MAX_LENGTH)
        return cls.build_model(model_cfg, DictionaryTask(dictionary, max_positions))

    @classmethod
    def from_state(cls, state: dict, dictionary) -> TranslitRobertaModel:
        """The model a loaded fairseq checkpoint holds (``state["cfg"].model``, weights ``state["model"]``, strict)."""
        model_cfg = state["cfg"].model
        model = cls.build_for_dictionary(model_cfg, dictionary)
        model.load_state_dict(state["model"], strict=True, model_cfg=model_cfg)
        return model

    @classmethod
    def from_pretrained(cls, *args, **kwargs):
        """Not here: :func:`translit_plugin.hub.from_pretrained` loads a model with its tokenizer (fairseq's
        RoBERTa version would pick another tokenizer)."""
        raise NotImplementedError("load models with translit_plugin.hub.from_pretrained")


class DictionaryTask:
    """What :meth:`TranslitRobertaModel.build_model` needs from a fairseq task, without data: the dictionary and the
    positions limit."""

    def __init__(self, dictionary, max_positions: int) -> None:
        self.source_dictionary = dictionary
        self.target_dictionary = dictionary
        self._max_positions = max_positions

    def max_positions(self) -> int:
        return self._max_positions


def _xlmr_defaults(args) -> None:
    """What every ``translit_roberta`` arch shares with XLM-R: GELU, tied LM head, post-LN (RoBERTa defaults)."""
    args.activation_fn = getattr(args, "activation_fn", "gelu")
    if getattr(args, "layer_norm_eps", None) is None:
        args.layer_norm_eps = DEFAULT_LAYER_NORM_EPS
    args.untie_weights_roberta = getattr(args, "untie_weights_roberta", False)
    base_architecture(args)


@register_model_architecture("translit_roberta", "translit_roberta_base")
def translit_roberta_base(args) -> None:
    """XLM-R / Glot500 base: 12 layers, 768 hidden, 12 heads, FFN 3072, GELU, post-LN, 512 positions (514 rows).

    ``--max-positions`` defaults to 512 whatever ``--tokens-per-sample`` is, so a run with shorter training
    sequences still loads the checkpoint's 514 position rows.
    """
    if getattr(args, "max_positions", None) is None:
        args.max_positions = 512
    _xlmr_defaults(args)


@register_model_architecture("translit_roberta", "translit_roberta_large")
def translit_roberta_large(args) -> None:
    """XLM-R large: 24 layers, 1024 hidden, 16 heads, FFN 4096, 512 positions."""
    args.encoder_layers = getattr(args, "encoder_layers", 24)
    args.encoder_embed_dim = getattr(args, "encoder_embed_dim", 1024)
    args.encoder_ffn_embed_dim = getattr(args, "encoder_ffn_embed_dim", 4096)
    args.encoder_attention_heads = getattr(args, "encoder_attention_heads", 16)
    translit_roberta_base(args)


@register_model_architecture("translit_roberta", "translit_roberta_tiny")
def translit_roberta_tiny(args) -> None:
    """Tests and the CPU demo: 2 layers, 64 hidden, 4 heads, FFN 128; positions = ``--max-positions`` or else
    ``--tokens-per-sample``."""
    args.encoder_layers = getattr(args, "encoder_layers", 2)
    args.encoder_embed_dim = getattr(args, "encoder_embed_dim", 64)
    args.encoder_ffn_embed_dim = getattr(args, "encoder_ffn_embed_dim", 128)
    args.encoder_attention_heads = getattr(args, "encoder_attention_heads", 4)
    _xlmr_defaults(args)
