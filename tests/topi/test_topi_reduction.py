"""topi.reduction against NumPy: axis None / int / negative / tuple, keepdims, arg-extremes."""

import numpy as np
import pytest
from util import BACKENDS, assert_close, rand, run_te

from kiln import te, topi

OPS = {"sum": np.sum, "max": np.max, "min": np.min, "prod": np.prod, "mean": np.mean}
AXES = [None, 0, -1, (0, 2), (1,)]


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("name", sorted(OPS))
@pytest.mark.parametrize("axis", AXES, ids=str)
def test_reduce(name, axis, backend):
    rng = np.random.default_rng(4)
    x = te.placeholder((3, 5, 7), name="x")
    xn = rand(rng, (3, 5, 7), low=0.5, high=1.5)
    keepdims = axis in (0, (0, 2))
    out = getattr(topi, name)(x, axis=axis, keepdims=keepdims)
    assert out.op.tag in ("comm_reduce", "elemwise")
    want = OPS[name](xn.astype(np.float64), axis=axis, keepdims=keepdims)
    assert_close(run_te(out, {x: xn}, backend), want, rtol=1e-5)


def test_reduce_all_gives_0d():
    x = te.placeholder((3, 4))
    assert topi.sum(x).shape == ()
    assert [int(d) for d in topi.sum(x, keepdims=True).shape] == [1, 1]
    assert topi.sum(x, axis=1).op.tag == "comm_reduce"


@pytest.mark.parametrize("backend", BACKENDS)
def test_reduce_int_and_size1(backend):
    x = te.placeholder((1, 13), "int32", name="x")
    xn = np.arange(-6, 7, dtype="int32").reshape(1, 13)
    res = run_te([topi.sum(x, axis=1), topi.max(x, axis=0), topi.mean(x, axis=-1)],
                 {x: xn}, backend)
    np.testing.assert_array_equal(res[0], xn.sum(axis=1))
    np.testing.assert_array_equal(res[1], xn.max(axis=0))
    np.testing.assert_array_equal(res[2], xn.sum(axis=-1) // 13)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("axis", [None, 0, 1, -1])
def test_argmax_argmin_first_index(axis, backend):
    x = te.placeholder((4, 6), "int32", name="x")
    xn = np.array([[1, 5, 5, 0, 0, 2], [7, 7, 1, 1, 7, 0], [3, 3, 3, 3, 3, 3],
                   [-1, 4, -2, 4, -2, 0]], dtype="int32")  # ties: the first index wins
    res = run_te([topi.argmax(x, axis), topi.argmin(x, axis)], {x: xn}, backend)
    np.testing.assert_array_equal(res[0], np.argmax(xn, axis=axis))
    np.testing.assert_array_equal(res[1], np.argmin(xn, axis=axis))
    assert res[0].dtype == np.int32


@pytest.mark.parametrize("backend", BACKENDS)
def test_argmax_keepdims_float(backend):
    rng = np.random.default_rng(5)
    x = te.placeholder((2, 7, 3), name="x")
    xn = rand(rng, (2, 7, 3))
    out = run_te(topi.argmax(x, axis=1, keepdims=True, dtype="int64"), {x: xn}, backend)
    np.testing.assert_array_equal(out, np.argmax(xn, axis=1, keepdims=True))
