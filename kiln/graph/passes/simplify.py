"""Algebraic simplification: drop no-op nodes and collapse reshape / transpose chains.

In: a Graph. Out: a new Graph where
  * reshapes, broadcasts, slices, pads, squeezes and casts that change nothing are gone,
  * identity transposes are gone and transpose(transpose(x)) is one transpose (or none),
  * a chain of reshape-like ops (reshape, flatten, squeeze, expand_dims) is one reshape,
  * x + 0, x - 0, x * 1 and x / 1 (constants that do not widen the result) are x,
  * (x + c1) + c2 is x + (c1 + c2), and likewise for multiply (BERT's embedding sums),
  * where(c, x, y) with a constant all-true (all-false) c is x (y): folded attention masks,
  * conv2d(pad(x)) with zeros around H and W is conv2d(x) with that padding (models that
    pad explicitly, as TF-style "same" convolutions do: one copy kernel less per conv),
  * cast(cast(clip(x) into int8 / uint8), int32) is cast(clip(x), int32) when the clip keeps
    x inside the narrow type (a QuantizeLinear read by a DequantizeLinear: GCC turns the
    narrowing and widening pair into a scalar sign extension of every lane),
  * a transpose that keeps the order of the non-unit dims ([1, 1, 1, C] -> [1, C, 1, 1]) is a
    reshape,
  * transpose(f(transpose(x))) with f elementwise (its other operands constants, scalars,
    or runtime broadcast operands whose transpose is a reshape: a squeeze-excitation scale
    [N, C, 1, 1]) and the two permutations inverse is f(x): a transpose pulled up through
    the elementwise ops cancels the one below (the channels-last int8 convolutions of a
    quantized CNN, frontend/onnx_quant.py, read their input through such a pair). f is
    copied, not moved: any other reader keeps the original, and each node gets one copy
    however many pulls reach it (a residual sum read by the next block and by its
    convolution),
  * a sum / mean / max / min / global average pool of such an f(transpose(x)) reduces f(x)
    over the same axes and transposes its (small) result; a depthwise conv2d of it (float32,
    or int32) runs channels-last (depthwise_conv2d_nhwc) on f(x), its output transposed back.
  * (simplify_views, also run alone after the channels-last rewrite) f(reshape(x)) with f
    elementwise is reshape(f(x)), so a product's SiLU or residual sum becomes its epilogue.
Exported models are full of these (shape-preserving views, masks that fold to zeros); each
one removed is a kernel launch and a memory round trip the compiled model never pays.
"""

from __future__ import annotations

import numpy as np

from ..ir import Graph, Node
from .rewrite import Rewriter, rewrite

_RESHAPE_LIKE = ("reshape", "flatten", "squeeze", "expand_dims")
_SHAPE_NOOPS = (*_RESHAPE_LIKE, "broadcast_to", "strided_slice", "pad", "cast")
_NEUTRAL = {"add": (0, True), "subtract": (0, False), "multiply": (1, True),
            "divide": (1, False)}  # op -> (neutral value, may it be the left operand)


def _same_type(a: Node, b: Node) -> bool:
    return tuple(a.shape) == tuple(b.shape) and a.dtype == b.dtype


def _is_fill(rw: Rewriter, n: Node, value: float) -> bool:
    v = rw.param(n)
    return v is not None and v.size > 0 and bool(np.all(v == value))


def _neutral(n: Node, rw: Rewriter) -> Node | None:
    value, left_ok = _NEUTRAL[n.op]
    a, b = n.inputs
    if _is_fill(rw, b, value) and _same_type(a, n):
        return a
    if left_ok and _is_fill(rw, a, value) and _same_type(b, n):
        return b
    return None


def _reassociate(n: Node, rw: Rewriter) -> Node | None:
    combine = np.add if n.op == "add" else np.multiply
    for inner, c2 in (n.inputs, n.inputs[::-1]):
        v2 = rw.param(c2)
        if inner.op != n.op or v2 is None or rw.uses[inner.uid] != 1:
            continue
        for x, c1 in (inner.inputs, inner.inputs[::-1]):
            v1 = rw.param(c1)
            if v1 is None or rw.param(x) is not None:
                continue
            v = combine(v1, v2).astype(n.dtype)
            if np.broadcast_shapes(x.shape, v.shape) == tuple(n.shape) and x.dtype == n.dtype:
                return rw.op(n.op, [x, rw.const(v, f"{n.name or n.op}_const")], n.name)
    return None


def _transpose(n: Node, rw: Rewriter) -> Node | None:
    x = n.inputs[0]
    perm = list(n.attrs.get("axes") or range(len(x.shape) - 1, -1, -1))
    if x.op == "transpose":
        inner = list(x.attrs.get("axes") or range(len(x.shape) - 1, -1, -1))
        perm = [inner[p] for p in perm]
        x = x.inputs[0]
    if perm == list(range(len(perm))):
        return x
    if _moves_only_ones(x.shape, perm):  # e.g. [1, 1, 1, C] -> [1, C, 1, 1]: a view
        return rw.op("reshape", [x], n.name, newshape=tuple(n.shape))
    if x is n.inputs[0]:
        return None
    return rw.op("transpose", [x], n.name, axes=perm)


def _moves_only_ones(shape, perm: list) -> bool:
    """Whether transposing `shape` by perm keeps the order of its non-unit dims (the data
    stays where it is: the transpose is a reshape)."""
    big = [p for p in perm if int(shape[p]) != 1]
    return big == sorted(big)


def _reshape_chain(n: Node, rw: Rewriter) -> Node | None:
    x = n.inputs[0]
    if x.op not in _RESHAPE_LIKE:
        return None
    src = x.inputs[0]
    if _same_type(src, n):
        return src
    return rw.op("reshape", [src], n.name, newshape=tuple(n.shape))


def _where(n: Node, rw: Rewriter) -> Node | None:
    cond = rw.param(n.inputs[0])
    if cond is None or cond.size == 0:
        return None
    pick = n.inputs[1] if cond.all() else n.inputs[2] if not cond.any() else None
    return pick if pick is not None and _same_type(pick, n) else None


def _conv_pad(n: Node, rw: Rewriter) -> Node | None:
    """conv2d(pad(x) with zeros around H and W) -> conv2d(x) with that padding added."""
    pad = n.inputs[0]
    widths = [tuple(int(v) for v in w) for w in pad.attrs.get("pad_width", ())]
    if len(widths) != 4 or any(widths[0]) or any(widths[1]) or \
            min(min(w) for w in widths) < 0 or float(pad.attrs.get("pad_value", 0.0)) != 0.0:
        return None
    t, left, b, r = (int(v) for v in n.attrs.get("padding", (0, 0, 0, 0)))
    (pt, pb), (pl, pr) = widths[2], widths[3]
    attrs = {**n.attrs, "padding": [t + pt, left + pl, b + pb, r + pr]}
    return rw.op("conv2d", [pad.inputs[0], *n.inputs[1:]], n.name, **attrs)


_NARROW = {"int8": (-128, 127), "uint8": (0, 255)}
_WIDE_INT = ("int16", "int32", "int64")


def _whole_window_average(n: Node, rw: Rewriter) -> Node | None:
    """avg_pool2d whose one window covers the whole unpadded input (a kernel at least the
    input, ceil_mode: the window is clipped to it) -> global_avg_pool2d."""
    x = n.inputs[0]
    if len(x.shape or ()) != 4 or tuple(n.shape[2:]) != (1, 1) or \
            any(int(p) for p in n.attrs.get("padding", (0, 0, 0, 0))):
        return None
    kh, kw = n.attrs.get("pool_size", (0, 0))
    if kh < x.shape[2] or kw < x.shape[3]:
        return None
    return rw.op("global_avg_pool2d", [x], n.name)


def _cast_round_trip(n: Node, rw: Rewriter) -> Node | None:
    """cast(cast(clip(x), narrow), wide int) -> the clip's value cast to the wide type
    directly, when the clip bounds lie inside the narrow type (module docstring)."""
    mid = n.inputs[0]
    if n.dtype not in _WIDE_INT or mid.op != "cast" or mid.dtype not in _NARROW:
        return None
    clip = mid.inputs[0]
    lo, hi = _NARROW[mid.dtype]
    if clip.op != "clip" or float(clip.attrs.get("a_min", -np.inf)) < lo or \
            float(clip.attrs.get("a_max", np.inf)) > hi:
        return None
    return rw.op("cast", [clip], n.name, dtype=n.dtype)


def _perm(n: Node) -> list:
    return [int(a) for a in (n.attrs.get("axes") or range(len(n.shape) - 1, -1, -1))]


def _pull_transpose(n: Node, rw: Rewriter) -> Node | None:
    """transpose(f(transpose(x))) -> f(x) (module docstring), or None."""
    return _pulled(n.inputs[0], _perm(n), rw)


def _transpose_leaf(m: Node, depth: int = 0) -> Node | None:
    """A transpose among the operands of the pointwise tree rooted at m, or None."""
    if m.op == "transpose":
        return m
    if depth >= 64 or not _pointwise(m):
        return None
    for i in m.inputs:
        found = _transpose_leaf(i, depth + 1)
        if found is not None:
            return found
    return None


def _reduce_transposed(n: Node, rw: Rewriter) -> Node | None:
    """reduce(f(transpose(x)), axes) -> transpose(reduce(f(x), the axes x calls them)): the
    reduction reads x in its own layout (a channels-last network's global pooling) and only
    its small result is transposed. None when f cannot be pulled (module docstring)."""
    leaf = _transpose_leaf(n.inputs[0])
    pool = n.op == "global_avg_pool2d"  # the mean over H and W of NCHW, dims kept
    if leaf is None or (n.attrs.get("axis") is None and not pool):
        return None
    inner = _perm(leaf)
    perm = [inner.index(k) for k in range(len(inner))]  # undoes the leaf's transpose
    src = _pulled(n.inputs[0], perm, rw)
    if src is None:
        return None
    rank = len(perm)
    axis = [2, 3] if pool else n.attrs["axis"]
    axes = {int(a) % rank for a in (axis if isinstance(axis, (list, tuple)) else [axis])}
    new_axes = [k for k in range(rank) if perm[k] in axes]
    keep = pool or bool(n.attrs.get("keepdims", False))
    red = rw.op("mean" if pool else n.op, [src], n.name,
                **{**({} if pool else n.attrs), "axis": new_axes, "keepdims": keep})
    kept = [k for k in range(rank) if keep or k not in new_axes]
    order = [int(i) for i in np.argsort([perm[k] for k in kept])]
    if order == list(range(len(order))):
        return red
    if _moves_only_ones(red.shape, order):  # pooled to [N, 1, 1, C]: a view of [N, C, 1, 1]
        return rw.op("reshape", [red], n.name, newshape=tuple(n.shape))
    return rw.op("transpose", [red], n.name, axes=order)


_NHWC, _NCHW = [0, 2, 3, 1], [0, 3, 1, 2]


def _depthwise_channels_last(n: Node, rw: Rewriter) -> Node | None:
    """conv2d(f(transpose(x NHWC -> NCHW))) depthwise (one input channel per output channel,
    a constant weight; float32, or int32 as ConvInteger's) ->
    transpose(depthwise_conv2d_nhwc(f(x)) NHWC -> NCHW): the input is read where it already
    lies channels-last (between the int8 1x1 convolutions of a quantized MobileNet), and the
    transpose after it cancels against the next such convolution's (module docstring).
    None when f cannot be pulled."""
    x, w = n.inputs[0], n.inputs[1]
    wv = rw.param(w)
    c = int(x.shape[1]) if len(x.shape) == 4 else -1
    if wv is None or wv.ndim != 4 or wv.shape[:2] != (c, 1) or \
            n.dtype not in ("float32", "int32") or int(n.attrs.get("groups", 1)) != c or \
            _transpose_leaf(x) is None:
        return None
    src = _pulled(x, _NHWC, rw)
    if src is None:
        return None
    wt = rw.const(np.ascontiguousarray(wv[:, 0].transpose(1, 2, 0)),
                  f"{w.attrs.get('name', 'weight')}_hwc")
    attrs = {k: n.attrs[k] for k in ("strides", "padding", "dilation") if k in n.attrs}
    out = rw.op("depthwise_conv2d_nhwc", [src, wt] + list(n.inputs[2:]), n.name, **attrs)
    return rw.op("transpose", [out], n.name, axes=_NCHW)


def _pulled(root: Node, perm: list, rw: Rewriter) -> Node | None:
    """transpose(root, perm) computed without that transpose: root's pointwise tree rebuilt
    over the sources of the transposes that perm undoes, constants transposed here, and any
    other operand of root's full shape transposed on its own (the model's NCHW input meeting
    a channels-last branch in a residual sum). None unless at least one transpose cancels
    and no more operands are transposed on their own than transposes cancel (the rewrite
    never moves more data than it saves)."""
    if root.op == "transpose" and [_perm(root)[p] for p in perm] == list(range(len(perm))):
        return root.inputs[0]  # a reduction straight after the transpose
    memo = rw.memo.setdefault(("pull_transpose", tuple(perm)), {})

    def pulled(m: Node, depth: int) -> tuple:
        """(m transposed by perm, transposes cancelled, operands transposed) in m's tree;
        (None, 0, 0) when it cannot be."""
        if m.uid in memo:  # shared with earlier pulls: one channels-last twin per node
            return memo[m.uid]
        out: tuple = (None, 0, 0)
        if m.op == "transpose" and [_perm(m)[p] for p in perm] == list(range(len(perm))):
            out = (m.inputs[0], 1, 0)
        elif rw.param(m) is not None:
            v = np.asarray(rw.param(m))
            if v.ndim == 0:
                out = (m, 0, 0)
            elif v.ndim <= len(perm):
                full = v.reshape((1,) * (len(perm) - v.ndim) + v.shape)
                out = (rw.const(np.ascontiguousarray(np.transpose(full, perm)),
                                f"{m.attrs.get('name', 'const')}_t"), 0, 0)
        elif len(m.shape) == 0:
            out = (m, 0, 0)
        elif tuple(m.shape) != tuple(root.shape):
            full = (1,) * (len(perm) - len(m.shape)) + tuple(int(d) for d in m.shape)
            if len(full) == len(perm) and _moves_only_ones(full, perm):
                # a broadcast operand computed at run time whose transpose is a view: the
                # squeeze-excitation scale [N, C, 1, 1] of a channels-last block
                out = (rw.op("reshape", [m], m.name,
                             newshape=tuple(full[p] for p in perm)), 0, 0)
        elif depth < 64 and _pointwise(m):
            ins = [pulled(i, depth + 1) for i in m.inputs]
            if all(i is not None for i, _, _ in ins):
                out = (rw.op(m.op, [i for i, _, _ in ins], m.name, **m.attrs),
                       sum(c for _, c, _ in ins), sum(t for _, _, t in ins))
        else:
            out = (rw.op("transpose", [m], m.name, axes=list(perm)), 0, 1)
        memo[m.uid] = out
        return out
    if not _pointwise(root):
        return None
    node, cancelled, moved = pulled(root, 0)
    return node if cancelled and moved <= cancelled else None


def _sink_reshape(n: Node, rw: Rewriter) -> Node | None:
    """f(reshape(x), ...) -> reshape(f(x, ...)) for f elementwise whose other operands are
    reshapes of the same shape, operands of f's full shape (reshaped in turn: a view),
    scalars, or constants along the last axis when the reshape keeps it: a product's output
    reshaped to NHWC then a SiLU, or reshaped back to [batch, seq, hidden] then a residual
    sum, becomes the product's epilogue (fuse.py), the reshape a view after it."""
    src_shape, ins, others = None, [], []
    for k, i in enumerate(n.inputs):
        if i.op in _RESHAPE_LIKE and tuple(i.shape) == tuple(n.shape):
            shape = tuple(i.inputs[0].shape)
            if src_shape not in (None, shape):
                return None
            src_shape = shape
            ins.append(i.inputs[0])
        else:
            ins.append(i)
            others.append(k)
    if src_shape is None or not src_shape or src_shape[-1] != n.shape[-1]:
        return None
    for k in others:
        i = ins[k]
        v = rw.param(i)
        if len(i.shape) == 0:
            continue
        if tuple(i.shape) == tuple(n.shape) and (v is not None or _residual(n, i)):
            # a residual: its reshape is a view too
            ins[k] = rw.op("reshape", [i], i.name, newshape=src_shape) if v is None else \
                rw.const(v.reshape(src_shape), f"{i.attrs.get('name', 'const')}_r")
            continue
        if v is None or any(int(d) != 1 for d in v.shape[:-1]):
            return None  # a runtime or multi-axis broadcast operand
        ins[k] = rw.const(v.reshape((1,) * (len(src_shape) - 1) + v.shape[-1:]),
                          f"{i.attrs.get('name', 'const')}_r")
    inner = rw.op(n.op, ins, n.name, **n.attrs)
    return rw.op("reshape", [inner], n.name, newshape=tuple(n.shape))


def _residual(n: Node, other: Node) -> bool:
    """Whether moving the reshape off n's reshaped operands onto `other` (a runtime operand
    of n's full shape) lets a product take f as its epilogue: a reshaped operand comes from
    one, `other` does not (else the rule would flip the reshape back and forth)."""
    from ..ops import OpPattern, pattern
    anchors = [i.inputs[0] for i in n.inputs if i.op in _RESHAPE_LIKE and
               tuple(i.shape) == tuple(n.shape)]
    return any(pattern(a) == OpPattern.OUT_ELEMWISE_FUSABLE for a in anchors) and \
        pattern(other) != OpPattern.OUT_ELEMWISE_FUSABLE and other.op not in _RESHAPE_LIKE


def _pointwise(m: Node) -> bool:
    """An elementwise op whose attributes say nothing about axes."""
    from ..ops import OpPattern, pattern
    return m.op not in ("input", "const", "batch_norm", "broadcast_to") and \
        pattern(m) in (OpPattern.ELEMWISE, OpPattern.BROADCAST)


def _simplify_rule(n: Node, rw: Rewriter) -> Node | None:
    if n.op in _SHAPE_NOOPS and _same_type(n.inputs[0], n):
        return n.inputs[0]
    if n.op == "cast":
        return _cast_round_trip(n, rw)
    if n.op in ("sum", "mean", "max", "min", "global_avg_pool2d"):
        return _reduce_transposed(n, rw)
    if n.op == "conv2d" and n.inputs[0].op != "pad":
        return _depthwise_channels_last(n, rw)
    if n.op == "conv2d" and n.inputs[0].op == "pad":
        return _conv_pad(n, rw)
    if n.op == "transpose":
        return _transpose(n, rw) or _pull_transpose(n, rw)
    if n.op in _RESHAPE_LIKE:
        return _reshape_chain(n, rw)
    if n.op == "where":
        return _where(n, rw)
    if n.op == "avg_pool2d":
        return _whole_window_average(n, rw)
    if n.op in _NEUTRAL:
        found = _neutral(n, rw)
        if found is None and n.op in ("add", "multiply"):
            found = _reassociate(n, rw)
        if found is not None:
            return found
    if _pointwise(n) and any(i.op in _RESHAPE_LIKE for i in n.inputs):
        return _sink_reshape(n, rw)
    return None


def simplify(g: Graph) -> Graph:
    """Remove no-op nodes and fold reshape / transpose chains."""
    return rewrite(g, _simplify_rule)


def _views_rule(n: Node, rw: Rewriter) -> Node | None:
    if n.op in _SHAPE_NOOPS and _same_type(n.inputs[0], n):
        return n.inputs[0]
    if n.op in _RESHAPE_LIKE:
        return _reshape_chain(n, rw)
    if n.op == "transpose":
        return _transpose(n, rw)
    if _pointwise(n) and any(i.op in _RESHAPE_LIKE for i in n.inputs):
        return _sink_reshape(n, rw)
    return None


def simplify_views(g: Graph) -> Graph:
    """The view rules of simplify alone (reshape chains, transposes of unit dims, reshapes
    sunk below elementwise ops), for after a simplify whose transpose pulls built new
    elementwise nodes: the layout choices are not revisited (a second full pass could flip
    a reduction's layout back, each pass cancelling one transpose and adding another)."""
    return rewrite(g, _views_rule)
