"""Elementwise and broadcasting arithmetic, activations and casts, each one te compute.

In: te Tensors (and Python / te scalars for the binary ops). Out: one new Tensor per call,
tagged "elemwise" (same shape everywhere) or "broadcast" (NumPy broadcasting of the
operands), which tells the graph fuser these computes can be folded into a neighbour.
Activations (gelu, hard_swish, ...) are single computes so they fuse as one epilogue.
"""

from __future__ import annotations

import math
from collections.abc import Callable

from .. import te
from ..errors import ShapeError
from ..te import expr as E
from ..te import intrin
from ..te.tensor import Tensor
from .utils import Operand, broadcast_index, broadcast_shape, check_tensor, get_const_tuple

__all__ = [
    "abs", "add", "cast", "ceil", "clip", "cos", "divide", "equal", "erf", "exp", "floor",
    "fmod", "round", "sign", "sin",
    "floor_divide", "floor_mod", "gelu", "gelu_tanh", "greater", "greater_equal", "hard_sigmoid",
    "hard_swish", "leaky_relu", "less", "less_equal", "log", "maximum", "minimum", "multiply",
    "negative", "not_equal", "power", "relu", "rsqrt", "sigmoid", "silu", "sqrt", "subtract",
    "tanh", "where",
]


# ---------------------------------------------------------------- elementwise building blocks

def elemwise(x: Tensor, fn: Callable, name: str) -> Tensor:
    """out[i] = fn(x[i]) as one compute tagged "elemwise"."""
    check_tensor(x, name)
    return te.compute(x.shape, lambda *i: fn(x[i]), name=name, tag="elemwise")


def broadcast_op(operands: list, fn: Callable, name: str) -> Tensor | E.Expr:
    """fn over NumPy-broadcast operands (Tensors or scalars); a bare Expr if none is a Tensor."""
    tensors = [t for t in operands if isinstance(t, Tensor)]
    if not tensors:
        return fn(*[E.convert(v) for v in operands])
    shapes = [get_const_tuple(t.shape) for t in tensors]
    out_shape = shapes[0]
    for s in shapes[1:]:
        out_shape = broadcast_shape(out_shape, s, name)
    same = all(s == out_shape for s in shapes)

    def body(*i):
        args = [t[broadcast_index(t, out_shape, i)] if isinstance(t, Tensor) else t
                for t in operands]
        return fn(*args)
    return te.compute(out_shape, body, name=name, tag="elemwise" if same else "broadcast")


# ---------------------------------------------------------------- binary broadcasting ops

def add(lhs: Operand, rhs: Operand) -> Tensor | E.Expr:
    """lhs + rhs with NumPy broadcasting."""
    return broadcast_op([lhs, rhs], lambda a, b: a + b, "add")


def elemwise_sum(xs: list) -> Tensor:
    """The sum of tensors of one shape (TVM's topi.elemwise_sum)."""
    xs = list(xs)
    if not xs or not all(isinstance(t, Tensor) for t in xs):
        raise ShapeError("elemwise_sum takes a non-empty list of tensors")
    shape = get_const_tuple(xs[0].shape)
    for t in xs[1:]:
        if get_const_tuple(t.shape) != shape:
            raise ShapeError(f"elemwise_sum: {t.name} has shape {get_const_tuple(t.shape)}, "
                             f"{xs[0].name} has {shape}")

    def body(*i):
        out = xs[0][i]
        for t in xs[1:]:
            out = out + t[i]
        return out
    return te.compute(shape, body, name="elemwise_sum", tag="elemwise")


def subtract(lhs: Operand, rhs: Operand) -> Tensor | E.Expr:
    """lhs - rhs with NumPy broadcasting."""
    return broadcast_op([lhs, rhs], lambda a, b: a - b, "subtract")


def multiply(lhs: Operand, rhs: Operand) -> Tensor | E.Expr:
    """lhs * rhs with NumPy broadcasting."""
    return broadcast_op([lhs, rhs], lambda a, b: a * b, "multiply")


def divide(lhs: Operand, rhs: Operand) -> Tensor | E.Expr:
    """lhs / rhs: true division for floats, floor division for integers (te semantics)."""
    return broadcast_op([lhs, rhs], lambda a, b: a / b, "divide")


def floor_divide(lhs: Operand, rhs: Operand) -> Tensor | E.Expr:
    """floor(lhs / rhs) with NumPy broadcasting."""
    return broadcast_op([lhs, rhs], lambda a, b: a // b, "floor_divide")


def floor_mod(lhs: Operand, rhs: Operand) -> Tensor | E.Expr:
    """lhs - floor(lhs / rhs) * rhs (sign of the divisor, like NumPy's mod)."""
    return broadcast_op([lhs, rhs], lambda a, b: a % b, "floor_mod")


def fmod(lhs: Operand, rhs: Operand) -> Tensor | E.Expr:
    """C's fmod: lhs - trunc(lhs / rhs) * rhs (sign of the dividend, like torch.fmod)."""
    return broadcast_op([lhs, rhs], intrin.fmod, "fmod")


def maximum(lhs: Operand, rhs: Operand) -> Tensor | E.Expr:
    """Elementwise max with NumPy broadcasting."""
    return broadcast_op([lhs, rhs], E.max, "maximum")


def minimum(lhs: Operand, rhs: Operand) -> Tensor | E.Expr:
    """Elementwise min with NumPy broadcasting."""
    return broadcast_op([lhs, rhs], E.min, "minimum")


def power(lhs: Operand, rhs: Operand) -> Tensor | E.Expr:
    """lhs ** rhs for float operands, with NumPy broadcasting."""
    return broadcast_op([lhs, rhs], intrin.power, "power")


def equal(lhs: Operand, rhs: Operand) -> Tensor | E.Expr:
    """lhs == rhs as a bool tensor."""
    return broadcast_op([lhs, rhs], lambda a, b: E.cmp("eq", a, b), "equal")


def not_equal(lhs: Operand, rhs: Operand) -> Tensor | E.Expr:
    """lhs != rhs as a bool tensor."""
    return broadcast_op([lhs, rhs], lambda a, b: E.cmp("ne", a, b), "not_equal")


def less(lhs: Operand, rhs: Operand) -> Tensor | E.Expr:
    """lhs < rhs as a bool tensor."""
    return broadcast_op([lhs, rhs], lambda a, b: E.cmp("lt", a, b), "less")


def less_equal(lhs: Operand, rhs: Operand) -> Tensor | E.Expr:
    """lhs <= rhs as a bool tensor."""
    return broadcast_op([lhs, rhs], lambda a, b: E.cmp("le", a, b), "less_equal")


def greater(lhs: Operand, rhs: Operand) -> Tensor | E.Expr:
    """lhs > rhs as a bool tensor."""
    return broadcast_op([lhs, rhs], lambda a, b: E.cmp("gt", a, b), "greater")


def greater_equal(lhs: Operand, rhs: Operand) -> Tensor | E.Expr:
    """lhs >= rhs as a bool tensor."""
    return broadcast_op([lhs, rhs], lambda a, b: E.cmp("ge", a, b), "greater_equal")


def where(cond: Operand, x: Operand, y: Operand) -> Tensor | E.Expr:
    """cond ? x : y with the three operands broadcast together."""
    return broadcast_op([cond, x, y], E.Select, "where")


# ---------------------------------------------------------------- unary math

def exp(x: Tensor) -> Tensor:
    return elemwise(x, intrin.exp, "exp")


def log(x: Tensor) -> Tensor:
    return elemwise(x, intrin.log, "log")


def sqrt(x: Tensor) -> Tensor:
    return elemwise(x, intrin.sqrt, "sqrt")


def rsqrt(x: Tensor) -> Tensor:
    return elemwise(x, intrin.rsqrt, "rsqrt")


def tanh(x: Tensor) -> Tensor:
    return elemwise(x, intrin.tanh, "tanh")


def sigmoid(x: Tensor) -> Tensor:
    return elemwise(x, intrin.sigmoid, "sigmoid")


def erf(x: Tensor) -> Tensor:
    return elemwise(x, intrin.erf, "erf")


def floor(x: Tensor) -> Tensor:
    return elemwise(x, intrin.floor, "floor")


def sign(x: Tensor) -> Tensor:
    """-1, 0 or 1 in x's dtype (NaN stays NaN, as in NumPy)."""
    def f(v):
        one, zero = E.convert(1, v.dtype), E.convert(0, v.dtype)
        return E.Select(v > zero, one, E.Select(v < zero, zero - one, E.Select(
            E.cmp("eq", v, zero), zero, v)))
    return elemwise(x, f, "sign")


def sin(x: Tensor) -> Tensor:
    return elemwise(x, intrin.sin, "sin")


def cos(x: Tensor) -> Tensor:
    return elemwise(x, intrin.cos, "cos")


def round(x: Tensor) -> Tensor:  # noqa: A001 - TVM name
    """To the nearest integer, ties to even (ONNX Round, NumPy's round)."""
    return elemwise(x, intrin.round, "round")


def ceil(x: Tensor) -> Tensor:
    return elemwise(x, intrin.ceil, "ceil")


def abs(x: Tensor) -> Tensor:  # noqa: A001 - TVM name
    return elemwise(x, intrin.abs, "abs")


def negative(x: Tensor) -> Tensor:
    return elemwise(x, lambda v: -v, "negative")


def cast(x: Tensor | E.Expr, dtype: str) -> Tensor | E.Expr:
    """x converted to `dtype` (a Tensor gives a compute, an Expr gives a Cast)."""
    if not isinstance(x, Tensor):
        return E.cast(dtype, x)
    E.check_dtype(dtype)
    return elemwise(x, lambda v: v.astype(dtype), "cast")


# ---------------------------------------------------------------- activations

def clip(x: Tensor, a_min: float, a_max: float) -> Tensor:
    """min(max(x, a_min), a_max), with the bounds in x's dtype."""
    check_tensor(x, "clip")
    lo, hi = te.const(a_min, x.dtype), te.const(a_max, x.dtype)
    return elemwise(x, lambda v: E.max(E.min(v, hi), lo), "clip")


def relu(x: Tensor) -> Tensor:
    """max(x, 0)."""
    return elemwise(x, lambda v: E.max(v, 0), "relu")


def leaky_relu(x: Tensor, alpha: float = 0.01) -> Tensor:
    """x where x > 0, else alpha * x."""
    return elemwise(x, lambda v: E.Select(v > 0, v, v * alpha), "leaky_relu")


def gelu(x: Tensor) -> Tensor:
    """Exact GELU: 0.5 * x * (1 + erf(x / sqrt(2)))."""
    return elemwise(x, lambda v: 0.5 * v * (1.0 + intrin.erf(v * (1.0 / math.sqrt(2.0)))),
                    "gelu")


def gelu_tanh(x: Tensor) -> Tensor:
    """Tanh-approximated GELU: 0.5 * x * (1 + tanh(sqrt(2/pi) * (x + 0.044715 x^3)))."""
    c = math.sqrt(2.0 / math.pi)
    return elemwise(x, lambda v: 0.5 * v * (1.0 + intrin.tanh(c * (v + 0.044715 * v * v * v))),
                    "gelu_tanh")


def hard_swish(x: Tensor) -> Tensor:
    """x * relu6(x + 3) / 6 (MobileNetV3's h-swish)."""
    return elemwise(x, lambda v: v * E.min(E.max(v + 3.0, 0.0), 6.0) / 6.0, "hard_swish")


def hard_sigmoid(x: Tensor, alpha: float = 1.0 / 6.0, beta: float = 0.5) -> Tensor:
    """max(0, min(1, alpha * x + beta)); defaults are PyTorch's (ONNX uses alpha=0.2)."""
    return elemwise(x, lambda v: E.max(E.min(v * alpha + beta, 1.0), 0.0), "hard_sigmoid")


def silu(x: Tensor) -> Tensor:
    """x * sigmoid(x) (a.k.a. swish)."""
    return elemwise(x, lambda v: v * intrin.sigmoid(v), "silu")
