"""Composite operators written in graph ops, shared by the ONNX and torch.export frontends.

In: a GraphBuilder, graph nodes and plain Python/NumPy arguments. Out: the graph node that
computes the composite: N-d gathers (GatherND, advanced indexing) as one `take` over a
flattened view, resizing (nearest / linear) as per-axis `take`s with constant indices and
weights, transposed and 1-d convolutions as `dilate` + `pad` + `conv2d`, Einsum as
transposes, reshapes and one `batch_matmul`. Why: kiln's op vocabulary stays small (each
new graph op costs a te lowering, a shape rule, a folding kernel and a fusion kind), and
every index or weight that depends only on shapes is a constant, so folding removes it.
"""

from __future__ import annotations

import math
import string

import numpy as np

from ..ir import Node
from .common import GraphBuilder

# ---------------------------------------------------------------- padding

def pad_or_crop(cx, x: Node, widths: list, value: float) -> Node:
    """x padded by per-axis [before, after] widths; negative widths crop (a strided_slice)
    before the positive ones pad. `cx` is a frontend context (its `op` makes nodes)."""
    crop = [a for a, (lo, hi) in enumerate(widths) if lo < 0 or hi < 0]
    if crop:
        x = cx.op("strided_slice", [x], begin=[max(-widths[a][0], 0) for a in crop],
                  end=[x.shape[a] - max(-widths[a][1], 0) for a in crop],
                  strides=[1] * len(crop), axes=crop)
        widths = [[max(lo, 0), max(hi, 0)] for lo, hi in widths]
    if not any(lo or hi for lo, hi in widths):
        return x
    return cx.op("pad", [x], pad_width=widths, pad_value=value)


# ---------------------------------------------------------------- gathers


def flat_index(b: GraphBuilder, idx: Node, dims: tuple, name: str) -> Node:
    """For idx [..., m] addressing the first m `dims`: the row-major flat index [...] (negative
    entries count from the end of their dim)."""
    dims_c = b.const(np.array(dims, idx.dtype), f"{name}_dims")
    if b.value(idx) is None or (b.value(idx) < 0).any():
        negative = b.op("less", [idx, b.const(np.array(0, idx.dtype), f"{name}_zero")], name)
        idx = b.op("where", [negative, b.op("add", [idx, dims_c], name), idx], name)
    strides = [math.prod(dims[k + 1:]) for k in range(len(dims))]
    scaled = b.op("multiply", [idx, b.const(np.array(strides, idx.dtype), f"{name}_strides")],
                  name)
    return b.op("sum", [scaled], name, axis=[len(idx.shape) - 1], keepdims=False)


def gather_nd(b: GraphBuilder, data: Node, idx: Node, batch_dims: int, name: str) -> Node:
    """ONNX GatherND: out[batch, i] = data[batch, *idx[batch, i, :]] as one take."""
    m = idx.shape[-1]
    lead, inner = data.shape[:batch_dims], data.shape[batch_dims:batch_dims + m]
    rest = data.shape[batch_dims + m:]
    idx = b.cast(idx, "int64", name)
    flat = flat_index(b, idx, inner, name)
    if batch_dims:
        nb = math.prod(lead)
        offset = (np.arange(nb, dtype=np.int64) * math.prod(inner)).reshape(
            tuple(lead) + (1,) * (len(flat.shape) - batch_dims))
        flat = b.op("add", [flat, b.const(offset, f"{name}_batch")], name)
    table = b.reshape(data, (math.prod(lead) * math.prod(inner),) + tuple(rest), name)
    return b.op("take", [table, flat], name, axis=0)


def gather_elements(b: GraphBuilder, data: Node, idx: Node, axis: int, name: str) -> Node:
    """out[i] = data[i with axis `axis` replaced by idx[i]] (ONNX GatherElements, torch.gather)
    as one take over the flattened data: the other coordinates give a constant offset."""
    strides = [math.prod(data.shape[k + 1:]) for k in range(len(data.shape))]
    grids = np.indices(idx.shape, dtype=np.int64)
    base = sum(g * s for k, (g, s) in enumerate(zip(grids, strides)) if k != axis)
    idx = b.cast(idx, "int64", name)
    value = b.value(idx)
    if value is not None:
        value = np.where(value < 0, value + data.shape[axis], value)
        flat = b.const(base + value * strides[axis], f"{name}_index")
    else:
        n = b.const(np.array(data.shape[axis], np.int64), f"{name}_dim")
        zero = b.const(np.array(0, np.int64), f"{name}_zero")
        idx = b.op("where", [b.op("less", [idx, zero], name), b.op("add", [idx, n], name), idx],
                   name)
        scaled = b.op("multiply", [idx, b.const(np.array(strides[axis], np.int64),
                                                f"{name}_stride")], name)
        flat = b.op("add", [scaled, b.const(np.asarray(base, np.int64), f"{name}_base")], name)
    table = b.reshape(data, (math.prod(data.shape),), name)
    return b.op("take", [table, flat], name, axis=0)


def advanced_index(b: GraphBuilder, data: Node, indices: list, name: str) -> Node:
    """NumPy/PyTorch advanced indexing data[i0, i1, ...] with integer index tensors (None =
    the whole axis). Indexed axes adjacent: the result dims replace them in place; else the
    result dims come first (NumPy's rule)."""
    axes = [k for k, i in enumerate(indices) if i is not None]
    idx = [b.cast(indices[k], "int64", name) for k in axes]
    shape = tuple(int(d) for d in np.broadcast_shapes(*[tuple(i.shape) for i in idx]))
    idx = [i if tuple(i.shape) == shape else b.op("broadcast_to", [i], name, shape=shape)
           for i in idx]
    stacked = b.op("concatenate", [b.op("expand_dims", [i], name, axis=len(shape),
                                        num_newaxis=1) for i in idx], name, axis=len(shape))
    adjacent = axes == list(range(axes[0], axes[0] + len(axes)))
    front = axes[0] if adjacent else 0
    order = ([k for k in range(front)] + axes +
             [k for k in range(len(data.shape)) if k not in axes and k >= front])
    moved = data if order == list(range(len(data.shape))) else \
        b.op("transpose", [data], name, axes=order)
    lead = moved.shape[:front]
    if front:  # the untouched leading axes act as batch dims of the gather
        stacked = b.op("broadcast_to", [b.reshape(stacked, (1,) * front + stacked.shape, name)],
                       name, shape=tuple(lead) + stacked.shape)
        flat_lead = b.reshape(moved, (math.prod(lead),) + moved.shape[front:], name)
        st = b.reshape(stacked, (math.prod(lead),) + stacked.shape[front:], name)
        out = gather_nd(b, flat_lead, st, 1, name)
        return b.reshape(out, tuple(lead) + out.shape[1:], name)
    return gather_nd(b, moved, stacked, 0, name)


# ---------------------------------------------------------------- resize

def _source_coords(out: int, size: int, scale: float, mode: str) -> np.ndarray:
    o = np.arange(out, dtype=np.float64)
    if mode == "asymmetric":
        return o / scale
    if mode == "align_corners":
        return o * ((size - 1) / (out - 1)) if out > 1 else np.zeros(out)
    if mode == "pytorch_half_pixel" and out == 1:
        return np.zeros(out)
    if mode == "half_pixel_symmetric":
        adj = out / (size * scale)
        return size / 2 * (1 - adj) + (o + 0.5) / scale - 0.5
    return (o + 0.5) / scale - 0.5  # half_pixel, pytorch_half_pixel


def _nearest(x: np.ndarray, rule: str) -> np.ndarray:
    if rule == "floor":
        return np.floor(x)
    if rule == "ceil":
        return np.ceil(x)
    if rule == "round_prefer_ceil":
        return np.floor(x + 0.5)
    return np.ceil(x - 0.5)  # round_prefer_floor: x.5 goes down


def resize_axis(b: GraphBuilder, x: Node, axis: int, out: int, scale: float, method: str,
                coord_mode: str, nearest_rule: str, name: str, cubic_a: float = -0.75,
                exclude_outside: bool = False) -> Node:
    """Resize `x` along one axis to `out` elements: nearest picks one source element, linear
    blends two, cubic four (Keys' kernel with coefficient `cubic_a`, as ONNX and PyTorch's
    bicubic); edge elements repeat past the border, or with exclude_outside the taps outside
    get no weight and the others are renormalized."""
    size = x.shape[axis]
    src = _source_coords(out, size, scale, coord_mode)
    if method == "nearest":
        pick = np.clip(_nearest(src, nearest_rule), 0, size - 1).astype(np.int64)
        return b.op("take", [x, b.const(pick, f"{name}_index")], name, axis=axis)
    lo = np.floor(src)
    frac = src - lo
    if method == "linear":
        taps, weights = (0, 1), [1 - frac, frac]
    else:
        taps, weights = (-1, 0, 1, 2), _cubic_weights(frac, cubic_a)
    if exclude_outside:
        inside = [((lo + t) >= 0) & ((lo + t) < size) for t in taps]
        weights = [w * m for w, m in zip(weights, inside, strict=True)]
        total = sum(weights)
        weights = [w / np.where(total == 0, 1, total) for w in weights]
    wshape = [1] * len(x.shape)
    wshape[axis] = out
    acc = None
    for k, (t, w) in enumerate(zip(taps, weights, strict=True)):
        idx = np.clip(lo + t, 0, size - 1).astype(np.int64)
        term = b.op("take", [x, b.const(idx, f"{name}_i{k}")], name, axis=axis)
        term = b.op("multiply", [term, b.const(w.astype(x.dtype).reshape(wshape),
                                               f"{name}_w{k}")], name)
        acc = term if acc is None else b.op("add", [acc, term], name)
    return acc


def _cubic_weights(t: np.ndarray, a: float) -> list:
    """Keys' cubic convolution weights of the taps at -1, 0, 1, 2 for a fraction t."""
    def near(d):  # |d| <= 1
        return ((a + 2) * d - (a + 3)) * d * d + 1

    def far(d):  # 1 < |d| < 2
        return ((a * d - 5 * a) * d + 8 * a) * d - 4 * a
    return [far(t + 1), near(t), near(1 - t), far(2 - t)]


# ---------------------------------------------------------------- convolutions

def conv_nd(b: GraphBuilder, x: Node, w: Node, bias: Node | None, strides, pads, dilations,
            groups: int, name: str) -> Node:
    """1-d or 2-d convolution; pads as (lo..., hi...). A 1-d one runs as a 2-d one of height 1."""
    if len(x.shape) == 4:
        p = list(pads)
        return b.op("conv2d", [x, w] + ([bias] if bias is not None else []), name,
                    strides=list(strides), padding=[p[0], p[1], p[2], p[3]],
                    dilation=list(dilations), groups=int(groups))
    x4 = b.op("expand_dims", [x], name, axis=2, num_newaxis=1)
    w4 = b.op("expand_dims", [w], name, axis=2, num_newaxis=1)
    out = conv_nd(b, x4, w4, bias, [1, strides[0]], [0, pads[0], 0, pads[1]],
                  [1, dilations[0]], groups, name)
    return b.op("squeeze", [out], name, axis=[2])


def conv_transpose(b: GraphBuilder, x: Node, w: np.ndarray, bias: Node | None, strides,
                   pads, dilations, output_padding, groups: int, name: str) -> Node:
    """Transposed convolution (weight [Cin, Cout/groups, k...]) as dilate -> pad -> conv:
    the gradient of a strided convolution is a stride-1 convolution of the input spread
    out by the stride, with the kernel flipped and its in/out channels swapped."""
    nd = len(x.shape) - 2
    cin, cog = w.shape[:2]
    kernel = w.shape[2:]
    flipped = np.flip(w, axis=tuple(range(2, 2 + nd)))
    wt = flipped.reshape((groups, cin // groups, cog) + kernel).swapaxes(1, 2)
    wt = np.ascontiguousarray(wt.reshape((groups * cog, cin // groups) + kernel))
    if any(s > 1 for s in strides):
        x = b.op("dilate", [x], name, strides=[1, 1] + [int(s) for s in strides])
    lo = [d * (k - 1) - p for k, d, p in zip(kernel, dilations, pads[:nd])]
    hi = [d * (k - 1) - p + op for k, d, p, op in zip(kernel, dilations, pads[nd:],
                                                       output_padding)]
    if any(v > 0 for v in lo + hi):
        width = [[0, 0], [0, 0]] + [[max(a, 0), max(c, 0)] for a, c in zip(lo, hi)]
        x = b.op("pad", [x], name, pad_width=width, pad_value=0.0)
    if any(v < 0 for v in lo + hi):
        axes = [2 + k for k in range(nd)]
        begin = [max(-a, 0) for a in lo]
        end = [x.shape[2 + k] - max(-c, 0) for k, c in enumerate(hi)]
        x = b.op("strided_slice", [x], name, begin=begin, end=end, strides=[1] * nd, axes=axes)
    return conv_nd(b, x, b.const(wt, f"{name}_weight"), bias, [1] * nd, [0] * (2 * nd),
                   list(dilations), groups, name)


# ---------------------------------------------------------------- einsum

def _parse_einsum(equation: str, ranks: list) -> tuple[list, str]:
    eq = equation.replace(" ", "")
    lhs, arrow, rhs = eq.partition("->")
    terms = lhs.split(",")
    free = [c for c in string.ascii_letters if c not in eq]
    ell = ""
    if "..." in eq:
        n = max(r - len(t.replace("...", "")) for t, r in zip(terms, ranks) if "..." in t)
        ell = "".join(free[:n])
        terms = [t.replace("...", ell[n - (r - len(t.replace("...", ""))):]) for t, r in
                 zip(terms, ranks)]
    if not arrow:
        counts = {c: "".join(terms).count(c) for c in "".join(terms)}
        rhs = ell + "".join(sorted(c for c, k in counts.items() if k == 1 and c not in ell))
    return terms, rhs.replace("...", ell)


def _sum_out(b: GraphBuilder, x: Node, term: str, keep: str, name: str) -> tuple[Node, str]:
    drop = [k for k, c in enumerate(term) if c not in keep]
    if not drop:
        return x, term
    x = b.op("sum", [x], name, axis=drop, keepdims=False)
    return x, "".join(c for c in term if c in keep)


def _permute(b: GraphBuilder, x: Node, term: str, want: str, name: str) -> Node:
    perm = [term.index(c) for c in want]
    return x if perm == list(range(len(perm))) else b.op("transpose", [x], name, axes=perm)


def einsum(b: GraphBuilder, equation: str, xs: list, name: str) -> Node | None:
    """Einsum with one or two operands (no repeated letter within a term); None otherwise.
    Two operands: batch letters (in both and the output), contracted letters (in both, not
    the output), and each side's own letters become one batch_matmul."""
    terms, out = _parse_einsum(equation, [len(x.shape) for x in xs])
    if len(xs) > 2 or any(len(set(t)) != len(t) for t in terms):
        return None
    if len(xs) == 1:
        x, t = _sum_out(b, xs[0], terms[0], out, name)
        return _permute(b, x, t, out, name)
    (a, ta), (c, tc) = (_sum_out(b, x, t, out + terms[1 - k], name)
                        for k, (x, t) in enumerate(zip(xs, terms)))
    size = {ch: d for t, x in ((ta, a), (tc, c)) for ch, d in zip(t, x.shape)}
    batch = [ch for ch in out if ch in ta and ch in tc]
    contract = [ch for ch in ta if ch in tc and ch not in out]
    left = [ch for ch in ta if ch not in tc]
    right = [ch for ch in tc if ch not in ta]
    a = _permute(b, a, ta, "".join(batch + left + contract), name)
    c = _permute(b, c, tc, "".join(batch + contract + right), name)

    def n(chs):
        return math.prod(size[ch] for ch in chs)
    a = b.reshape(a, (n(batch), n(left), n(contract)), name)
    c = b.reshape(c, (n(batch), n(contract), n(right)), name)
    prod = b.op("batch_matmul", [a, c], name, transpose_a=False, transpose_b=False)
    prod = b.reshape(prod, tuple(size[ch] for ch in batch + left + right), name)
    return _permute(b, prod, "".join(batch + left + right), out, name)
