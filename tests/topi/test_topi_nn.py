"""topi.nn dense / matmul / batch_matmul / softmax / log_softmax / layer_norm against NumPy."""

import numpy as np
import pytest
from topi_ref import layer_norm as layer_norm_ref
from util import BACKENDS, assert_close, rand, run_te

from kiln import te, topi


def _ph(rng, shape, name, dtype="float32"):
    return te.placeholder(shape, dtype, name=name), rand(rng, shape, dtype, -3, 3)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("m,n,k", [(7, 13, 5), (1, 8, 17), (16, 1, 1)])
def test_dense(m, n, k, backend):
    rng = np.random.default_rng(8)
    (x, xn), (w, wn), (b, bn) = (_ph(rng, s, nm) for s, nm in
                                 (((m, k), "x"), ((n, k), "w"), ((n,), "b")))
    plain, biased = topi.nn.dense(x, w), topi.nn.dense(x, w, b)
    assert plain.op.tag == "dense" and plain.op.input_tensors == [x, w]
    assert biased.op.tag == "broadcast" and biased.op.input_tensors[0].op.tag == "dense"
    res = run_te([plain, biased], {x: xn, w: wn, b: bn}, backend)
    assert_close(res[0], xn @ wn.T, rtol=1e-5, atol=1e-5)
    assert_close(res[1], xn @ wn.T + bn, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("backend", BACKENDS)
def test_dense_nd_data_and_int8(backend):
    rng = np.random.default_rng(9)
    (x, xn), (w, wn) = _ph(rng, (2, 3, 7), "x"), _ph(rng, (5, 7), "w")
    (q, qn), (v, vn) = _ph(rng, (3, 11), "q", "int8"), _ph(rng, (4, 11), "v", "int8")
    res = run_te([topi.nn.dense(x, w), topi.nn.dense(q, v, out_dtype="int32")],
                 {x: xn, w: wn, q: qn, v: vn}, backend)
    assert_close(res[0], xn @ wn.T)
    assert res[1].dtype == np.int32
    np.testing.assert_array_equal(res[1], qn.astype("int32") @ vn.astype("int32").T)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("ta,tb", [(False, False), (True, False), (False, True), (True, True)])
def test_matmul_transposes(ta, tb, backend):
    rng = np.random.default_rng(10)
    m, n, k = 5, 3, 7
    (a, an), (b, bn) = _ph(rng, (k, m) if ta else (m, k), "a"), \
        _ph(rng, (n, k) if tb else (k, n), "b")
    got = run_te(topi.nn.matmul(a, b, ta, tb), {a: an, b: bn}, backend)
    assert_close(got, (an.T if ta else an) @ (bn.T if tb else bn), atol=1e-5)


@pytest.mark.parametrize("backend", BACKENDS)
def test_matmul_batch_broadcast(backend):
    rng = np.random.default_rng(11)
    (a, an), (b, bn), (c, cn) = (_ph(rng, s, nm) for s, nm in
                                 (((2, 1, 3, 5), "a"), ((4, 5, 6), "b"), ((5, 2), "c")))
    res = run_te([topi.matmul(a, b), topi.matmul(a, c)], {a: an, b: bn, c: cn}, backend)
    assert_close(res[0], np.matmul(an, bn), atol=1e-5)
    assert_close(res[1], np.matmul(an, cn), atol=1e-5)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("bx,by", [(3, 3), (1, 3), (3, 1)])
@pytest.mark.parametrize("ta,tb", [(False, True), (False, False), (True, True)])
def test_batch_matmul(bx, by, ta, tb, backend):
    rng = np.random.default_rng(12)
    m, n, k = 4, 7, 5
    (x, xn) = _ph(rng, (bx, k, m) if ta else (bx, m, k), "x")
    (y, yn) = _ph(rng, (by, n, k) if tb else (by, k, n), "y")
    out = topi.nn.batch_matmul(x, y, ta, tb)
    assert out.op.tag == "batch_matmul"
    want = np.matmul(xn.transpose(0, 2, 1) if ta else xn, yn.transpose(0, 2, 1) if tb else yn)
    assert_close(run_te(out, {x: xn, y: yn}, backend), want, atol=1e-5)


def _softmax(x, axis):
    e = np.exp(x - x.max(axis=axis, keepdims=True))
    return e / e.sum(axis=axis, keepdims=True)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("axis", [-1, 0, 1])
def test_softmax_and_log_softmax(axis, backend):
    rng = np.random.default_rng(13)
    x, xn = _ph(rng, (3, 7, 5), "x")
    xn[0, 0, 0] = 80.0  # exp(80) overflows float32 without the max subtraction
    outs = [topi.nn.softmax(x, axis), topi.nn.log_softmax(x, axis)]
    res = run_te(outs, {x: xn}, backend)
    want = _softmax(xn.astype(np.float64), axis)
    assert_close(res[0], want, atol=1e-6)
    assert_close(res[1], np.log(np.maximum(want, 1e-300)), rtol=1e-5, atol=1e-5)


def test_softmax_structure():
    x = te.placeholder((4, 9), name="x")
    out = topi.nn.softmax(x)
    assert out.op.name == "softmax_norm"
    ex, sm = out.op.input_tensors
    assert (ex.op.name, sm.op.name) == ("softmax_exp", "softmax_expsum")
    assert [t.op.name for t in ex.op.input_tensors] == ["x", "softmax_maxelem"]
    assert sm.op.tag == "comm_reduce" and sm.op.input_tensors == [ex]


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("axis,affine", [(-1, True), ((1, 2), True), (1, False)], ids=str)
def test_layer_norm(axis, affine, backend):
    rng = np.random.default_rng(14)
    shape = (2, 5, 7)
    x, xn = _ph(rng, shape, "x")
    xn += 10.0  # a large mean: the two-pass variance must stay accurate
    axes = tuple(a % 3 for a in ((axis,) if isinstance(axis, int) else axis))
    pshape = tuple(shape[a] for a in axes)
    (g, gn), (b, bn) = _ph(rng, pshape, "g"), _ph(rng, pshape, "b")
    feeds = {x: xn, g: gn, b: bn} if affine else {x: xn}
    out = topi.nn.layer_norm(x, g if affine else None, b if affine else None, axis, 1e-5)
    want = layer_norm_ref(xn, gn if affine else None, bn if affine else None, axes, 1e-5)
    assert_close(run_te(out, feeds, backend), want, rtol=1e-4, atol=1e-4)
