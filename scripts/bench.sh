#!/usr/bin/env bash
# kiln's main job: installs what it needs into .venv, then benchmarks kiln against its peers
# (ONNX Runtime, NumPy) on the seed's GEMM and writes benchmarks/results/.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
source scripts/bootstrap.sh bench
python benchmarks/gemm_manual.py "$@"
