"""Array construction and rearrangement (TVM's topi names): stack, tile, repeat, flip, gather,
one_hot, full, full_like, arange; logical_and / or / xor / not, isnan, isinf.

In: te Tensors and NumPy-style arguments (negative axes). Out: one compute per result, tagged
"injective" (pure index arithmetic: the scheduler inlines it into its reader) or
"elemwise"/"broadcast" for the logical ops; results match NumPy's functions of the same
names. Why apart from transform.py: those are the views the graph frontends lower to; these
complete the operator library a TVM user writes kernels with.
"""

from __future__ import annotations

from collections.abc import Sequence

from .. import te
from ..errors import DTypeError, ShapeError
from ..te import expr as E
from ..te import intrin
from ..te.tensor import Tensor
from .math import broadcast_op, elemwise
from .utils import Operand, check_tensor, const_shape, normalize_axis

__all__ = ["arange", "flip", "full", "full_like", "gather", "isinf", "isnan", "logical_and",
           "logical_not", "logical_or", "logical_xor", "one_hot", "repeat", "stack", "tile"]


def _injective(shape, fcompute, name: str) -> Tensor:
    return te.compute(tuple(shape), fcompute, name=name, tag="injective")


def stack(tensors: Sequence[Tensor], axis: int = 0) -> Tensor:
    """The tensors (one shape) joined along a new axis."""
    ts = list(tensors)
    if not ts:
        raise ShapeError("stack: give at least one tensor")
    shape = const_shape(check_tensor(ts[0], "stack"), "stack")
    for t in ts[1:]:
        if const_shape(check_tensor(t, "stack"), "stack") != shape or t.dtype != ts[0].dtype:
            raise ShapeError(f"stack: {t.name} is {t.dtype}{list(t.shape)}, the first "
                             f"{ts[0].dtype}{list(shape)}")
    axis = normalize_axis(axis, len(shape) + 1, "stack")
    out = shape[:axis] + (len(ts),) + shape[axis:]

    def body(*i):
        rest = i[:axis] + i[axis + 1:]
        value = ts[-1][rest]
        for k in range(len(ts) - 2, -1, -1):
            value = E.Select(i[axis] == k, ts[k][rest], value)
        return value
    return _injective(out, body, "stack")


def tile(a: Tensor, reps: Sequence[int]) -> Tensor:
    """a repeated reps[d] times along each dim (NumPy's tile: shorter shapes gain leading
    dims)."""
    shape = const_shape(check_tensor(a, "tile"), "tile")
    reps = tuple(int(r) for r in reps)
    if any(r < 1 for r in reps):
        raise ShapeError(f"tile: repetitions must be positive, got {list(reps)}")
    n = max(len(shape), len(reps))
    shape_p = (1,) * (n - len(shape)) + shape
    reps_p = (1,) * (n - len(reps)) + reps
    out = tuple(s * r for s, r in zip(shape_p, reps_p))
    lead = n - len(shape)
    return _injective(out, lambda *i: a[tuple(i[d] % shape_p[d] for d in range(lead, n))],
                      "tile")


def repeat(a: Tensor, repeats: int, axis: int) -> Tensor:
    """Each element repeated `repeats` times along `axis` (NumPy's repeat with an axis)."""
    shape = const_shape(check_tensor(a, "repeat"), "repeat")
    axis = normalize_axis(axis, len(shape), "repeat")
    if int(repeats) < 1:
        raise ShapeError(f"repeat: repeats must be positive, got {repeats}")
    out = shape[:axis] + (shape[axis] * int(repeats),) + shape[axis + 1:]
    return _injective(out, lambda *i: a[i[:axis] + (i[axis] // int(repeats),) + i[axis + 1:]],
                      "repeat")


def flip(a: Tensor, axis: int = 0) -> Tensor:
    """a reversed along `axis`."""
    shape = const_shape(check_tensor(a, "flip"), "flip")
    axis = normalize_axis(axis, len(shape), "flip")
    return _injective(shape, lambda *i: a[i[:axis] + (shape[axis] - 1 - i[axis],) +
                                           i[axis + 1:]], "flip")


def gather(data: Tensor, axis: int, indices: Tensor) -> Tensor:
    """out[i...] = data[i... with i[axis] replaced by indices[i...]] (TVM's gather, NumPy's
    take_along_axis); negative indices count from the end."""
    shape = const_shape(check_tensor(data, "gather"), "gather")
    ishape = const_shape(check_tensor(indices, "gather"), "gather")
    axis = normalize_axis(axis, len(shape), "gather")
    if len(ishape) != len(shape) or not indices.dtype.startswith("int"):
        raise ShapeError(f"gather: indices must be an integer tensor of rank {len(shape)}, "
                         f"got {indices.dtype}{list(ishape)}")

    def body(*i):
        k = indices[i]
        k = E.Select(k < 0, k + shape[axis], k)
        k = E.max(E.min(k, shape[axis] - 1), 0)  # out-of-range indices clamp, never fault
        return data[i[:axis] + (E.cast("int32", k),) + i[axis + 1:]]
    return _injective(ishape, body, "gather")


def one_hot(indices: Tensor, on_value, off_value, depth: int, axis: int = -1,
            dtype: str = "float32") -> Tensor:
    """on_value where the new axis equals the index, off_value elsewhere."""
    ishape = const_shape(check_tensor(indices, "one_hot"), "one_hot")
    axis = normalize_axis(axis, len(ishape) + 1, "one_hot")
    out = ishape[:axis] + (int(depth),) + ishape[axis:]
    on, off = E.convert(on_value, dtype), E.convert(off_value, dtype)

    def body(*i):
        return E.Select(indices[i[:axis] + i[axis + 1:]] == i[axis], on, off)
    return _injective(out, body, "one_hot")


def full(shape: Sequence[int], dtype: str, fill_value) -> Tensor:
    """A tensor of `shape` filled with `fill_value`."""
    value = E.convert(fill_value, E.check_dtype(dtype))
    return _injective(tuple(int(d) for d in shape), lambda *i: value, "full")


def full_like(x: Tensor, fill_value) -> Tensor:
    return full(const_shape(check_tensor(x, "full_like"), "full_like"), x.dtype, fill_value)


def arange(start, stop=None, step=1, dtype: str = "float32") -> Tensor:
    """start, start + step, ... below stop (NumPy's arange; one argument means stop)."""
    if stop is None:
        start, stop = 0, start
    if step == 0:
        raise ShapeError("arange: step must not be zero")
    n = max(0, -(-(float(stop) - float(start)) // float(step)))
    first, inc = E.convert(start, dtype), E.convert(step, dtype)
    return _injective((int(n),), lambda i: first + E.cast(dtype, i) * inc, "arange")


def _check_bool(operands: list, name: str) -> None:
    for t in operands:
        if isinstance(t, Tensor) and t.dtype != "bool":
            raise DTypeError(f"{name}: operands must be bool tensors, got {t.dtype} {t.name}")


def _bool_op(operands: list, fn, name: str):
    _check_bool(operands, name)
    return broadcast_op(operands, fn, name)


def logical_and(lhs: Operand, rhs: Operand):
    return _bool_op([lhs, rhs], lambda a, b: E.binop("and", a, b), "logical_and")


def logical_or(lhs: Operand, rhs: Operand):
    return _bool_op([lhs, rhs], lambda a, b: E.binop("or", a, b), "logical_or")


def logical_xor(lhs: Operand, rhs: Operand):
    return _bool_op([lhs, rhs], lambda a, b: E.cmp("ne", E.as_bool(a), E.as_bool(b)),
                    "logical_xor")


def logical_not(x: Tensor) -> Tensor:
    _check_bool([x], "logical_not")
    return elemwise(x, E.Not, "logical_not")


def isnan(x: Tensor) -> Tensor:
    """x != x, elementwise (True where x is NaN)."""
    return elemwise(x, isnan_expr, "isnan")


def isnan_expr(v: E.Expr) -> E.Expr:
    # NaN is the one value unequal to itself (kiln never compiles with -ffinite-math-only)
    return E.cmp("ne", v, v)


def isinf(x: Tensor) -> Tensor:
    """True where x is +inf or -inf."""
    inf = E.FloatImm(float("inf"), x.dtype)
    return elemwise(x, lambda v: E.cmp("eq", intrin.abs(v), inf), "isinf")
