#!/usr/bin/env bash
# Creates .venv (if missing) and installs kiln with the given extras into it.
# Usage: source scripts/bootstrap.sh test|bench
set -euo pipefail
extras="${1:-test}"
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
venv="$root/.venv"
if [ ! -x "$venv/bin/python" ]; then
  python3 -m venv "$venv"
fi
stamp="$venv/.kiln-$extras-$(sha256sum "$root/pyproject.toml" | cut -c1-16)"
if [ ! -f "$stamp" ]; then
  "$venv/bin/python" -m pip install -q --upgrade pip
  "$venv/bin/python" -m pip install -q -e "$root[$extras]"
  touch "$stamp"
fi
export PATH="$venv/bin:$PATH"
