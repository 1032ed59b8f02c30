"""2-d convolution in NCHW layout: plain, grouped and depthwise, each ONE reduction compute;
and depthwise convolution channels-last (NHWC), for networks whose neighbouring layers
already run channels-last (the int8 convolutions of quantized CNNs).

In: data [N, C, H, W], a kernel ([O, C/groups, KH, KW], or [C, M, KH, KW] for
depthwise_conv2d_nchw), stride, padding ((top, left, bottom, right), (h, w) or an int),
dilation and groups. Out: [N, O, OH, OW]. Padding is a separate "pad" compute read by the
convolution; the convolution compute is tagged "conv2d_nchw", "group_conv2d_nchw",
"depthwise_conv2d_nchw" or "depthwise_conv2d_nhwc" so the graph layer can recognise it.
depthwise_conv2d_nhwc: data [N, H, W, C], kernel [KH, KW, C], out [N, OH, OW, C]: every
tap reads C contiguous values (one vector per lanes channels, no transpose of the tile).
"""

from __future__ import annotations

from ... import te
from ...errors import ShapeError
from ...te import expr as E
from ...te.tensor import Tensor
from ..utils import IntOrPair, check_tensor, const_shape
from .pad import out_extent, pad, padding4, pair, window

__all__ = ["conv2d_nchw", "depthwise_conv2d_nchw", "depthwise_conv2d_nhwc", "group_conv2d_nchw",
           "nchw_conv_operands"]


def _geometry(data: Tensor, kshape: tuple, stride, padding, dilation, op: str):
    """Padded source tensor, (sh, sw), (dh, dw) and the output (OH, OW)."""
    _, _, h, w = const_shape(data, op)
    sh, sw = pair(stride, "stride", op)
    dh, dw = pair(dilation, "dilation", op)
    pt, pl, pb, pr = padding4(padding, op)
    oh = out_extent(h, kshape[2], sh, dh, pt, pb, op)
    ow = out_extent(w, kshape[3], sw, dw, pl, pr, op)
    src = pad(data, (0, 0, pt, pl), (0, 0, pb, pr)) if any((pt, pl, pb, pr)) else data
    return src, (sh, sw), (dh, dw), (oh, ow)


def _check_4d(data: Tensor, kernel: Tensor, op: str) -> tuple[tuple, tuple]:
    check_tensor(data, op, "data")
    check_tensor(kernel, op, "kernel")
    ds, ks = const_shape(data, op), const_shape(kernel, op)
    if len(ds) != 4 or len(ks) != 4:
        raise ShapeError(f"{op}: data and kernel must be 4-d (NCHW / OIHW), got {ds} and {ks}")
    return ds, ks


def conv2d_nchw(data: Tensor, kernel: Tensor, stride: IntOrPair = 1, padding: IntOrPair = 0,
                dilation: IntOrPair = 1, groups: int = 1,
                out_dtype: str | None = None) -> Tensor:
    """Convolution of data [N, C, H, W] with kernel [O, C/groups, KH, KW] (groups == C with
    C/groups == 1 is depthwise)."""
    op = "conv2d_nchw"
    ds, ks = _check_4d(data, kernel, op)
    c, o, cg = ds[1], ks[0], ks[1]
    if not isinstance(groups, int) or groups < 1 or c % groups or o % groups:
        raise ShapeError(f"{op}: groups={groups} must divide both the input channels {c} "
                         f"(data {ds}) and the output channels {o} (kernel {ks})")
    if cg != c // groups:
        raise ShapeError(f"{op}: kernel {ks} expects {cg} input channels per group, but data "
                         f"{ds} with groups={groups} has {c // groups}")
    src, (sh, sw), (dh, dw), (oh, ow) = _geometry(data, ks, stride, padding, dilation, op)
    od = out_dtype or data.dtype
    ry, rx = te.reduce_axis(ks[2], name="ry"), te.reduce_axis(ks[3], name="rx")
    rc = te.reduce_axis(cg, name="rc") if cg > 1 or groups == 1 else None
    opg = o // groups

    def body(n, oc, y, x):
        if groups == 1:
            ch = rc
        else:
            g = oc // opg if opg > 1 else oc
            ch = g if rc is None else g * cg + rc
        kc = 0 if rc is None else rc
        prod = src[n, ch, window(y, sh, ry, dh), window(x, sw, rx, dw)].astype(od) \
            * kernel[oc, kc, ry, rx].astype(od)
        return te.sum(prod, axis=[ax for ax in (rc, ry, rx) if ax is not None])
    tag = "conv2d_nchw" if groups == 1 else \
        "depthwise_conv2d_nchw" if cg == 1 and groups == c else "group_conv2d_nchw"
    return te.compute((ds[0], o, oh, ow), body, name="conv2d", tag=tag)


def group_conv2d_nchw(data: Tensor, kernel: Tensor, stride: IntOrPair, padding: IntOrPair,
                      dilation: IntOrPair, groups: int,
                      out_dtype: str | None = None) -> Tensor:
    """Grouped convolution (TVM's name for conv2d_nchw with groups > 1)."""
    return conv2d_nchw(data, kernel, stride, padding, dilation, groups, out_dtype)


def depthwise_conv2d_nchw(data: Tensor, kernel: Tensor, stride: IntOrPair = 1,
                          padding: IntOrPair = 0, dilation: IntOrPair = 1,
                          out_dtype: str | None = None) -> Tensor:
    """Depthwise convolution with TVM's kernel layout [C, M, KH, KW] (M = channel multiplier);
    output channel c * M + m reads input channel c."""
    op = "depthwise_conv2d_nchw"
    ds, ks = _check_4d(data, kernel, op)
    if ks[0] != ds[1]:
        raise ShapeError(f"{op}: kernel {ks} (layout [C, M, KH, KW]) must have as many "
                         f"channels as data {ds}")
    src, (sh, sw), (dh, dw), (oh, ow) = _geometry(data, ks, stride, padding, dilation, op)
    od = out_dtype or data.dtype
    m = ks[1]
    ry, rx = te.reduce_axis(ks[2], name="ry"), te.reduce_axis(ks[3], name="rx")

    def body(n, oc, y, x):
        ch, mi = (oc // m, oc % m) if m > 1 else (oc, 0)
        prod = src[n, ch, window(y, sh, ry, dh), window(x, sw, rx, dw)].astype(od) \
            * kernel[ch, mi, ry, rx].astype(od)
        return te.sum(prod, axis=[ry, rx])
    return te.compute((ds[0], ds[1] * m, oh, ow), body, name="depthwise_conv2d",
                      tag="depthwise_conv2d_nchw")


def depthwise_conv2d_nhwc(data: Tensor, kernel: Tensor, stride: IntOrPair = 1,
                          padding: IntOrPair = 0, dilation: IntOrPair = 1,
                          out_dtype: str | None = None) -> Tensor:
    """Depthwise convolution channels-last: data [N, H, W, C], kernel [KH, KW, C]."""
    op = "depthwise_conv2d_nhwc"
    check_tensor(data, op, "data")
    check_tensor(kernel, op, "kernel")
    ds, ks = const_shape(data, op), const_shape(kernel, op)
    if len(ds) != 4 or len(ks) != 3 or ks[2] != ds[3]:
        raise ShapeError(f"{op}: data [N, H, W, C] and kernel [KH, KW, C] expected, got {ds} "
                         f"and {ks}")
    sh, sw = pair(stride, "stride", op)
    dh, dw = pair(dilation, "dilation", op)
    pt, pl, pb, pr = padding4(padding, op)
    oh = out_extent(ds[1], ks[0], sh, dh, pt, pb, op)
    ow = out_extent(ds[2], ks[1], sw, dw, pl, pr, op)
    src = pad(data, (0, pt, pl, 0), (0, pb, pr, 0)) if any((pt, pl, pb, pr)) else data
    od = out_dtype or data.dtype
    ry, rx = te.reduce_axis(ks[0], name="ry"), te.reduce_axis(ks[1], name="rx")

    def body(n, y, x, c):
        prod = src[n, window(y, sh, ry, dh), window(x, sw, rx, dw), c].astype(od) \
            * kernel[ry, rx, c].astype(od)
        return te.sum(prod, axis=[ry, rx])
    return te.compute((ds[0], oh, ow, ds[3]), body, name="depthwise_conv2d", tag=op)


def nchw_conv_operands(op):
    """(data, kernel) tensors when compute `op`'s body (a ComputeOp, or a schedule stage's
    ComputeDef) is sum over (rc, ry, rx) of
    data[n, rc, <y and ry>, <x and rx>] * kernel[f, rc, ry, rx] for output axes
    (n, f, y, x), casts allowed (a groups = 1 NCHW convolution, whether conv2d_nchw built it
    or a user wrote it with te.compute); else None. The data operand may be a padding
    compute. Schedules that rely on those roles (the GPU's direct convolution, the CPU
    sketch that vectorizes output channels) recognise a convolution with this."""
    body = getattr(op, "body", None)  # a ComputeOp's list, or a schedule stage's expression
    if isinstance(body, (list, tuple)):
        body = body[0] if len(body) == 1 else None
    if not isinstance(body, E.Reduce) or len(op.axis) != 4 or len(op.reduce_axis) != 3:
        return None
    src = _strip_casts(body.source)
    if not (isinstance(src, E.BinOp) and src.op == "mul"):
        return None
    loads = [_strip_casts(x) for x in (src.a, src.b)]
    if not all(isinstance(x, E.TensorLoad) and len(x.indices) == 4 for x in loads):
        return None
    n, f, y, x = op.axis
    rc, ry, rx = op.reduce_axis
    for d, k in (loads, loads[::-1]):
        if _same(k.indices, (f, rc, ry, rx)) and _same(d.indices[:2], (n, rc)) and \
                _uses(d.indices[2], {y, ry}) and _uses(d.indices[3], {x, rx}):
            return d.tensor, k.tensor
    return None


def _strip_casts(e):
    while isinstance(e, E.Cast):
        e = e.value
    return e


def _same(indices, axes) -> bool:
    return all(_strip_casts(i) is a for i, a in zip(indices, axes))


def _uses(e, allowed: set) -> bool:
    """Whether index `e` reads loop variables, all of them among `allowed` (iter vars)."""
    used = {v for v in E.walk(e) if isinstance(v, E.Var)}
    return bool(used) and used <= allowed
