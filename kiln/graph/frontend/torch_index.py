"""ATen handlers for logic, indexing, running sums, padding, norms and resizing.

In: the converting context and the call's args / kwargs (graph nodes for tensors). Out: graph
nodes. These are the core-ATen ops that transformers' mask building and position ids leave
after decomposition (bitwise_and on bool masks, index.Tensor with arange indices, cumsum),
plus constant_pad_nd, linalg_vector_norm and the upsampling ops. Index tensors that depend
only on shapes are constants, so the gathers they drive fold away at import.
"""

from __future__ import annotations

import numpy as np

from ..ir import Node
from .common import norm_axes, norm_axis
from .lowering import advanced_index, gather_elements, pad_or_crop, resize_axis
from .torch_ops import _arg


def _logic(op: str):
    def handler(cx, args, kw):
        a, b = args[0], args[1]
        nodes = [v for v in (a, b) if isinstance(v, Node)]
        if any(n.dtype != "bool" for n in nodes):
            return _integer_bitwise(cx, op, a, b)
        return cx.op(op, [cx.tensor(a, "bool"), cx.tensor(b, "bool")])
    handler.__name__ = f"_aten_{op}"
    return handler


def _integer_bitwise(cx, op: str, a, b):
    """Bitwise ops on integers: only on constants (shape arithmetic), folded with NumPy."""
    fn = {"logical_and": np.bitwise_and, "logical_or": np.bitwise_or,
          "logical_xor": np.bitwise_xor}[op]
    va = cx.need(a, "an integer bitwise operand") if isinstance(a, Node) else a
    vb = cx.need(b, "an integer bitwise operand") if isinstance(b, Node) else b
    return cx.b.const(np.asarray(fn(va, vb), cx.out_dtype()), cx.name)


def _logical(op: str):
    def handler(cx, args, kw):
        return cx.op(op, [cx.b.cast(args[0], "bool", cx.name),
                          cx.b.cast(args[1], "bool", cx.name)])
    handler.__name__ = f"_aten_logical_{op}"
    return handler


def _bitwise_not(cx, args, kw):
    if args[0].dtype != "bool":
        return cx.b.const(np.invert(cx.need(args[0], "an integer bitwise_not operand")),
                          cx.name)
    return cx.op("not", [args[0]])


def _classify(op: str):
    def handler(cx, args, kw):
        x = args[0]
        if not x.dtype.startswith("float"):
            return cx.b.const(np.zeros(x.shape, bool), cx.name)
        return cx.op(op, [x])
    handler.__name__ = f"_aten_{op}"
    return handler


def _any_all(cx, args, kw):
    x = args[0]
    dim = _arg(args, kw, 1, "dim")
    axes = list(range(len(x.shape))) if dim is None or dim == [] else \
        norm_axes([dim] if isinstance(dim, int) else dim, len(x.shape))
    keep = bool(_arg(args, kw, 2, "keepdim", False))
    is_all = cx.node.target.__name__.startswith("all")
    flag = cx.b.cast(x, "bool", cx.name)
    if is_all:
        flag = cx.op("not", [flag])
    count = cx.op("sum", [cx.b.cast(flag, "int32", cx.name)], axis=axes, keepdims=keep)
    out = cx.op("greater", [count, cx.b.const(np.array(0, np.int32), f"{cx.name}_zero")])
    return cx.op("not", [out]) if is_all else out


def _cumsum(cx, args, kw):
    x = cx.b.cast(args[0], cx.out_dtype(), cx.name)
    return cx.op("cumsum", [x], axis=norm_axis(args[1], len(x.shape)))


def _index(cx, args, kw):
    x, indices = args[0], list(args[1])
    for k, i in enumerate(indices):
        if i is not None and i.dtype == "bool":  # a boolean mask: positions, if constant
            mask = cx.need(i, "a boolean index (its shape depends on its values)")
            pos = np.nonzero(mask)
            indices[k:k + 1] = [cx.b.const(p.astype(np.int64), f"{cx.name}_pos") for p in pos]
    indices += [None] * (len(x.shape) - len(indices))
    if all(i is None for i in indices):
        return x
    return advanced_index(cx.b, x, indices, cx.name)


def _gather(cx, args, kw):
    x = args[0]
    return gather_elements(cx.b, x, args[2], norm_axis(args[1], len(x.shape)), cx.name)


def _constant_pad(cx, args, kw):
    x, pads = args[0], [int(p) for p in args[1]]
    value = float(_arg(args, kw, 2, "value", 0.0))
    rank = len(x.shape)
    width = [[0, 0] for _ in range(rank)]
    for k in range(len(pads) // 2):  # pairs run from the last axis backwards
        width[rank - 1 - k] = [pads[2 * k], pads[2 * k + 1]]
    return pad_or_crop(cx, x, width, value)  # negative pads crop


def _vector_norm(cx, args, kw):
    x = args[0]
    order = float(_arg(args, kw, 1, "ord", 2))
    dim = _arg(args, kw, 2, "dim")
    axes = list(range(len(x.shape))) if dim is None or dim == [] else \
        norm_axes([dim] if isinstance(dim, int) else dim, len(x.shape))
    keep = bool(_arg(args, kw, 3, "keepdim", False))
    if order == 2:
        return cx.op("sqrt", [cx.op("sum", [cx.op("multiply", [x, x])], axis=axes,
                                    keepdims=keep)])
    if order == 1:
        return cx.op("sum", [cx.op("abs", [x])], axis=axes, keepdims=keep)
    if order == float("inf"):
        return cx.op("max", [cx.op("abs", [x])], axis=axes, keepdims=keep)
    raise cx.fail(f"ord={order} is not supported (1, 2 and inf are)")


def _prelu(cx, args, kw):
    x, w = args[0], args[1]
    if len(x.shape) >= 2 and len(w.shape) == 1:  # one slope per channel (axis 1)
        w = cx.b.reshape(w, (w.shape[0],) + (1,) * (len(x.shape) - 2), cx.name)
    negative = cx.op("less", [x, cx.tensor(0, x.dtype)])
    return cx.op("where", [negative, cx.op("multiply", [x, w]), x])


def _upsample(method: str):
    def handler(cx, args, kw):
        x = args[0]
        name = cx.node.target.__name__
        align = bool(args[2]) if method in ("linear", "cubic") and len(args) > 2 else False
        out = [int(d) for d in cx.node.meta["val"].shape[2:]]
        scales = args[-1] if isinstance(args[-1], (list, tuple)) else None
        mode = "align_corners" if align else \
            ("asymmetric" if method == "nearest" and "exact" not in name else
             "pytorch_half_pixel")
        for k, size in enumerate(out):
            scale = float(scales[k]) if scales else size / x.shape[2 + k]
            x = resize_axis(cx.b, x, 2 + k, size, scale, method, mode,
                            "round_prefer_ceil" if "exact" in name else "floor", cx.name)
        return x
    handler.__name__ = f"_aten_upsample_{method}"
    return handler


def _as_strided(cx, args, kw):
    """as_strided(x, size, stride, offset) on a contiguous x: a gather from the flattened x
    at the element offsets the strides give (a constant index table)."""
    x, size, stride = args[0], [int(d) for d in args[1]], [int(s) for s in args[2]]
    offset = int(_arg(args, kw, 3, "storage_offset", 0) or 0)
    idx = np.full(size, offset, np.int64)
    for k, (n, s) in enumerate(zip(size, stride, strict=True)):
        shape = [1] * len(size)
        shape[k] = n
        idx = idx + (np.arange(n, dtype=np.int64) * s).reshape(shape)
    total = int(np.prod(x.shape))
    if idx.size and (idx.min() < 0 or idx.max() >= total):
        raise cx.fail(f"as_strided reads elements outside its {total}-element input")
    flat = cx.b.reshape(x, (total,), f"{cx.name}_flat")
    return cx.op("take", [flat, cx.b.const(idx, f"{cx.name}_offsets")], axis=0)


HANDLERS = {
    "as_strided": _as_strided,
    "bitwise_and": _logic("logical_and"), "bitwise_or": _logic("logical_or"),
    "bitwise_xor": _logic("logical_xor"), "__and__": _logic("logical_and"),
    "__or__": _logic("logical_or"), "__xor__": _logic("logical_xor"),
    "logical_and": _logical("logical_and"), "logical_or": _logical("logical_or"),
    "logical_xor": _logical("logical_xor"), "bitwise_not": _bitwise_not,
    "isnan": _classify("isnan"), "isinf": _classify("isinf"), "any": _any_all, "all": _any_all,
    "cumsum": _cumsum, "index": _index, "_unsafe_index": _index, "gather": _gather,
    "constant_pad_nd": _constant_pad, "linalg_vector_norm": _vector_norm, "prelu": _prelu,
    "_prelu_kernel": _prelu, "upsample_nearest2d": _upsample("nearest"),
    "_upsample_nearest_exact2d": _upsample("nearest"),
    "upsample_bilinear2d": _upsample("linear"), "upsample_bicubic2d": _upsample("cubic"),
}
