"""topi.math against NumPy: broadcasting binary ops, comparisons, unary math, activations."""

import math

import numpy as np
import pytest
from topi_ref import erf
from util import BACKENDS, assert_close, rand, run_te

from kiln import te, topi
from kiln.te import expr as E

BINARY = {
    "add": (topi.add, np.add),
    "subtract": (topi.subtract, np.subtract),
    "multiply": (topi.multiply, np.multiply),
    "divide": (topi.divide, np.divide),
    "maximum": (topi.maximum, np.maximum),
    "minimum": (topi.minimum, np.minimum),
    "power": (topi.power, np.power),
}


def _binary_case(name, sa, sb, backend):
    rng = np.random.default_rng(0)
    fn, ref = BINARY[name]
    a, b = te.placeholder(sa, name="a"), te.placeholder(sb, name="b")
    an = rand(rng, sa, low=0.5, high=2.0)
    bn = rand(rng, sb, low=0.5, high=2.0)
    out = run_te(fn(a, b), {a: an, b: bn}, backend)
    assert_close(out, ref(an, bn), rtol=1e-5)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("name", sorted(BINARY))
@pytest.mark.parametrize("shapes", [((7, 13), (7, 13)), ((7, 1), (1, 13))])
def test_binary(name, shapes, backend):
    _binary_case(name, *shapes, backend)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("shapes", [((13,), (7, 13)), ((1,), (5, 1, 3)), ((2, 1, 5), (3, 1)),
                                    ((1, 1), (1, 1))])
def test_add_broadcast_shapes(shapes, backend):
    _binary_case("add", *shapes, backend)


def test_broadcast_tags():
    a, b, c = (te.placeholder(s) for s in ((3, 4), (3, 4), (1, 4)))
    assert topi.add(a, b).op.tag == "elemwise"
    assert topi.add(a, c).op.tag == "broadcast"
    assert topi.add(a, 1.0).op.tag == "elemwise"


@pytest.mark.parametrize("backend", BACKENDS)
def test_scalar_operands(backend):
    rng = np.random.default_rng(1)
    x = te.placeholder((5, 3), name="x")
    xn = rand(rng, (5, 3))
    outs = [topi.add(x, 2.0), topi.subtract(3.0, x), topi.multiply(x, 0.5),
            topi.divide(1.0, topi.add(x, 2.0))]
    res = run_te(outs, {x: xn}, backend)
    for got, want in zip(res, [xn + 2, 3 - xn, xn * 0.5, 1 / (xn + 2)], strict=True):
        assert_close(got, want)
    assert isinstance(topi.add(2, 3), E.Expr)


@pytest.mark.parametrize("backend", BACKENDS)
def test_integer_division_floors(backend):
    a, b = te.placeholder((4, 5), "int32", "a"), te.placeholder((4, 5), "int32", "b")
    an = np.arange(-10, 10, dtype="int32").reshape(4, 5)
    bn = np.array([3, -3, 7, -2, 4], dtype="int32")[None, :].repeat(4, 0)
    res = run_te([topi.divide(a, b), topi.floor_divide(a, b), topi.floor_mod(a, b)],
                 {a: an, b: bn}, backend)
    np.testing.assert_array_equal(res[0], np.floor_divide(an, bn))
    np.testing.assert_array_equal(res[1], np.floor_divide(an, bn))
    np.testing.assert_array_equal(res[2], np.mod(an, bn))


@pytest.mark.parametrize("backend", BACKENDS)
def test_comparisons_and_where(backend):
    rng = np.random.default_rng(2)
    a, b = te.placeholder((3, 7), name="a"), te.placeholder((7,), name="b")
    an, bn = rand(rng, (3, 7)), rand(rng, (7,))
    bn[2] = an[1, 2]
    cmps = [topi.equal, topi.not_equal, topi.less, topi.less_equal, topi.greater,
            topi.greater_equal]
    refs = [np.equal, np.not_equal, np.less, np.less_equal, np.greater, np.greater_equal]
    outs = [f(a, b) for f in cmps] + [topi.where(topi.greater(a, b), a, 0.0)]
    res = run_te(outs, {a: an, b: bn}, backend)
    for got, ref in zip(res[:-1], refs, strict=True):
        assert got.dtype == np.bool_
        np.testing.assert_array_equal(got, ref(an, bn))
    assert_close(res[-1], np.where(an > bn, an, 0.0))


def _gelu_tanh(x):
    return 0.5 * x * (1 + np.tanh(math.sqrt(2 / math.pi) * (x + 0.044715 * x ** 3)))


UNARY = {
    "exp": (topi.exp, np.exp, (-3, 3)),
    "log": (topi.log, np.log, (0.1, 5)),
    "sqrt": (topi.sqrt, np.sqrt, (0.0, 5)),
    "rsqrt": (topi.rsqrt, lambda x: 1 / np.sqrt(x), (0.1, 5)),
    "tanh": (topi.tanh, np.tanh, (-4, 4)),
    "sigmoid": (topi.sigmoid, lambda x: 1 / (1 + np.exp(-x)), (-8, 8)),
    "erf": (topi.erf, erf, (-3, 3)),
    "abs": (topi.abs, np.abs, (-3, 3)),
    "negative": (topi.negative, np.negative, (-3, 3)),
    "floor": (topi.floor, np.floor, (-3, 3)),
    "ceil": (topi.ceil, np.ceil, (-3, 3)),
    "relu": (topi.nn.relu, lambda x: np.maximum(x, 0), (-3, 3)),
    "leaky_relu": (lambda t: topi.nn.leaky_relu(t, 0.1), lambda x: np.where(x > 0, x, 0.1 * x),
                   (-3, 3)),
    "clip": (lambda t: topi.clip(t, -0.5, 1.25), lambda x: np.clip(x, -0.5, 1.25), (-3, 3)),
    "gelu": (topi.gelu, lambda x: 0.5 * x * (1 + erf(x / math.sqrt(2))), (-4, 4)),
    "gelu_tanh": (topi.gelu_tanh, _gelu_tanh, (-4, 4)),
    "hard_swish": (topi.hard_swish, lambda x: x * np.clip(x + 3, 0, 6) / 6, (-5, 5)),
    "hard_sigmoid": (topi.hard_sigmoid, lambda x: np.clip(x / 6 + 0.5, 0, 1), (-5, 5)),
    "silu": (topi.nn.silu, lambda x: x / (1 + np.exp(-x)), (-6, 6)),
}


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("name", sorted(UNARY))
def test_unary(name, backend):
    fn, ref, (lo, hi) = UNARY[name]
    rng = np.random.default_rng(3)
    x = te.placeholder((3, 1, 13), name="x")
    xn = rand(rng, (3, 1, 13), low=lo, high=hi)
    out = fn(x)
    assert out.op.tag == "elemwise" and out.op.input_tensors == [x]  # one compute
    assert_close(run_te(out, {x: xn}, backend), ref(xn.astype(np.float64)), rtol=2e-5,
                 atol=2e-6)


@pytest.mark.parametrize("backend", BACKENDS)
def test_hard_sigmoid_onnx_params(backend):
    x = te.placeholder((11,), name="x")
    xn = np.linspace(-4, 4, 11, dtype="float32")
    out = run_te(topi.hard_sigmoid(x, alpha=0.2, beta=0.5), {x: xn}, backend)
    assert_close(out, np.clip(0.2 * xn + 0.5, 0, 1))


@pytest.mark.parametrize("backend", BACKENDS)
def test_cast(backend):
    x = te.placeholder((2, 5), name="x")
    xn = np.array([[-2.7, -1.5, -0.2, 0.0, 0.9], [1.5, 2.5, 3.99, -3.99, 7.0]], "float32")
    to_int = topi.cast(x, "int32")
    back = topi.cast(to_int, "float64")
    res = run_te([to_int, back], {x: xn}, backend)
    np.testing.assert_array_equal(res[0], xn.astype("int32"))  # truncation toward zero
    assert res[1].dtype == np.float64
    np.testing.assert_array_equal(res[1], xn.astype("int32").astype("float64"))


@pytest.mark.parametrize("backend", BACKENDS)
def test_relu_int(backend):
    x = te.placeholder((7,), "int32", name="x")
    xn = np.arange(-3, 4, dtype="int32")
    np.testing.assert_array_equal(run_te(topi.nn.relu(x), {x: xn}, backend), np.maximum(xn, 0))
