"""Evaluation of encoders by the paper's protocol (Glot500 conventions).

Modules, from pure to wired:

- ``readers``: the dataset layouts users hold (SR-B / Tatoeba, Taxi1500, SIB-200, WikiAnn / UD tagging files).
- ``metrics``: macro-F1, seqeval F1 (paper-compatible) and token-level accuracy / macro-F1.
- ``retrieval``: cosine top-k retrieval in both directions, English-side alignment for non-English sources.
- ``finetune``: sequence and token classification fine-tuning in plain PyTorch (seeded, early stopping on dev).
- ``models``: load our model directories, fairseq checkpoints or HF directories (converted on the fly).
- ``results``: the resumable JSON-lines results store.
- ``runner``: the evaluation grid (models x sources x seeds x targets) used by ``translit-ppa evaluate``.
- ``command``: ``translit-ppa evaluate`` below its arguments (an ``EvaluateRequest``): options, checks, run, summary.
- ``selection``: checkpoint selection by Tatoeba top-10 with a per-checkpoint score cache.
- ``report``: paper-style tables (Markdown, LaTeX, CSV) and heatmaps.
- ``report_files``: where ``evaluate``, ``select-checkpoint`` and ``report`` may write (beside the inputs, never over
  them; ``report`` into a directory, only over report files it wrote).

Sentence vectors come from the hub (:func:`translit_plugin.hub.encoding.embed_sentences`).  Nothing here is imported
when fairseq loads the plugin; heavy dependencies load inside the functions using them.
"""
