"""Corpus preparation: raw monolingual text -> aligned, binarized (original, uroman Latin) pairs for training.

Run as ``translit-ppa prepare --input DIR --model-dir MODEL_DIR --output OUT`` (:mod:`translit_plugin.cli.prepare`).
``DIR`` holds one ``{lang_Script}.txt`` per language (one sentence per line); ``MODEL_DIR`` is a model directory with
``sentencepiece.bpe.model`` and ``dict.txt``.

Output layout (what the ``translit_align`` task reads; ``DATA`` = ``OUT/data-bin``)::

    OUT/data-bin/orig/train.bin  train.idx    original-script side, fairseq mmap indexed dataset
    OUT/data-bin/orig/valid.bin  valid.idx
    OUT/data-bin/orig/dict.txt                copy of MODEL_DIR/dict.txt
    OUT/data-bin/latn/train.bin  train.idx    uroman transliteration, line i pairs with orig line i
    OUT/data-bin/latn/valid.bin  valid.idx
    OUT/data-bin/latn/dict.txt                copy of MODEL_DIR/dict.txt (same dictionary for both sides)
    OUT/data-bin/train.lang.npy               int16 array, one language id per pair (line i of orig/latn)
    OUT/data-bin/valid.lang.npy
    OUT/data-bin/langs.txt                    line k = lang_Script code of language id k (sorted codes)
    OUT/manifest.json                         counts per language and split, drops, token statistics, uroman
                                              version and codes, options, verification summary (the same
                                              bytes for the same inputs and flags: no times, no temp paths)
    OUT/work/...                              intermediate, resumable stage outputs (safe to delete when done);
                                              work/timings.json: seconds per stage of the last run
    OUT/.translit-ppa.lock                    held by the run writing OUT (one at a time; shard jobs together)

Each stored line is ``pieces + </s>`` with ids of ``dict.txt`` as loaded by fairseq's ``Dictionary`` (no ``<s>``:
the task prepends it; ``<mask>`` is appended by the task), i.e. exactly ``dictionary.encode_line(" ".join(
sp.EncodeAsPieces(text)), append_eos=True, add_if_not_exist=False)``, truncated to ``max_length - 1`` ids (keeping
``</s>``) so that ``<s>`` + line fits ``max_length`` (``--max-length``, default 512).  Pairs are grouped by language
in ``langs.txt`` order, then in corpus order (train is shuffled by the task).  Both splits always exist (valid may be
empty if ``--valid-size 0``: then no valid files are written, since fairseq cannot map an empty ``.bin``).

Stages (each resumable, skipped when up to date; ``work/`` layout in brackets):

1. clean    (:mod:`.clean`)   line contract (:mod:`translit_plugin.core.lines`), drop empty/over-long lines,
   optional dedupe [clean/]
2. sample   (:mod:`.sample`)  per language: paper rule max(10%, 10k), seeded; train/valid; chunks [sample/LANG/]
3. transliterate + binarize (:mod:`.chunks`, parallel over chunks: :mod:`.chunk_plan`; shardable with
   ``--num-shards/--shard-id``)
   [translit/LANG/*.tsv, bin/LANG/*]; a pair is kept or dropped on both sides together.  With ``--latn-input DIR``
   the transliterations are given (``DIR/{lang_Script}.txt``, line i for input line i, e.g. from the Perl uroman the
   paper used): stage 1 reads both files in lockstep and fails on any line-count difference; uroman is not run
4. merge    (:mod:`.merge`)   chunk binaries -> data-bin, in plan order
5. verify   (:mod:`.verify`)  counts and sampled pairs re-encoded and compared; fails loudly
6. manifest (:func:`.manifest.build_manifest`, :func:`.manifest.write_manifest`)

Scale: text is streamed through every stage; memory grows only with 1 byte per cleaned line (sample membership),
8 bytes per sampled line (the chosen line numbers), 2 bytes per pair (language ids) and one chunk per worker
(``--dedupe`` adds a hash per unique line).  ``--workers N`` runs N processes over chunks (uroman is loaded once and
shared through fork; runs of consecutive chunks of one language go to one worker so its uroman token cache keeps
hitting).  Array job across machines (shared file system): ``--stop-after sample`` once, then one job per shard with
``--num-shards N --shard-id K`` (each does every N-th chunk and stops), then the plain command to merge and verify.
The data-bin is byte-identical whatever the worker count, sharding, or interruptions (tested).

The heavy imports (fairseq, uroman, sentencepiece) happen inside the functions that need them.
"""
