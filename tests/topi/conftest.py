"""Puts tests/ on sys.path so topi tests can import the shared helpers (util, te_interp)."""

import sys
from pathlib import Path

_TESTS = str(Path(__file__).resolve().parents[1])
if _TESTS not in sys.path:
    sys.path.insert(0, _TESTS)
