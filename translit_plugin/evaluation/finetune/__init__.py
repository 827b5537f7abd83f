"""Zero-shot transfer fine-tuning in plain PyTorch on a hub model: sentence and token classification.

- Sentence classification (Taxi1500, SIB-200): the HF ``RobertaClassificationHead`` on ``<s>`` (dropout, dense,
  tanh, dropout, out projection).
- Token classification (WikiAnn NER, UD POS): dropout + linear on every position; only the first subword of a word
  carries its label (others get ``IGNORE``). Sentences longer than the max length are split into chunks of whole
  words and the chunk predictions are put back together per sentence before scoring.

Training: AdamW, linear decay to 0 without warm-up, gradient clipping at 1.0, optional gradient accumulation; the
source-dev score is computed after every epoch and the best epoch's weights are kept (early stopping with
``patience`` optional). Every random choice derives from ``seed``: head initialisation and dropout via
``torch.manual_seed(seed)``, batch order via its own generator seeded with ``seed``.

Modules, in dependency order: ``config`` (settings), ``heads``, ``features`` (rows -> inputs), ``training`` (the
loop and prediction), ``classifiers`` (what the evaluation runner uses).
"""

from .classifiers import SequenceClassifier, TokenClassifier, restore, snapshot
from .config import IGNORE, FinetuneConfig, default_config
from .features import Feature, TokenizerAdapter, classification_features, tagging_features
from .heads import EncoderWithHead, SequenceClassificationHead, TokenClassificationHead
from .training import TrainResult, predict_logits, train

__all__ = [
    "IGNORE", "EncoderWithHead", "Feature", "FinetuneConfig", "SequenceClassificationHead", "SequenceClassifier",
    "TokenClassificationHead", "TokenClassifier", "TokenizerAdapter", "TrainResult", "classification_features",
    "default_config", "predict_logits", "restore", "snapshot", "tagging_features", "train",
]
