"""NaN propagates through max / min / relu / clip as in NumPy, PyTorch and ONNX Runtime,
in scalar and vectorized code."""

import numpy as np
import pytest

import kiln
from kiln import te, topi


@pytest.mark.parametrize("vectorize", [False, True])
@pytest.mark.parametrize("op", ["relu", "clip", "maximum", "minimum"])
def test_nan_propagates(op, vectorize):
    x = te.placeholder((4, 16), name="x")
    y = te.placeholder((4, 16), name="y")
    out = {"relu": lambda: topi.relu(x), "clip": lambda: topi.clip(x, -1.0, 1.0),
           "maximum": lambda: topi.maximum(x, y), "minimum": lambda: topi.minimum(x, y)}[op]()
    s = te.create_schedule(out.op)
    if vectorize:
        s[out].vectorize(s[out].op.axis[1])
    f = kiln.build(s, [x, y, out] if op in ("maximum", "minimum") else [x, out], target="cpu")
    xn = np.random.default_rng(0).standard_normal((4, 16)).astype("float32")
    yn = np.random.default_rng(1).standard_normal((4, 16)).astype("float32")
    xn[0, 3] = yn[1, 5] = np.nan
    got = np.empty((4, 16), "float32")
    ref = {"relu": lambda: np.maximum(xn, 0), "clip": lambda: np.clip(xn, -1, 1),
           "maximum": lambda: np.maximum(xn, yn), "minimum": lambda: np.minimum(xn, yn)}[op]()
    f(*([xn, yn, got] if op in ("maximum", "minimum") else [xn, got]))
    np.testing.assert_array_equal(np.isnan(got), np.isnan(ref))
    np.testing.assert_allclose(got, ref)
