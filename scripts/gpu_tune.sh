#!/usr/bin/env bash
# A GPU tuning sitting (issue 13), resumable across short sittings: copies the committed GPU
# logs into OUTDIR, tunes the seed GEMMs (mm, swish_mm) and BERT-base with the GPU search,
# times everything against the peers, and leaves the grown logs in OUTDIR to commit.
# Usage: bash scripts/gpu_tune.sh OUTDIR [BERT_MINUTES] [GEMM_TRIALS]   (defaults 4, 200)
# OUTDIR gets 8 files: log.txt, gemm_gpu.{json,md,png}, bert_gpu.{json,md},
# gemm_gpu_log.json, bert_gpu_log.json (copy the two logs to benchmarks/results/logs/).
set -uo pipefail
: "${1:?usage: bash scripts/gpu_tune.sh OUTDIR [BERT_MINUTES] [GEMM_TRIALS]}"
minutes="${2:-4}"
trials="${3:-200}"
source "$(dirname "${BASH_SOURCE[0]}")/gpu_lib.sh" "$1"
resume_logs
step 240 "gemm tune + time" "$py" benchmarks/gemm_gpu.py --quick --log "$out/gemm_gpu_log.json" \
  --tune "$trials" --out "$out/gemm_gpu"
step $((minutes * 60 + 90)) "bert tune" "$py" -m kiln.cli tune --builtin bert-base \
  --target cuda --time-budget "${minutes}m" --log "$out/bert_gpu_log.json"
step 240 "bert time" "$py" benchmarks/bert_gpu.py --log "$out/bert_gpu_log.json" \
  --out "$out/bert_gpu"
rm -f "$out/bert_gpu.png" "$out/bert_gpu_log.json.model.npz"
echo "done $(date +%T)" | tee -a "$log"
