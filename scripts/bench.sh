#!/usr/bin/env bash
# kiln's main job, end to end on a fresh machine (about 30 minutes on 2 cores):
#   1. hand-written GEMM schedule vs ONNX Runtime / NumPy       (benchmarks/gemm_manual.py)
#   2. auto-scheduled GEMMs (mm, mm with constant weight, + hard_swish) vs ORT / PyTorch / NumPy
#   3. tune every kernel of BERT-base (random weights) within a time budget (kiln tune)
#   4. the same in bfloat16 where the CPU has AVX512-BF16: the bf16 GEMMs (gemm_bf16.py) and
#      BERT-base's bf16 build tuned for the same budget
#   5. BERT-base latency: kiln untuned / tuned / tuned with its records checked in the
#      network (fp32, bf16), kiln int8 (the model ORT's int8 row runs), vs ORT (fp32, int8),
#      PyTorch (eager, bf16), torch.compile
# Results: benchmarks/results/*.{json,md,png}. Logs are resumed, so a second run tunes further.
# Knobs: GEMM_TRIALS (default 128), BERT_BUDGET (default 15m).
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
source scripts/bootstrap.sh bench
python benchmarks/gemm_manual.py
python benchmarks/gemm.py --trials "${GEMM_TRIALS:-128}"
python benchmarks/reductions.py          # softmax / layer norm default schedules vs peers
kiln tune --builtin bert-base --trials 100000 --time-budget "${BERT_BUDGET:-15m}" \
  --log benchmarks/results/logs/bert_base_flushed.json
bf16=()
if python -c "import kiln, sys; sys.exit(not kiln.target.Target('cpu').has('avx512bf16'))"; then
  python benchmarks/gemm_bf16.py --trials "${GEMM_TRIALS:-128}"
  kiln tune --builtin bert-base --dtype bf16 --trials 100000 --time-budget "${BERT_BUDGET:-15m}" \
    --log benchmarks/results/logs/bert_base_bf16.json
  bf16=(--bf16 --bf16-log "bf16 ${BERT_BUDGET:-15m}=benchmarks/results/logs/bert_base_bf16.json")
fi
python benchmarks/bert.py --log "tuned ${BERT_BUDGET:-15m}=benchmarks/results/logs/bert_base_flushed.json" \
  --budgets 5 --check-records --int8 "${bf16[@]}"
