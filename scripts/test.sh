#!/usr/bin/env bash
# The test suite: installs what it needs into .venv, then runs pytest (2 workers).
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
source scripts/bootstrap.sh test
ruff check kiln tests benchmarks
set +e
python -m pytest -q -n 2 "$@"
rc=$?
set -e
if [ "$rc" -eq 5 ]; then
  echo "pytest collected no tests: failing on purpose" >&2
  exit 1
fi
exit "$rc"
