"""The seed's two workloads (mm, swish_mm at 128x3072x768) run exactly as the README shows,
with the default schedule and with a hand-written tiled schedule, and match NumPy."""

import numpy as np
import pytest

import kiln as tvm
from kiln import auto_scheduler, te, topi  # noqa: F401 - the README example imports it

M, N, K = 128, 3072, 768


@auto_scheduler.register_workload
def mm(M, N, K):
    a = te.placeholder((M, K), name="a")
    b = te.placeholder((N, K), name="b")
    k = te.reduce_axis((0, K), name="k")
    c = te.compute((M, N), lambda i, j: te.sum(a[i, k] * b[j, k], [k]))
    return [a, b, c]


@auto_scheduler.register_workload
def swish_mm(M, N, K):
    a = te.placeholder((M, K), name="a")
    b = te.placeholder((N, K), name="b")
    k = te.reduce_axis((0, K), name="k")
    c = te.compute((M, N), lambda i, j: te.sum(a[i, k] * b[j, k], [k]))
    relu6 = tvm.topi.clip(te.compute(c.shape, lambda i, j: c[i, j] + 3.0), 0., 6.)
    d = te.compute(c.shape, lambda i, j: relu6[i, j] * c[i, j] * 0.1666667)
    return [a, b, d]


@pytest.fixture(scope="module")
def data():
    rng = np.random.default_rng(0)
    a = rng.random((M, K), dtype=np.float32)
    b = rng.random((N, K), dtype=np.float32) - 0.5
    c = a.astype(np.float64) @ b.T.astype(np.float64)
    swish = np.clip(c + 3, 0, 6) * c * 0.1666667
    return a, b, {"mm": c, "swish_mm": swish}


def _tiled(s, out, c):
    """Register-tiled schedule by hand: epilogue inlined, c computed inside d's tiles."""
    for st in s.stages:
        if st.op not in (out.op, c.op) and hasattr(st.op, "body"):
            s[st.op].compute_inline()
    i, j = out.op.axis
    io, jo, ii, ji = s[out].tile(i, j, 4, 32)
    tile = s[out].fuse(io, jo)
    s[out].parallel(tile)
    s[out].vectorize(ji)
    if c is not out:
        s[c].compute_at(s[out], tile)
        ci, cj = c.op.axis
        (ck,) = c.op.reduce_axis
        cjo, cji = s[c].split(cj, factor=16)
        s[c].reorder(ck, ci, cjo, cji)
        s[c].unroll(ci)
        s[c].unroll(cjo)
        s[c].vectorize(cji)
    return s


@pytest.mark.parametrize("name", ["mm", "swish_mm"])
@pytest.mark.parametrize("schedule", ["default", "tiled"])
def test_seed_workload(name, schedule, data):
    a_np, b_np, refs = data
    fn = {"mm": mm, "swish_mm": swish_mm}[name]
    a, b, out = fn(M, N, K)
    s = te.create_schedule(out.op)
    if schedule == "tiled":
        c = out if name == "mm" else out.op.input_tensors[-1]
        if name == "swish_mm":
            c = [t for t in out.op.input_tensors if t.op.reduce_axis][0]
        s = _tiled(s, out, c)
    f = tvm.build(s, [a, b, out], target="llvm")
    d_np = np.empty((M, N), np.float32)
    f(a_np, b_np, tvm.nd.array(d_np) if schedule == "tiled" else d_np)
    if schedule == "tiled":
        d_np = np.empty((M, N), np.float32)
        f(a_np, b_np, d_np)
    np.testing.assert_allclose(d_np, refs[name], rtol=1e-4, atol=1e-4)
    assert "default_function" in f.source
    r = f.time_evaluator(number=1, repeat=2)(a_np, b_np, d_np)
    assert r.median > 0 and len(r.results) == 2
