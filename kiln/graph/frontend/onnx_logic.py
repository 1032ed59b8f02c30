"""ONNX handlers for logic, float classification, running sums and N-d gathers.

In: the converting context, input graph nodes and attributes. Out: graph nodes. And / Or /
Xor / Not work on bool tensors with NumPy broadcasting; IsNaN / IsInf classify floats (the
dynamo exporter guards attention softmax with them); CumSum (RoBERTa's position ids) and
GatherND (the dynamo exporter's mask indexing) fold away when their inputs are constants,
and GatherND otherwise becomes one `take` over a flattened view (see lowering.gather_nd).
"""

from __future__ import annotations

import numpy as np

from .common import norm_axis
from .lowering import einsum, gather_nd


def _logic(op: str):
    def handler(cx, ins, attrs):
        return cx.op(op, ins[:2])
    handler.__name__ = f"_onnx_{op}"
    return handler


def _is_inf(cx, ins, attrs):
    x = ins[0]
    pos, neg = int(attrs.get("detect_positive", 1)), int(attrs.get("detect_negative", 1))
    out = cx.op("isinf", [x])
    if pos and neg:
        return out
    if not pos and not neg:
        return cx.b.const(np.zeros(x.shape, bool), cx.name)
    zero = cx.b.const(np.array(0, x.dtype), f"{cx.name}_zero")
    sign = cx.op("greater" if pos else "less", [x, zero])
    return cx.op("logical_and", [out, sign])


def _cum_sum(cx, ins, attrs):
    x = ins[0]
    axis = norm_axis(int(cx.need(ins[1], "axis").reshape(-1)[0]), len(x.shape))
    return cx.op("cumsum", [x], axis=axis, exclusive=bool(attrs.get("exclusive", 0)),
                 reverse=bool(attrs.get("reverse", 0)))


def _gather_nd(cx, ins, attrs):
    return gather_nd(cx.b, ins[0], ins[1], int(attrs.get("batch_dims", 0)), cx.name)


def _scatter_nd(cx, ins, attrs):
    data = cx.need(ins[0], "ScatterND data (only constant inputs are supported)").copy()
    idx = cx.need(ins[1], "ScatterND indices (only constant inputs are supported)")
    upd = cx.need(ins[2], "ScatterND updates (only constant inputs are supported)")
    red = attrs.get("reduction", "none")
    for pos in np.ndindex(*idx.shape[:-1]):
        at = tuple(int(v) for v in idx[pos])
        if red == "add":
            data[at] += upd[pos]
        elif red == "mul":
            data[at] *= upd[pos]
        else:
            data[at] = upd[pos]
    return cx.b.const(data, cx.name)


def _einsum(cx, ins, attrs):
    out = einsum(cx.b, str(attrs["equation"]), [i for i in ins if i is not None], cx.name)
    if out is None:
        raise cx.fail(f"equation {attrs['equation']!r} is not supported (more than two "
                      "operands, or a letter repeated within one operand)")
    return out


HANDLERS = {
    "And": _logic("logical_and"), "Or": _logic("logical_or"), "Xor": _logic("logical_xor"),
    "IsNaN": lambda cx, ins, attrs: cx.op("isnan", [ins[0]]), "IsInf": _is_inf,
    "CumSum": _cum_sum, "GatherND": _gather_nd, "ScatterND": _scatter_nd, "Einsum": _einsum,
}
