"""translit-ppa: a fairseq plugin for transliteration-based post-training alignment (Xhelili et al., 2024)."""

from setuptools import find_packages, setup

setup(
    name="translit-ppa",
    version="0.1.0",
    description="fairseq plugin: post-train multilingual encoders on text + uroman transliteration (MLM, SEQ, TLM)",
    long_description=open("README.md", encoding="utf-8").read(),
    long_description_content_type="text/markdown",
    python_requires=">=3.10",
    packages=find_packages(include=["translit_plugin", "translit_plugin.*"]),
    # fairseq-fixed and torch are installed by `make install` in a required order (torch first, fairseq without
    # build isolation); they are not listed here so that `pip install -e .` never pulls a CUDA torch.
    install_requires=["sentencepiece", "numpy", "tqdm", "safetensors"],
    extras_require={
        "prepare": ["uroman", "anyascii"],
        "hf": ["transformers", "sentence-transformers"],
        "eval": ["seqeval", "scikit-learn", "matplotlib", "anyascii"],
        "dev": ["pytest", "ruff", "sentence-transformers"],
    },
    entry_points={"console_scripts": ["translit-ppa = translit_plugin.cli:main"]},
)
