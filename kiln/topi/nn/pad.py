"""Constant padding and the window arithmetic shared by conv2d and pooling.

In: a te Tensor with per-axis pad widths and a fill value; for the helpers, the user's
stride / padding / dilation arguments. Out: a "pad" compute (tag "injective") that reads
the input only where the index lands inside it (te.if_then_else guards the read), plus
normalised (int, int) pairs and output extents. Padding is its own compute so the scheduler
may inline it into the consumer or materialise it.
"""

from __future__ import annotations

from collections.abc import Sequence

from ... import te
from ...errors import ShapeError
from ...te import expr as E
from ...te.tensor import Tensor
from ..utils import IntOrPair, check_tensor, const_shape

__all__ = ["dilate", "pad"]


def pad(data: Tensor, pad_before: Sequence[int], pad_after: Sequence[int] | None = None,
        pad_value: float | E.Expr = 0.0, name: str = "pad") -> Tensor:
    """`data` with pad_before[d] / pad_after[d] elements of `pad_value` around each axis d."""
    check_tensor(data, "pad")
    shape = const_shape(data, "pad")
    before = [int(p) for p in pad_before]
    after = before if pad_after is None else [int(p) for p in pad_after]
    if len(before) != len(shape) or len(after) != len(shape):
        raise ShapeError(f"pad: need one pad width per axis of {shape}, got before={before} "
                         f"after={after}")
    if any(p < 0 for p in before + after):
        raise ShapeError(f"pad: pad widths must be >= 0, got before={before} after={after}")
    value = E.cast(data.dtype, pad_value) if isinstance(pad_value, E.Expr) \
        else te.const(pad_value, data.dtype)
    out_shape = tuple(b + d + a for b, d, a in zip(before, shape, after, strict=True))

    def f(*i):
        conds, idx = [], []
        for v, b, d, a in zip(i, before, shape, after, strict=True):
            idx.append(v - b if b else v)
            if b:
                conds.append(v >= b)
            if a:
                conds.append(v < b + d)
        if not conds:
            return data[tuple(idx)]
        return te.if_then_else(te.all(*conds), data[tuple(idx)], value)
    return te.compute(out_shape, f, name=name, tag="injective")


def dilate(data: Tensor, strides: Sequence[int], name: str = "dilate") -> Tensor:
    """`data` with strides[d] - 1 zeros between neighbours along each axis d (TVM's
    topi.nn.dilate): the input of a transposed convolution written as a plain one."""
    check_tensor(data, "dilate")
    shape = const_shape(data, "dilate")
    strides = [int(s) for s in strides]
    if len(strides) != len(shape) or any(s < 1 for s in strides):
        raise ShapeError(f"dilate: need one stride >= 1 per axis of {shape}, got {strides}")
    out_shape = tuple((d - 1) * s + 1 for d, s in zip(shape, strides))
    zero = te.const(0, data.dtype)

    def f(*i):
        conds = [E.cmp("eq", E.binop("floormod", v, s), 0) for v, s in zip(i, strides) if s > 1]
        idx = tuple(E.binop("floordiv", v, s) if s > 1 else v for v, s in zip(i, strides))
        if not conds:
            return data[idx]
        return te.if_then_else(te.all(*conds), data[idx], zero)
    return te.compute(out_shape, f, name=name, tag="injective")


def pair(v: IntOrPair, what: str, op: str) -> tuple[int, int]:
    """An int or a 2-sequence as a pair of positive ints."""
    p = (v, v) if isinstance(v, int) else tuple(int(x) for x in v)
    if len(p) != 2 or any(x <= 0 for x in p):
        raise ShapeError(f"{op}: {what} must be a positive int or a pair of them, got {v!r}")
    return p


def padding4(v: IntOrPair, op: str) -> tuple[int, int, int, int]:
    """int, (h, w) or (top, left, bottom, right) padding as (top, left, bottom, right)."""
    if isinstance(v, int):
        p = (v, v, v, v)
    else:
        p = tuple(int(x) for x in v)
        if len(p) == 2:
            p = p + p
    if len(p) != 4 or any(x < 0 for x in p):
        raise ShapeError(f"{op}: padding must be an int, (h, w) or (top, left, bottom, right) "
                         f"of non-negative ints, got {v!r}")
    return p


def out_extent(n: int, k: int, stride: int, dilation: int, lo: int, hi: int, op: str,
               ceil_mode: bool = False) -> int:
    """Number of windows along one axis (ceil_mode: PyTorch's rule, last window starts inside)."""
    span = n + lo + hi - dilation * (k - 1) - 1
    out = (span + stride - 1) // stride + 1 if ceil_mode else span // stride + 1
    if ceil_mode and (out - 1) * stride >= n + lo:
        out -= 1
    if (span < 0 and not ceil_mode) or out <= 0:  # ceil_mode clips a window larger than n
        raise ShapeError(f"{op}: window of {k} (dilation {dilation}) does not fit an input of "
                         f"{n} with padding ({lo}, {hi})")
    return out


def window(o: E.Expr, stride: int, r: E.Expr, dilation: int) -> E.Expr:
    """o * stride + r * dilation, without multiplications by 1."""
    a = o * stride if stride != 1 else o
    b = r * dilation if dilation != 1 else r
    return a + b
