"""ATen handlers for elementwise math, comparisons, reductions, layout ops and constants.

In: the converting context, the call's args and kwargs with FX nodes replaced by graph nodes
(Python numbers stay numbers). Out: a graph node, a tuple of nodes for multi-output ops, or
None for bookkeeping ops (_assert_*). Handlers are keyed by the ATen op name without its
overload (add covers add.Tensor and add.Scalar); operand dtypes follow the dtype torch.export
recorded for the result, so int/float promotion matches PyTorch.
"""

from __future__ import annotations

import math

import numpy as np

from ..ir import Node
from .common import norm_axes, norm_axis


def _arg(args, kw, k: int, name: str, default=None):
    if name in kw:
        return kw[name]
    return args[k] if len(args) > k else default


def _operand_dtype(cx, a, b) -> str:
    """Common dtype of a comparison's operands (numbers adopt the tensor's kind)."""
    nodes = [v for v in (a, b) if isinstance(v, Node)]
    dtype = str(np.result_type(*[np.dtype(n.dtype) for n in nodes]))
    other = b if isinstance(a, Node) else a
    if isinstance(other, float) and not np.issubdtype(np.dtype(dtype), np.floating):
        return "float32"
    return dtype


def _binary(op: str, swap: bool = False):
    def handler(cx, args, kw):
        a, b = (args[1], args[0]) if swap else (args[0], args[1])
        alpha = kw.get("alpha", 1)
        dtype = cx.out_dtype()
        x, y = cx.tensor(a, dtype), cx.tensor(b, dtype)
        if alpha != 1:
            scaled = cx.tensor(alpha, dtype)
            if swap:
                x = cx.op("multiply", [x, scaled])
            else:
                y = cx.op("multiply", [y, scaled])
        return cx.op(op, [x, y])
    handler.__name__ = f"_aten_{op}"
    return handler


def _div(cx, args, kw):
    mode = kw.get("rounding_mode", args[2] if len(args) > 2 else None)
    if mode is not None and not np.issubdtype(np.dtype(cx.out_dtype()), np.floating):
        raise cx.fail(f"integer division with rounding_mode={mode!r} is not supported")
    dtype = cx.out_dtype()
    out = cx.op("divide", [cx.tensor(args[0], dtype), cx.tensor(args[1], dtype)])
    if mode == "floor":
        return cx.op("floor", [out])
    if mode == "trunc":
        negative = cx.op("less", [out, cx.tensor(0, dtype)])
        return cx.op("where", [negative, cx.op("ceil", [out]), cx.op("floor", [out])])
    return out


def _compare(op: str, negate: bool = False):
    def handler(cx, args, kw):
        dtype = _operand_dtype(cx, args[0], args[1])
        out = cx.op(op, [cx.tensor(args[0], dtype), cx.tensor(args[1], dtype)])
        return cx.op("not", [out]) if negate else out
    handler.__name__ = f"_aten_cmp_{op}"
    return handler


def _unary(op: str, **attrs):
    def handler(cx, args, kw):
        return cx.op(op, [args[0]], **attrs)
    handler.__name__ = f"_aten_{op}"
    return handler


def _identity(cx, args, kw):
    if cx.node.target.__name__.startswith("dropout") and _arg(args, kw, 2, "train", False):
        raise cx.fail("dropout in training mode; call model.eval() before exporting")
    return args[0]


def _native_dropout(cx, args, kw):
    if _arg(args, kw, 2, "train", False):
        raise cx.fail("dropout in training mode; call model.eval() before exporting")
    return args[0], None


def _to(cx, args, kw):
    return cx.b.cast(args[0], cx.out_dtype(), cx.name)


def _ignore(cx, args, kw):
    return None


def _pow(cx, args, kw):
    dtype = cx.out_dtype()
    return cx.op("power", [cx.tensor(args[0], dtype), cx.tensor(args[1], dtype)])


def _where(cx, args, kw):
    dtype = cx.out_dtype()
    return cx.op("where", [args[0], cx.tensor(args[1], dtype), cx.tensor(args[2], dtype)])


def _masked_fill(cx, args, kw):
    x, mask, value = args[0], args[1], args[2]
    return cx.op("where", [mask, cx.tensor(value, x.dtype), x])


def _clamp(cx, args, kw):
    lo, hi = _arg(args, kw, 1, "min"), _arg(args, kw, 2, "max")
    if isinstance(lo, Node) or isinstance(hi, Node):
        raise cx.fail("tensor bounds are not supported")
    name = cx.node.target.__name__
    if name.startswith("clamp_max"):
        lo, hi = None, lo
    if name.startswith("hardtanh"):
        lo, hi = _arg(args, kw, 1, "min_val", -1.0), _arg(args, kw, 2, "max_val", 1.0)
    return cx.op("clip", [args[0]], a_min=None if lo is None else float(lo),
                 a_max=None if hi is None else float(hi))


def _silu(cx, args, kw):
    return cx.op("multiply", [args[0], cx.op("sigmoid", [args[0]])])


def _dims(cx, x, dim) -> list[int] | None:
    if dim is None or (isinstance(dim, (list, tuple)) and len(dim) == 0):
        return list(range(len(x.shape)))
    return norm_axes([dim] if isinstance(dim, int) else dim, len(x.shape))


def _reduction(op: str):
    def handler(cx, args, kw):
        x = args[0]
        axes = _dims(cx, x, _arg(args, kw, 1, "dim"))
        keep = bool(_arg(args, kw, 2, "keepdim", False))
        dtype = cx.out_dtype()
        out = cx.op(op, [cx.b.cast(x, dtype, cx.name)], axis=axes, keepdims=keep)
        if cx.node.target.__name__ in ("max.dim", "min.dim"):
            if op == "min":
                return out, None
            return out, cx.op("argmax", [x], axis=axes, keepdims=keep)
        return out
    handler.__name__ = f"_aten_{op}"
    return handler


def _argmax(cx, args, kw):
    x, dim = args[0], _arg(args, kw, 1, "dim")
    keep = bool(_arg(args, kw, 2, "keepdim", False))
    if dim is None:
        x, dim = cx.b.reshape(x, (-1,), cx.name), 0
    return cx.op("argmax", [x], axis=[norm_axis(dim, len(x.shape))], keepdims=keep)


# ---------------------------------------------------------------- layout

def _view(cx, args, kw):
    return cx.b.reshape(args[0], [int(d) for d in args[1]], cx.name, allow_zero=True)


def _permute(cx, args, kw):
    perm = [norm_axis(a, len(args[0].shape)) for a in args[1]]
    return args[0] if perm == list(range(len(perm))) else cx.op("transpose", [args[0]],
                                                                  axes=perm)


def _transpose(cx, args, kw):
    x = args[0]
    rank = len(x.shape)
    if rank < 2:
        return x
    d0, d1 = (norm_axis(args[1], rank), norm_axis(args[2], rank)) if len(args) > 2 else \
        (0, 1)
    perm = list(range(rank))
    perm[d0], perm[d1] = perm[d1], perm[d0]
    return x if d0 == d1 else cx.op("transpose", [x], axes=perm)


def _expand(cx, args, kw):
    x, sizes = args[0], [int(s) for s in args[1]]
    lead = len(sizes) - len(x.shape)
    shape = tuple(x.shape[k - lead] if s == -1 else s for k, s in enumerate(sizes))
    return x if shape == tuple(x.shape) else cx.op("broadcast_to", [x], shape=shape)


def _repeat(cx, args, kw):
    return cx.b.tile(args[0], [int(r) for r in args[1]], cx.name)


def _copy(cx, args, kw):
    """aten.copy(dst, src): src broadcast to dst's shape, in dst's dtype (the functional
    form of an in-place copy)."""
    dst, src = args[0], cx.tensor(args[1], args[0].dtype)
    src = cx.b.cast(src, dst.dtype, cx.name)
    if tuple(src.shape) != tuple(dst.shape):
        src = cx.op("broadcast_to", [src], shape=tuple(dst.shape))
    return src


def _slice_scatter(cx, args, kw):
    """x with x[.., start:end:step, ..] (along dim) replaced by src."""
    x, src = args[0], args[1]
    rank = len(x.shape)
    dim = norm_axis(_arg(args, kw, 2, "dim", 0), rank)
    n = x.shape[dim]
    start, end = _arg(args, kw, 3, "start"), _arg(args, kw, 4, "end")
    step = int(_arg(args, kw, 5, "step", 1) or 1)
    covered = list(range(n))[slice(start, end, step)]
    if len(covered) != src.shape[dim]:
        raise cx.fail(f"slice_scatter: {len(covered)} positions along dim {dim}, src has "
                      f"{src.shape[dim]}")
    if covered == list(range(n)):
        return cx.b.cast(src, x.dtype, cx.name)
    where_from = np.zeros(n, np.int64)
    where_from[covered] = np.arange(len(covered))
    mask = np.zeros(n, bool)
    mask[covered] = True
    shape = [1] * rank
    shape[dim] = n
    spread = cx.op("take", [cx.b.cast(src, x.dtype, cx.name),
                            cx.b.const(where_from, f"{cx.name}_index")], axis=dim)
    return cx.op("where", [cx.b.const(mask.reshape(shape), f"{cx.name}_mask"), spread, x])


def _round(cx, args, kw):
    """torch.round (ties to even), with `decimals`: x * 10**d rounded, then divided back."""
    x, d = args[0], int(_arg(args, kw, 1, "decimals", 0) or 0)
    if not d:
        return cx.op("round", [x])
    scale = cx.tensor(10.0 ** d, x.dtype)
    return cx.op("divide", [cx.op("round", [cx.op("multiply", [x, scale])]), scale])


def _unsqueeze(cx, args, kw):
    axis = norm_axis(args[1], len(args[0].shape) + 1)
    return cx.op("expand_dims", [args[0]], axis=axis, num_newaxis=1)


def _squeeze(cx, args, kw):
    x = args[0]
    dims = _arg(args, kw, 1, "dim")
    axes = [k for k, d in enumerate(x.shape) if d == 1] if dims is None else \
        [a for a in norm_axes([dims] if isinstance(dims, int) else dims, len(x.shape))
         if x.shape[a] == 1]
    return cx.op("squeeze", [x], axis=axes) if axes else x


def _flatten(cx, args, kw):
    x = args[0]
    rank = max(len(x.shape), 1)
    start = norm_axis(_arg(args, kw, 1, "start_dim", 0), rank)
    end = norm_axis(_arg(args, kw, 2, "end_dim", -1), rank)
    if start == 1 and end == rank - 1 and rank >= 2:
        return cx.op("flatten", [x])
    shape = x.shape[:start] + (math.prod(x.shape[start:end + 1]),) + x.shape[end + 1:]
    return cx.b.reshape(x, shape, cx.name)


def _slice(cx, args, kw):
    x = args[0]
    dim = norm_axis(_arg(args, kw, 1, "dim", 0), len(x.shape))
    start, end = _arg(args, kw, 2, "start"), _arg(args, kw, 3, "end")
    step = int(_arg(args, kw, 4, "step", 1))
    lo, hi, st = slice(start, end, step).indices(x.shape[dim])
    if (lo, hi, st) == (0, x.shape[dim], 1):
        return x
    return cx.op("strided_slice", [x], begin=[lo], end=[max(hi, lo)], strides=[st], axes=[dim])


def _select(cx, args, kw):
    x = args[0]
    dim = norm_axis(args[1], len(x.shape))
    index = int(args[2]) % x.shape[dim]
    return cx.op("take", [x, cx.b.const(np.array(index, np.int64), f"{cx.name}_index")],
                 axis=dim)


def _cat(cx, args, kw):
    xs = [t for t in args[0] if math.prod(t.shape) > 0 or len(args[0]) == 1]
    if len(xs) == 1:
        return xs[0]
    dtype = cx.out_dtype()
    xs = [cx.b.cast(t, dtype, cx.name) for t in xs]
    return cx.op("concatenate", xs, axis=norm_axis(_arg(args, kw, 1, "dim", 0),
                                                   len(xs[0].shape)))


def _split(cx, args, kw):
    x, size = args[0], args[1]
    dim = norm_axis(_arg(args, kw, 2, "dim", 0), len(x.shape))
    n = x.shape[dim]
    sizes = list(size) if isinstance(size, (list, tuple)) else \
        [min(size, n - k) for k in range(0, n, size)]
    outs, at = [], 0
    for s in sizes:
        outs.append(cx.op("strided_slice", [x], begin=[at], end=[at + s], strides=[1],
                          axes=[dim]))
        at += s
    return tuple(outs)


def _take(cx, args, kw):
    name = cx.node.target.__name__
    if name.startswith("embedding"):
        return cx.op("take", [args[0], args[1]], axis=0)
    x = args[0]
    return cx.op("take", [x, args[2]], axis=norm_axis(args[1], len(x.shape)))  # index_select


def _triangle(cx, args, kw):
    x = cx.need(args[0], "triu/tril input (only constant inputs are supported)")
    k = int(_arg(args, kw, 1, "diagonal", 0))
    upper = cx.node.target.__name__.startswith("triu")
    return cx.b.const(np.triu(x, k) if upper else np.tril(x, k), cx.name)


# ---------------------------------------------------------------- constants

def _arange(cx, args, kw):
    nums = [a for a in args if isinstance(a, (int, float))]
    start, end, step = (0, nums[0], 1) if len(nums) == 1 else (nums + [1])[:3]
    return cx.b.const(np.arange(start, end, step).astype(cx.out_dtype()), cx.name)


def _filled(value_of):
    def handler(cx, args, kw):
        val = cx.node.meta["val"]
        shape = tuple(int(d) for d in val.shape)
        return cx.b.const(np.full(shape, value_of(args, kw), dtype=cx.out_dtype()), cx.name)
    return handler


HANDLERS = {
    "add": _binary("add"), "sub": _binary("subtract"), "mul": _binary("multiply"),
    "div": _div, "rsub": _binary("subtract", swap=True), "pow": _pow,
    "maximum": _binary("maximum"), "minimum": _binary("minimum"),
    "eq": _compare("equal"), "ne": _compare("equal", True), "lt": _compare("less"),
    "gt": _compare("greater"), "le": _compare("greater", True), "ge": _compare("less", True),
    "tanh": _unary("tanh"), "relu": _unary("relu"), "sigmoid": _unary("sigmoid"),
    "erf": _unary("erf"), "sqrt": _unary("sqrt"), "rsqrt": _unary("rsqrt"),
    "exp": _unary("exp"), "log": _unary("log"), "neg": _unary("negative"),
    "abs": _unary("abs"), "floor": _unary("floor"), "ceil": _unary("ceil"),
    "sin": _unary("sin"), "cos": _unary("cos"), "sign": _unary("sign"), "round": _round,
    "remainder": _binary("floor_mod"), "fmod": _binary("fmod"),
    "logical_not": _unary("not"), "bitwise_not": _unary("not"),
    "hardswish": _unary("hard_swish"), "silu": _silu,
    "hardsigmoid": _unary("hard_sigmoid", alpha=1 / 6, beta=0.5),
    "leaky_relu": lambda cx, a, k: cx.op("leaky_relu", [a[0]],
                                         alpha=float(_arg(a, k, 1, "negative_slope", 0.01))),
    "clamp": _clamp, "clamp_min": _clamp, "clamp_max": _clamp, "hardtanh": _clamp,
    "relu6": lambda cx, a, k: cx.op("clip", [a[0]], a_min=0.0, a_max=6.0),
    "where": _where, "masked_fill": _masked_fill,
    "mean": _reduction("mean"), "sum": _reduction("sum"), "amax": _reduction("max"),
    "amin": _reduction("min"), "max": _reduction("max"), "min": _reduction("min"),
    "argmax": _argmax,
    "view": _view, "reshape": _view, "_unsafe_view": _view, "permute": _permute,
    "transpose": _transpose, "t": _transpose, "expand": _expand, "unsqueeze": _unsqueeze,
    "squeeze": _squeeze, "flatten": _flatten, "repeat": _repeat, "copy": _copy,
    "slice_scatter": _slice_scatter, "slice": _slice, "select": _select, "cat": _cat,
    "split": _split, "split_with_sizes": _split, "embedding": _take, "index_select": _take,
    "triu": _triangle, "tril": _triangle,
    "clone": _identity, "contiguous": _identity, "alias": _identity, "detach": _identity,
    "detach_": _identity, "lift_fresh_copy": _identity, "dropout": _identity,
    "feature_dropout": _identity,
    "native_dropout": _native_dropout, "to": _to, "_to_copy": _to, "type_as": _to,
    "_assert_tensor_metadata": _ignore, "_assert_scalar": _ignore, "_assert_async": _ignore,
    "sym_constrain_range_for_size": _ignore,
    "arange": _arange, "zeros": _filled(lambda a, k: 0), "ones": _filled(lambda a, k: 1),
    "zeros_like": _filled(lambda a, k: 0), "ones_like": _filled(lambda a, k: 1),
    "new_zeros": _filled(lambda a, k: 0), "new_ones": _filled(lambda a, k: 1),
    "full": _filled(lambda a, k: a[1]), "full_like": _filled(lambda a, k: a[1]),
    "scalar_tensor": _filled(lambda a, k: a[0]),
}
