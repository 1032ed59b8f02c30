"""Data movement: reshape, transpose, take, concatenate, strided_slice, expand_dims, squeeze,
broadcast_to, split.

In: te Tensors and NumPy-style shape / axis / slice arguments (negative axes, -1 in a shape,
negative slice bounds and steps). Out: one "injective" compute per result (split returns a
list), whose body is pure index arithmetic; the scheduler can inline it into its consumer.
Python's own slice rules decide slice bounds, so results match NumPy exactly.
"""

from __future__ import annotations

from collections.abc import Sequence

from .. import te
from ..errors import DTypeError, ShapeError
from ..te import expr as E
from ..te.tensor import Tensor
from .utils import (
    Axis,
    broadcast_index,
    broadcast_shape,
    check_tensor,
    const_shape,
    normalize_axes,
    normalize_axis,
    prod,
)

__all__ = ["broadcast_to", "concatenate", "expand_dims", "reshape", "split", "squeeze",
           "strided_slice", "take", "transpose"]


def _injective(shape, fcompute, name: str, attrs: dict | None = None) -> Tensor:
    return te.compute(tuple(shape), fcompute, name=name, tag="injective", attrs=attrs)


def unravel(flat: E.Expr, shape: tuple) -> tuple:
    """Row-major multi-index of the flat position `flat` in `shape` (size-1 dims read 0)."""
    out, stride, outer = [], prod(shape), True
    for d in shape:
        stride //= d
        if d == 1:
            out.append(0)
            continue
        v = flat // stride if stride != 1 else flat
        out.append(v if outer else v % d)  # the outermost quotient is already < d
        outer = False
    return tuple(out)


def ravel(index: tuple, shape: tuple) -> E.Expr:
    """Row-major flat position of a multi-index in `shape`."""
    flat, stride = None, 1
    for i, d in reversed(list(zip(index, shape, strict=True))):
        if d != 1:
            term = i * stride if stride != 1 else i
            flat = term if flat is None else term + flat
        stride *= d
    return E.const(0, "int32") if flat is None else flat


def _infer_shape(newshape, size: int, op: str) -> tuple[int, ...]:
    new = (newshape,) if isinstance(newshape, int) else tuple(int(d) for d in newshape)
    if sum(1 for d in new if d == -1) > 1 or any(d == 0 or d < -1 for d in new):
        raise ShapeError(f"{op}: bad target shape {new}: entries must be positive, "
                         f"with at most one -1")
    known = prod(d for d in new if d != -1)
    if -1 in new:
        if size % known:
            raise ShapeError(f"{op}: cannot infer -1 in {new} for {size} elements")
        new = tuple(size // known if d == -1 else d for d in new)
    if prod(new) != size:
        raise ShapeError(f"{op}: cannot reshape {size} elements into shape {new}")
    return new


def _dim_groups(src: tuple, dst: tuple) -> list[tuple[slice, slice]]:
    """Consecutive runs of src and dst dims with equal products (row-major reshape blocks)."""
    groups, i, j = [], 0, 0
    while i < len(src) or j < len(dst):
        i0, j0, ps, pd = i, j, 1, 1
        if i < len(src):
            ps, i = src[i], i + 1
        if j < len(dst):
            pd, j = dst[j], j + 1
        while ps != pd:
            if ps < pd:
                ps, i = ps * src[i], i + 1
            else:
                pd, j = pd * dst[j], j + 1
        groups.append((slice(i0, i), slice(j0, j)))
    return groups


def reshape(a: Tensor, newshape: int | Sequence[int]) -> Tensor:
    """`a` viewed in `newshape` (row-major; one entry may be -1).

    Index arithmetic is done per block of dims whose extents multiply to the same size, so
    e.g. [N, C, H, W] -> [N, C*H*W] divides only the merged index, never N's.
    """
    check_tensor(a, "reshape")
    shape = const_shape(a, "reshape")
    new = _infer_shape(newshape, prod(shape), "reshape")
    groups = _dim_groups(shape, new)

    def f(*i):
        idx = []
        for gs, gd in groups:
            idx.extend(unravel(ravel(i[gd], new[gd]), shape[gs]))
        return a[tuple(idx)]
    return _injective(new, f, "reshape")


def transpose(a: Tensor, axes: Sequence[int] | None = None) -> Tensor:
    """Axes permuted: out.shape[k] = a.shape[axes[k]]; None reverses them."""
    check_tensor(a, "transpose")
    shape = const_shape(a, "transpose")
    n = len(shape)
    perm = list(range(n))[::-1] if axes is None else [normalize_axis(x, n, "transpose")
                                                        for x in axes]
    if sorted(perm) != list(range(n)):
        raise ShapeError(f"transpose: axes {axes} are not a permutation of {n} dims")

    def f(*i):
        idx = [None] * n
        for k, p in enumerate(perm):
            idx[p] = i[k]
        return a[tuple(idx)]
    # the permutation travels with the op: schedules of fused groups (default_winograd) read it
    return _injective([shape[p] for p in perm], f, "transpose", {"axes": tuple(perm)})


def _fix_index(idx, n: int, mode: str):
    if mode == "clip":
        return E.max(E.min(idx, n - 1), 0)
    if mode == "wrap":
        return idx % n
    return idx


def take(a: Tensor, indices: Tensor | int, axis: int | None = None,
         mode: str = "clip") -> Tensor:
    """a[..., indices, ...] along `axis` (None: into the flattened `a`).

    mode "clip" clamps out-of-range indices (negatives become 0), "wrap" takes them modulo
    the axis length (so -1 is the last element), "fast" assumes they are in range.
    """
    check_tensor(a, "take")
    if mode not in ("clip", "wrap", "fast"):
        raise ShapeError(f"take: mode must be 'clip', 'wrap' or 'fast', got {mode!r}")
    shape = const_shape(a, "take")
    if axis is None:
        full = shape
        shape, axis = (prod(full),), 0
        load = (lambda idx: a[unravel(idx[0], full)])
    else:
        axis = normalize_axis(axis, len(shape), "take")
        load = (lambda idx: a[idx])
    n = shape[axis]
    if isinstance(indices, Tensor):
        if not E.is_int(indices.dtype):
            raise DTypeError(f"take: indices must be an integer tensor, got {indices.dtype}")
        ishape = const_shape(indices, "take")
        get = (lambda mid: _fix_index(indices[mid], n, mode).astype("int32"))
    elif isinstance(indices, int) and not isinstance(indices, bool):
        ishape = ()
        value = _const_index(indices, n, mode)
        get = (lambda mid: value)
    else:
        raise ShapeError(f"take: indices must be a te.Tensor or an int, got {indices!r}")
    k = len(ishape)
    out_shape = shape[:axis] + ishape + shape[axis + 1:]

    def f(*i):
        return load(i[:axis] + (get(i[axis:axis + k]),) + i[axis + k:])
    return _injective(out_shape, f, "take")


def _const_index(i: int, n: int, mode: str) -> int:
    if mode == "wrap":
        return i % n
    if mode == "fast" and not 0 <= i < n:
        raise ShapeError(f"take: index {i} is out of range for an axis of length {n}")
    return min(max(i, 0), n - 1)


def concatenate(tensors: Sequence[Tensor], axis: int = 0) -> Tensor:
    """The tensors joined along `axis` (same dtype, same extents on every other axis)."""
    tensors = [check_tensor(t, "concatenate", "tensors[]") for t in tensors]
    if not tensors:
        raise ShapeError("concatenate: needs at least one tensor")
    shapes = [const_shape(t, "concatenate") for t in tensors]
    axis = normalize_axis(axis, len(shapes[0]), "concatenate")
    for t, s in zip(tensors, shapes, strict=True):
        if t.dtype != tensors[0].dtype:
            raise DTypeError(f"concatenate: dtypes differ: {tensors[0].dtype} and {t.dtype}")
        if len(s) != len(shapes[0]) or s[:axis] + s[axis + 1:] != \
                shapes[0][:axis] + shapes[0][axis + 1:]:
            raise ShapeError(f"concatenate: shapes {shapes[0]} and {s} differ outside "
                             f"axis {axis}")
    offsets = [sum(s[axis] for s in shapes[:k]) for k in range(len(shapes))]
    out_shape = shapes[0][:axis] + (sum(s[axis] for s in shapes),) + shapes[0][axis + 1:]

    def f(*i):
        j = i[axis]

        def load(k):
            jj = j - offsets[k] if offsets[k] else j
            return tensors[k][i[:axis] + (jj,) + i[axis + 1:]]
        out = load(len(tensors) - 1)
        for k in range(len(tensors) - 2, -1, -1):
            out = E.Select(j < offsets[k] + shapes[k][axis], load(k), out)
        return out
    return _injective(out_shape, f, "concatenate")


def _slice_params(shape, begin, end, strides, axes, op: str) -> list:
    """(start, step, length) per dimension, following Python slice rules."""
    n = len(shape)
    begin, end = list(begin), list(end)
    if len(begin) != len(end):
        raise ShapeError(f"{op}: begin {begin} and end {end} have different lengths")
    strides = [1] * len(begin) if strides is None else list(strides)
    if len(strides) > len(begin):
        raise ShapeError(f"{op}: {len(strides)} strides for {len(begin)} slice bounds")
    strides += [1] * (len(begin) - len(strides))
    axes = list(range(len(begin))) if axes is None else [normalize_axis(a, n, op) for a in axes]
    if len(axes) != len(begin) or len(begin) > n:
        raise ShapeError(f"{op}: {len(begin)} slice bounds for axes {axes} of a {n}-d tensor")
    params = [(0, 1, d) for d in shape]
    for a, b, e, s in zip(axes, begin, end, strides, strict=True):
        if s == 0:
            raise ShapeError(f"{op}: stride must not be 0 (axis {a})")
        start, stop, step = slice(b, e, s).indices(shape[a])
        length = len(range(start, stop, step))
        if length == 0:
            raise ShapeError(f"{op}: slice {b}:{e}:{s} of axis {a} (extent {shape[a]}) is empty")
        params[a] = (start, step, length)
    return params


def _affine(start: int, step: int, v: E.Expr) -> E.Expr:
    """start + v * step, written without multiplications by +-1 or additions of 0."""
    term = v if abs(step) == 1 else v * abs(step)
    if step < 0:
        return start - term
    return start + term if start else term


def strided_slice(a: Tensor, begin: Sequence, end: Sequence, strides: Sequence | None = None,
                  axes: Sequence[int] | None = None) -> Tensor:
    """a[begin:end:strides] per axis with Python slice semantics (negative bounds and steps)."""
    check_tensor(a, "strided_slice")
    params = _slice_params(const_shape(a, "strided_slice"), begin, end, strides, axes,
                           "strided_slice")

    def f(*i):
        return a[tuple(_affine(start, step, v) for v, (start, step, _) in
                       zip(i, params, strict=True))]
    return _injective([p[2] for p in params], f, "strided_slice")


def expand_dims(a: Tensor, axis: int, num_newaxis: int = 1) -> Tensor:
    """`a` with `num_newaxis` size-1 axes inserted at `axis` (in [-ndim-1, ndim])."""
    check_tensor(a, "expand_dims")
    shape = const_shape(a, "expand_dims")
    axis = normalize_axis(axis, len(shape) + 1, "expand_dims")
    out_shape = shape[:axis] + (1,) * num_newaxis + shape[axis:]
    return _injective(out_shape, lambda *i: a[i[:axis] + i[axis + num_newaxis:]], "expand_dims")


def squeeze(a: Tensor, axis: Axis = None) -> Tensor:
    """`a` without its size-1 axes (only those in `axis` when given; they must be size 1)."""
    check_tensor(a, "squeeze")
    shape = const_shape(a, "squeeze")
    if axis is None:
        drop = [k for k, d in enumerate(shape) if d == 1]
    else:
        drop = normalize_axes(axis, len(shape), "squeeze")
        bad = [k for k in drop if shape[k] != 1]
        if bad:
            raise ShapeError(f"squeeze: axis {bad[0]} of shape {shape} has extent "
                             f"{shape[bad[0]]}, not 1")
    out_shape = tuple(d for k, d in enumerate(shape) if k not in drop)

    def f(*i):
        it = iter(i)
        return a[tuple(0 if k in drop else next(it) for k in range(len(shape)))]
    return _injective(out_shape, f, "squeeze")


def broadcast_to(a: Tensor, shape: Sequence[int]) -> Tensor:
    """`a` broadcast (NumPy rules) to exactly `shape`."""
    check_tensor(a, "broadcast_to")
    shape = tuple(int(d) for d in shape)
    src = const_shape(a, "broadcast_to")
    if broadcast_shape(src, shape, "broadcast_to") != shape:
        raise ShapeError(f"broadcast_to: cannot broadcast {src} to {shape}")
    return te.compute(shape, lambda *i: a[broadcast_index(a, shape, i)], name="broadcast_to",
                      tag="broadcast")


def split(a: Tensor, indices_or_sections: int | Sequence[int], axis: int = 0) -> list[Tensor]:
    """`a` cut along `axis` into equal sections (an int) or at the given indices."""
    check_tensor(a, "split")
    shape = const_shape(a, "split")
    axis = normalize_axis(axis, len(shape), "split")
    n = shape[axis]
    if isinstance(indices_or_sections, int):
        k = indices_or_sections
        if k <= 0 or n % k:
            raise ShapeError(f"split: axis {axis} of extent {n} does not split into {k} "
                             f"equal sections")
        bounds = [n // k * j for j in range(k + 1)]
    else:
        bounds = [0] + [int(b) for b in indices_or_sections] + [n]
    pairs = zip(bounds[:-1], bounds[1:], strict=True)
    return [strided_slice(a, [lo], [hi], axes=[axis]) for lo, hi in pairs]
