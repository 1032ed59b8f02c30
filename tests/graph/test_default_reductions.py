"""Default CPU schedules of row reductions (softmax, layer norm) use the SIMD lanes: the sum
runs as a vector of partial sums (the exp inside softmax's sum is the vector polynomial), and
the results match NumPy, row lengths that the lanes do not divide included."""

import numpy as np
import pytest

import kiln
from kiln import te, topi
from kiln.graph.default_schedule import default_schedule
from kiln.schedule import ComputeDAG


def _softmax_ref(x):
    e = np.exp(x - x.max(-1, keepdims=True))
    return e / e.sum(-1, keepdims=True)


@pytest.mark.parametrize("cols", [128, 70, 37])
def test_softmax_default_schedule_is_vectorized_and_correct(cols):
    x = te.placeholder((6, cols), name="x")
    y = topi.nn.softmax(x)
    state = default_schedule(ComputeDAG([x, y]), (), "cpu")
    f = kiln.build(state, [x, y], target="cpu")
    lanes = kiln.target.Target("cpu").vector_lanes("float32")
    if cols >= 2 * lanes:  # the vector exp in the sum's partials, and in the normalisation
        assert "softmax_expsum_rf" in f.source
        assert f.source.count(f"kiln_exp_f32x{lanes}(") >= 2
    xn = np.random.default_rng(cols).standard_normal((6, cols)).astype("float32") * 4
    out = np.empty_like(xn)
    f(xn, out)
    np.testing.assert_allclose(out, _softmax_ref(xn), rtol=1e-5, atol=1e-6)


def test_layer_norm_default_schedule_is_vectorized_and_correct():
    x = te.placeholder((4, 100), name="x")
    g = te.placeholder((100,), name="g")
    b = te.placeholder((100,), name="b")
    y = topi.nn.layer_norm(x, g, b)
    state = default_schedule(ComputeDAG([x, g, b, y]), (), "cpu")
    assert sum(st.origin == "rfactor" for st in state.stages) == 2
    f = kiln.build(state, [x, g, b, y], target="cpu")
    rng = np.random.default_rng(0)
    xn, gn, bn = (rng.standard_normal(s).astype("float32") for s in ((4, 100), (100,), (100,)))
    out = np.empty_like(xn)
    f(xn, gn, bn, out)
    m = xn.mean(-1, keepdims=True)
    ref = (xn - m) / np.sqrt(((xn - m) ** 2).mean(-1, keepdims=True) + 1e-5) * gn + bn
    np.testing.assert_allclose(out, ref, rtol=1e-4, atol=1e-5)
