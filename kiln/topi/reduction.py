"""Reductions over axes: sum, mean, max, min, prod, argmax, argmin (NumPy axis/keepdims rules).

In: a te Tensor, `axis` (None = all axes, an int, or a tuple; negatives count from the end)
and `keepdims`. Out: one "comm_reduce" compute per reduction (mean adds an elementwise
divide after it; argmax/argmin add a second reduction that finds the first extreme index).
Reducing over every axis without keepdims gives a 0-d tensor, as in NumPy and TVM.
"""

from __future__ import annotations

from .. import te
from ..errors import DTypeError
from ..te import expr as E
from ..te.tensor import Tensor
from .utils import Axis, check_tensor, const_shape, normalize_axes, normalize_axis
from .utils import prod as _prod

__all__ = ["argmax", "argmin", "cumsum", "max", "mean", "min", "prod", "sum"]


def _reduce_compute(x: Tensor, axis: Axis, keepdims: bool, body, name: str) -> Tensor:
    """out[spatial] = body(full_index, reduce_axes) with the reduced axes replaced by rvars."""
    check_tensor(x, name)
    shape = const_shape(x, name)
    axes = normalize_axes(axis, len(shape), name)
    if not axes:
        return te.compute(shape, lambda *i: x[i], name=name, tag="elemwise")
    rvars = {a: te.reduce_axis(shape[a], name=f"k{a}") for a in axes}
    out_shape = tuple(1 if a in rvars else d for a, d in enumerate(shape)
                      if keepdims or a not in rvars)

    def fcompute(*i):
        it = iter(i)
        full = []
        for a in range(len(shape)):
            if a in rvars:
                if keepdims:
                    next(it)
                full.append(rvars[a])
            else:
                full.append(next(it))
        return body(tuple(full), list(rvars.values()))
    return te.compute(out_shape, fcompute, name=name, tag="comm_reduce")


def sum(x: Tensor, axis: Axis = None, keepdims: bool = False) -> Tensor:  # noqa: A001 - TVM name
    """Sum over `axis`."""
    return _reduce_compute(x, axis, keepdims, lambda idx, r: te.sum(x[idx], axis=r), "sum")


def max(x: Tensor, axis: Axis = None, keepdims: bool = False) -> Tensor:  # noqa: A001 - TVM name
    """Maximum over `axis`."""
    return _reduce_compute(x, axis, keepdims, lambda idx, r: te.max(x[idx], axis=r), "max")


def min(x: Tensor, axis: Axis = None, keepdims: bool = False) -> Tensor:  # noqa: A001 - TVM name
    """Minimum over `axis`."""
    return _reduce_compute(x, axis, keepdims, lambda idx, r: te.min(x[idx], axis=r), "min")


def prod(x: Tensor, axis: Axis = None, keepdims: bool = False) -> Tensor:
    """Product over `axis`."""
    return _reduce_compute(x, axis, keepdims, lambda idx, r: te.prod(x[idx], axis=r), "prod")


def mean(x: Tensor, axis: Axis = None, keepdims: bool = False) -> Tensor:
    """Sum over `axis` divided by the element count (floor division for integer dtypes)."""
    check_tensor(x, "mean")
    shape = const_shape(x, "mean")
    count = _prod(shape[a] for a in normalize_axes(axis, len(shape), "mean"))
    s = sum(x, axis, keepdims)
    return te.compute(s.shape, lambda *i: s[i] / count, name="mean", tag="elemwise")


def _arg_extreme(x: Tensor, axis, keepdims: bool, dtype: str, is_max: bool) -> Tensor:
    name = "argmax" if is_max else "argmin"
    check_tensor(x, name)
    E.check_dtype(dtype)
    if not E.is_int(dtype):
        raise DTypeError(f"{name}: index dtype must be an integer type, got {dtype}")
    shape = const_shape(x, name)
    axes = [normalize_axis(axis, len(shape), name)] if axis is not None \
        else list(range(len(shape)))
    ext = (max if is_max else min)(x, axes, keepdims=True)
    strides = {a: _prod(shape[b] for b in axes if b > a) for a in axes}

    def body(idx, r):
        flat = None
        for a, rv in zip(axes, r, strict=True):
            term = rv.astype(dtype) * strides[a] if strides[a] != 1 else rv.astype(dtype)
            flat = term if flat is None else flat + term
        ext_idx = tuple(0 if a in axes else v for a, v in enumerate(idx))
        return te.min(flat, axis=r, where=x[idx] == ext[ext_idx])
    return _reduce_compute(x, axes, keepdims, body, name)


def argmax(x: Tensor, axis: int | None = None, keepdims: bool = False,
           dtype: str = "int32") -> Tensor:
    """Index of the first maximum along `axis` (None: index into the flattened tensor)."""
    return _arg_extreme(x, axis, keepdims, dtype, True)


def argmin(x: Tensor, axis: int | None = None, keepdims: bool = False,
           dtype: str = "int32") -> Tensor:
    """Index of the first minimum along `axis` (None: index into the flattened tensor)."""
    return _arg_extreme(x, axis, keepdims, dtype, False)


def cumsum(x: Tensor, axis: int = 0, exclusive: bool = False, reverse: bool = False) -> Tensor:
    """Running sum along `axis` (ONNX CumSum): out[..i..] = sum of x[..k..] for k <= i
    (k < i when exclusive; k >= i / k > i when reverse). One reduction with a condition:
    quadratic in the axis length, which is fine for the sequence lengths it serves (position
    ids from a padding mask) and keeps the op a plain te compute."""
    check_tensor(x, "cumsum")
    shape = const_shape(x, "cumsum")
    ax = normalize_axis(axis, len(shape), "cumsum")
    k = te.reduce_axis(shape[ax], name="k")

    def body(*i):
        src = tuple(k if a == ax else v for a, v in enumerate(i))
        if reverse:
            cond = E.cmp("gt", k, i[ax]) if exclusive else E.cmp("ge", k, i[ax])
        else:
            cond = E.cmp("lt", k, i[ax]) if exclusive else E.cmp("le", k, i[ax])
        return te.sum(x[src], axis=k, where=cond)
    return te.compute(shape, body, name="cumsum", tag="cumsum")
