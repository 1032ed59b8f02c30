#!/usr/bin/env bash
# Fetches (here, where the package registries are reachable) the wheels a GPU machine lacks for
# kiln's GPU sittings: xgboost-cpu, for the GPU cost model (the device image has numpy and
# scipy, its other needs). They land in .whl/ (ignored by git); a device call carries `.whl`
# and scripts/gpu_lib.sh installs them there before anything runs.
# Usage: bash scripts/gpu_wheels.sh   (PYTHON=python3; needs pip)
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
"${PYTHON:-python3}" -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 \
  --implementation cp --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 \
  --platform manylinux2014_x86_64 -d "$root/.whl" "xgboost-cpu==3.2.0"
ls -la "$root/.whl"
