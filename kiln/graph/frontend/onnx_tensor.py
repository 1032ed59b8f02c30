"""ONNX handlers for shape, layout, indexing and constant-making ops.

In: the converting context, input graph nodes and attributes. Out: graph nodes. Inputs that
ONNX passes as tensors but kiln needs as attributes (Reshape's shape, Slice's starts,
Unsqueeze's axes, Pad's pads, ...) are read as constants with NumPy; `Shape`, `Size`,
`ConstantOfShape`, `Range` and `Constant` produce const nodes directly. Trilu is accepted
when its input is constant; GatherElements becomes a `take` (lowering.gather_elements).
"""

from __future__ import annotations

import math

import numpy as np

from .common import norm_axes, norm_axis
from .lowering import gather_elements, pad_or_crop


def _reshape(cx, ins, attrs):
    shape = cx.need(ins[1], "the target shape").reshape(-1)
    return cx.b.reshape(ins[0], shape, cx.name, allow_zero=bool(attrs.get("allowzero", 0)))


def _transpose(cx, ins, attrs):
    rank = len(ins[0].shape)
    perm = [norm_axis(p, rank) for p in attrs.get("perm", range(rank - 1, -1, -1))]
    if perm == list(range(rank)):
        return ins[0]
    return cx.op("transpose", [ins[0]], axes=perm)


def _gather(cx, ins, attrs):
    data, idx = ins[0], ins[1]
    axis = norm_axis(attrs.get("axis", 0), len(data.shape))
    value = cx.b.value(idx)
    if value is not None and (value < 0).any():
        value = np.where(value < 0, value + data.shape[axis], value)
        idx = cx.b.const(value.astype(idx.dtype), f"{cx.name}_indices")
    return cx.op("take", [data, idx], axis=axis)


def _gather_elements(cx, ins, attrs):
    axis = norm_axis(attrs.get("axis", 0), len(ins[0].shape))
    return gather_elements(cx.b, ins[0], ins[1], axis, cx.name)


def _trilu(cx, ins, attrs):
    x = cx.need(ins[0], "Trilu input (only constant inputs are supported)")
    k = int(cx.need(ins[1], "k").reshape(-1)[0]) if len(ins) > 1 and ins[1] else 0
    out = np.triu(x, k) if attrs.get("upper", 1) else np.tril(x, k)
    return cx.b.const(out, cx.name)


def _concat(cx, ins, attrs):
    xs = [i for i in ins if i is not None]
    if len(xs) == 1:
        return xs[0]
    return cx.op("concatenate", xs, axis=norm_axis(attrs["axis"], len(xs[0].shape)))


def _slice_args(cx, ins, attrs) -> tuple:
    if cx.opset < 10:
        starts, ends = attrs["starts"], attrs["ends"]
        return starts, ends, attrs.get("axes", range(len(starts))), [1] * len(starts)

    def get(k, what, default):
        if len(ins) > k and ins[k] is not None:
            return [int(v) for v in cx.need(ins[k], what).reshape(-1)]
        return default
    starts, ends = get(1, "starts", None), get(2, "ends", None)
    return starts, ends, get(3, "axes", list(range(len(starts)))), get(4, "steps",
                                                                        [1] * len(starts))


def _slice(cx, ins, attrs):
    x = ins[0]
    starts, ends, axes, steps = _slice_args(cx, ins, attrs)
    begin, end, strides, kept = [], [], [], []
    for a, b, e, s in zip(axes, starts, ends, steps):
        a = norm_axis(a, len(x.shape))
        lo, hi, st = slice(int(b), int(e), int(s)).indices(x.shape[a])
        if st < 0:
            data = cx.need(x, "input of a negative-step Slice")
            index = [slice(None)] * data.ndim
            index[a] = slice(int(b), int(e), int(s))
            return cx.b.const(data[tuple(index)], cx.name)
        if (lo, hi, st) == (0, x.shape[a], 1):
            continue
        kept.append(a)
        begin.append(lo)
        end.append(max(hi, lo))
        strides.append(st)
    if not kept:
        return x
    return cx.op("strided_slice", [x], begin=begin, end=end, strides=strides, axes=kept)


def _axes_arg(cx, ins, attrs, since: int):
    if cx.opset >= since:
        if len(ins) > 1 and ins[1] is not None:
            return [int(a) for a in cx.need(ins[1], "axes").reshape(-1)]
        return None
    return attrs.get("axes")


def _unsqueeze(cx, ins, attrs):
    x = ins[0]
    axes = _axes_arg(cx, ins, attrs, 13)
    rank = len(x.shape) + len(axes)
    axes = norm_axes(axes, rank)
    if len(axes) == 1:
        return cx.op("expand_dims", [x], axis=axes[0], num_newaxis=1)
    shape, it = [], iter(x.shape)
    for k in range(rank):
        shape.append(1 if k in axes else next(it))
    return cx.b.reshape(x, shape, cx.name)


def _squeeze(cx, ins, attrs):
    x = ins[0]
    axes = _axes_arg(cx, ins, attrs, 13)
    axes = [i for i, d in enumerate(x.shape) if d == 1] if axes is None else \
        norm_axes(axes, len(x.shape))
    if not axes:
        return x
    return cx.op("squeeze", [x], axis=axes)


def _expand(cx, ins, attrs):
    x = ins[0]
    shape = [int(d) for d in cx.need(ins[1], "the target shape").reshape(-1)]
    out = tuple(int(d) for d in np.broadcast_shapes(tuple(x.shape), tuple(shape)))
    if out == tuple(x.shape):
        return x
    return cx.op("broadcast_to", [x], shape=out)


def _shape(cx, ins, attrs):
    shape = list(ins[0].shape)
    start, end = attrs.get("start", 0), attrs.get("end", len(shape))
    return cx.b.const(np.array(shape[start:end], np.int64), cx.name)


def _size(cx, ins, attrs):
    return cx.b.const(np.array(math.prod(ins[0].shape), np.int64), cx.name)


def _constant_of_shape(cx, ins, attrs):
    shape = [int(d) for d in cx.need(ins[0], "the shape").reshape(-1)]
    fill = attrs.get("value", np.zeros(1, np.float32))
    return cx.b.const(np.full(shape, fill.reshape(-1)[0], fill.dtype), cx.name)


def _constant(cx, ins, attrs):
    for key, dtype in (("value", None), ("value_float", np.float32), ("value_int", np.int64),
                       ("value_floats", np.float32), ("value_ints", np.int64)):
        if key in attrs:
            return cx.b.const(np.asarray(attrs[key], dtype), cx.name)
    raise cx.fail(f"attribute {sorted(attrs)} is not supported")


def _range(cx, ins, attrs):
    start, limit, delta = (cx.need(i, "a Range bound") for i in ins[:3])
    out = np.arange(start.item(), limit.item(), delta.item()).astype(start.dtype)
    return cx.b.const(out, cx.name)


def _split(cx, ins, attrs):
    x = ins[0]
    axis = norm_axis(attrs.get("axis", 0), len(x.shape))
    n_out = len(cx.node.output)
    if cx.opset >= 13 and len(ins) > 1 and ins[1] is not None:
        sizes = [int(s) for s in cx.need(ins[1], "split sizes").reshape(-1)]
    elif cx.opset < 13 and "split" in attrs:
        sizes = list(attrs["split"])
    else:
        n = int(attrs.get("num_outputs", n_out))
        step = -(-x.shape[axis] // n)
        sizes = [min(step, x.shape[axis] - k * step) for k in range(n)]
    outs, at = [], 0
    for size in sizes:
        outs.append(cx.op("strided_slice", [x], begin=[at], end=[at + size], strides=[1],
                          axes=[axis]))
        at += size
    return outs


def _pad(cx, ins, attrs):
    x = ins[0]
    if attrs.get("mode", "constant") != "constant":
        raise cx.fail(f"pad mode {attrs.get('mode')!r} is not supported (only 'constant')")
    rank = len(x.shape)
    if cx.opset < 11:
        pads, value = list(attrs["pads"]), float(attrs.get("value", 0.0))
        axes = list(range(rank))
    else:
        pads = [int(p) for p in cx.need(ins[1], "pads").reshape(-1)]
        value = 0.0
        if len(ins) > 2 and ins[2] is not None:
            value = cx.need(ins[2], "constant_value").reshape(-1)[0].item()
        axes = list(range(rank))
        if len(ins) > 3 and ins[3] is not None:
            axes = norm_axes(cx.need(ins[3], "axes").reshape(-1), rank)
    widths = [[0, 0] for _ in range(rank)]
    for k, a in enumerate(axes):
        widths[a] = [pads[k], pads[k + len(axes)]]
    return pad_or_crop(cx, x, widths, value)  # negative pads remove elements


def _flatten(cx, ins, attrs):
    x = ins[0]
    axis = norm_axis(attrs.get("axis", 1), len(x.shape) + 1)
    if axis == 1 and len(x.shape) >= 2:
        return cx.op("flatten", [x])
    return cx.b.reshape(x, (math.prod(x.shape[:axis]), math.prod(x.shape[axis:])), cx.name)


def _where(cx, ins, attrs):
    return cx.op("where", ins[:3])


def _tile(cx, ins, attrs):
    return cx.b.tile(ins[0], cx.need(ins[1], "Tile repeats").reshape(-1), cx.name)


HANDLERS = {
    "Tile": _tile,
    "Reshape": _reshape, "Transpose": _transpose, "Gather": _gather,
    "GatherElements": _gather_elements, "Trilu": _trilu, "Concat": _concat, "Slice": _slice,
    "Unsqueeze": _unsqueeze, "Squeeze": _squeeze, "Expand": _expand, "Shape": _shape,
    "Size": _size, "ConstantOfShape": _constant_of_shape, "Constant": _constant,
    "Range": _range, "Split": _split, "Pad": _pad, "Flatten": _flatten, "Where": _where,
}
