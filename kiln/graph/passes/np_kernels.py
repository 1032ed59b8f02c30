"""NumPy kernels for the graph ops that constant folding evaluates at build time.

In: a graph op's input arrays and its attrs. Out: the output array. Only cheap ops that
appear on constant paths in exported models are here (shape arithmetic, index tensors,
masks, weight reshuffles): elementwise math, comparisons, logic, casts, reductions, running
sums (position ids from a mask) and the injective/layout ops. Heavy ops (conv2d, pooling,
softmax, norms) are never folded, so a missing kernel simply means "leave the node for the
compiled code".
"""

from __future__ import annotations

import math

import numpy as np


def _div(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    if np.issubdtype(a.dtype, np.integer) and np.issubdtype(b.dtype, np.integer):
        q = np.abs(a) // np.maximum(np.abs(b), 1)  # ONNX/C integer division truncates
        return np.where((a < 0) != (b < 0), -q, q)
    return a / b


_erf = np.vectorize(math.erf, otypes=[np.float64])  # NumPy has no erf; small tables only


_BINARY = {
    "add": np.add, "subtract": np.subtract, "multiply": np.multiply, "divide": _div,
    "power": np.power, "maximum": np.maximum, "minimum": np.minimum, "equal": np.equal,
    "floor_mod": np.mod, "fmod": np.fmod,
    "less": np.less, "greater": np.greater, "logical_and": np.logical_and,
    "logical_or": np.logical_or, "logical_xor": np.logical_xor,
}

_UNARY = {
    "negative": np.negative, "exp": np.exp, "log": np.log, "sqrt": np.sqrt,
    "sin": np.sin, "cos": np.cos, "sign": np.sign,
    "rsqrt": lambda x: 1.0 / np.sqrt(x), "tanh": np.tanh, "abs": np.abs,
    "erf": lambda x: _erf(np.asarray(x, np.float64)),
    "sigmoid": lambda x: 1.0 / (1.0 + np.exp(-x)), "relu": lambda x: np.maximum(x, 0),
    "floor": np.floor, "ceil": np.ceil, "round": np.round, "not": np.logical_not, "isnan": np.isnan,
    "isinf": np.isinf,
}

_REDUCE = {"sum": np.sum, "mean": np.mean, "max": np.max, "min": np.min}


def _axes(attrs: dict) -> tuple | None:
    axis = attrs.get("axis")
    if axis is None:
        return None
    return (int(axis),) if isinstance(axis, (int, np.integer)) else tuple(int(a) for a in axis)


def _reduce(op: str, x: np.ndarray, attrs: dict) -> np.ndarray:
    keep = bool(attrs.get("keepdims", False))
    if op == "argmax":
        axis = _axes(attrs)
        if axis is None:
            return np.argmax(x.reshape(-1), keepdims=keep) if keep else np.argmax(x)
        return np.argmax(x, axis=axis[0], keepdims=keep)
    return _REDUCE[op](x, axis=_axes(attrs), keepdims=keep)


def _strided_slice(x: np.ndarray, attrs: dict) -> np.ndarray:
    index = [slice(None)] * x.ndim
    axes = attrs.get("axes") or range(len(attrs["begin"]))
    strides = attrs.get("strides") or [1] * len(attrs["begin"])
    for ax, b, e, s in zip(axes, attrs["begin"], attrs["end"], strides):
        index[int(ax)] = slice(int(b), int(e), int(s))
    return x[tuple(index)]


def _layout(op: str, xs: list, a: dict) -> np.ndarray:
    x = xs[0]
    if op == "reshape":
        return x.reshape(tuple(a["newshape"]))
    if op == "flatten":
        return x.reshape(x.shape[0], -1)
    if op == "transpose":
        return np.transpose(x, a.get("axes"))
    if op == "lookup":
        k = x.astype(np.int64) - int(a.get("offset", 0))
        return xs[1][np.clip(k, 0, xs[1].shape[0] - 1)]
    if op == "take":
        idx = xs[1].astype(np.int64)
        n = x.shape[int(a.get("axis", 0))]
        return np.take(x, np.where(idx < 0, idx + n, idx), axis=int(a.get("axis", 0)))
    if op == "concatenate":
        return np.concatenate(xs, axis=int(a.get("axis", 0)))
    if op == "strided_slice":
        return _strided_slice(x, a)
    if op == "expand_dims":
        ax = int(a["axis"])
        return x.reshape(x.shape[:ax] + (1,) * int(a.get("num_newaxis", 1)) + x.shape[ax:])
    if op == "squeeze":
        return np.squeeze(x, axis=_axes(a))
    if op == "broadcast_to":
        return np.broadcast_to(x, tuple(a["shape"])).copy()
    if op == "pad":
        return np.pad(x, [tuple(p) for p in a["pad_width"]],
                      constant_values=a.get("pad_value", 0))
    if op == "dilate":
        out = np.zeros([(d - 1) * s + 1 for d, s in zip(x.shape, a["strides"])], x.dtype)
        out[tuple(slice(None, None, int(s)) for s in a["strides"])] = x
        return out
    if op == "cumsum":
        return cumsum(x, int(a.get("axis", 0)), bool(a.get("exclusive")), bool(a.get("reverse")))
    raise KeyError(op)


def cumsum(x: np.ndarray, axis: int, exclusive: bool = False, reverse: bool = False):
    """ONNX CumSum: running sum along `axis`; exclusive leaves out the element itself,
    reverse sums from the end."""
    y = np.flip(x, axis) if reverse else x
    out = np.cumsum(y, axis=axis, dtype=x.dtype)
    if exclusive:
        out = out - y
    return np.flip(out, axis) if reverse else out


_LAYOUT = ("reshape", "flatten", "transpose", "take", "lookup", "concatenate", "strided_slice",
           "expand_dims", "squeeze", "broadcast_to", "pad", "dilate", "cumsum")

FOLDABLE = frozenset((*_BINARY, *_UNARY, *_REDUCE, *_LAYOUT, "argmax", "where", "cast",
                      "clip", "matmul", "dense"))


def evaluate_op(op: str, xs: list, attrs: dict, dtype: str) -> np.ndarray:
    """The value of `op` applied to arrays `xs`, cast to the node's inferred `dtype`."""
    # the not-taken side of a folded select may hold log(0) or inf -> int: no warnings
    with np.errstate(all="ignore"):
        return _evaluate(op, xs, attrs, dtype)


def _evaluate(op: str, xs: list, attrs: dict, dtype: str) -> np.ndarray:
    if op in _BINARY:
        out = _BINARY[op](xs[0], xs[1])
    elif op in _UNARY:
        out = _UNARY[op](xs[0])
    elif op in _REDUCE or op == "argmax":
        out = _reduce(op, xs[0], attrs)
    elif op == "where":
        out = np.where(xs[0], xs[1], xs[2])
    elif op == "cast":
        out = xs[0]
    elif op == "clip":
        lo, hi = attrs.get("a_min"), attrs.get("a_max")
        out = np.clip(xs[0], -np.inf if lo is None else lo, np.inf if hi is None else hi)
    elif op == "matmul":
        out = np.matmul(xs[0], xs[1])
    elif op == "dense":
        out = np.matmul(xs[0], xs[1].T) + (xs[2] if len(xs) > 2 else 0)
    else:
        out = _layout(op, xs, attrs)
    return np.array(out, dtype=dtype, order="C")
