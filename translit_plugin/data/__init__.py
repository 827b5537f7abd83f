"""Dataset wrappers fairseq lacks: original/Latin pairing, per-pair masking, TLM concatenation, language sampling."""

from .pair_dataset import MaskingConfig, TranslitPairDataset, temperature_sampling_weights

__all__ = ["MaskingConfig", "TranslitPairDataset", "temperature_sampling_weights"]
