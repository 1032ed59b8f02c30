# Shared by the GPU scripts (gpu_check.sh, gpu_tune.sh, gpu_sitting.sh); source it with
# OUTDIR as $1. Sets root, py (PYTHON, default python3), out (absolute), log (out/log.txt),
# PYTHONPATH; defines step(); gpu_header prints the GPU, driver and versions into the log.
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
py="${PYTHON:-python3}"
mkdir -p "$1"
out="$(cd "$1" && pwd)"
cd "$root" || exit 1
export PYTHONPATH="$root${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
log="$out/log.txt"
# wheels carried from the development machine (scripts/gpu_wheels.sh): xgboost for the model
if compgen -G "$root/.whl/*.whl" >/dev/null; then
  "$py" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
    --target /tmp/kiln-site "$root"/.whl/*.whl && export PYTHONPATH="$PYTHONPATH:/tmp/kiln-site"
fi

step() {  # step SECONDS NAME COMMAND...: run with a time limit, log everything, keep going
  local limit="$1" name="$2"; shift 2
  echo "=== $name ($(date +%T), limit ${limit}s)" | tee -a "$log"
  local t0=$SECONDS
  timeout --kill-after=10 "$limit" "$@" 2>&1 | tee -a "$log"
  echo "=== $name: exit ${PIPESTATUS[0]} after $((SECONDS - t0))s" | tee -a "$log"
}

gpu_header() {
  { nvidia-smi --query-gpu=name,driver_version,clocks.sm,clocks.mem,temperature.gpu --format=csv
    "$py" -c "import sys, numpy, torch; print(sys.version.split()[0], 'numpy', numpy.__version__, 'torch', torch.__version__)"
    "$py" -c "import kiln; from kiln.runtime import cuda; from kiln.codegen import nvrtc; print(cuda.device_properties(0)); print('nvrtc', nvrtc.version())"
  } 2>&1 | tee -a "$log"
}

resume_logs() {  # the committed GPU tuning logs, copied into OUTDIR to grow there
  for f in gemm_gpu bert_gpu; do
    [ -f "benchmarks/results/logs/${f}_log.json" ] && cp "benchmarks/results/logs/${f}_log.json" "$out/"
  done
  return 0
}
