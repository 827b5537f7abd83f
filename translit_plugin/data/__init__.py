"""What the ``translit_align`` task reads and checks: the pair dataset (per-pair masking, TLM concatenation, language
sampling weights) in :mod:`.pair_dataset`, the positioned-read data-bin reader in :mod:`.pread_dataset`, the pairing
fingerprint in :mod:`.fingerprint` and the task's errors in :mod:`.errors`.

Nothing is imported here, so ``translit-ppa encode`` can use the fingerprint without loading the dataset code.
"""
