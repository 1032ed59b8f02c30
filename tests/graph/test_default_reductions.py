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


def test_dense_with_a_prime_row_count_gets_a_guarded_row_tile():
    """ViT's 197 tokens: the default register tile keeps 4 rows (the edge guarded) instead of
    falling back to one row, and computes the product."""
    from kiln.schedule.layout import input_layouts, pack_array
    x = te.placeholder((197, 64), name="x")
    w = te.placeholder((96, 64), name="w")
    y = topi.nn.dense(x, w)
    state = default_schedule(ComputeDAG([x, w, y]), ("w",), "cpu")
    tiled = [st for st in state.stages if st.relations and st.compute and
             st.compute.reduce_axis]
    assert any(it.extent == 4 for st in tiled for it in st.iters)
    f = kiln.build(state, [x, w, y], target="cpu")
    rng = np.random.default_rng(0)
    xn, wn = rng.standard_normal((197, 64), dtype=np.float32), \
        rng.standard_normal((96, 64), dtype=np.float32)
    lays = input_layouts(state, [x, w])
    args = [pack_array(a, lay) if lay else a for a, lay in zip((xn, wn), lays)]
    out = np.empty((197, 96), "float32")
    f(*args, out)
    np.testing.assert_allclose(out, xn @ wn.T, rtol=1e-4, atol=1e-4)
