#!/usr/bin/env bash
# `make demo-tiny`: the whole pipeline with a tiny random start model on the shipped demo corpus, CPU only, no network
# (~12-15 minutes on 2 cores). `make demo` runs the same on a real pretrained encoder (scripts/demo.sh).
#   1. a small start model (sentencepiece on the demo corpus + a random XLM-R, saved as an HF checkpoint)
#   2. translit-ppa convert          HF -> fairseq model directory (parity-checked against HF)
#   3. translit-ppa prepare          sample, uroman-transliterate, binarize the pairs
#   4. fairseq-train                 --task translit_align --criterion mlm_seq_tlm (MLM + SEQ + TLM)
#   5. scripts/demo_eval.py          retrieval on the held-apart dev set, before vs after, table + PNG
# The same steps with `translit-ppa convert cis-lmu/glot500-base ...` (online) or a local Glot500 directory and the
# recipes in examples/recipes/ are the real thing.
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${DEMO_OUT:-demo-tiny-out}
BIN=.venv/bin
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-2} TOKENIZERS_PARALLELISM=false
rm -rf "$OUT"
mkdir -p "$OUT"
step() { echo; echo "=== [$(date +%H:%M:%S)] $*"; }

step "1/5 build a small start model (HF format) from the demo corpus"
$BIN/translit-ppa build-start-model --text examples/data/train/*.txt --output "$OUT/start-hf" \
  --vocab-size 8000 --layers 2 --hidden 64 --heads 4 --ffn 128 --max-positions 128

step "2/5 convert it to a fairseq model directory"
$BIN/translit-ppa convert "$OUT/start-hf" "$OUT/start-fs" --arch translit_roberta_tiny

step "3/5 prepare the paired corpus (uroman transliteration, binarization, verification)"
$BIN/translit-ppa prepare --input examples/data/train --group examples/groups/demo-chromium.json \
  --model-dir "$OUT/start-fs" --output "$OUT/prep" --max-length 128 --valid-size 100 --workers 2

step "4/5 post-train with MLM(orig) + MLM(Latin) + SEQ + TLM"
$BIN/fairseq-train "$OUT/prep/data-bin" --user-dir translit_plugin \
  --task translit_align --criterion mlm_seq_tlm --arch translit_roberta_tiny \
  --finetune-from-model "$OUT/start-fs/model.pt" --tokens-per-sample 128 --seq-layer 2 \
  --optimizer adam --adam-betas '(0.9,0.999)' --adam-eps 1e-8 --weight-decay 0.01 --clip-norm 1.0 \
  --lr 3e-3 --lr-scheduler polynomial_decay --total-num-update 1800 --warmup-updates 50 \
  --batch-size 32 --max-update 1800 --save-dir "$OUT/checkpoints" --no-epoch-checkpoints \
  --save-interval-updates 900 --validate-interval-updates 600 \
  --log-format simple --log-interval 200 --cpu --num-workers 0 --seed 1 2>&1 | tee "$OUT/train.log" \
  | grep --line-buffered -E "\| (train_inner|valid|train) \||Loaded|done training"

step "5/5 retrieval on the held-apart dev set, before vs after"
$BIN/python scripts/demo_eval.py --start "$OUT/start-fs" --checkpoint "$OUT/checkpoints/checkpoint_last.pt" \
  --out "$OUT" --max-sentences 500
step "done: $OUT/demo_results.json, $OUT/demo_retrieval.png, $OUT/train.log"
