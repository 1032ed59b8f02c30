"""Graph ops as te computes, and the fusion pattern kind of each op.

In: a graph Node (op name and attributes from OP_SPECS, output shape and dtype) and the te
values of its inputs (te Tensors; a size-1 constant may arrive as a te scalar Expr).
Out: `to_te(node, inputs) -> te.Tensor`, built from kiln.topi or plain te computes (never a
hand-written kernel), checked against the node's shape and dtype; and `pattern(node)`, the
OpPattern the fuser reads: elemwise < broadcast < injective < comm_reduce <
out_elemwise_fusable (dense, matmul, batch_matmul, conv2d, depthwise_conv2d_nhwc) < opaque (cumsum,
winograd_input, im2col: their channels-last producer stays a kernel of its own).
Why: the one table that ties the graph vocabulary to tensor expressions, so fusion, task
extraction and the executable builder agree on what every op computes.
"""

from __future__ import annotations

from collections.abc import Callable
from enum import IntEnum

from .. import te, topi
from ..te import expr as E
from ..te import intrin
from ..topi import nn
from .ir import OP_SPECS, GraphError, Node

__all__ = ["ANCHOR_TAGS", "OpPattern", "pattern", "to_te"]

# topi tags of the reductions an anchor op is built around (layout rewrite targets)
ANCHOR_TAGS = ("dense", "matmul", "batch_matmul", "conv2d_nchw", "group_conv2d_nchw",
               "depthwise_conv2d_nchw", "depthwise_conv2d_nhwc")


class OpPattern(IntEnum):
    """How an op may fuse (TVM's OpPatternKind); larger is more restrictive."""

    ELEMWISE = 0
    BROADCAST = 1
    INJECTIVE = 2
    COMM_REDUCE = 3
    OUT_ELEMWISE_FUSABLE = 4
    OPAQUE = 8


_UNARY: dict[str, Callable] = {
    "negative": topi.negative, "exp": topi.exp, "log": topi.log, "sqrt": topi.sqrt,
    "rsqrt": topi.rsqrt, "tanh": topi.tanh, "erf": topi.erf, "sigmoid": topi.sigmoid,
    "abs": topi.abs, "relu": topi.relu, "hard_swish": topi.hard_swish, "floor": topi.floor,
    "ceil": topi.ceil, "round": topi.round, "sin": topi.sin, "cos": topi.cos,
    "sign": topi.sign,
}
_BINARY: dict[str, Callable] = {
    "add": lambda a, b: a + b, "subtract": lambda a, b: a - b, "multiply": lambda a, b: a * b,
    "divide": lambda a, b: a / b, "power": intrin.power,
    "floor_mod": lambda a, b: E.binop("floormod", a, b), "fmod": intrin.fmod,
    "maximum": E.max, "minimum": E.min,
    "equal": lambda a, b: E.cmp("eq", a, b), "less": lambda a, b: E.cmp("lt", a, b),
    "greater": lambda a, b: E.cmp("gt", a, b), "where": E.Select,
    "logical_and": lambda a, b: E.binop("and", a, b),
    "logical_or": lambda a, b: E.binop("or", a, b),
    "logical_xor": lambda a, b: E.cmp("ne", E.as_bool(a), E.as_bool(b)),
}
_ELEMWISE_ATTR = ("gelu", "hard_sigmoid", "leaky_relu", "clip", "cast", "not", "isnan", "isinf",
                  "lookup")
_REDUCE = ("sum", "mean", "max", "min", "argmax", "softmax", "log_softmax", "layer_norm",
           "max_pool2d", "avg_pool2d", "global_avg_pool2d")
_ANCHOR = ("dense", "matmul", "batch_matmul", "conv2d", "depthwise_conv2d_nhwc")
_INJECTIVE = ("reshape", "transpose", "take", "concatenate", "strided_slice", "expand_dims",
              "squeeze", "flatten", "pad", "dilate", "winograd_output")
_LEAVES = ("input", "const")


def pattern(node: Node) -> OpPattern:
    """The fusion pattern kind of a node (binary ops are elemwise when no operand broadcasts)."""
    op = node.op
    if op in _UNARY or op in _ELEMWISE_ATTR:
        return OpPattern.ELEMWISE
    if op in _BINARY:
        same = all(tuple(i.shape or ()) == tuple(node.shape or ()) for i in node.inputs)
        return OpPattern.ELEMWISE if same else OpPattern.BROADCAST
    if op in ("batch_norm", "broadcast_to"):
        return OpPattern.BROADCAST
    if op in _INJECTIVE:
        return OpPattern.INJECTIVE
    if op in _REDUCE:
        return OpPattern.COMM_REDUCE
    if op in _ANCHOR:
        return OpPattern.OUT_ELEMWISE_FUSABLE
    return OpPattern.OPAQUE


def to_te(node: Node, inputs: list) -> te.Tensor:
    """The te Tensor computing `node` from the te values of its inputs."""
    if node.op in _LEAVES:
        raise GraphError(f"node %{node.uid} ({node.op}) is a leaf; make a te.placeholder")
    if node.op not in OP_SPECS:
        raise GraphError(f"node %{node.uid}: unknown op {node.op!r}")
    if node.op in _UNARY:
        out = _UNARY[node.op](inputs[0])
    elif node.op in _BINARY:
        out = _broadcast(node, inputs)
    else:
        builder = _BUILDERS.get(node.op)
        if builder is None:
            raise GraphError(f"node %{node.uid}: op {node.op!r} has no te lowering")
        out = builder(node, inputs)
    return _checked(node, out)


def _checked(node: Node, out) -> te.Tensor:
    if not isinstance(out, te.Tensor):
        raise GraphError(f"node %{node.uid} ({node.op}): all inputs are scalars; fold it first")
    shape = tuple(int(d) for d in out.shape)
    if node.shape is not None and shape != tuple(node.shape):
        raise GraphError(f"node %{node.uid} ({node.op}): te gives shape {shape}, the graph "
                         f"says {tuple(node.shape)}")
    if node.dtype is not None and out.dtype != node.dtype:
        out = topi.cast(out, node.dtype)
    return out


def _axis(value):
    """An axis attribute as None, an int or a tuple."""
    if value is None or isinstance(value, int):
        return value
    return tuple(int(a) for a in value)


# ---------------------------------------------------------------- elementwise with attributes

def _gelu(node, x):
    return topi.gelu_tanh(x[0]) if node.attrs.get("approximate") == "tanh" else topi.gelu(x[0])


def _clip(node, x):
    lo, hi, v = node.attrs.get("a_min"), node.attrs.get("a_max"), x[0]
    if lo is not None and hi is not None:
        return topi.clip(v, float(lo), float(hi))
    if lo is not None:
        return topi.maximum(v, te.const(float(lo), v.dtype))
    if hi is not None:
        return topi.minimum(v, te.const(float(hi), v.dtype))
    return te.compute(v.shape, lambda *i: v[i], name="clip", tag="elemwise")


def _not(node, x):
    return te.compute(x[0].shape, lambda *i: E.Not(x[0][i]), name="logical_not", tag="elemwise")


def _isnan(node, x):
    return topi.arrays.isnan(x[0])


def _lookup(node, x):
    # elementwise in x: the table is a small constant read at a data-dependent index,
    # clamped so that no value of x (a NaN cast to int, say) reads outside it
    data, table = x
    last, offset = int(table.shape[0]) - 1, int(node.attrs.get("offset", 0))

    def body(*i):
        k = E.cast("int32", data[i]) - offset
        return table[E.min(E.max(k, 0), last)]
    return te.compute(data.shape, body, name="lookup", tag="elemwise")


def _isinf(node, x):
    return topi.arrays.isinf(x[0])


def _broadcast(node, args):
    """A NumPy-broadcasting binary op (or where) as one compute.

    Unlike topi's broadcast ops, an operand axis of extent 1 that the output also has with
    extent 1 is read at the loop variable (not at a constant 0), so an anchor's epilogue reads
    the anchor at exactly its own index even with a batch of 1, and the sketch rules fuse it.
    """
    shape = tuple(int(d) for d in node.shape)
    fn = _BINARY[node.op]

    def load(t, i):
        if not isinstance(t, te.Tensor):
            return t
        lead = len(shape) - t.ndim
        return t[tuple(i[lead + j] if int(d) == shape[lead + j] else 0
                       for j, d in enumerate(t.shape))]
    tag = "elemwise" if pattern(node) == OpPattern.ELEMWISE else "broadcast"
    return te.compute(shape, lambda *i: fn(*[load(t, i) for t in args]), name=node.op, tag=tag)


def _batch_norm(node, x):
    data, gamma, beta, mean, var = x
    eps = float(node.attrs.get("epsilon", 1e-5))

    def body(*i):
        c = i[1]
        return (data[i] - mean[c]) * (gamma[c] * te.rsqrt(var[c] + eps)) + beta[c]
    return te.compute(data.shape, body, name="batch_norm", tag="broadcast")


# ---------------------------------------------------------------- reductions and nn

def _reduce(fn):
    def build(node, x):
        return fn(x[0], _axis(node.attrs.get("axis")), bool(node.attrs.get("keepdims", False)))
    return build


def _argmax(node, x):
    axis = node.attrs.get("axis")
    if isinstance(axis, (list, tuple)):
        if len(axis) != 1:
            raise GraphError(f"node %{node.uid} (argmax): one axis expected, got {axis}")
        axis = axis[0]
    return topi.argmax(x[0], axis, bool(node.attrs.get("keepdims", False)),
                       dtype=node.dtype or "int32")


def _acc_dtype(x) -> str | None:
    """bfloat16 products accumulate in float32 (graph/passes/bf16.py), 8-bit integer ones in
    int32 (ONNX MatMulInteger)."""
    if any(t.dtype == "bfloat16" for t in x[:2]):
        return "float32"
    return "int32" if all(t.dtype in ("int8", "uint8") for t in x[:2]) else None


def _dense(node, x):
    return topi.dense(x[0], x[1], x[2] if len(x) > 2 else None, out_dtype=_acc_dtype(x))


def _matmul(node, x):
    a, b = x
    squeeze = []
    if a.ndim == 1:
        a, squeeze = topi.expand_dims(a, 0), squeeze + [-2]
    if b.ndim == 1:
        b, squeeze = topi.expand_dims(b, 1), squeeze + [-1]
    out = topi.matmul(a, b, out_dtype=_acc_dtype(x))
    if squeeze:
        out = topi.squeeze(out, [ax % out.ndim for ax in squeeze])
    return out


def _batch_matmul(node, x):
    """N-d batched product; the flags swap the last two axes of an operand."""
    ta = bool(node.attrs.get("transpose_a", False))
    tb = bool(node.attrs.get("transpose_b", False))
    od = _acc_dtype(x)
    if x[0].ndim == 3 and x[1].ndim == 3:
        return topi.batch_matmul(x[0], x[1], ta, tb, out_dtype=od)
    return topi.matmul(x[0], x[1], ta, tb, out_dtype=od)


def _conv2d(node, x):
    a = node.attrs
    out = topi.conv2d_nchw(x[0], x[1], tuple(a.get("strides", (1, 1))),
                           tuple(a.get("padding", (0, 0, 0, 0))),
                           tuple(a.get("dilation", (1, 1))), int(a.get("groups", 1)),
                           out_dtype=_acc_dtype(x))
    if len(x) < 3:
        return out
    bias = x[2]
    return te.compute(out.shape, lambda n, c, h, w: out[n, c, h, w] + bias[c], name="bias_add",
                      tag="broadcast")


def _max_pool(node, x):
    a = node.attrs
    return nn.max_pool2d(x[0], tuple(a["pool_size"]), tuple(a.get("strides", a["pool_size"])),
                         tuple(a.get("padding", (0, 0, 0, 0))), tuple(a.get("dilation", (1, 1))),
                         bool(a.get("ceil_mode", False)))


def _avg_pool(node, x):
    a = node.attrs
    return nn.avg_pool2d(x[0], tuple(a["pool_size"]), tuple(a.get("strides", a["pool_size"])),
                         tuple(a.get("padding", (0, 0, 0, 0))), bool(a.get("ceil_mode", False)),
                         bool(a.get("count_include_pad", True)))


def _layer_norm(node, x):
    gamma = x[1] if len(x) > 1 else None
    beta = x[2] if len(x) > 2 else None
    return topi.layer_norm(x[0], gamma, beta, _axis(node.attrs.get("axis", -1)),
                           float(node.attrs.get("epsilon", 1e-5)))


# ---------------------------------------------------------------- injective

def _take(node, x):
    return topi.take(x[0], x[1], node.attrs.get("axis"), mode=node.attrs.get("mode", "wrap"))


def _strided_slice(node, x):
    a = node.attrs
    axes = a.get("axes")
    return topi.strided_slice(x[0], list(a["begin"]), list(a["end"]),
                              None if a.get("strides") is None else list(a["strides"]),
                              None if axes is None else list(axes))


def _depthwise_nhwc(node, x):
    a = node.attrs
    out = nn.depthwise_conv2d_nhwc(x[0], x[1], tuple(a.get("strides", (1, 1))),
                                   tuple(a.get("padding", (0, 0, 0, 0))),
                                   tuple(a.get("dilation", (1, 1))), node.dtype)
    if len(x) < 3:
        return out
    b = x[2]
    return te.compute(out.shape, lambda n, y, w, c: out[n, y, w, c] + b[c], name="bias_add",
                      tag="broadcast")


def _pad(node, x):
    width = [tuple(int(v) for v in p) for p in node.attrs["pad_width"]]
    return nn.pad(x[0], [p[0] for p in width], [p[1] for p in width],
                  float(node.attrs.get("pad_value", 0.0)))


_BUILDERS: dict[str, Callable] = {
    "gelu": _gelu,
    "hard_sigmoid": lambda n, x: topi.hard_sigmoid(x[0], float(n.attrs.get("alpha", 0.2)),
                                                   float(n.attrs.get("beta", 0.5))),
    "leaky_relu": lambda n, x: topi.leaky_relu(x[0], float(n.attrs.get("alpha", 0.01))),
    "clip": _clip,
    "cast": lambda n, x: topi.cast(x[0], n.attrs.get("dtype", n.dtype)),
    "not": _not, "isnan": _isnan, "isinf": _isinf, "lookup": _lookup,
    "batch_norm": _batch_norm,
    "sum": _reduce(topi.sum), "mean": _reduce(topi.mean), "max": _reduce(topi.max),
    "min": _reduce(topi.min), "argmax": _argmax,
    "dense": _dense, "matmul": _matmul, "batch_matmul": _batch_matmul, "conv2d": _conv2d,
    "depthwise_conv2d_nhwc": _depthwise_nhwc,
    "max_pool2d": _max_pool, "avg_pool2d": _avg_pool,
    "global_avg_pool2d": lambda n, x: nn.global_pool(x[0], "avg"),
    "softmax": lambda n, x: topi.softmax(x[0], int(n.attrs.get("axis", -1))),
    "log_softmax": lambda n, x: topi.log_softmax(x[0], int(n.attrs.get("axis", -1))),
    "layer_norm": _layer_norm,
    "reshape": lambda n, x: topi.reshape(x[0], tuple(n.attrs["newshape"])),
    "transpose": lambda n, x: topi.transpose(x[0], n.attrs.get("axes")),
    "take": _take,
    "concatenate": lambda n, x: topi.concatenate(list(x), int(n.attrs.get("axis", 0))),
    "strided_slice": _strided_slice,
    "expand_dims": lambda n, x: topi.expand_dims(x[0], int(n.attrs["axis"]),
                                                 int(n.attrs.get("num_newaxis", 1))),
    "squeeze": lambda n, x: topi.squeeze(x[0], _axis(n.attrs.get("axis"))),
    "broadcast_to": lambda n, x: topi.broadcast_to(x[0], tuple(n.attrs["shape"])),
    "flatten": lambda n, x: topi.reshape(x[0], tuple(n.shape)),
    "pad": _pad,
    "dilate": lambda n, x: nn.dilate(x[0], [int(s) for s in n.attrs["strides"]]),
    "winograd_input": lambda n, x: nn.winograd_input(x[0], int(n.attrs["tile"])),
    "im2col": lambda n, x: nn.im2col(x[0], n.attrs["kernel"], n.attrs.get("strides", (1, 1)),
                                     n.attrs.get("dilation", (1, 1))),
    "winograd_output": lambda n, x: nn.winograd_output(x[0], int(n.attrs["tile"]),
                                                       n.attrs["shape"]),
    "cumsum": lambda n, x: topi.cumsum(x[0], int(n.attrs.get("axis", 0)),
                                       bool(n.attrs.get("exclusive")),
                                       bool(n.attrs.get("reverse"))),
}
