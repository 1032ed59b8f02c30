"""Parameter binding: constants pre-transformed, once, into the layouts the kernels read.

In: the graph's parameter values and, for every kernel argument that is a constant, the
layout its chosen schedule expects (() = as is; ((dim, factor), ...) = packed by a
LayoutRewriteStep, see kiln.schedule.layout).
Out: a ParamTable: one contiguous, 64-byte aligned array per (constant, layout) pair, in the
order the executable's `params` pointer array holds them, and the index of each pair.
Why: weights are packed at build time with NumPy, so inference never repacks anything; a
constant read in two layouts (tied embeddings) is stored twice, each copy once.
"""

from __future__ import annotations

import numpy as np

from ...runtime.bfloat16 import as_bits
from ...schedule.layout import pack_array

__all__ = ["ParamTable", "aligned_copy"]


def aligned_copy(a: np.ndarray, align: int = 64) -> np.ndarray:
    """A C-contiguous copy of `a` whose data starts on an `align`-byte boundary."""
    a = np.ascontiguousarray(a)
    raw = np.empty(a.nbytes + align, dtype=np.uint8)
    start = (-raw.ctypes.data) % align
    out = raw[start:start + a.nbytes].view(a.dtype).reshape(a.shape)
    out[...] = a
    return out


def param_value(value, dtype: str) -> np.ndarray:
    """A parameter as the kernels read it: bool as bytes, bfloat16 as its uint16 bits."""
    value = np.asarray(value)
    if value.dtype == np.bool_ or dtype == "bool":
        return value.astype(np.bool_)
    if dtype == "bfloat16":
        return as_bits(value)  # already its bits (passes/bf16.py); never a numeric cast
    return value.astype(dtype, copy=False)


class ParamTable:
    """Bound constants: entries[i] = (name, layout, array)."""

    def __init__(self, params: dict):
        self.params = params
        self.entries: list = []
        self.index: dict = {}

    def bind(self, name: str, dtype: str, shape: tuple, layout: tuple = ()) -> int:
        """Index of constant `name` stored in `layout` (packing it on first use)."""
        key = (name, tuple(tuple(p) for p in layout))
        if key in self.index:
            return self.index[key]
        value = param_value(self.params[name], dtype).reshape(shape)
        packed = pack_array(value, key[1]) if key[1] else value
        self.index[key] = len(self.entries)
        self.entries.append((name, key[1], aligned_copy(packed)))
        return self.index[key]

    @property
    def arrays(self) -> list:
        return [a for _, _, a in self.entries]

    @property
    def nbytes(self) -> int:
        return sum(a.nbytes for a in self.arrays)
