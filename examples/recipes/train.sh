#!/usr/bin/env bash
# Post-train a converted Glot500 / XLM-R model with the paper's hyper-parameters (Xhelili, Liu, Schütze 2024).
#
#   examples/recipes/train.sh GROUP DATA MODEL_DIR SAVE_DIR [extra fairseq-train arguments ...]
#
#   GROUP      mediterranean-amharic-farsi (2 epochs) | south-east-asian (8 epochs) | any name with EPOCHS=N set
#   DATA       data-bin written by `translit-ppa prepare` (OUT/data-bin: orig/, latn/, train.lang.npy)
#   MODEL_DIR  model directory written by `translit-ppa convert` (model.pt, dict.txt, sentencepiece.bpe.model)
#   SAVE_DIR   checkpoints: checkpoint_E_U.pt every 2000 updates (all kept, for Tatoeba-based selection with
#              `translit-ppa select-checkpoint`) and checkpoint_last.pt; relaunching the same line resumes.
#
# The same script serves every launcher (see examples/recipes/README.md):
#   one GPU / one node:  examples/recipes/train.sh ...                     (NUM_GPUS GPUs; >1 -> fairseq spawns)
#   torchrun:            torchrun --nproc-per-node 4 [--nnodes ...] --no-python examples/recipes/train.sh ...
#   SLURM:               srun examples/recipes/train.sh ...                (one task per GPU)
#   CPU processes:       CPU=1 torchrun --nproc-per-node 2 --no-python examples/recipes/train.sh ...
#
# Global batch = PAIRS_PER_WORKER x WORKERS x update-freq = GLOBAL_PAIRS (paper: 16 pairs x 4 GPUs x 8 = 512).
# The model's sizes, activation and LayerNorm epsilon are read from MODEL_DIR/model.pt (e.g. multilingual-e5-small:
# 384 hidden, eps 1e-12), so one line serves Glot500, XLM-R and e5.
# Environment: PAIRS_PER_WORKER (16), GLOBAL_PAIRS (512), EPOCHS, PRECISION (auto | bf16 | fp16 | fp32; auto = bf16
# autocast where the GPU has bf16 (Ampere and newer) or the CPU has AMX, else fp16 on GPU and fp32 on CPU),
# NUM_GPUS (default: all visible), CPU=1 (train on CPU), PORT (SLURM rendezvous port, 12345), SEQ_LAYER (8).
# Extra arguments come last and override the ones below (fairseq keeps the last value of a repeated flag).
set -euo pipefail

if [ $# -lt 4 ]; then
    sed -n '2,25p' "$0"
    exit 2
fi
GROUP=$1 DATA=$2 MODEL_DIR=$3 SAVE_DIR=$4
shift 4
HERE=$(cd "$(dirname "$0")" && pwd)
REPO=$(cd "$HERE/../.." && pwd)
PYTHON=${PYTHON:-python}
FAIRSEQ_TRAIN=${FAIRSEQ_TRAIN:-fairseq-train}

case "$GROUP" in
    mediterranean-amharic-farsi) EPOCHS=${EPOCHS:-2} ;;
    south-east-asian) EPOCHS=${EPOCHS:-8} ;;
    *) : "${EPOCHS:?unknown group $GROUP: set EPOCHS}" ;;
esac
PAIRS_PER_WORKER=${PAIRS_PER_WORKER:-16}
GLOBAL_PAIRS=${GLOBAL_PAIRS:-512}

# ---- workers and the distributed flags for this launcher
DIST=()
if [ -n "${RANK:-}" ] && [ -n "${WORLD_SIZE:-}" ]; then          # torchrun (any number of nodes)
    WORKERS=$WORLD_SIZE
    if [ "${CPU:-0}" = 1 ]; then  # fairseq's own torchrun detection divides by the GPU count: pass everything
        DIST=(--distributed-world-size "$WORLD_SIZE" --distributed-rank "$RANK" --distributed-init-method env://
              --distributed-no-spawn --distributed-backend gloo --ddp-backend legacy_ddp)
    fi
elif [ -n "${SLURM_NTASKS:-}" ] && [ -n "${SLURM_PROCID:-}" ]; then  # srun: fairseq reads the SLURM environment
    WORKERS=$SLURM_NTASKS
    DIST=(--distributed-port "${PORT:-12345}")
elif [ "${CPU:-0}" = 1 ]; then
    WORKERS=1
else
    WORKERS=${NUM_GPUS:-$(nvidia-smi -L 2>/dev/null | wc -l)}
    [ "$WORKERS" -ge 1 ] || { echo "no GPU visible: set CPU=1 to train on CPU" >&2; exit 1; }
    [ "$WORKERS" -gt 1 ] && DIST=(--distributed-world-size "$WORKERS")
fi
PER_UPDATE=$((PAIRS_PER_WORKER * WORKERS))
if [ $((GLOBAL_PAIRS % PER_UPDATE)) -ne 0 ]; then
    echo "GLOBAL_PAIRS=$GLOBAL_PAIRS is not a multiple of PAIRS_PER_WORKER x WORKERS = $PER_UPDATE" >&2
    exit 1
fi
UPDATE_FREQ=$((GLOBAL_PAIRS / PER_UPDATE))

# ---- schedule: linear decay to 0 over all updates (no warm-up), as the paper
PAIRS=$("$PYTHON" -c "import sys; from fairseq.data import data_utils; print(len(data_utils.load_indexed_dataset(sys.argv[1])))" "$DATA/orig/train" 2>/dev/null)
TOTAL_UPDATES=$(( EPOCHS * ( (PAIRS + GLOBAL_PAIRS - 1) / GLOBAL_PAIRS ) ))

PRECISION=${PRECISION:-auto}
if [ "${CPU:-0}" = 1 ]; then
    DEVICE=(--cpu --encoder-chunk-tokens 1024)  # no padding computed: 2.1x per step on CPU (bench_chunked_passes.py)
    if [ "$PRECISION" = auto ]; then
        if grep -q amx_bf16 /proc/cpuinfo 2>/dev/null; then PRECISION=bf16; else PRECISION=fp32; fi
    fi
else
    DEVICE=()
    if [ "$PRECISION" = auto ]; then
        PRECISION=$("$PYTHON" -c "import torch; print('bf16' if torch.cuda.is_bf16_supported() else 'fp16')")
    fi
fi
case "$PRECISION" in
    bf16) DEVICE+=(--autocast bf16) ;;  # bfloat16 forward, float32 weights: float32's range, no loss scaling
    fp16) DEVICE+=(--fp16) ;;           # the paper trained in fp16 (losses are computed in float32 regardless)
    fp32) ;;
    *) echo "PRECISION must be auto, bf16, fp16 or fp32" >&2; exit 1 ;;
esac
# the start model's network: sizes, activation, LayerNorm epsilon (checked again by the task)
read -r -a ARCH_FLAGS <<< "$("$PYTHON" -m translit_plugin.models.arch_flags "$MODEL_DIR/model.pt")"

if [ "${RANK:-${SLURM_PROCID:-0}}" = 0 ]; then
    echo "[train.sh] $GROUP: $PAIRS pairs, $EPOCHS epochs, $WORKERS workers x $PAIRS_PER_WORKER pairs x update-freq" \
         "$UPDATE_FREQ = $GLOBAL_PAIRS pairs/update, $TOTAL_UPDATES updates, $PRECISION" >&2
fi

exec "$FAIRSEQ_TRAIN" "$DATA" \
    --user-dir "$REPO/translit_plugin" \
    --task translit_align --criterion mlm_seq_tlm --arch translit_roberta_base "${ARCH_FLAGS[@]}" \
    --finetune-from-model "$MODEL_DIR/model.pt" \
    --tokens-per-sample 512 \
    --mlm-orig-weight 1 --mlm-latn-weight 1 --seq-weight 1 --tlm-weight 1 \
    --seq-layer "${SEQ_LAYER:-8}" --seq-pooling mean_no_special --seq-similarity dot --seq-temperature 1 \
    --seq-negatives all --seq-gather exact \
    --optimizer adam --adam-betas '(0.9,0.999)' --adam-eps 1e-8 --weight-decay 0.01 --clip-norm 1.0 \
    --lr 2e-5 --lr-scheduler polynomial_decay --power 1 --end-learning-rate 0 --warmup-updates 0 \
    --total-num-update "$TOTAL_UPDATES" --max-epoch "$EPOCHS" \
    --batch-size "$PAIRS_PER_WORKER" --update-freq "$UPDATE_FREQ" --required-batch-size-multiple 1 \
    --dropout 0.1 --attention-dropout 0.1 \
    --save-dir "$SAVE_DIR" --save-interval-updates 2000 --keep-interval-updates -1 --no-epoch-checkpoints \
    --validate-interval-updates 2000 \
    --log-format json --log-interval 100 --num-workers 2 --seed 42 \
    "${DEVICE[@]}" "${DIST[@]}" "$@"
