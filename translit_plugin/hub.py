"""Hub interface: load a model directory or training checkpoint and encode / embed sentences.

>>> from translit_plugin.hub import from_pretrained
>>> hub = from_pretrained("models/glot500-fs")                   # converted model directory
>>> hub = from_pretrained("checkpoints", "checkpoint_best.pt",
...                       sentencepiece_model="models/glot500-fs/sentencepiece.bpe.model")
>>> vecs = hub.embed(["Merhaba dünya", "Hello world"], layer=8)  # N x C, mean over the attention mask

Tokenization is sentencepiece ids mapped through ``dict.txt`` (:func:`translit_plugin.vocab.encode_ids`), i.e. the
same ids HF's ``XLMRobertaTokenizer`` produces and the same ids ``translit-ppa prepare`` binarizes.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from pathlib import Path

import torch
from torch import Tensor, nn

logger = logging.getLogger(__name__)

class _HubTask:
    """The two things model construction needs from a fairseq task (no data loading)."""

    def __init__(self, dictionary, max_positions: int) -> None:
        self.source_dictionary = dictionary
        self.target_dictionary = dictionary
        self._max_positions = max_positions

    def max_positions(self) -> int:
        return self._max_positions


def _find_dictionary(model_dir: Path, cfg) -> Path:
    candidates = [model_dir / "dict.txt"]
    data = getattr(getattr(cfg, "task", None), "data", None)
    if data:
        first = str(data).split(os.pathsep)[0]
        candidates += [Path(first) / "dict.txt", Path(first) / "orig" / "dict.txt"]
    for c in candidates:
        if c.is_file():
            return c
    raise FileNotFoundError(
        "dict.txt not found (looked in " + ", ".join(str(c) for c in candidates) + "); pass dictionary=PATH"
    )


def from_pretrained(
    model_name_or_path: str | os.PathLike,
    checkpoint_file: str = "model.pt",
    sentencepiece_model: str | os.PathLike | None = None,
    dictionary: str | os.PathLike | None = None,
    **unused,
) -> TranslitHubInterface:
    """Load ``model_name_or_path/checkpoint_file`` (a model directory or a training run's checkpoint directory).

    ``sentencepiece_model`` and ``dictionary`` default to the files in ``model_name_or_path`` (a converted model
    directory has both); for a training run's ``checkpoints/`` pass the start model's files.
    """
    from fairseq import checkpoint_utils
    from fairseq.data import Dictionary

    import translit_plugin  # noqa: F401  (registers the model, installs the checkpoint allow-list)
    from translit_plugin.models.translit_roberta import TranslitRobertaModel

    model_dir = Path(model_name_or_path)
    ckpt = Path(checkpoint_file) if Path(checkpoint_file).is_absolute() else model_dir / checkpoint_file
    if not ckpt.is_file():
        raise FileNotFoundError(f"checkpoint not found: {ckpt}")
    spm_path = Path(sentencepiece_model) if sentencepiece_model else model_dir / "sentencepiece.bpe.model"
    if not spm_path.is_file():
        raise FileNotFoundError(f"sentencepiece model not found: {spm_path}; pass sentencepiece_model=PATH")
    state = checkpoint_utils.load_checkpoint_to_cpu(str(ckpt))
    cfg = state["cfg"]
    dict_path = Path(dictionary) if dictionary else _find_dictionary(model_dir, cfg)
    d = Dictionary.load(str(dict_path))
    d.add_symbol("<mask>")
    emb_rows = state["model"]["encoder.sentence_encoder.embed_tokens.weight"].shape[0]
    if len(d) != emb_rows:
        raise ValueError(
            f"{dict_path}: dictionary has {len(d)} entries (with <mask>) but {ckpt} has {emb_rows} embedding rows; "
            "the dictionary does not belong to this checkpoint"
        )
    model_cfg = cfg.model
    max_positions = int(getattr(model_cfg, "max_positions", 512))
    model = TranslitRobertaModel.build_model(model_cfg, _HubTask(d, max_positions))
    model.load_state_dict(state["model"], strict=True, model_cfg=model_cfg)
    logger.info("loaded %s (%d layers, vocab %d)", ckpt, len(model.encoder.sentence_encoder.layers), len(d))
    return TranslitHubInterface(cfg, model, d, spm_path)


class TranslitHubInterface(nn.Module):
    """Sentencepiece tokenization + the fairseq model: ``encode``, ``extract_features``, ``embed``."""

    def __init__(self, cfg, model, dictionary, spm_path: str | os.PathLike) -> None:
        super().__init__()
        from .vocab import build_id_map, load_spm

        self.cfg = cfg
        self.model = model
        self.dictionary = dictionary
        self.spm_path = Path(spm_path)
        self.sp = load_spm(spm_path)
        self.id_map = build_id_map(self.sp, dictionary)
        self.task = _HubTask(dictionary, self.max_positions)

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    @property
    def max_positions(self) -> int:
        return int(self.model.encoder.max_positions())

    @property
    def num_layers(self) -> int:
        return len(self.model.encoder.sentence_encoder.layers)

    # ------------------------------------------------------------------------------------------------ tokenization
    def encode(self, sentence: str, max_length: int | None = None) -> Tensor:
        """``<s> pieces </s>`` as a LongTensor; truncated to ``max_length`` tokens (``</s>`` kept) if given."""
        from .evaluation.embedding import truncate
        from .vocab import encode_ids

        ids = torch.tensor(encode_ids(self.sp, self.id_map, sentence), dtype=torch.long)
        return truncate(ids, max_length or self.max_positions, self.dictionary.eos())

    def decode(self, tokens: Tensor) -> str:
        """Token ids back to text (specials dropped)."""
        tokens = tokens.tolist() if isinstance(tokens, Tensor) else list(tokens)
        specials = {self.dictionary.bos(), self.dictionary.eos(), self.dictionary.pad()}
        pieces = [self.dictionary[t] for t in tokens if t not in specials]
        return self.sp.DecodePieces(pieces)

    def pad_batch(self, seqs: Sequence[Tensor]) -> Tensor:
        """Right-pad 1-D token tensors into B x T with ``<pad>``."""
        from .evaluation.embedding import collate

        return collate(seqs, self.dictionary.pad())

    def batch_encode(self, sentences: Sequence[str], max_length: int | None = None) -> Tensor:
        """B x T padded ids for ``sentences`` (order kept)."""
        return self.pad_batch([self.encode(s, max_length) for s in sentences])

    # ---------------------------------------------------------------------------------------------------- features
    def extract_features(self, tokens: Tensor, layer: int | None = None, return_all_hiddens: bool = False):
        """B x T x C output of ``layer`` (0 = embeddings, default the last); all T x B x C states if asked."""
        if tokens.dim() == 1:
            tokens = tokens.unsqueeze(0)
        tokens = tokens.to(self.device)
        if tokens.size(-1) > self.max_positions:
            raise ValueError(f"tokens exceeds maximum length: {tokens.size(-1)} > {self.max_positions}")
        _, extra = self.model(tokens, features_only=True, return_all_hiddens=True)
        inner = extra["inner_states"]
        if return_all_hiddens:
            return [h.transpose(0, 1) for h in inner]  # T x B x C -> B x T x C
        layer = self.num_layers if layer is None else layer
        if not 0 <= layer <= self.num_layers:
            raise ValueError(f"layer {layer} out of range 0..{self.num_layers}")
        return inner[layer].transpose(0, 1)

    def embed(
        self,
        sentences: Sequence[str],
        layer: int = 8,
        pooling: str = "mean",
        batch_size: int = 128,
        max_length: int = 512,
        progress: bool | None = None,
    ) -> Tensor:
        """Sentence vectors (N x C, float32, input order) from hidden layer ``layer``.

        ``pooling``: ``mean`` over the attention mask including ``<s>``/``</s>`` (the Glot500 / paper retrieval
        protocol), ``mean_no_special`` (the SEQ training objective's pooling), or ``cls`` (``<s>``).  Sentences are
        sorted by length so each batch pads little; the model is in eval mode for the call.  The implementation is
        :func:`translit_plugin.evaluation.embedding.embed_sentences`, which the evaluation commands use too.
        """
        from .evaluation.embedding import embed_sentences

        if not 0 <= layer <= self.num_layers:
            raise ValueError(f"layer {layer} out of range 0..{self.num_layers} for this model")
        if not sentences:
            return torch.empty(0, self.model.encoder.sentence_encoder.embed_tokens.embedding_dim)
        show = progress if progress is not None else len(sentences) > 10 * batch_size
        return embed_sentences(self, sentences, layer, pooling, batch_size, max_length, progress=show)
