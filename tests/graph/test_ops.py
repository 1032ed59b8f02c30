"""Every op of OP_SPECS through kiln.graph.ops (te + default schedule + one C library) vs NumPy.

All cases live in ONE graph (each op reads graph inputs and is a graph output, so each is its
own group and kernel): one compile for the whole table, one assertion per case.
"""

import math

import numpy as np
import pytest

from kiln.graph import OP_SPECS, Graph, Node, build
from kiln.graph.ops import OpPattern, pattern
from kiln.topi.nn import winograd_matrices

_erf = np.vectorize(math.erf, otypes=[np.float32])
RNG = np.random.default_rng(0)


def _f(*shape, lo=-2.0, hi=2.0):
    return RNG.uniform(lo, hi, shape).astype(np.float32)


DATA = {
    "x": _f(2, 3, 4, 5), "z": _f(2, 3, 4, 5), "pos": _f(2, 3, 4, 5, lo=0.5, hi=3.0),
    "row": _f(4, 5), "cond": RNG.random((2, 3, 4, 5)) > 0.5,
    "m": _f(6, 8), "w": _f(5, 8), "bias5": _f(5), "a3": _f(2, 6, 8), "b3": _f(2, 8, 7),
    "bt3": _f(2, 7, 8), "img": _f(1, 4, 7, 7), "ker": _f(6, 4, 3, 3), "cb": _f(6),
    "wxp": _f(1, 10, 6, 4), "wmt": _f(16, 4, 5),
    "dker": _f(8, 1, 3, 3), "ids": RNG.integers(-4, 4, (3, 4)).astype(np.int64),
    "ch": _f(3), "chpos": _f(3, lo=0.5, hi=2.0), "cond2": RNG.random((4, 5)) > 0.5,
    "special": np.tile(np.array([[0.0, np.nan, np.inf, -np.inf, -1.5]], np.float32), (4, 9)),
    "ivals": RNG.integers(-5, 5, (3, 4)).astype(np.int64),
    "ivals3": np.array([3, -3, 2, -5], np.int64),  # divisors of both signs, never 0
    "halves": (np.arange(-60, 60, dtype=np.float32) / 2 + np.float32(2 ** 22)
               * (np.arange(120) % 7 == 3)).reshape(2, 3, 4, 5),
    "u8": RNG.integers(0, 256, (6, 32)).astype(np.uint8),
    "s8": RNG.integers(-128, 128, (5, 32)).astype(np.int8),
    "s8t": RNG.integers(-128, 128, (32, 20)).astype(np.int8),
    "u8img": RNG.integers(0, 256, (1, 3, 8, 8)).astype(np.uint8),
    "u8nhwc": RNG.integers(0, 256, (2, 9, 8, 48)).astype(np.uint8),
    "nhwc": _f(1, 7, 6, 32), "hwc": _f(3, 3, 32), "cb32": _f(32),
    "s8ker": RNG.integers(-128, 128, (5, 3, 4, 4)).astype(np.int8),
    # lookup indices: whole and fractional values inside and outside the table, and NaN
    "lkx": np.concatenate([np.arange(-12, 12, 0.75, dtype=np.float32), [np.nan] * 8]
                          ).reshape(4, 10),
    "tab7": _f(7), "tab256": RNG.integers(-128, 128, 256).astype(np.int8),
}


def _lookup(v, table, offset):
    """table[clamp(int(v) - offset)]: truncation toward zero, NaN as the lowest int32."""
    k = np.where(np.isnan(v), -2 ** 31, v).astype(np.int64) - offset
    return table[np.clip(k, 0, len(table) - 1)]


def _softmax(v, axis):
    e = np.exp(v - v.max(axis, keepdims=True))
    return e / e.sum(axis, keepdims=True)


def _dw_nhwc(x, k, strides, pad=1):
    """Depthwise convolution channels-last, as the NCHW reference on transposed operands."""
    c = x.shape[3]
    w = k.transpose(2, 0, 1)[:, None]  # [C, 1, KH, KW]
    xp = np.pad(x, [(0, 0), (pad, pad), (pad, pad), (0, 0)])
    taps = [xp[:, r:r + (xp.shape[1] - k.shape[0]) // strides[0] * strides[0] + 1:strides[0],
               s:s + (xp.shape[2] - k.shape[1]) // strides[1] * strides[1] + 1:strides[1]]
            * w[:, 0, r, s].reshape(1, 1, 1, c) for r in range(k.shape[0])
            for s in range(k.shape[1])]
    return np.sum(taps, axis=0).astype(np.float32)


def _conv(x, w, stride=1, pad=0, groups=1):
    n, c, h, wd = x.shape
    o, cg, kh, kw = w.shape
    xp = np.pad(x, [(0, 0), (0, 0), (pad, pad), (pad, pad)])
    oh, ow = (h + 2 * pad - kh) // stride + 1, (wd + 2 * pad - kw) // stride + 1
    out = np.zeros((n, o, oh, ow), np.float32)
    og = o // groups
    for oc in range(o):
        g = oc // og
        for i in range(oh):
            for j in range(ow):
                win = xp[:, g * cg:(g + 1) * cg, i * stride:i * stride + kh,
                         j * stride:j * stride + kw]
                out[:, oc, i, j] = (win * w[oc]).sum(axis=(1, 2, 3))
    return out


def _pool(x, k, s, pad, kind, include_pad=True):
    n, c, h, w = x.shape
    fill = -np.inf if kind == "max" else 0.0
    xp = np.pad(x, [(0, 0), (0, 0), (pad, pad), (pad, pad)], constant_values=fill)
    oh, ow = (h + 2 * pad - k) // s + 1, (w + 2 * pad - k) // s + 1
    out = np.zeros((n, c, oh, ow), np.float32)
    for i in range(oh):
        for j in range(ow):
            win = xp[:, :, i * s:i * s + k, j * s:j * s + k]
            if kind == "max":
                out[:, :, i, j] = win.max(axis=(2, 3))
            else:
                y0, x0 = i * s - pad, j * s - pad
                cnt = k * k if include_pad else \
                    (min(y0 + k, h) - max(y0, 0)) * (min(x0 + k, w) - max(x0, 0))
                out[:, :, i, j] = win.sum(axis=(2, 3)) / cnt
    return out


def _im2col(xp, kernel, strides, dilation):
    """Rows of every window, (kh, kw, c) order, by plain loops."""
    n, hp, wp, c = xp.shape
    (kh, kw), (sh, sw), (dh, dw) = kernel, strides, dilation
    oh, ow = (hp - (kh - 1) * dh - 1) // sh + 1, (wp - (kw - 1) * dw - 1) // sw + 1
    rows = [xp[b, y * sh: y * sh + (kh - 1) * dh + 1: dh, x * sw: x * sw + (kw - 1) * dw + 1: dw]
            .reshape(-1) for b in range(n) for y in range(oh) for x in range(ow)]
    return np.stack(rows)


def _wino_in(xp, m):
    """B^T d B of every m x m tile's (m+2)^2 patch of a padded NHWC input."""
    bt, a = winograd_matrices(m)[2], m + 2
    n, hp, wp, c = xp.shape
    th, tw = (hp - 2) // m, (wp - 2) // m
    out = np.zeros((a * a, n, th, tw, c))
    for i in range(th):
        for j in range(tw):
            for e1 in range(a):
                for e2 in range(a):
                    patch = xp[:, i * m:i * m + a, j * m:j * m + a, :]
                    out[e1 * a + e2, :, i, j] = np.einsum("a,nabc,b->nc", bt[e1], patch, bt[e2])
    return out.reshape(a * a, n * th * tw, c)


def _wino_out(mt, m, shape):
    """A^T M A of every tile, NCHW, cut to shape."""
    at, a = winograd_matrices(m)[0], m + 2
    n, oc, h, w = shape
    th, tw = -(-h // m), -(-w // m)
    y = np.zeros((n, oc, th * m, tw * m))
    for p in range(n * th * tw):
        b, i, j = p // (th * tw), p // tw % th, p % tw
        tile = mt[:, p, :].reshape(a, a, oc)
        y[b, :, i * m:(i + 1) * m, j * m:(j + 1) * m] = np.einsum(
            "ie,efo,jf->oij", at, tile, at)
    return y[:, :, :h, :w]


def _ln(v, g, b):
    mu = v.mean(-1, keepdims=True)
    var = ((v - mu) ** 2).mean(-1, keepdims=True)
    return (v - mu) / np.sqrt(var + 1e-5) * g + b


def _dilate(v, strides):
    out = np.zeros([(d - 1) * s + 1 for d, s in zip(v.shape, strides)], v.dtype)
    out[tuple(slice(None, None, s) for s in strides)] = v
    return out


def _ch(v):
    return v.reshape(1, 3, 1, 1)


# (case id, op, input names, attrs, reference)
CASES = [
    ("add", "add", ["x", "row"], {}, np.add),
    ("subtract", "subtract", ["x", "z"], {}, np.subtract),
    ("multiply", "multiply", ["x", "row"], {}, np.multiply),
    ("divide", "divide", ["x", "pos"], {}, np.divide),
    ("power", "power", ["pos", "z"], {}, np.power),
    ("maximum", "maximum", ["x", "z"], {}, np.maximum),
    ("minimum", "minimum", ["x", "row"], {}, np.minimum),
    ("equal", "equal", ["x", "x"], {}, np.equal),
    ("less", "less", ["x", "z"], {}, np.less),
    ("greater", "greater", ["x", "row"], {}, np.greater),
    ("where", "where", ["cond", "x", "z"], {}, np.where),
    ("negative", "negative", ["x"], {}, np.negative),
    ("exp", "exp", ["x"], {}, np.exp),
    ("log", "log", ["pos"], {}, np.log),
    ("sqrt", "sqrt", ["pos"], {}, np.sqrt),
    ("rsqrt", "rsqrt", ["pos"], {}, lambda v: 1 / np.sqrt(v)),
    ("tanh", "tanh", ["x"], {}, np.tanh),
    ("erf", "erf", ["x"], {}, _erf),
    ("sigmoid", "sigmoid", ["x"], {}, lambda v: 1 / (1 + np.exp(-v))),
    ("abs", "abs", ["x"], {}, np.abs),
    ("relu", "relu", ["x"], {}, lambda v: np.maximum(v, 0)),
    ("gelu", "gelu", ["x"], {"approximate": "none"},
     lambda v: 0.5 * v * (1 + _erf(v / np.sqrt(2)))),
    ("gelu_tanh", "gelu", ["x"], {"approximate": "tanh"},
     lambda v: 0.5 * v * (1 + np.tanh(np.sqrt(2 / np.pi) * (v + 0.044715 * v ** 3)))),
    ("hard_swish", "hard_swish", ["x"], {}, lambda v: v * np.clip(v + 3, 0, 6) / 6),
    ("hard_sigmoid", "hard_sigmoid", ["x"], {"alpha": 0.2, "beta": 0.5},
     lambda v: np.clip(0.2 * v + 0.5, 0, 1)),
    ("leaky_relu", "leaky_relu", ["x"], {"alpha": 0.1}, lambda v: np.where(v > 0, v, 0.1 * v)),
    ("clip", "clip", ["x"], {"a_min": -0.5, "a_max": 1.0}, lambda v: np.clip(v, -0.5, 1.0)),
    ("clip_lo", "clip", ["x"], {"a_min": 0.0, "a_max": None}, lambda v: np.maximum(v, 0)),
    ("cast", "cast", ["x"], {"dtype": "int32"}, lambda v: v.astype(np.int32)),
    ("floor", "floor", ["x"], {}, np.floor),
    ("sin", "sin", ["x"], {}, np.sin),
    ("cos", "cos", ["x"], {}, np.cos),
    ("sign", "sign", ["special"], {}, np.sign),
    ("floor_mod", "floor_mod", ["x", "pos"], {}, np.mod),
    ("fmod", "fmod", ["x", "pos"], {}, np.fmod),
    ("floor_mod_int", "floor_mod", ["ids", "ivals3"], {}, np.mod),
    ("fmod_int", "fmod", ["ids", "ivals3"], {}, np.fmod),
    ("ceil", "ceil", ["x"], {}, np.ceil),
    ("round", "round", ["halves"], {}, np.round),  # ties to even, as NumPy and ONNX
    ("not", "not", ["cond"], {}, np.logical_not),
    ("logical_and", "logical_and", ["cond", "cond2"], {}, np.logical_and),
    ("logical_or", "logical_or", ["cond", "cond2"], {}, np.logical_or),
    ("logical_xor", "logical_xor", ["cond2", "cond"], {}, np.logical_xor),
    ("isnan", "isnan", ["special"], {}, np.isnan),
    ("isinf", "isinf", ["special"], {}, np.isinf),
    ("cumsum", "cumsum", ["x"], {"axis": 2}, lambda v: np.cumsum(v, 2)),
    ("cumsum_excl_rev", "cumsum", ["x"], {"axis": -1, "exclusive": True, "reverse": True},
     lambda v: np.flip(np.cumsum(np.flip(v, -1), -1), -1) - v),
    ("cumsum_int", "cumsum", ["ivals"], {"axis": 1, "exclusive": True},
     lambda v: np.cumsum(v, 1) - v),
    ("sum", "sum", ["x"], {"axis": [1, 3], "keepdims": False}, lambda v: v.sum(axis=(1, 3))),
    ("mean", "mean", ["x"], {"axis": [-1], "keepdims": True},
     lambda v: v.mean(-1, keepdims=True)),
    ("max", "max", ["x"], {"axis": [2], "keepdims": False}, lambda v: v.max(2)),
    ("min", "min", ["x"], {"axis": None, "keepdims": False}, lambda v: v.min()),
    ("argmax", "argmax", ["x"], {"axis": [1], "keepdims": False},
     lambda v: v.argmax(1).astype(np.int64)),
    ("dense", "dense", ["m", "w", "bias5"], {}, lambda a, b, c: a @ b.T + c),
    ("matmul", "matmul", ["a3", "b3"], {}, np.matmul),
    # 8-bit products accumulate in int32 (ONNX MatMulInteger)
    ("dense_u8s8", "dense", ["u8", "s8"], {},
     lambda a, b: a.astype(np.int32) @ b.astype(np.int32).T),
    ("matmul_u8s8", "matmul", ["u8", "s8t"], {},
     lambda a, b: a.astype(np.int32) @ b.astype(np.int32)),
    ("conv2d_u8s8", "conv2d", ["u8img", "s8ker"], {"strides": (4, 4)},
     lambda x, w: _conv(x.astype(np.int64), w.astype(np.int64), 4).astype(np.int32)),
    ("batch_matmul", "batch_matmul", ["a3", "bt3"], {"transpose_b": True},
     lambda a, b: a @ b.transpose(0, 2, 1)),
    ("conv2d", "conv2d", ["img", "ker", "cb"],
     {"strides": [1, 1], "padding": [1, 1, 1, 1], "dilation": [1, 1], "groups": 1},
     lambda x, k, b: _conv(x, k, 1, 1) + b.reshape(1, -1, 1, 1)),
    ("conv2d_dw", "conv2d", ["img", "dker"],
     {"strides": [2, 2], "padding": [0, 0, 0, 0], "dilation": [1, 1], "groups": 4},
     lambda x, k: _conv(x, k, 2, 0, 4)),
    ("depthwise_nhwc", "depthwise_conv2d_nhwc", ["nhwc", "hwc", "cb32"],
     {"strides": [2, 1], "padding": [1, 1, 1, 1]},
     lambda x, k, b: _dw_nhwc(x, k, (2, 1)) + b),
    ("max_pool2d", "max_pool2d", ["img"],
     {"pool_size": [3, 3], "strides": [2, 2], "padding": [1, 1, 1, 1], "ceil_mode": False},
     lambda v: _pool(v, 3, 2, 1, "max")),
    ("avg_pool2d", "avg_pool2d", ["img"],
     {"pool_size": [3, 3], "strides": [2, 2], "padding": [1, 1, 1, 1], "ceil_mode": False,
      "count_include_pad": False}, lambda v: _pool(v, 3, 2, 1, "avg", False)),
    ("global_avg_pool2d", "global_avg_pool2d", ["img"], {},
     lambda v: v.mean(axis=(2, 3), keepdims=True)),
    ("softmax", "softmax", ["x"], {"axis": -1}, lambda v: _softmax(v, -1)),
    ("log_softmax", "log_softmax", ["x"], {"axis": 1}, lambda v: np.log(_softmax(v, 1))),
    ("layer_norm", "layer_norm", ["x", "row", "z"], {"axis": -1, "epsilon": 1e-5},
     lambda v, g, b: _ln(v, g[0], b[0, 0, 0])),
    ("batch_norm", "batch_norm", ["x", "ch", "ch", "ch", "chpos"], {"epsilon": 1e-5},
     lambda v, g, b, m, var: (v - _ch(m)) / np.sqrt(_ch(var) + 1e-5) * _ch(g) + _ch(b)),
    ("reshape", "reshape", ["x"], {"newshape": [6, 20]}, lambda v: v.reshape(6, 20)),
    ("transpose", "transpose", ["x"], {"axes": [0, 2, 3, 1]},
     lambda v: v.transpose(0, 2, 3, 1)),
    ("take", "take", ["row", "ids"], {"axis": 0}, lambda v, i: np.take(v, i, axis=0)),
    ("lookup_f32", "lookup", ["lkx", "tab7"], {"offset": -3}, lambda v, t: _lookup(v, t, -3)),
    ("lookup_u8", "lookup", ["u8", "tab256"], {"offset": 0}, lambda v, t: _lookup(v, t, 0)),
    ("concatenate", "concatenate", ["x", "z"], {"axis": 2},
     lambda a, b: np.concatenate([a, b], 2)),
    ("strided_slice", "strided_slice", ["x"],
     {"begin": [1, -1], "end": [3, 0], "strides": [1, -2], "axes": [1, 3]},
     lambda v: v[:, 1:3, :, -1:0:-2]),
    ("expand_dims", "expand_dims", ["row"], {"axis": 1, "num_newaxis": 2},
     lambda v: v.reshape(4, 1, 1, 5)),
    ("squeeze", "squeeze", ["img"], {"axis": [0]}, lambda v: v[0]),
    ("broadcast_to", "broadcast_to", ["row"], {"shape": [3, 4, 5]},
     lambda v: np.broadcast_to(v, (3, 4, 5))),
    ("flatten", "flatten", ["x"], {}, lambda v: v.reshape(2, -1)),
    ("pad", "pad", ["row"], {"pad_width": [[1, 0], [2, 3]], "pad_value": 0.5},
     lambda v: np.pad(v, [(1, 0), (2, 3)], constant_values=0.5)),
    ("dilate", "dilate", ["row"], {"strides": [3, 2]}, lambda v: _dilate(v, (3, 2))),
    ("winograd_input", "winograd_input", ["wxp"], {"tile": 4}, lambda v: _wino_in(v, 4)),
    ("im2col", "im2col", ["u8nhwc"], {"kernel": [3, 2], "strides": [2, 1], "dilation": [1, 2]},
     lambda v: _im2col(v, (3, 2), (2, 1), (1, 2))),
    ("im2col_1x1_s2", "im2col", ["u8nhwc"], {"kernel": [1, 1], "strides": [2, 2]},
     lambda v: _im2col(v, (1, 1), (2, 2), (1, 1))),
    ("winograd_output", "winograd_output", ["wmt"], {"tile": 2, "shape": [1, 5, 3, 4]},
     lambda v: _wino_out(v, 2, (1, 5, 3, 4))),
]


def _graph():
    inputs = {k: Node("input", [], {"name": k}, v.shape, "bool" if v.dtype == np.bool_
                      else str(v.dtype)) for k, v in DATA.items()}
    outs, refs = [], []
    for cid, op, names, attrs, ref in CASES:
        args = [inputs[n] for n in names]
        vals = [DATA[n] for n in names]
        if op == "layer_norm":  # gamma, beta must be [5]: slice them in the graph
            args = [args[0]] + [Node("strided_slice", [inputs[n]], {
                "begin": [0] * (DATA[n].ndim - 1), "end": [1] * (DATA[n].ndim - 1),
                "strides": None, "axes": list(range(DATA[n].ndim - 1))},
                (1,) * (DATA[n].ndim - 1) + (5,), "float32") for n in names[1:]]
            args = [args[0]] + [Node("reshape", [a], {"newshape": [5]}, (5,), "float32")
                                for a in args[1:]]
        expected = np.asarray(ref(*vals))
        if expected.dtype == np.float64:
            expected = expected.astype(np.float32)
        dtype = "bool" if expected.dtype == np.bool_ else str(expected.dtype)
        outs.append(Node(op, args, dict(attrs), expected.shape, dtype, name=cid))
        refs.append(expected)
    return Graph(list(inputs.values()), outs, {}, name="ops"), refs


@pytest.fixture(scope="module")
def results():
    g, refs = _graph()
    mod = build(g, target="cpu", run_passes=False)
    out = mod.run(**DATA)
    return {cid: (out[cid], ref) for (cid, *_), ref in zip(CASES, refs)}


def test_every_op_is_covered():
    covered = {op for _, op, *_ in CASES}
    assert set(OP_SPECS) - {"input", "const"} <= covered


@pytest.mark.parametrize("cid", [c[0] for c in CASES])
def test_op_matches_numpy(results, cid):
    got, want = results[cid]
    assert got.shape == want.shape and got.dtype == want.dtype
    if want.dtype.kind in "biu":
        np.testing.assert_array_equal(got, want)
    else:
        np.testing.assert_allclose(got, want, rtol=2e-5, atol=2e-5)


def test_patterns():
    x = Node("input", [], {"name": "x"}, (2, 3), "float32")
    r = Node("input", [], {"name": "r"}, (3,), "float32")
    assert pattern(Node("exp", [x], {}, (2, 3), "float32")) == OpPattern.ELEMWISE
    assert pattern(Node("add", [x, x], {}, (2, 3), "float32")) == OpPattern.ELEMWISE
    assert pattern(Node("add", [x, r], {}, (2, 3), "float32")) == OpPattern.BROADCAST
    assert pattern(Node("transpose", [x], {"axes": [1, 0]}, (3, 2), "float32")) \
        == OpPattern.INJECTIVE
    assert pattern(Node("softmax", [x], {"axis": -1}, (2, 3), "float32")) \
        == OpPattern.COMM_REDUCE
    assert pattern(Node("dense", [x, x], {}, (2, 2), "float32")) \
        == OpPattern.OUT_ELEMWISE_FUSABLE
