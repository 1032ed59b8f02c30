#!/usr/bin/env bash
# GPU checks for a machine with an NVIDIA GPU (under 8 minutes): the `cuda`-marked tests, then
# the GPU benchmarks (hand-scheduled GEMM vs cuBLAS, BERT-base vs PyTorch, ResNet-50's
# convolutions vs cuDNN). Results and one log go to OUTDIR (9 files: log.txt,
# gemm_gpu.{json,md,png}, bert_gpu.{json,md,png}, conv_gpu.{json,md}).
# Usage: bash scripts/gpu_check.sh OUTDIR     (PYTHON=python3 by default; no venv needed if
# numpy, cuda-bindings, nvidia-cuda-nvrtc, torch, transformers and onnx are installed)
set -uo pipefail
: "${1:?usage: bash scripts/gpu_check.sh OUTDIR}"
source "$(dirname "${BASH_SOURCE[0]}")/gpu_lib.sh" "$1"
gpu_header
step 120 "cuda tests" "$py" -m pytest -q -m cuda -p no:cacheprovider \
  tests/test_gpu_kernels_and_models.py tests/runtime_cuda tests/auto_scheduler/test_gpu_tune_device.py
step 100 "gemm_gpu" "$py" benchmarks/gemm_gpu.py --out "$out/gemm_gpu" ${GEMM_ARGS:-}
step 250 "bert_gpu" "$py" benchmarks/bert_gpu.py --out "$out/bert_gpu" ${BERT_ARGS:-}
step 40 "conv_gpu" "$py" benchmarks/conv_gpu.py --out "$out/conv_gpu"
echo "done $(date +%T)" | tee -a "$log"
