"""TVM's contrib.debugger: the debug executor (per-kernel times of a compiled model)."""

from . import debug_executor

__all__ = ["debug_executor"]
