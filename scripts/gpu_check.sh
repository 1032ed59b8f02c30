#!/usr/bin/env bash
# GPU checks for a machine with an NVIDIA GPU (under 8 minutes): the `cuda`-marked tests, then
# the GPU benchmarks (hand-scheduled GEMM vs cuBLAS, BERT-base vs PyTorch). Results and one log
# go to OUTDIR (7 files: log.txt, gemm_gpu.{json,md,png}, bert_gpu.{json,md,png}).
# Usage: bash scripts/gpu_check.sh OUTDIR     (PYTHON=python3 by default; no venv needed if
# numpy, cuda-bindings, nvidia-cuda-nvrtc, torch, transformers and onnx are installed)
set -uo pipefail
out="${1:?usage: bash scripts/gpu_check.sh OUTDIR}"
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
py="${PYTHON:-python3}"
mkdir -p "$out"
out="$(cd "$out" && pwd)"
cd "$root"
export PYTHONPATH="$root${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
log="$out/log.txt"
step() {  # step SECONDS NAME COMMAND...: run with a time limit, log everything, keep going
  local limit="$1" name="$2"; shift 2
  echo "=== $name ($(date +%T), limit ${limit}s)" | tee -a "$log"
  local t0=$SECONDS
  timeout --kill-after=10 "$limit" "$@" 2>&1 | tee -a "$log"
  local rc=${PIPESTATUS[0]}
  echo "=== $name: exit $rc after $((SECONDS - t0))s" | tee -a "$log"
}
{ nvidia-smi --query-gpu=name,driver_version,clocks.sm,clocks.mem,temperature.gpu --format=csv
  "$py" -c "import sys, numpy, torch; print(sys.version.split()[0], 'numpy', numpy.__version__, 'torch', torch.__version__)"
  "$py" -c "import kiln; from kiln.runtime import cuda; from kiln.codegen import nvrtc; print(cuda.device_properties(0)); print('nvrtc', nvrtc.version())"
} 2>&1 | tee -a "$log"
step 120 "cuda tests" "$py" -m pytest -q -m cuda -p no:cacheprovider --timeout=90 \
  tests/test_gpu_kernels_and_models.py tests/runtime_cuda tests/auto_scheduler/test_gpu_tune_device.py
step 100 "gemm_gpu" "$py" benchmarks/gemm_gpu.py --out "$out/gemm_gpu" ${GEMM_ARGS:-}
step 250 "bert_gpu" "$py" benchmarks/bert_gpu.py --out "$out/bert_gpu" ${BERT_ARGS:-}
echo "done $(date +%T)" | tee -a "$log"
