#!/usr/bin/env bash
# One GPU sitting that fits a 15-minute device lease in one call (at most ~9.5 minutes here,
# which leaves the machine's start and one short rerun): the `cuda` tests (issue 10's checks),
# the seed GEMMs (hand schedule, then tuned further from the committed log), a short BERT-base
# tuning sitting resumed from the committed log, and BERT-base timed with those records against
# PyTorch eager, torch.compile and reduce-overhead, then ResNet-50's convolutions on the default
# conv schedule against cuDNN (last: the one step a slow sitting may lose). Each step has its own
# time limit and a step cut short still leaves its results; the grown logs come back in OUTDIR
# to commit.
# Usage: bash scripts/gpu_sitting.sh OUTDIR [BERT_TUNE_SECONDS] [GEMM_TRIALS]  (120, 64)
# OUTDIR gets 10 files: log.txt, gemm_gpu.{json,md,png}, bert_gpu.{json,md}, conv_gpu.{json,md},
# gemm_gpu_log.json, bert_gpu_log.json (copy the two logs to benchmarks/results/logs/).
# Check it without a GPU: python tests/gpu_stub.py -- bash scripts/gpu_sitting.sh OUT --smoke
set -uo pipefail
: "${1:?usage: bash scripts/gpu_sitting.sh OUTDIR [BERT_TUNE_SECONDS] [GEMM_TRIALS]}"
smoke=""
if [ "${2:-}" = "--smoke" ]; then smoke="--smoke"; set -- "$1" "${@:3}"; fi
tune_s="${2:-120}"
trials="${3:-64}"
source "$(dirname "${BASH_SOURCE[0]}")/gpu_lib.sh" "$1"
resume_logs
gpu_header
if [ -n "$smoke" ]; then  # the emulated GPU: tiny sizes, the steps' plumbing only
  step 300 "gemm" "$py" benchmarks/gemm_gpu.py --smoke --log "$out/gemm_gpu_log.json" --tune 4 \
    --out "$out/gemm_gpu"
  step 300 "bert tune" "$py" -m kiln.cli tune --builtin bert-tiny --seq-len 16 --target cuda \
    --trials 6 --per-round 6 --log "$out/bert_gpu_log.json"
  step 300 "bert time" "$py" benchmarks/bert_gpu.py --smoke --log "$out/bert_gpu_log.json" \
    --out "$out/bert_gpu"
  step 120 "conv" "$py" benchmarks/conv_gpu.py --smoke --out "$out/conv_gpu"
else
  step 80 "cuda tests" "$py" -m pytest -q -m cuda -p no:cacheprovider \
    tests/test_gpu_kernels_and_models.py tests/runtime_cuda tests/auto_scheduler/test_gpu_tune_device.py
  step 140 "gemm: hand sweep, tune, time" "$py" benchmarks/gemm_gpu.py --quick --repeat 15 \
    --log "$out/gemm_gpu_log.json" --tune "$trials" --out "$out/gemm_gpu"
  step $((tune_s + 40)) "bert tune" "$py" -m kiln.cli tune --builtin bert-base --target cuda \
    --time-budget "${tune_s}s" --log "$out/bert_gpu_log.json"
  step 170 "bert time" "$py" benchmarks/bert_gpu.py --repeat 10 --log "$out/bert_gpu_log.json" \
    --out "$out/bert_gpu"
  step 40 "conv" "$py" benchmarks/conv_gpu.py --repeat 5 --number 20 --out "$out/conv_gpu"
fi
rm -f "$out/bert_gpu.png" "$out/bert_gpu_log.json.model.npz" "$out/gemm_gpu_log.json.model.npz"
echo "done $(date +%T)" | tee -a "$log"
