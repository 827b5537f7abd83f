"""Hub interface: load a model directory or training checkpoint and encode / embed sentences.

>>> from translit_plugin.hub import from_pretrained
>>> hub = from_pretrained("models/glot500-fs")                   # converted model directory
>>> hub = from_pretrained("checkpoints", "checkpoint_best.pt",
...                       sentencepiece_model="models/glot500-fs/sentencepiece.bpe.model")
>>> vecs = hub.embed(["Merhaba dünya", "Hello world"])           # N x C: layer 8, mean_with_special pooling

- ``loading``: :func:`from_pretrained` reads the checkpoint, the model rebuilds itself from it
  (:meth:`translit_plugin.models.translit_roberta.TranslitRobertaModel.from_state`), the hub wraps it.
- ``interface``: :class:`TranslitHubInterface`, sentencepiece tokenization + the model.
- ``encoding``: keep-``</s>`` truncation, padding, length-sorted batches, pooling and :func:`embed_sentences`
  (also used by the evaluation commands).

Tokenization is sentencepiece ids mapped through ``dict.txt`` (:func:`translit_plugin.vocab.encode_ids`), i.e. the
same ids HF's ``XLMRobertaTokenizer`` produces and the same ids ``translit-ppa prepare`` binarizes.  Importing this
package does not import fairseq; loading a model does.
"""

from .interface import TranslitHubInterface
from .loading import from_pretrained

__all__ = ["TranslitHubInterface", "from_pretrained"]
