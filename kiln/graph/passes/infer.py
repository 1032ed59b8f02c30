"""Shape and dtype inference for every op of the graph vocabulary (OP_SPECS).

In: a Node whose inputs already carry shapes and dtypes (or a whole Graph). Out: the node's
own output shape (a tuple of ints) and dtype (a NumPy dtype name such as "float32"), set in
place. Frontends call `infer_node` on every node they create, so a malformed model fails at
import time with a GraphError that names the offending node, its op and the input shapes.

Conventions the rules check (and frontends follow): reductions take `axis` as a list (None
means every axis), binary ops broadcast like NumPy and need equal dtypes (power excepted),
comparisons give "bool", `reshape` has an explicit `newshape` (no -1, no 0), `batch_matmul`
works on N-d operands (rank >= 2; leading axes broadcast like NumPy's matmul; the flags swap
the last two axes), `strided_slice` follows Python slice semantics per listed axis.
"""

from __future__ import annotations

import math

import numpy as np

from ...errors import ShapeError
from ...topi.nn.im2col import im2col_shape
from ..ir import Graph, GraphError, Node

_BINARY = ("add", "subtract", "multiply", "divide", "maximum", "minimum", "floor_mod", "fmod")
_COMPARE = ("equal", "less", "greater")
_LOGIC = ("logical_and", "logical_or", "logical_xor")
_UNARY = ("negative", "exp", "log", "sqrt", "rsqrt", "tanh", "erf", "sigmoid", "abs", "relu",
          "sin", "cos", "sign",
          "gelu", "hard_swish", "hard_sigmoid", "leaky_relu", "clip", "floor", "ceil", "round",
          "softmax", "log_softmax")
_REDUCE = ("sum", "mean", "max", "min")


def where(n: Node) -> str:
    """How errors name a node: `%12 (reshape '/bert/Reshape_3')`."""
    return f"node %{n.uid} ({n.op}{' ' + repr(n.name) if n.name else ''})"


def _fail(n: Node, msg: str) -> GraphError:
    shapes = ", ".join(f"{i.dtype}{list(i.shape) if i.shape is not None else '?'}"
                       for i in n.inputs)
    return GraphError(f"{where(n)}: {msg} (inputs: {shapes or 'none'})")


def _axis(n: Node, a: int, rank: int) -> int:
    if not -rank <= int(a) < max(rank, 1):
        raise _fail(n, f"axis {a} out of range for rank {rank}")
    return int(a) % max(rank, 1)


def _axes(n: Node, axes, rank: int) -> list[int]:
    if axes is None:
        return list(range(rank))
    if isinstance(axes, (int, np.integer)):
        axes = [axes]
    out = sorted({_axis(n, a, rank) for a in axes})
    if len(out) != len(list(axes)):
        raise _fail(n, f"repeated axis in {list(axes)}")
    return out


def broadcast(n: Node, shapes: list) -> tuple:
    """NumPy broadcasting of `shapes`, or a GraphError naming `n`."""
    try:
        return tuple(int(d) for d in np.broadcast_shapes(*[tuple(s) for s in shapes]))
    except ValueError:
        raise _fail(n, f"shapes {[list(s) for s in shapes]} do not broadcast") from None


def _same_dtype(n: Node, nodes: list) -> str:
    dtypes = {i.dtype for i in nodes}
    if dtypes == {"float16", "float32"}:
        # float16 computes in float32 anyway (passes/float16.py): promote, as PyTorch's
        # mixed-type layer norm does (its ONNX export reads a float32 x with float16 scales)
        return "float32"
    if len(dtypes) != 1:
        raise _fail(n, f"operand dtypes differ: {sorted(dtypes)}")
    return nodes[0].dtype


INT8 = ("int8", "uint8")


def product_dtype(operands: list) -> str | None:
    """The accumulator dtype of a product whose operands are narrower than it: float32 for
    bfloat16, int32 for 8-bit integers (ONNX MatMulInteger); None = the operands' own."""
    dts = {i.dtype for i in operands}
    if dts == {"bfloat16"}:
        return "float32"
    return "int32" if dts and dts <= set(INT8) else None


def _bf16_out(bias: list) -> str:
    """A bfloat16 product's dtype: float32 (its bias, when given, is float32 too)."""
    return bias[0].dtype if bias else "float32"


def _arity(n: Node, lo: int, hi: int | None = None) -> None:
    hi = lo if hi is None else hi
    if not lo <= len(n.inputs) <= hi:
        want = str(lo) if lo == hi else f"{lo}..{hi}"
        raise _fail(n, f"expects {want} inputs, got {len(n.inputs)}")


def _elementwise(n: Node) -> tuple:
    if n.op in _BINARY or n.op in _COMPARE or n.op == "power":
        _arity(n, 2)
        shape = broadcast(n, [i.shape for i in n.inputs])
        if n.op == "power":
            return shape, n.inputs[0].dtype
        dtype = _same_dtype(n, n.inputs)
        return shape, ("bool" if n.op in _COMPARE else dtype)
    if n.op in _LOGIC:
        _arity(n, 2)
        if any(i.dtype != "bool" for i in n.inputs):
            raise _fail(n, "operands must be bool")
        return broadcast(n, [i.shape for i in n.inputs]), "bool"
    if n.op == "where":
        _arity(n, 3)
        if n.inputs[0].dtype != "bool":
            raise _fail(n, "condition must be bool")
        return broadcast(n, [i.shape for i in n.inputs]), _same_dtype(n, n.inputs[1:])
    _arity(n, 1)
    x = n.inputs[0]
    if n.op == "not" and x.dtype != "bool":
        raise _fail(n, "operand must be bool")
    if n.op in ("isnan", "isinf"):
        if not x.dtype.startswith("float"):
            raise _fail(n, "operand must be a float tensor")
        return tuple(x.shape), "bool"
    if n.op == "cumsum":
        _axis(n, n.attrs.get("axis", 0), len(x.shape))
    if n.op in ("softmax", "log_softmax"):
        _axis(n, n.attrs.get("axis", -1), len(x.shape))
    return tuple(x.shape), (n.attrs["dtype"] if n.op == "cast" else x.dtype)


def _reduce(n: Node) -> tuple:
    _arity(n, 1)
    shape = tuple(n.inputs[0].shape)
    axis = n.attrs.get("axis")
    if n.op == "argmax":
        axes = _axes(n, axis, len(shape)) if axis is not None else list(range(len(shape)))
        if axis is not None and len(axes) != 1:
            raise _fail(n, "argmax takes one axis")
    else:
        axes = _axes(n, axis, len(shape))
    keep = bool(n.attrs.get("keepdims", False))
    out = tuple(1 if i in axes else d for i, d in enumerate(shape) if keep or i not in axes)
    return out, ("int64" if n.op == "argmax" else n.inputs[0].dtype)


def _dense(n: Node) -> tuple:
    _arity(n, 2, 3)
    x, w = n.inputs[0], n.inputs[1]
    if len(w.shape) != 2 or len(x.shape) < 1 or x.shape[-1] != w.shape[1]:
        raise _fail(n, "needs x [..., K] and weight [N, K]")
    if len(n.inputs) == 3 and tuple(n.inputs[2].shape) != (w.shape[0],):
        raise _fail(n, f"bias must have shape ({w.shape[0]},)")
    acc = product_dtype([x, w])
    if acc == "float32":  # bfloat16 products accumulate in float32
        return tuple(x.shape[:-1]) + (w.shape[0],), _bf16_out(n.inputs[2:])
    if acc is not None:
        return tuple(x.shape[:-1]) + (w.shape[0],), _same_dtype(n, [n.inputs[2]]) \
            if len(n.inputs) > 2 else acc
    return tuple(x.shape[:-1]) + (w.shape[0],), _same_dtype(n, n.inputs)


def _matmul(n: Node) -> tuple:
    _arity(n, 2)
    a, b = (list(i.shape) for i in n.inputs)
    if n.op == "batch_matmul":
        if len(a) < 2 or len(b) < 2:
            raise _fail(n, "operands must be at least 2-d")
        if n.attrs.get("transpose_a"):
            a[-2:] = a[-1], a[-2]
        if n.attrs.get("transpose_b"):
            b[-2:] = b[-1], b[-2]
    if not a or not b:
        raise _fail(n, "operands must be at least 1-d")
    squeeze_a, squeeze_b = len(a) == 1, len(b) == 1
    a = [1] + a if squeeze_a else a
    b = b + [1] if squeeze_b else b
    if a[-1] != b[-2]:
        raise _fail(n, f"inner dimensions differ: {a[-1]} vs {b[-2]}")
    out = list(broadcast(n, [a[:-2], b[:-2]])) + [a[-2], b[-1]]
    if squeeze_b:
        out.pop(-1)
    if squeeze_a:
        out.pop(-2 if not squeeze_b else -1)
    acc = product_dtype(n.inputs)
    return tuple(out), acc or _same_dtype(n, n.inputs)


def _window(n: Node, size: int, k: int, s: int, lo: int, hi: int, d: int, ceil: bool) -> int:
    span = size + lo + hi - (d * (k - 1) + 1)
    out = (-(-span // s) if ceil else span // s) + 1
    if ceil and (out - 1) * s >= size + lo:  # the last window must start inside the input
        out -= 1
    # ceil_mode keeps a window larger than the input (clipped to it: EfficientNet's pooler)
    if (span < 0 and not ceil) or out < 1:
        raise _fail(n, f"window {k} (dilation {d}) larger than padded input {size + lo + hi}")
    return out


def _conv_pool(n: Node) -> tuple:
    x = n.inputs[0]
    if len(x.shape) != 4:
        raise _fail(n, "needs NCHW input")
    nb, c, h, w = x.shape
    if n.op == "global_avg_pool2d":
        _arity(n, 1)
        return (nb, c, 1, 1), x.dtype
    t, left, b, r = n.attrs.get("padding", (0, 0, 0, 0))
    sh, sw = n.attrs.get("strides", (1, 1))
    dh, dw = n.attrs.get("dilation", (1, 1))
    if n.op == "conv2d":
        _arity(n, 2, 3)
        wt = n.inputs[1]
        groups = int(n.attrs.get("groups", 1))
        if len(wt.shape) != 4 or c != wt.shape[1] * groups or wt.shape[0] % groups:
            raise _fail(n, f"weight must be [O, C/groups, kh, kw] with groups={groups}")
        if len(n.inputs) == 3 and tuple(n.inputs[2].shape) != (wt.shape[0],):
            raise _fail(n, f"bias must have shape ({wt.shape[0]},)")
        kh, kw, co, ceil = wt.shape[2], wt.shape[3], wt.shape[0], False
        dtype = product_dtype(n.inputs[:2]) or _same_dtype(n, n.inputs)
    else:
        _arity(n, 1)
        (kh, kw), co, ceil, dtype = n.attrs["pool_size"], c, n.attrs.get("ceil_mode"), x.dtype
    oh = _window(n, h, kh, sh, t, b, dh, bool(ceil))
    ow = _window(n, w, kw, sw, left, r, dw, bool(ceil))
    return (nb, co, oh, ow), dtype


def _depthwise_nhwc(n: Node) -> tuple:
    _arity(n, 2, 3)
    x, wt = n.inputs[0], n.inputs[1]
    if len(x.shape) != 4 or len(wt.shape) != 3 or wt.shape[2] != x.shape[3]:
        raise _fail(n, "needs NHWC input and weight [KH, KW, C]")
    if len(n.inputs) == 3 and tuple(n.inputs[2].shape) != (x.shape[3],):
        raise _fail(n, f"bias must have shape ({x.shape[3]},)")
    nb, h, w, c = x.shape
    t, left, b, r = n.attrs.get("padding", (0, 0, 0, 0))
    sh, sw = n.attrs.get("strides", (1, 1))
    dh, dw = n.attrs.get("dilation", (1, 1))
    oh = _window(n, h, wt.shape[0], sh, t, b, dh, False)
    ow = _window(n, w, wt.shape[1], sw, left, r, dw, False)
    return (nb, oh, ow, c), _same_dtype(n, n.inputs)


def _norm(n: Node) -> tuple:
    x = n.inputs[0]
    if n.op == "batch_norm":
        _arity(n, 5)
        want = [(x.shape[1],)] * 4 if len(x.shape) >= 2 else None
    else:
        _arity(n, 3)
        axes = _axes(n, n.attrs.get("axis", -1), len(x.shape))
        want = [tuple(x.shape[a] for a in axes)] * 2
    if want is None or [tuple(i.shape) for i in n.inputs[1:]] != want:
        raise _fail(n, f"parameters must have shape {want[0] if want else '[C]'}")
    return tuple(x.shape), _same_dtype(n, n.inputs)


def _reshape(n: Node) -> tuple:
    _arity(n, 1)
    x = n.inputs[0]
    if n.op == "flatten":
        if not x.shape:
            raise _fail(n, "cannot flatten a scalar")
        return (x.shape[0], math.prod(x.shape[1:])), x.dtype
    new = tuple(int(d) for d in n.attrs["newshape"])
    if any(d < 0 for d in new) or math.prod(new) != math.prod(x.shape):
        raise _fail(n, f"newshape {list(new)} does not match size {math.prod(x.shape)}")
    return new, x.dtype


def _transpose(n: Node) -> tuple:
    _arity(n, 1)
    x = n.inputs[0]
    axes = n.attrs.get("axes")
    axes = list(range(len(x.shape)))[::-1] if axes is None else [int(a) for a in axes]
    if sorted(a % max(len(x.shape), 1) for a in axes) != list(range(len(x.shape))):
        raise _fail(n, f"axes {axes} is not a permutation of rank {len(x.shape)}")
    return tuple(x.shape[a] for a in axes), x.dtype


def _lookup(n: Node) -> tuple:
    _arity(n, 2)
    x, table = n.inputs
    if len(table.shape) != 1 or not table.shape[0]:
        raise _fail(n, f"the table must be 1-d and not empty, got shape {list(table.shape)}")
    if x.dtype == "bool":
        raise _fail(n, "the index operand must be a number")
    return tuple(x.shape), table.dtype


def _take(n: Node) -> tuple:
    _arity(n, 2)
    data, idx = n.inputs
    if not (idx.dtype.startswith("int") or idx.dtype.startswith("uint")):
        raise _fail(n, "indices must be integers")
    ax = _axis(n, n.attrs.get("axis", 0), len(data.shape))
    return tuple(data.shape[:ax]) + tuple(idx.shape) + tuple(data.shape[ax + 1:]), data.dtype


def _concat(n: Node) -> tuple:
    _arity(n, 1, 1 << 30)
    first = n.inputs[0].shape
    ax = _axis(n, n.attrs.get("axis", 0), len(first))
    for i in n.inputs:
        if len(i.shape) != len(first) or any(a != b for k, (a, b) in
                                             enumerate(zip(i.shape, first)) if k != ax):
            raise _fail(n, f"shapes differ outside axis {ax}")
    total = sum(i.shape[ax] for i in n.inputs)
    return tuple(first[:ax]) + (total,) + tuple(first[ax + 1:]), _same_dtype(n, n.inputs)


def _slice(n: Node) -> tuple:
    _arity(n, 1)
    shape = list(n.inputs[0].shape)
    a = n.attrs
    axes = a.get("axes") or list(range(len(a["begin"])))
    strides = a.get("strides") or [1] * len(axes)
    if not len(axes) == len(a["begin"]) == len(a["end"]) == len(strides):
        raise _fail(n, "begin, end, strides and axes differ in length")
    for ax, b, e, s in zip(axes, a["begin"], a["end"], strides):
        ax = _axis(n, ax, len(shape))
        if int(s) == 0:
            raise _fail(n, "stride 0")
        shape[ax] = len(range(*slice(int(b), int(e), int(s)).indices(shape[ax])))
    return tuple(shape), n.inputs[0].dtype


def _dims(n: Node) -> tuple:
    _arity(n, 1)
    x = n.inputs[0]
    shape = list(x.shape)
    if n.op == "expand_dims":
        ax = _axis(n, n.attrs["axis"], len(shape) + 1)
        return tuple(shape[:ax] + [1] * int(n.attrs.get("num_newaxis", 1)) + shape[ax:]), x.dtype
    if n.op == "squeeze":
        axis = n.attrs.get("axis")
        axes = [i for i, d in enumerate(shape) if d == 1] if axis is None else \
            _axes(n, axis, len(shape))
        if any(shape[a] != 1 for a in axes):
            raise _fail(n, f"squeezed axes {axes} are not all 1")
        return tuple(d for i, d in enumerate(shape) if i not in axes), x.dtype
    if n.op == "dilate":
        strides = [int(v) for v in n.attrs["strides"]]
        if len(strides) != len(shape) or min(strides, default=1) < 1:
            raise _fail(n, f"strides {strides} do not fit rank {len(shape)}")
        return tuple((d - 1) * s + 1 for d, s in zip(shape, strides)), x.dtype
    if n.op == "broadcast_to":
        want = tuple(int(d) for d in n.attrs["shape"])
        if broadcast(n, [shape, want]) != want:
            raise _fail(n, f"cannot broadcast to {list(want)}")
        return want, x.dtype
    widths = [tuple(int(v) for v in p) for p in n.attrs["pad_width"]]  # pad
    if len(widths) != len(shape) or any(lo < 0 or hi < 0 for lo, hi in widths):
        raise _fail(n, f"pad_width {widths} does not fit rank {len(shape)}")
    return tuple(d + lo + hi for d, (lo, hi) in zip(shape, widths)), x.dtype


def _winograd(n: Node) -> tuple:
    _arity(n, 1)
    x, m = n.inputs[0], int(n.attrs["tile"])
    if n.op == "winograd_input":
        if len(x.shape) == 4 and m >= 1:
            b, hp, wp, c = x.shape
            th, tw = (hp - 2) // m, (wp - 2) // m
            if th >= 1 and tw >= 1 and (th * m + 2, tw * m + 2) == (hp, wp):
                return ((m + 2) ** 2, b * th * tw, c), x.dtype
        raise _fail(n, f"padded input {list(x.shape)} is not [N, m*TH + 2, m*TW + 2, C], m={m}")
    shape = tuple(int(d) for d in n.attrs["shape"])
    if len(shape) != 4 or m < 1 or tuple(x.shape) != (
            (m + 2) ** 2, shape[0] * -(-shape[2] // m) * -(-shape[3] // m), shape[1]):
        raise _fail(n, f"products {list(x.shape)} do not give {list(shape)} with m={m}")
    return shape, x.dtype


def _im2col(n: Node) -> tuple:
    _arity(n, 1)
    x = n.inputs[0]
    if len(x.shape) != 4:
        raise _fail(n, "needs a padded channels-last [N, H, W, C] input")
    try:
        oh, ow, cols = im2col_shape(x.shape, n.attrs["kernel"], n.attrs.get("strides", (1, 1)),
                                    n.attrs.get("dilation", (1, 1)))
    except ShapeError as e:
        raise _fail(n, str(e)) from None
    return (int(x.shape[0]) * oh * ow, cols), x.dtype


_RULES = {}
for _names, _fn in (((*_BINARY, *_COMPARE, *_LOGIC, *_UNARY, "power", "where", "not", "cast",
                      "isnan", "isinf", "cumsum"), _elementwise),
                    ((*_REDUCE, "argmax"), _reduce), (("dense",), _dense),
                    (("matmul", "batch_matmul"), _matmul),
                    (("conv2d", "max_pool2d", "avg_pool2d", "global_avg_pool2d"), _conv_pool),
                    (("layer_norm", "batch_norm"), _norm), (("reshape", "flatten"), _reshape),
                    (("transpose",), _transpose), (("take",), _take), (("lookup",), _lookup),
                    (("concatenate",), _concat), (("strided_slice",), _slice),
                    (("expand_dims", "squeeze", "broadcast_to", "pad", "dilate"), _dims),
                    (("winograd_input", "winograd_output"), _winograd),
                    (("im2col",), _im2col), (("depthwise_conv2d_nhwc",), _depthwise_nhwc)):
    _RULES.update(dict.fromkeys(_names, _fn))


def infer_node(n: Node, params: dict | None = None) -> Node:
    """Set n.shape and n.dtype from its inputs (for a const: from params when given)."""
    if n.op == "input":
        if n.shape is None or n.dtype is None:
            raise GraphError(f"{where(n)}: a graph input needs a shape and dtype")
        return n
    if n.op == "const":
        if params is not None:
            value = params.get(n.attrs.get("name"))
            if value is None:
                raise GraphError(f"{where(n)}: parameter {n.attrs.get('name')!r} missing")
            n.shape, n.dtype = tuple(value.shape), value.dtype.name
        return n
    rule = _RULES.get(n.op)
    if rule is None:
        raise GraphError(f"{where(n)}: no shape rule for op {n.op!r}")
    for i in n.inputs:
        if i.shape is None or i.dtype is None:
            raise _fail(n, f"input %{i.uid} has no shape yet")
    shape, dtype = rule(n)
    n.shape, n.dtype = tuple(int(d) for d in shape), str(dtype)
    return n


def infer_graph(g: Graph) -> Graph:
    """Infer every node of `g` in place (producers first) and return `g`."""
    for n in g.nodes():
        infer_node(n, g.params)
    return g
