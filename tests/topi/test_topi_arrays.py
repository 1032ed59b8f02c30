"""topi.arrays against NumPy: stack, tile, repeat, flip, gather, one_hot, full, arange and the
logical ops, on the te interpreter and compiled."""

import numpy as np
import pytest
from util import BACKENDS, rand, run_te

from kiln import te, topi
from kiln.errors import DTypeError, ShapeError

RNG = np.random.default_rng(11)


def _x(shape, dtype="float32", name="x"):
    return te.placeholder(shape, dtype, name=name), rand(RNG, shape, dtype, -9, 9)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("axis", [0, 1, -1])
def test_stack(axis, backend):
    (a, an), (b, bn), (c, cn) = _x((3, 4), name="a"), _x((3, 4), name="b"), _x((3, 4), name="c")
    out = run_te(topi.stack([a, b, c], axis), [(a, an), (b, bn), (c, cn)], backend)
    np.testing.assert_array_equal(out, np.stack([an, bn, cn], axis))


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("reps", [(2, 3), (2, 1, 2), (3,)], ids=str)
def test_tile(reps, backend):
    x, xn = _x((2, 5))
    np.testing.assert_array_equal(run_te(topi.tile(x, reps), {x: xn}, backend),
                                  np.tile(xn, reps))


@pytest.mark.parametrize("backend", BACKENDS)
def test_repeat_flip_gather(backend):
    x, xn = _x((3, 4, 5))
    np.testing.assert_array_equal(run_te(topi.repeat(x, 3, 1), {x: xn}, backend),
                                  np.repeat(xn, 3, axis=1))
    np.testing.assert_array_equal(run_te(topi.flip(x, -1), {x: xn}, backend),
                                  np.flip(xn, -1))
    idx = te.placeholder((3, 2, 5), "int32", name="idx")
    idn = RNG.integers(-4, 4, size=(3, 2, 5)).astype("int32")
    got = run_te(topi.gather(x, 1, idx), [(x, xn), (idx, idn)], backend)
    np.testing.assert_array_equal(got, np.take_along_axis(xn, idn % 4, axis=1))


@pytest.mark.parametrize("backend", BACKENDS)
def test_one_hot_full_arange(backend):
    idx = te.placeholder((4,), "int32", name="idx")
    idn = np.array([0, 3, 1, 7], "int32")     # 7 is out of range: a row of off_value
    got = run_te(topi.one_hot(idx, 1.0, 0.0, 5, axis=0), [(idx, idn)], backend)
    want = np.zeros((5, 4), "float32")
    for j, k in enumerate(idn):
        if k < 5:
            want[k, j] = 1.0
    np.testing.assert_array_equal(got, want)
    x, xn = _x((2, 3))
    np.testing.assert_array_equal(run_te(topi.full_like(x, 2.5), {}, backend),
                                  np.full((2, 3), 2.5, "float32"))
    z = topi.add(topi.full((2, 3), "float32", 1.0), x)
    np.testing.assert_array_equal(run_te(z, {x: xn}, backend), xn + 1)
    r = topi.add(topi.arange(1.0, 4.0, 0.5), x[0, 0])
    np.testing.assert_allclose(run_te(r, {x: xn}, backend),
                               np.arange(1.0, 4.0, 0.5, dtype="float32") + xn[0, 0])


@pytest.mark.parametrize("backend", BACKENDS)
def test_logical_ops_and_nan_inf(backend):
    x, xn = _x((3, 4))
    xn[0, 0], xn[1, 1], xn[2, 2] = np.nan, np.inf, -np.inf
    p, q = topi.greater(x, 0.0), topi.less(x, 5.0)
    outs = [topi.logical_and(p, q), topi.logical_or(p, q), topi.logical_xor(p, q),
            topi.logical_not(p), topi.isnan(x), topi.isinf(x)]
    got = run_te(outs, {x: xn}, backend)
    with np.errstate(invalid="ignore"):
        pn, qn = xn > 0, xn < 5
    want = [pn & qn, pn | qn, pn ^ qn, ~pn, np.isnan(xn), np.isinf(xn)]
    for g, w in zip(got, want):
        np.testing.assert_array_equal(g.astype(bool), w)


def test_bad_arguments_are_clear():
    x, _ = _x((2, 3))
    y, _ = _x((3, 2), name="y")
    with pytest.raises(ShapeError, match="stack"):
        topi.stack([x, y])
    with pytest.raises(ShapeError, match="positive"):
        topi.tile(x, (0, 1))
    with pytest.raises(DTypeError, match="bool"):
        topi.logical_and(x, x)
    with pytest.raises(ShapeError, match="step"):
        topi.arange(0, 3, 0)
