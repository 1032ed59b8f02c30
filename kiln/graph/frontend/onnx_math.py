"""ONNX handlers for elementwise math, activations, casts and reductions.

In: the converting context, the node's input graph nodes (None for an omitted optional
input) and its attributes as Python values. Out: the graph node (or nodes) for its outputs.
Each handler is named after the ONNX op it converts; HANDLERS maps op type -> handler.
"""

from __future__ import annotations

from functools import reduce

import numpy as np

from .common import norm_axes, norm_axis

_BINARY = {"Add": "add", "Sub": "subtract", "Mul": "multiply", "Div": "divide",
           "Pow": "power", "Equal": "equal", "Less": "less", "Greater": "greater"}
_UNARY = {"Sqrt": "sqrt", "Exp": "exp", "Log": "log", "Erf": "erf", "Tanh": "tanh",
          "Sigmoid": "sigmoid", "Relu": "relu", "Neg": "negative", "Abs": "abs",
          "Floor": "floor", "Ceil": "ceil", "Round": "round", "Not": "not",
          "HardSwish": "hard_swish", "Sin": "sin", "Cos": "cos",
          "Sign": "sign"}


def onnx_dtype(elem_type: int) -> str:
    """An ONNX TensorProto element type as a NumPy dtype name."""
    import onnx
    return np.dtype(onnx.helper.tensor_dtype_to_np_dtype(elem_type)).name


def _binary(op: str):
    def handler(cx, ins, attrs):
        return cx.op(op, ins[:2])
    handler.__name__ = f"_onnx_{op}"
    return handler


def _unary(op: str):
    def handler(cx, ins, attrs):
        return cx.op(op, ins[:1])
    handler.__name__ = f"_onnx_{op}"
    return handler


def _scalar(cx, like, value) -> object:
    return cx.b.const(np.array(value, dtype=like.dtype), f"{cx.name}_scalar")


def _identity(cx, ins, attrs):
    return [ins[0], None]  # Dropout's mask output is not produced


def _reciprocal(cx, ins, attrs):
    return cx.op("divide", [_scalar(cx, ins[0], 1), ins[0]])


def _less_or_equal(cx, ins, attrs):
    return cx.op("not", [cx.op("greater", ins[:2])])


def _greater_or_equal(cx, ins, attrs):
    return cx.op("not", [cx.op("less", ins[:2])])


def _mod(cx, ins, attrs):
    """ONNX Mod: fmod=0 (integers only) the remainder with the divisor's sign; fmod=1 C's."""
    return cx.op("fmod" if int(attrs.get("fmod", 0)) else "floor_mod", ins[:2])


def _cast(cx, ins, attrs):
    return cx.b.cast(ins[0], onnx_dtype(int(attrs["to"])), cx.name)


def _cast_like(cx, ins, attrs):
    return cx.b.cast(ins[0], ins[1].dtype, cx.name)


def _bound(cx, node, default):
    if node is None:
        return default
    return float(cx.need(node, "a Clip bound").reshape(-1)[0])


def _clip(cx, ins, attrs):
    if cx.opset < 11:
        lo, hi = attrs.get("min"), attrs.get("max")
    else:
        lo = _bound(cx, ins[1] if len(ins) > 1 else None, None)
        hi = _bound(cx, ins[2] if len(ins) > 2 else None, None)
    if lo is None and hi is None:
        return ins[0]
    return cx.op("clip", [ins[0]], a_min=lo, a_max=hi)


def _leaky_relu(cx, ins, attrs):
    return cx.op("leaky_relu", [ins[0]], alpha=float(attrs.get("alpha", 0.01)))


def _hard_sigmoid(cx, ins, attrs):
    return cx.op("hard_sigmoid", [ins[0]], alpha=float(attrs.get("alpha", 0.2)),
                 beta=float(attrs.get("beta", 0.5)))


def _gelu(cx, ins, attrs):
    return cx.op("gelu", [ins[0]], approximate=str(attrs.get("approximate", "none")))


def _variadic(op: str, mean: bool = False):
    def handler(cx, ins, attrs):
        xs = [i for i in ins if i is not None]
        out = reduce(lambda a, b: cx.op(op, [a, b]), xs)
        if mean and len(xs) > 1:
            out = cx.op("divide", [out, _scalar(cx, out, len(xs))])
        return out
    handler.__name__ = f"_onnx_variadic_{op}"
    return handler


def _reduce_axes(cx, ins, attrs, axes_input: bool):
    rank = len(ins[0].shape)
    if axes_input and len(ins) > 1 and ins[1] is not None:
        axes = [int(a) for a in cx.need(ins[1], "axes").reshape(-1)]
    else:
        axes = attrs.get("axes")
    if not axes:
        return None if attrs.get("noop_with_empty_axes", 0) else list(range(rank))
    return norm_axes(axes, rank)


def _reduction(op: str, input_axes_since: int):
    def handler(cx, ins, attrs):
        axes = _reduce_axes(cx, ins, attrs, cx.opset >= input_axes_since)
        if axes is None:
            return ins[0]
        return cx.op(op, [ins[0]], axis=axes, keepdims=bool(attrs.get("keepdims", 1)))
    handler.__name__ = f"_onnx_reduce_{op}"
    return handler


def _composite_reduction(pre: str | None, op: str, post: str | None, since: int):
    """ReduceL2 = sqrt(sum(x*x)), ReduceL1 = sum(|x|), ReduceSumSquare, ReduceLogSumExp."""
    def handler(cx, ins, attrs):
        x = ins[0]
        axes = _reduce_axes(cx, ins, attrs, cx.opset >= since)
        if pre == "square":
            x = cx.op("multiply", [x, x])
        elif pre is not None:
            x = cx.op(pre, [x])
        if axes is not None:
            x = cx.op(op, [x], axis=axes, keepdims=bool(attrs.get("keepdims", 1)))
        return cx.op(post, [x]) if post else x
    handler.__name__ = f"_onnx_reduce_{pre}_{op}_{post}"
    return handler


def _prelu(cx, ins, attrs):
    x, slope = ins[0], ins[1]  # slope broadcasts to x like NumPy (from the right)
    negative = cx.op("less", [x, _scalar(cx, x, 0)])
    return cx.op("where", [negative, cx.op("multiply", [x, slope]), x])


def _arg_max(cx, ins, attrs):
    if attrs.get("select_last_index", 0):
        raise cx.fail("select_last_index=1 is not supported")
    axis = norm_axis(attrs.get("axis", 0), len(ins[0].shape))
    return cx.op("argmax", [ins[0]], axis=[axis], keepdims=bool(attrs.get("keepdims", 1)))


def _softmax(op: str):
    def handler(cx, ins, attrs):
        x = ins[0]
        rank = len(x.shape)
        axis = norm_axis(attrs.get("axis", -1 if cx.opset >= 13 else 1), rank)
        if cx.opset >= 13 or axis == rank - 1:
            return cx.op(op, [x], axis=axis)
        # opsets < 13 normalise over all axes from `axis` on: flatten them to one
        flat = cx.b.reshape(x, (*x.shape[:axis], -1), cx.name)
        out = cx.op(op, [flat], axis=axis)
        return cx.b.reshape(out, x.shape, cx.name)
    handler.__name__ = f"_onnx_{op}"
    return handler


HANDLERS = {
    **{k: _binary(v) for k, v in _BINARY.items()},
    **{k: _unary(v) for k, v in _UNARY.items()},
    "LessOrEqual": _less_or_equal, "GreaterOrEqual": _greater_or_equal, "Mod": _mod,
    "Identity": _identity, "Dropout": _identity, "Reciprocal": _reciprocal,
    "Cast": _cast, "CastLike": _cast_like, "Clip": _clip, "LeakyRelu": _leaky_relu,
    "HardSigmoid": _hard_sigmoid, "Gelu": _gelu,
    "Min": _variadic("minimum"), "Max": _variadic("maximum"), "Sum": _variadic("add"),
    "Mean": _variadic("add", mean=True),
    "ReduceMean": _reduction("mean", 18), "ReduceSum": _reduction("sum", 13),
    "ReduceMax": _reduction("max", 18), "ReduceMin": _reduction("min", 18),
    "ReduceL2": _composite_reduction("square", "sum", "sqrt", 18),
    "ReduceL1": _composite_reduction("abs", "sum", None, 18),
    "ReduceSumSquare": _composite_reduction("square", "sum", None, 18),
    "ReduceLogSumExp": _composite_reduction("exp", "sum", "log", 18),
    "PRelu": _prelu, "ArgMax": _arg_max, "Softmax": _softmax("softmax"),
    "LogSoftmax": _softmax("log_softmax"),
}
