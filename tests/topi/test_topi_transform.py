"""topi.transform against NumPy: reshape, transpose, take, concatenate, strided_slice, ..."""

import numpy as np
import pytest
from util import BACKENDS, rand, run_te

from kiln import te, topi


def _x(shape, dtype="float32", seed=6):
    return te.placeholder(shape, dtype, name="x"), rand(np.random.default_rng(seed), shape, dtype,
                                                         -9, 9)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("new", [(-1,), (7, 6), (2, -1, 3), (1, 42, 1), 42], ids=str)
def test_reshape(new, backend):
    x, xn = _x((2, 3, 7))
    out = topi.reshape(x, new)
    assert out.op.tag == "injective"
    np.testing.assert_array_equal(run_te(out, {x: xn}, backend), xn.reshape(new))


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("new", [(4, 6), (2, 2, 6), (1, 4, 1, 6, 1), (8, 3)], ids=str)
def test_reshape_blocks_with_unit_dims(new, backend):
    x, xn = _x((1, 4, 3, 2))
    np.testing.assert_array_equal(run_te(topi.reshape(x, new), {x: xn}, backend),
                                  xn.reshape(new))


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("axes", [None, (1, 0, 2), (2, 0, 1), (-1, -3, -2)], ids=str)
def test_transpose(axes, backend):
    x, xn = _x((2, 5, 3))
    np.testing.assert_array_equal(run_te(topi.transpose(x, axes), {x: xn}, backend),
                                  np.transpose(xn, axes))


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("axis", [0, 1, -1, None])
@pytest.mark.parametrize("idtype", ["int32", "int64"])
def test_take_clip(axis, idtype, backend):
    x, xn = _x((5, 7))
    ind = te.placeholder((2, 3), idtype, name="ind")
    indn = np.array([[0, 4, 6], [-3, 9, 40]], dtype=idtype)  # some out of range: clipped
    n = xn.size if axis is None else xn.shape[axis]
    want = np.take(xn, np.clip(indn, 0, n - 1), axis=axis)
    got = run_te(topi.take(x, ind, axis=axis), {x: xn, ind: indn}, backend)
    np.testing.assert_array_equal(got, want)


@pytest.mark.parametrize("backend", BACKENDS)
def test_take_wrap_embedding_and_scalar(backend):
    emb, embn = _x((13, 4))
    ids = te.placeholder((3,), "int64", name="ids")
    idsn = np.array([12, -1, -13], dtype="int64")
    outs = [topi.take(emb, ids, axis=0, mode="wrap"), topi.take(emb, 3, axis=1),
            topi.take(emb, 20, axis=0)]
    res = run_te(outs, {emb: embn, ids: idsn}, backend)
    np.testing.assert_array_equal(res[0], np.take(embn, idsn, axis=0, mode="wrap"))
    np.testing.assert_array_equal(res[1], embn[:, 3])
    np.testing.assert_array_equal(res[2], embn[12])


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("axis", [0, 1, -1])
def test_concatenate(axis, backend):
    rng = np.random.default_rng(7)
    shapes = [(2, 3, 5), (2, 3, 5), (2, 3, 5)]
    shapes = [tuple(s[:axis % 3]) + (k,) + tuple(s[axis % 3 + 1:])
              for s, k in zip(shapes, (1, 4, 2), strict=True)]
    ts = [te.placeholder(s, name=f"t{i}") for i, s in enumerate(shapes)]
    arrs = [rand(rng, s) for s in shapes]
    out = topi.concatenate(ts, axis)
    got = run_te(out, dict(zip(ts, arrs, strict=True)), backend)
    np.testing.assert_array_equal(got, np.concatenate(arrs, axis))


SLICES = [
    ([1, 2], [4, 7], None, None),
    ([-1], [-6], [-1], None),
    ([6, 0], [-100, 5], [-2, 2], None),
    ([0, 1], [10**18, -1], [3, 1], None),
    ([5], [None], [-2], [1]),
    ([-3, 0], [None, 1], None, [2, 1]),
]


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("case", SLICES, ids=str)
def test_strided_slice(case, backend):
    begin, end, strides, axes = case
    x, xn = _x((7, 6, 3))
    axes_ = list(range(len(begin))) if axes is None else axes
    sl = [slice(None)] * 3
    for a, b, e, s in zip(axes_, begin, end, strides or [1] * len(begin), strict=True):
        sl[a] = slice(b, e, s)
    got = run_te(topi.strided_slice(x, begin, end, strides, axes), {x: xn}, backend)
    np.testing.assert_array_equal(got, xn[tuple(sl)])


@pytest.mark.parametrize("backend", BACKENDS)
def test_expand_squeeze_broadcast(backend):
    x, xn = _x((3, 1, 5))
    outs = [topi.expand_dims(x, 0), topi.expand_dims(x, -1, 2), topi.expand_dims(x, 2),
            topi.squeeze(x), topi.squeeze(x, axis=1), topi.broadcast_to(x, (2, 3, 4, 5))]
    wants = [xn[None], xn[..., None, None], xn[:, :, None], xn.squeeze(), xn.squeeze(1),
             np.broadcast_to(xn, (2, 3, 4, 5))]
    for got, want in zip(run_te(outs, {x: xn}, backend), wants, strict=True):
        np.testing.assert_array_equal(got, want)


@pytest.mark.parametrize("backend", BACKENDS)
def test_split(backend):
    x, xn = _x((4, 9))
    outs = topi.split(x, 3, axis=1) + topi.split(x, [1, 3], axis=0)
    wants = np.split(xn, 3, axis=1) + np.split(xn, [1, 3], axis=0)
    for got, want in zip(run_te(outs, {x: xn}, backend), wants, strict=True):
        np.testing.assert_array_equal(got, want)
