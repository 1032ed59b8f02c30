"""The te reference interpreter (tests/te_interp.py) follows te semantics exactly."""

import numpy as np
import pytest
import te_interp

from kiln import te


def test_integer_floor_semantics():
    a = te.placeholder((6,), "int32", name="a")
    an = np.array([-7, -6, -1, 0, 5, 7], dtype="int32")
    outs = [te.compute((6,), lambda i: a[i] / 3), te.compute((6,), lambda i: a[i] // -4),
            te.compute((6,), lambda i: a[i] % 3), te.compute((6,), lambda i: a[i] % -4)]
    res = te_interp.evaluate(outs, {a: an})
    np.testing.assert_array_equal(res[0], an // 3)
    np.testing.assert_array_equal(res[1], an // -4)
    np.testing.assert_array_equal(res[2], an % 3)
    np.testing.assert_array_equal(res[3], an % -4)
    assert all(r.dtype == np.int32 for r in res)


def test_float_floordiv_and_casts():
    x = te.placeholder((4,), name="x")
    xn = np.array([-2.5, -0.5, 0.5, 2.5], dtype="float32")
    outs = [te.compute((4,), lambda i: x[i] // 2.0),
            te.compute((4,), lambda i: x[i].astype("int32")),
            te.compute((4,), lambda i: te.round(x[i]))]
    res = te_interp.evaluate(outs, {x: xn})
    np.testing.assert_array_equal(res[0], np.floor(xn / 2))
    np.testing.assert_array_equal(res[1], [-2, 0, 0, 2])  # C truncation
    np.testing.assert_array_equal(res[2], [-3, -1, 1, 3])  # roundf: half away from zero


def test_select_guards_out_of_range_reads():
    x = te.placeholder((5,), name="x")
    xn = np.arange(5, dtype="float32")
    guarded = te.compute((7,), lambda i: te.if_then_else(
        te.all(i >= 1, i < 6), x[i - 1], -1.0))
    np.testing.assert_array_equal(te_interp.evaluate(guarded, {x: xn}), [-1, 0, 1, 2, 3, 4, -1])
    unguarded = te.compute((7,), lambda i: x[i - 1])
    with pytest.raises(IndexError, match="outside"):
        te_interp.evaluate(unguarded, {x: xn})
    wrong_guard = te.compute((7,), lambda i: te.if_then_else(i < 6, x[i - 1], 0.0))
    with pytest.raises(IndexError):
        te_interp.evaluate(wrong_guard, {x: xn})


def test_reduce_where_init_and_builtin_ops():
    x = te.placeholder((3, 4), name="x")
    xn = np.arange(12, dtype="float32").reshape(3, 4) - 5
    k = te.reduce_axis((0, 4), name="k")
    outs = [te.compute((3,), lambda i: te.sum(x[i, k], axis=k, where=x[i, k] > 0)),
            te.compute((3,), lambda i: te.max(x[i, k], axis=k, where=k < 2)),
            te.compute((3,), lambda i: te.sum(x[i, k], axis=k, init=100.0)),
            te.compute((3,), lambda i: te.prod(x[i, k] * 0 + 2, axis=k))]
    res = te_interp.evaluate(outs, {x: xn})
    np.testing.assert_array_equal(res[0], np.where(xn > 0, xn, 0).sum(1))
    np.testing.assert_array_equal(res[1], xn[:, :2].max(1))
    np.testing.assert_array_equal(res[2], xn.sum(1) + 100)
    np.testing.assert_array_equal(res[3], [16, 16, 16])


def test_generic_comm_reducer_and_guarded_reduce_reads():
    absmax = te.comm_reducer(lambda a, b: te.max(te.abs(a), te.abs(b)),
                             lambda t: te.const(0, t), name="absmax")
    x = te.placeholder((2, 5), name="x")
    xn = np.array([[1, -7, 3, 2, 0], [-1, 2, 6, -6, 5]], dtype="float32")
    k = te.reduce_axis((0, 6), name="k")  # one past the end, masked by `where`
    out = te.compute((2,), lambda i: absmax(x[i, k], axis=k, where=k < 5))
    np.testing.assert_array_equal(te_interp.evaluate(out, {x: xn}), [7, 6])


def test_multi_output_symbolic_shape_and_zero_dim():
    n = te.var("n")
    x = te.placeholder((n,), name="x")
    lo, hi = te.compute((n,), lambda i: [x[i] - 1.0, x[i] + 1.0], name="pair")
    k = te.reduce_axis((0, n), name="k")
    total = te.compute((), lambda: te.sum(x[k], axis=k), name="total")
    xn = np.arange(4, dtype="float32")
    res = te_interp.evaluate([lo, hi, total], {x: xn}, var_values={n: 4})
    np.testing.assert_array_equal(res[0], xn - 1)
    np.testing.assert_array_equal(res[1], xn + 1)
    assert res[2].shape == () and res[2] == 6


def test_input_checks():
    x = te.placeholder((3,), name="x")
    y = te.compute((3,), lambda i: x[i] * 2.0)
    with pytest.raises(KeyError, match="no input"):
        te_interp.evaluate(y, {})
    with pytest.raises(ValueError, match="wants"):
        te_interp.evaluate(y, {x: np.zeros(3, dtype="float64")})
