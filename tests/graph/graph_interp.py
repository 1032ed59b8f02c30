"""A NumPy reference interpreter of the graph IR: the oracle the graph tests compare with.

In: a Graph and feeds {input name: array}. Out: the list of output arrays. Each op is the
plainest NumPy statement of its meaning (loops where that is clearer), written separately
from kiln's folding kernels on purpose. Test-only: kiln never runs models through this.
"""

from __future__ import annotations

import math

import numpy as np

from kiln.graph.ir import Graph, Node

_erf = np.vectorize(math.erf, otypes=[np.float64])


def _gelu(x: np.ndarray, approximate: str) -> np.ndarray:
    x64 = x.astype(np.float64)
    if approximate == "tanh":
        return 0.5 * x64 * (1 + np.tanh(math.sqrt(2 / math.pi) * (x64 + 0.044715 * x64 ** 3)))
    return 0.5 * x64 * (1 + _erf(x64 / math.sqrt(2)))


_SIMPLE = {
    "add": lambda a, b: a + b, "subtract": lambda a, b: a - b, "multiply": lambda a, b: a * b,
    "power": lambda a, b: np.power(a, b), "maximum": np.maximum, "minimum": np.minimum,
    "equal": np.equal, "less": np.less, "greater": np.greater,
    "where": lambda c, a, b: np.where(c, a, b),
    "negative": np.negative, "exp": np.exp, "log": np.log, "sqrt": np.sqrt,
    "rsqrt": lambda x: 1 / np.sqrt(x), "tanh": np.tanh, "erf": lambda x: _erf(x),
    "sigmoid": lambda x: 1 / (1 + np.exp(-x)), "abs": np.abs, "relu": lambda x: np.maximum(x, 0),
    "hard_swish": lambda x: x * np.clip(x + 3, 0, 6) / 6, "floor": np.floor, "ceil": np.ceil,
    "round": np.round, "sin": np.sin, "cos": np.cos, "sign": np.sign,
    "floor_mod": np.mod, "fmod": np.fmod,
    "not": np.logical_not, "matmul": np.matmul, "logical_and": np.logical_and,
    "logical_or": np.logical_or, "logical_xor": lambda a, b: a != b, "isnan": np.isnan,
    "isinf": lambda x: np.abs(x) == np.inf,
}


def _cumsum(x, a):
    """Running sum written as a loop over the axis (exclusive / reverse per ONNX CumSum)."""
    axis = a.get("axis", 0) % x.ndim
    xs = np.moveaxis(x, axis, 0)
    order = range(xs.shape[0] - 1, -1, -1) if a.get("reverse") else range(xs.shape[0])
    out, acc = np.zeros_like(xs), np.zeros_like(xs[0])
    for k in order:
        if a.get("exclusive"):
            out[k], acc = acc, acc + xs[k]
        else:
            acc = acc + xs[k]
            out[k] = acc
    return np.moveaxis(out, 0, axis)


def _dilate(x, strides):
    out = np.zeros([(d - 1) * s + 1 for d, s in zip(x.shape, strides)], x.dtype)
    for idx in np.ndindex(*x.shape):
        out[tuple(i * s for i, s in zip(idx, strides))] = x[idx]
    return out


def _divide(a, b):
    if a.dtype.kind in "iu":
        return np.trunc(a / b).astype(a.dtype)
    return a / b


def _reduce(op, x, a):
    axis = a.get("axis")
    axis = None if axis is None else tuple(np.atleast_1d(axis).tolist())
    fn = {"sum": np.sum, "mean": np.mean, "max": np.max, "min": np.min}[op]
    return fn(x, axis=axis, keepdims=bool(a.get("keepdims")))


def _softmax(x, axis, log=False):
    e = np.exp(x - x.max(axis=axis, keepdims=True))
    s = e.sum(axis=axis, keepdims=True)
    return np.log(e / s) if log else e / s


def _conv2d(x, w, b, a):
    t, left, bot, r = a["padding"]
    sh, sw = a["strides"]
    dh, dw = a.get("dilation", (1, 1))
    g = a.get("groups", 1)
    xp = np.pad(x, [(0, 0), (0, 0), (t, bot), (left, r)])
    n, c, h, wd = xp.shape
    o, cg, kh, kw = w.shape
    oh = (h - (kh - 1) * dh - 1) // sh + 1
    ow = (wd - (kw - 1) * dw - 1) // sw + 1
    out = np.zeros((n, o, oh, ow), np.float64)
    og = o // g
    for gi in range(g):
        xs = xp[:, gi * cg:(gi + 1) * cg]
        ws = w[gi * og:(gi + 1) * og]
        for i in range(kh):
            for j in range(kw):
                patch = xs[:, :, i * dh:i * dh + sh * (oh - 1) + 1:sh,
                           j * dw:j * dw + sw * (ow - 1) + 1:sw]
                out[:, gi * og:(gi + 1) * og] += np.einsum("nchw,oc->nohw", patch, ws[:, :, i, j])
    if b is not None:
        out += b.reshape(1, -1, 1, 1)
    return out


def _pool(x, a, kind):
    kh, kw = a["pool_size"]
    sh, sw = a["strides"]
    t, left, b, r = a["padding"]
    n, c, h, w = x.shape

    def size(d, k, s, lo, hi):
        span = d + lo + hi - k
        o = (-(-span // s) if a.get("ceil_mode") else span // s) + 1
        return o - 1 if a.get("ceil_mode") and (o - 1) * s >= d + lo else o
    oh, ow = size(h, kh, sh, t, b), size(w, kw, sw, left, r)
    out = np.zeros((n, c, oh, ow), np.float64)
    for i in range(oh):
        for j in range(ow):
            y0, x0 = i * sh - t, j * sw - left
            y1, x1 = y0 + kh, x0 + kw
            win = x[:, :, max(y0, 0):min(y1, h), max(x0, 0):min(x1, w)]
            if kind == "max":
                out[:, :, i, j] = win.max(axis=(2, 3))
                continue
            if a.get("count_include_pad"):
                count = (min(y1, h + b) - y0) * (min(x1, w + r) - x0)
            else:
                count = win.shape[2] * win.shape[3]
            out[:, :, i, j] = win.sum(axis=(2, 3)) / count
    return out


def _layer_norm(x, gamma, beta, a):
    axis = a.get("axis", -1)
    axes = tuple(np.atleast_1d(axis).tolist())
    x64 = x.astype(np.float64)
    mu = x64.mean(axis=axes, keepdims=True)
    var = ((x64 - mu) ** 2).mean(axis=axes, keepdims=True)
    shape = [x.shape[i] if i in [ax % x.ndim for ax in axes] else 1 for i in range(x.ndim)]
    return (x64 - mu) / np.sqrt(var + a["epsilon"]) * gamma.reshape(shape) + beta.reshape(shape)


def _batch_norm(x, g, b, m, v, a):
    shape = [1, -1] + [1] * (x.ndim - 2)
    return (x - m.reshape(shape)) / np.sqrt(v.reshape(shape) + a["epsilon"]) * g.reshape(shape) \
        + b.reshape(shape)


def _strided_slice(x, a):
    index = [slice(None)] * x.ndim
    for ax, b, e, s in zip(a["axes"], a["begin"], a["end"], a["strides"]):
        index[ax] = slice(b, e, s)
    return x[tuple(index)]


def _batch_matmul(x, y, a):
    if a.get("transpose_a"):
        x = np.swapaxes(x, -1, -2)
    if a.get("transpose_b"):
        y = np.swapaxes(y, -1, -2)
    return np.matmul(x, y)


def _winograd_input(xp, m):
    """Per m x m output tile, B^T d B of its (m+2)^2 patch: [(m+2)^2, tiles, C] (NHWC in)."""
    from kiln.topi.nn import winograd_matrices
    bt = winograd_matrices(m)[2]
    a = m + 2
    n, hp, wp, c = xp.shape
    th, tw = (hp - 2) // m, (wp - 2) // m
    out = np.zeros((a, a, n, th, tw, c), np.float64)
    for i in range(th):
        for j in range(tw):
            d = xp[:, i * m:i * m + a, j * m:j * m + a, :].astype(np.float64)
            out[:, :, :, i, j] = np.einsum("ea,nabc,fb->efnc", bt, d, bt)
    return out.reshape(a * a, n * th * tw, c).astype(xp.dtype)


def _winograd_output(mt, m, shape):
    """A^T M A per tile, written NCHW and cut to shape."""
    from kiln.topi.nn import winograd_matrices
    at = winograd_matrices(m)[0]
    a = m + 2
    n, oc, h, w = shape
    th, tw = -(-h // m), -(-w // m)
    t = mt.astype(np.float64).reshape(a, a, n, th, tw, oc)
    y = np.einsum("ie,efnpqo,jf->nopiqj", at, t, at).reshape(n, oc, th * m, tw * m)
    return y[:, :, :h, :w].astype(mt.dtype)


def _eval(n: Node, xs: list) -> np.ndarray:
    a = n.attrs
    op = n.op
    if op in _SIMPLE:
        return _SIMPLE[op](*xs)
    table = {
        "divide": lambda: _divide(*xs),
        "gelu": lambda: _gelu(xs[0], a.get("approximate", "none")),
        "hard_sigmoid": lambda: np.clip(a["alpha"] * xs[0] + a["beta"], 0, 1),
        "leaky_relu": lambda: np.where(xs[0] >= 0, xs[0], a["alpha"] * xs[0]),
        "clip": lambda: np.clip(xs[0], -np.inf if a.get("a_min") is None else a["a_min"],
                                np.inf if a.get("a_max") is None else a["a_max"]),
        "cast": lambda: xs[0].astype(a["dtype"]),
        "argmax": lambda: np.argmax(xs[0], axis=a["axis"][0], keepdims=bool(a.get("keepdims"))),
        "dense": lambda: xs[0] @ xs[1].T + (xs[2] if len(xs) > 2 else 0),
        "batch_matmul": lambda: _batch_matmul(xs[0], xs[1], a),
        "conv2d": lambda: _conv2d(xs[0], xs[1], xs[2] if len(xs) > 2 else None, a),
        "depthwise_conv2d_nhwc": lambda: _conv2d(
            xs[0].transpose(0, 3, 1, 2), xs[1].transpose(2, 0, 1)[:, None],
            xs[2] if len(xs) > 2 else None, {**a, "groups": xs[0].shape[3]}
        ).transpose(0, 2, 3, 1),
        "max_pool2d": lambda: _pool(xs[0], a, "max"),
        "avg_pool2d": lambda: _pool(xs[0], a, "avg"),
        "global_avg_pool2d": lambda: xs[0].mean(axis=(2, 3), keepdims=True),
        "softmax": lambda: _softmax(xs[0], a["axis"]),
        "log_softmax": lambda: _softmax(xs[0], a["axis"], log=True),
        "layer_norm": lambda: _layer_norm(*xs, a),
        "batch_norm": lambda: _batch_norm(*xs, a),
        "reshape": lambda: xs[0].reshape(a["newshape"]),
        "transpose": lambda: np.transpose(xs[0], a["axes"]),
        "take": lambda: np.take(xs[0], xs[1], axis=a["axis"]),
        "lookup": lambda: xs[1][np.clip(xs[0].astype(np.int64) - a.get("offset", 0), 0,
                                        len(xs[1]) - 1)],
        "concatenate": lambda: np.concatenate(xs, axis=a["axis"]),
        "strided_slice": lambda: _strided_slice(xs[0], a),
        "expand_dims": lambda: xs[0].reshape(xs[0].shape[:a["axis"]] + (1,) * a["num_newaxis"]
                                             + xs[0].shape[a["axis"]:]),
        "squeeze": lambda: np.squeeze(xs[0], axis=tuple(a["axis"])),
        "broadcast_to": lambda: np.broadcast_to(xs[0], a["shape"]),
        "flatten": lambda: xs[0].reshape(xs[0].shape[0], -1),
        "pad": lambda: np.pad(xs[0], a["pad_width"], constant_values=a.get("pad_value", 0)),
        "cumsum": lambda: _cumsum(xs[0], a),
        "dilate": lambda: _dilate(xs[0], a["strides"]),
        "winograd_input": lambda: _winograd_input(xs[0], a["tile"]),
        "winograd_output": lambda: _winograd_output(xs[0], a["tile"], a["shape"]),
    }
    if op in ("sum", "mean", "max", "min"):
        return _reduce(op, xs[0], a)
    return table[op]()


def run_graph(g: Graph, feeds: dict) -> list:
    """Evaluate `g` on `feeds`; every node's result is checked against its inferred type."""
    values: dict = {}
    for n in g.nodes():
        if n.op == "input":
            v = np.asarray(feeds[n.attrs["name"]])
        elif n.op == "const":
            v = g.params[n.attrs["name"]]
        else:
            v = np.asarray(_eval(n, [values[i.uid] for i in n.inputs]))
            v = v.astype(n.dtype) if n.dtype else v
        if tuple(v.shape) != tuple(n.shape):
            raise AssertionError(f"%{n.uid} {n.op}: interpreter shape {v.shape} != {n.shape}")
        values[n.uid] = v
    return [values[o.uid] for o in g.outputs]


def op_counts(g: Graph) -> dict:
    """op name -> number of nodes, leaves (inputs, constants) left out."""
    from kiln.graph.passes import op_histogram
    return {k: v for k, v in op_histogram(g).items() if k not in ("input", "const")}


def assert_same_results(before: Graph, after: Graph, feeds: dict, tol: float = 1e-5) -> None:
    """The interpreter's outputs of two graphs agree (a rewrite kept the meaning)."""
    for a, b in zip(run_graph(before, feeds), run_graph(after, feeds)):
        assert a.shape == b.shape
        np.testing.assert_allclose(a, b, atol=tol, rtol=tol)
