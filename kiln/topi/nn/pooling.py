"""2-d pooling in NCHW layout: max_pool2d, avg_pool2d, the TVM-style pool2d and global_pool.

In: data [N, C, H, W], kernel, stride, padding ((top, left, bottom, right), (h, w) or an
int), ceil_mode and, for averages, count_include_pad. Out: [N, C, OH, OW]. Padding is a
separate "pad" compute (-inf for max, 0 for avg). Max pooling is one "pool_max" reduction;
average pooling is a "pool_sum" reduction followed by an elementwise divide whose divisor
follows PyTorch (windows clipped to the padded input, or to the real input when padding is
not counted).
"""

from __future__ import annotations

from ... import te
from ...errors import ShapeError
from ...te import expr as E
from ...te.tensor import Tensor
from .. import reduction
from ..utils import IntOrPair, check_tensor, const_shape
from .pad import out_extent, pad, padding4, pair, window

__all__ = ["avg_pool2d", "global_pool", "max_pool2d", "pool2d"]


def _setup(data: Tensor, kernel, stride, padding, dilation, ceil_mode: bool, fill, op: str):
    """Padded source (incl. ceil-mode overhang), kernel, stride, dilation, padding, out size."""
    check_tensor(data, op)
    shape = const_shape(data, op)
    if len(shape) != 4:
        raise ShapeError(f"{op}: data must be 4-d NCHW, got {shape}")
    kh, kw = pair(kernel, "kernel", op)
    sh, sw = pair(kernel if stride is None else stride, "stride", op)
    dh, dw = pair(dilation, "dilation", op)
    pt, pl, pb, pr = padding4(padding, op)
    oh = out_extent(shape[2], kh, sh, dh, pt, pb, op, ceil_mode)
    ow = out_extent(shape[3], kw, sw, dw, pl, pr, op, ceil_mode)
    eb = max(0, (oh - 1) * sh + dh * (kh - 1) + 1 - (shape[2] + pt + pb))
    er = max(0, (ow - 1) * sw + dw * (kw - 1) + 1 - (shape[3] + pl + pr))
    src = data
    if any((pt, pl, pb + eb, pr + er)):
        src = pad(data, (0, 0, pt, pl), (0, 0, pb + eb, pr + er), fill)
    return src, (kh, kw), (sh, sw), (dh, dw), (pt, pl, pb, pr), (shape[0], shape[1], oh, ow)


def max_pool2d(data: Tensor, kernel: IntOrPair, stride: IntOrPair | None = None,
               padding: IntOrPair = 0, dilation: IntOrPair = 1,
               ceil_mode: bool = False) -> Tensor:
    """Window maximum; stride None means stride = kernel (PyTorch's default)."""
    op = "max_pool2d"
    src, (kh, kw), (sh, sw), (dh, dw), _, oshape = _setup(
        data, kernel, stride, padding, dilation, ceil_mode, E.min_value(data.dtype), op)
    ry, rx = te.reduce_axis(kh, name="ry"), te.reduce_axis(kw, name="rx")
    return te.compute(
        oshape,
        lambda n, c, y, x: te.max(src[n, c, window(y, sh, ry, dh), window(x, sw, rx, dw)],
                                  axis=[ry, rx]),
        name="max_pool2d", tag="pool_max")


def _divisor(y, x, kernel, stride, pads, hw, include_pad: bool) -> E.Expr:
    """Number of window elements inside the (padded, if include_pad) input, for output y, x."""
    extents = []
    for o, k, s, lo, hi, n in ((y, kernel[0], stride[0], pads[0], pads[2], hw[0]),
                               (x, kernel[1], stride[1], pads[1], pads[3], hw[1])):
        start = o * s - lo if s != 1 else o - lo
        if include_pad:
            extents.append(E.min(start + k, n + hi) - start)
        else:
            extents.append(E.min(start + k, n) - E.max(start, 0))
    return extents[0] * extents[1]


def avg_pool2d(data: Tensor, kernel: IntOrPair, stride: IntOrPair | None = None,
               padding: IntOrPair = 0, ceil_mode: bool = False,
               count_include_pad: bool = True) -> Tensor:
    """Window mean; stride None means stride = kernel. count_include_pad counts padded zeros
    in the divisor (never the ceil_mode overhang), as PyTorch does."""
    op = "avg_pool2d"
    src, (kh, kw), (sh, sw), _, pads, oshape = _setup(
        data, kernel, stride, padding, 1, ceil_mode, 0, op)
    ry, rx = te.reduce_axis(kh, name="ry"), te.reduce_axis(kw, name="rx")
    total = te.compute(
        oshape, lambda n, c, y, x: te.sum(src[n, c, window(y, sh, ry, 1), window(x, sw, rx, 1)],
                                          axis=[ry, rx]),
        name="avg_pool2d_sum", tag="pool_sum")
    shape = const_shape(data, op)
    if (count_include_pad or not any(pads)) and not ceil_mode:
        return te.compute(oshape, lambda *i: total[i] / (kh * kw), name="avg_pool2d",
                          tag="elemwise")

    def body(n, c, y, x):
        d = _divisor(y, x, (kh, kw), (sh, sw), pads, shape[2:], count_include_pad)
        return total[n, c, y, x] / d.astype(data.dtype)
    return te.compute(oshape, body, name="avg_pool2d", tag="elemwise")


def pool2d(data: Tensor, kernel: IntOrPair, stride: IntOrPair, dilation: IntOrPair,
           padding: IntOrPair, pool_type: str,
           ceil_mode: bool = False, layout: str = "NCHW",
           count_include_pad: bool = True) -> Tensor:
    """TVM's pool2d signature over max_pool2d / avg_pool2d (NCHW only; avg needs dilation 1)."""
    if layout != "NCHW":
        raise ShapeError(f"pool2d: only the NCHW layout is supported, got {layout!r}")
    if pool_type == "max":
        return max_pool2d(data, kernel, stride, padding, dilation, ceil_mode)
    if pool_type == "avg":
        if pair(dilation, "dilation", "pool2d") != (1, 1):
            raise ShapeError(f"pool2d: avg pooling supports dilation 1 only, got {dilation}")
        return avg_pool2d(data, kernel, stride, padding, ceil_mode, count_include_pad)
    raise ShapeError(f"pool2d: pool_type must be 'max' or 'avg', got {pool_type!r}")


def global_pool(data: Tensor, pool_type: str, layout: str = "NCHW") -> Tensor:
    """Max or mean over H and W, keeping them as size-1 axes: [N, C, 1, 1]."""
    check_tensor(data, "global_pool")
    if layout != "NCHW" or data.ndim != 4:
        raise ShapeError(f"global_pool: needs 4-d NCHW data, got {layout} "
                         f"{const_shape(data, 'global_pool')}")
    if pool_type == "max":
        return reduction.max(data, axis=(2, 3), keepdims=True)
    if pool_type == "avg":
        return reduction.mean(data, axis=(2, 3), keepdims=True)
    raise ShapeError(f"global_pool: pool_type must be 'max' or 'avg', got {pool_type!r}")
