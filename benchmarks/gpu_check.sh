#!/usr/bin/env bash
# One-shot GPU check (issue: performance): short fp16 training at base size, prints throughput and peak memory.
#
# On a machine with a GPU where the project's venv exists:   bash benchmarks/gpu_check.sh
# On a bare GPU machine with torch but no fairseq, put these in .whl/ first (see benchmarks/RESULTS.md):
#   fairseq_fixed-0.12.3.1.tar.gz antlr4-python3-runtime-4.9.3.tar.gz hydra_core omegaconf bitarray wheels
# and the script installs them into /tmp/site (fairseq is compiled there against the machine's torch).
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
if [ -x .venv/bin/python ] && .venv/bin/python -c "import fairseq, torch; assert torch.cuda.is_available()" 2>/dev/null; then
  PY=.venv/bin/python
elif ! $PY -c "import fairseq" 2>/dev/null; then
  [ -d .whl ] || { echo "fairseq missing and no .whl/ to install from" >&2; exit 2; }
  export PYTHONPATH=/tmp/site${PYTHONPATH:+:$PYTHONPATH}
  $PY -m pip install -q --no-index --no-deps --no-compile --target /tmp/site .whl/*.whl
  $PY -m pip install -q --no-index --no-deps --no-build-isolation --target /tmp/site .whl/antlr4-python3-runtime-*.tar.gz
  # CUDA_HOME unset: the sdist lacks the CUDA extensions' sources (libnat_cuda, ...), which text training never uses
  env -u CUDA_HOME MAX_JOBS=${MAX_JOBS:-16} $PY -m pip install -q --no-index --no-deps --no-build-isolation --target /tmp/site \
    .whl/fairseq_fixed-*.tar.gz
fi
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader || true
$PY -c "import torch, fairseq; print('torch', torch.__version__, 'fairseq', fairseq.__version__)"
$PY benchmarks/gpu_train_check.py "$@"
