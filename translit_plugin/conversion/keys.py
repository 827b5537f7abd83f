"""The HF <-> fairseq tensor table, one declarative list for both directions.

Each row is (HF name without the ``roberta.`` prefix, fairseq name, shape in symbols): ``V`` vocabulary rows,
``P`` position rows, ``C`` hidden size, ``F`` FFN size; every tensor is checked against the sizes the config gives
before anything is written.  Special cases:

* HF adds ``token_type_embeddings[0]`` to every token; fairseq RoBERTa has no token types.  The row is folded into
  **every position row** (not into the word embeddings, which are tied to the LM head); outputs are unchanged.  The
  row is also kept in the buffer :data:`FOLDED_TT_KEY` so export can split it out again.
* The LM head's output projection is tied to the word embeddings in both frameworks: one tensor, two names
  (:data:`~translit_plugin.core.names.EMBED_KEY`, :data:`HEAD_W_KEY`).
"""

from __future__ import annotations

from dataclasses import dataclass

from translit_plugin.core.names import EMBED_KEY

Row = tuple[str, str, tuple[str, ...]]

FS = "encoder.sentence_encoder."  # EMBED_KEY (core.names) is FS + "embed_tokens.weight"
POS_KEY = FS + "embed_positions.weight"
HEAD_W_KEY = "encoder.lm_head.weight"  # the LM output projection: the same tensor as EMBED_KEY
HEAD_B_KEY = "encoder.lm_head.bias"
#: the tensors with one row per vocabulary entry
VOCAB_KEYS = (EMBED_KEY, HEAD_W_KEY, HEAD_B_KEY)
FOLDED_TT_KEY = "encoder.folded_token_type"
TOKEN_TYPE_KEY = "embeddings.token_type_embeddings.weight"
WORD_EMB_HF = "embeddings.word_embeddings.weight"

BODY_KEYS: list[Row] = [
    (WORD_EMB_HF, EMBED_KEY, ("V", "C")),
    ("embeddings.position_embeddings.weight", POS_KEY, ("P", "C")),
    ("embeddings.LayerNorm.weight", FS + "layernorm_embedding.weight", ("C",)),
    ("embeddings.LayerNorm.bias", FS + "layernorm_embedding.bias", ("C",)),
]
LAYER_KEYS: list[Row] = [
    ("attention.self.query.weight", "self_attn.q_proj.weight", ("C", "C")),
    ("attention.self.query.bias", "self_attn.q_proj.bias", ("C",)),
    ("attention.self.key.weight", "self_attn.k_proj.weight", ("C", "C")),
    ("attention.self.key.bias", "self_attn.k_proj.bias", ("C",)),
    ("attention.self.value.weight", "self_attn.v_proj.weight", ("C", "C")),
    ("attention.self.value.bias", "self_attn.v_proj.bias", ("C",)),
    ("attention.output.dense.weight", "self_attn.out_proj.weight", ("C", "C")),
    ("attention.output.dense.bias", "self_attn.out_proj.bias", ("C",)),
    ("attention.output.LayerNorm.weight", "self_attn_layer_norm.weight", ("C",)),
    ("attention.output.LayerNorm.bias", "self_attn_layer_norm.bias", ("C",)),
    ("intermediate.dense.weight", "fc1.weight", ("F", "C")),
    ("intermediate.dense.bias", "fc1.bias", ("F",)),
    ("output.dense.weight", "fc2.weight", ("C", "F")),
    ("output.dense.bias", "fc2.bias", ("C",)),
    ("output.LayerNorm.weight", "final_layer_norm.weight", ("C",)),
    ("output.LayerNorm.bias", "final_layer_norm.bias", ("C",)),
]
LM_HEAD_KEYS: list[Row] = [
    ("lm_head.dense.weight", "encoder.lm_head.dense.weight", ("C", "C")),
    ("lm_head.dense.bias", "encoder.lm_head.dense.bias", ("C",)),
    ("lm_head.layer_norm.weight", "encoder.lm_head.layer_norm.weight", ("C",)),
    ("lm_head.layer_norm.bias", "encoder.lm_head.layer_norm.bias", ("C",)),
    ("lm_head.bias", HEAD_B_KEY, ("V",)),
]
#: HF keys that are legitimately absent from our fairseq model (the pooler; the decoder is the tied embedding)
IGNORED_HF = ("pooler.", "lm_head.decoder.", "embeddings.position_ids")

#: HF ``hidden_act`` -> fairseq ``--activation-fn`` for the encoder layers (same function, not an approximation of it).
HF_TO_FAIRSEQ_ACT = {
    "gelu": "gelu",  # erf GELU in both
    "gelu_new": "gelu_accurate",  # tanh approximation in both
    "gelu_pytorch_tanh": "gelu_accurate",
    "relu": "relu",
    "tanh": "tanh",
    "linear": "linear",
}
FAIRSEQ_TO_HF_ACT = {"gelu": "gelu", "gelu_accurate": "gelu_new", "relu": "relu", "tanh": "tanh", "linear": "linear"}


def layer_keys(num_layers: int) -> list[Row]:
    """The full body table with one row per tensor of every layer."""
    rows = list(BODY_KEYS)
    for i in range(num_layers):
        rows += [(f"encoder.layer.{i}.{h}", f"{FS}layers.{i}.{f}", s) for h, f, s in LAYER_KEYS]
    return rows


@dataclass
class Dims:
    """Symbolic sizes of the table's shapes."""

    V: int
    P: int
    C: int
    F: int

    def shape(self, symbols: tuple[str, ...]) -> tuple[int, ...]:
        return tuple(getattr(self, s) for s in symbols)

    def record(self, num_layers: int) -> dict:
        """The sizes as ``conversion.json`` lists them."""
        return {"vocab": self.V, "positions": self.P, "hidden": self.C, "ffn": self.F, "layers": num_layers}
