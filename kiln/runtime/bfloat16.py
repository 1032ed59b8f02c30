"""bfloat16 arrays without a bfloat16 NumPy dtype: the 16 bits of each value in a uint16 array.

`to_bfloat16(x)` rounds float32 to nearest even (NaN stays NaN), as kiln's generated code,
PyTorch and ONNX Runtime do; `from_bfloat16(bits)` widens back to float32 exactly. Kernels
with bfloat16 parameters accept such uint16 arrays, and also `ml_dtypes.bfloat16` arrays
(what onnx and jax use) when that package is installed; numpy stays the only requirement.
"""

from __future__ import annotations

import numpy as np


def to_bfloat16(x) -> np.ndarray:
    """float32 values -> uint16 bfloat16 bits (round to nearest even)."""
    f = np.ascontiguousarray(np.asarray(x, dtype=np.float32))
    u = f.view(np.uint32).astype(np.uint64)
    rounded = ((u + 0x7FFF + ((u >> 16) & 1)) >> 16).astype(np.uint16)
    nan = np.isnan(f)
    if nan.any():
        rounded[nan] = ((u[nan] >> 16) | 0x40).astype(np.uint16)
    return rounded


def from_bfloat16(bits) -> np.ndarray:
    """uint16 bfloat16 bits (or an ml_dtypes.bfloat16 array) -> float32."""
    b = as_bits(np.asarray(bits))
    return (b.astype(np.uint32) << 16).view(np.float32)


def as_bits(a: np.ndarray) -> np.ndarray:
    """The uint16 view of a bfloat16 array given as uint16 bits or as ml_dtypes.bfloat16."""
    if a.dtype == np.uint16:
        return a
    if str(a.dtype) == "bfloat16":
        return a.view(np.uint16)
    raise TypeError(f"expected bfloat16 bits (uint16) or ml_dtypes.bfloat16, got {a.dtype}")


def is_bfloat16_array(a: np.ndarray) -> bool:
    return a.dtype == np.uint16 or str(a.dtype) == "bfloat16"


__all__ = ["to_bfloat16", "from_bfloat16", "as_bits", "is_bfloat16_array"]
