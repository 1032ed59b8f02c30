"""Test helpers TVM users know: assert_allclose."""

from __future__ import annotations

import numpy as np


def assert_allclose(actual, desired, rtol: float = 1e-7, atol: float = 0.0) -> None:
    """np.testing.assert_allclose that also accepts kiln NDArrays."""
    a = actual.numpy() if hasattr(actual, "numpy") else actual
    d = desired.numpy() if hasattr(desired, "numpy") else desired
    np.testing.assert_allclose(a, d, rtol=rtol, atol=atol, verbose=True)
