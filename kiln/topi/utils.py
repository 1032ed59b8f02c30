"""Shared helpers of the topi operators: constant shapes, axis normalisation, broadcasting.

In: te Tensors, shapes (tuples of IntImm / ints / symbolic Exprs), user axis arguments. Out:
plain Python ints and tuples the operators build their computes from. Every check raises a
KilnError subclass that names the operator, so a bad call fails at graph-building time.
"""

from __future__ import annotations

from collections.abc import Sequence

from ..errors import ExprError, ShapeError
from ..te import expr as E
from ..te.tensor import Tensor

Axis = int | Sequence[int] | None  # None = every axis
IntOrPair = int | Sequence[int]
Operand = Tensor | E.Expr | int | float  # a tensor or a scalar


def get_const_int(d: int | E.Expr) -> int | E.Expr:
    """An extent as a Python int when it is constant, else the symbolic Expr itself."""
    if isinstance(d, E.IntImm):
        return d.value
    if isinstance(d, E.Expr):
        return d
    return int(d)


def get_const_tuple(shape: Sequence) -> tuple:
    """A shape as a tuple of Python ints (symbolic entries stay Exprs)."""
    return tuple(get_const_int(d) for d in shape)


def const_shape(x: Tensor, op: str) -> tuple[int, ...]:
    """The shape of `x` as ints; raises when a dimension is symbolic."""
    shape = get_const_tuple(x.shape)
    for d in shape:
        if isinstance(d, E.Expr):
            raise ShapeError(f"{op}: needs a constant shape, {x.name} has symbolic shape {shape}")
    return shape


def check_tensor(x: object, op: str, arg: str = "input") -> Tensor:
    """`x` itself when it is a te Tensor; otherwise an error naming the op and argument."""
    if not isinstance(x, Tensor):
        raise ExprError(f"{op}: {arg} must be a te.Tensor, got {type(x).__name__}")
    return x


def normalize_axis(axis: int, ndim: int, op: str) -> int:
    """A possibly negative axis as an index in [0, ndim)."""
    if isinstance(axis, bool) or not isinstance(axis, int):
        raise ShapeError(f"{op}: axis must be an int, got {axis!r}")
    if not -ndim <= axis < ndim:
        raise ShapeError(f"{op}: axis {axis} is out of range for a tensor of ndim {ndim}")
    return axis % ndim


def normalize_axes(axis: Axis, ndim: int, op: str) -> list[int]:
    """None -> all axes; int or sequence -> sorted, de-negated axes (duplicates are an error)."""
    if axis is None:
        return list(range(ndim))
    axes = [axis] if isinstance(axis, int) else list(axis)
    out = [normalize_axis(a, ndim, op) for a in axes]
    if len(set(out)) != len(out):
        raise ShapeError(f"{op}: repeated axis in {axis!r} (ndim {ndim})")
    return sorted(out)


def prod(values: Sequence[int] | object) -> int:
    out = 1
    for v in values:
        out *= v
    return out


def _same_dim(a, b) -> bool:
    if isinstance(a, int) and isinstance(b, int):
        return a == b
    return a is b


def broadcast_shape(a: tuple, b: tuple, op: str) -> tuple:
    """NumPy broadcasting of two shapes; ShapeError naming both when they do not broadcast."""
    n = max(len(a), len(b))
    pa, pb = (1,) * (n - len(a)) + tuple(a), (1,) * (n - len(b)) + tuple(b)
    out = []
    for da, db in zip(pa, pb, strict=True):
        if _same_dim(da, db) or (isinstance(db, int) and db == 1):
            out.append(da)
        elif isinstance(da, int) and da == 1:
            out.append(db)
        else:
            raise ShapeError(f"{op}: shapes {tuple(a)} and {tuple(b)} are not broadcastable")
    return tuple(out)


def broadcast_index(x: Tensor, out_shape: tuple, index: tuple) -> tuple:
    """Index into `x` for output `index` of a broadcast to `out_shape` (size-1 dims read 0)."""
    shape = get_const_tuple(x.shape)
    lead = len(out_shape) - len(shape)
    return tuple(0 if isinstance(d, int) and d == 1 else index[lead + j]
                 for j, d in enumerate(shape))
