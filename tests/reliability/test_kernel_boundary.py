"""At the kernel boundary: an output aliasing another argument and an integer scalar beyond
its dtype are ArgumentErrors, not silent garbage."""

import numpy as np
import pytest

import kiln
from kiln import te
from kiln.errors import ArgumentError


def test_output_aliasing_an_input_is_an_error():
    n = 64
    a = te.placeholder((n, n), name="A")
    b = te.placeholder((n, n), name="B")
    k = te.reduce_axis((0, n), name="k")
    c = te.compute((n, n), lambda i, j: te.sum(a[i, k] * b[k, j], axis=k), name="C")
    f = kiln.build(te.create_schedule(c.op), [a, b, c], target="cpu")
    x = np.random.default_rng(0).standard_normal((n, n)).astype("float32")
    y = x.copy()
    with pytest.raises(ArgumentError, match="'C' is written .* shares memory with argument 1"):
        f(x, y, x)
    with pytest.raises(ArgumentError, match="shares memory"):
        f(x[:, :], y, x.reshape(n, n))  # a view of the same memory
    out = np.empty((n, n), "float32")
    f(x, x, out)  # two inputs may alias: they are only read
    np.testing.assert_allclose(out, x @ x, rtol=1e-4, atol=1e-4)


def test_integer_scalar_out_of_range_is_an_error():
    n = te.var("n")
    a = te.placeholder((8,), name="a")
    b = te.compute((8,), lambda i: a[i] + n.astype("float32"), name="b")
    f = kiln.build(te.create_schedule(b.op), [a, b], target="cpu")  # n: a scalar parameter
    x = np.zeros(8, "float32")
    out = np.empty(8, "float32")
    f(x, out, 5)
    np.testing.assert_array_equal(out, 5)
    with pytest.raises(ArgumentError, match=r"outside the range of int32"):
        f(x, out, 2 ** 31)


def test_cuda_module_refuses_aliasing_before_touching_a_gpu():
    pytest.importorskip("kiln.codegen.nvrtc")
    from kiln.topi import cuda as tc
    n = 32
    a = te.placeholder((n, n), name="A")
    b = te.placeholder((n, n), name="B")
    k = te.reduce_axis((0, n), name="k")
    c = te.compute((n, n), lambda i, j: te.sum(a[i, k] * b[j, k], axis=k), name="C")
    s = te.create_schedule(c.op)
    tc.schedule_matmul(s, c, tm=2, tn=2, tx=8, ty=4, bk=8)
    f = kiln.build(s, [a, b, c], target="cuda -arch=sm_90")
    x = np.zeros((n, n), "float32")
    with pytest.raises(ArgumentError, match="'C' is written .* shares memory"):
        f(x, np.zeros((n, n), "float32"), x)
