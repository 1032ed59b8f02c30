"""ONNX handlers for quantized models: what `onnxruntime.quantization` writes.

In: the converting context, the node's input graph nodes and attributes. Out: graph nodes.
Dynamic quantization (`quantize_dynamic`) writes DynamicQuantizeLinear + MatMulInteger (or
ConvInteger) + Cast + Mul for every MatMul (Conv), and DequantizeLinear after gathers of
quantized embeddings;
static quantization (`quantize_static`, QDQ format: its default) writes QuantizeLinear /
DequantizeLinear pairs around float ops; its QOperator format writes QLinearMatMul /
QLinearConv (and Microsoft-domain ops kiln does not import).

A MatMul / Gemm (QDQ_PRODUCTS) whose operands are both DequantizeLinear outputs, the weight
a constant, is imported as the integer product it stands for, scaled once:
    (qa - za) sa @ (qw - zw) sw = sa sw[n] * (qa @ (qw - zw) - za colsum(qw - zw)),
int8 activations moved to uint8 by adding 128 to them and to their zero point. The float
dequantized tensors are then dead (a QDQ pair's float copy costs nothing).
A Conv of that kind (2-d, one group, input channels a multiple of 16) becomes the same
product over its windows, channels-last: rows = im2col(pad(transpose(q, NHWC), zero
point)) (a 1x1 stride-1 window is the transposed input itself), the weight [KH*KW*C, OC]
in int8, the scale and bias applied on the [pixels, OC] result, which is then viewed NCHW;
a patch embedding (stride = kernel, any channel count) is the product over its patches.
The transposes cancel between consecutive quantized convolutions (graph/passes/simplify.py
pulls them through the elementwise QuantizeLinear / DequantizeLinear / ReLU / Add between
them), so a quantized network runs channels-last from its first such convolution to its
pooling. Other convolutions (depthwise, a 3-channel stem) run in float32 on the
dequantized operands, exactly as the model says.

MatMulInteger with constant int8 weights becomes a product of uint8 activations and int8
weights accumulated in int32 (the vpdpbusd shape, te/dot_groups.py) minus the activations'
zero point times each weight column's sum, folded at import:
    sum_k (a[k] - za) * w[k, n] = sum_k a[k] * w[k, n] - za * sum_k w[k, n].
Constant weights with a zero point are shifted into int8 at import when they fit, int8
activations into uint8 (plus 128, and their zero point too); anything else (non-constant
weights) is the plain int32 product, exact but slower.
All arithmetic follows ONNX Runtime's CPU kernels: x / scale (not x * (1 / scale)), rounding
to nearest even, saturation to the output type (the formulas shared with kiln's own
quantization, graph/passes/int8.py).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ...topi.nn.im2col import im2col_shape
from ..ir import Node
from ..passes.int8 import RANGE as _RANGE
from ..passes.int8 import dynamic_uint8, quantize
from .onnx_math import onnx_dtype
from .onnx_nn import gemm_epilogue


def _per_axis(cx, v, x, axis: int):
    """A per-axis scale / zero point shaped to broadcast along `axis` of x."""
    if len(v.shape) == 0 or (len(v.shape) == 1 and v.shape[0] == 1):
        return cx.b.reshape(v, (), cx.name) if v.shape else v
    rank = len(x.shape)
    axis = axis % rank
    if len(v.shape) != 1 or v.shape[0] != x.shape[axis]:
        raise cx.fail(f"scale / zero point of shape {list(v.shape)} does not match axis "
                      f"{axis} of the input {list(x.shape)} (blocked quantization is not "
                      "supported)")
    return cx.b.reshape(v, (v.shape[0],) + (1,) * (rank - 1 - axis), cx.name)


def _check_attrs(cx, attrs) -> None:
    if int(attrs.get("block_size", 0)):
        raise cx.fail("blocked quantization (block_size) is not supported")


def _quantize_linear(cx, ins, attrs):
    _check_attrs(cx, attrs)
    x, scale = ins[0], ins[1]
    zp = ins[2] if len(ins) > 2 else None
    dtype = zp.dtype if zp is not None else \
        (onnx_dtype(int(attrs["output_dtype"])) if attrs.get("output_dtype") else "uint8")
    if dtype not in _RANGE:
        raise cx.fail(f"quantizing to {dtype} is not supported (uint8 and int8 are)")
    axis = int(attrs.get("axis", 1))
    scale = _per_axis(cx, scale, x, axis)
    zpf = None if zp is None else \
        cx.b.cast(_per_axis(cx, zp, x, axis), "float32", cx.name)
    return quantize(cx.op, x, scale, zpf, dtype)


@dataclass(frozen=True)
class Dequantized:
    """What a DequantizeLinear reads: the quantized tensor, its scale and zero point (scalars,
    or one per index of `axis`)."""

    q: Node
    scale: Node
    zero: Node | None
    axis: int


def _dequantize_linear(cx, ins, attrs):
    _check_attrs(cx, attrs)
    d = Dequantized(ins[0], ins[1], ins[2] if len(ins) > 2 else None,
                    int(attrs.get("axis", 1)))
    y = _dequantize(cx, d)
    cx.dequantized[y.uid] = d
    return y


def _dequantize(cx, d: Dequantized):
    x = d.q
    if x.dtype not in (*_RANGE, "int32"):
        raise cx.fail(f"dequantizing {x.dtype} is not supported (uint8, int8, int32 are)")
    xi = cx.b.cast(x, "int32", cx.name)
    if d.zero is not None:
        xi = cx.op("subtract", [xi, cx.b.cast(_per_axis(cx, d.zero, x, d.axis), "int32",
                                              cx.name)])
    return cx.op("multiply", [cx.b.cast(xi, "float32", cx.name),
                              _per_axis(cx, d.scale, x, d.axis)])


def _dynamic_quantize_linear(cx, ins, attrs):
    """(y uint8, scale, zero point) from the range of x widened to include 0."""
    x = ins[0]
    if x.dtype != "float32":
        raise cx.fail(f"input must be float32, got {x.dtype}")
    def const(v):
        return cx.b.const(np.array(v, np.float32), f"{cx.name}_scalar")
    y, scale, zpf = dynamic_uint8(cx.op, const, x, list(range(len(x.shape))), False)
    return [y, scale, cx.b.cast(zpf, "uint8", cx.name)]


def _zero_point(cx, zp, what: str):
    """A zero point's constant value (None when absent); fails when it is not a constant."""
    return None if zp is None else cx.need(zp, f"the {what} zero point")


def _matmul_integer(cx, ins, attrs):
    a, b = ins[0], ins[1]
    za = ins[2] if len(ins) > 2 else None
    zb = ins[3] if len(ins) > 3 else None
    if {a.dtype, b.dtype} - set(_RANGE):
        raise cx.fail(f"operands must be uint8 / int8, got {a.dtype} and {b.dtype}")
    fast = _int8_weights(cx, cx.b.value(b), zb) if len(b.shape) == 2 else None
    if fast is None:
        return _matmul_int32(cx, a, b, za, zb)
    qa, za = _as_uint8(cx, a, za)
    return _product_minus_zero_point(cx, qa, fast, za)


def _product_minus_zero_point(cx, a, fast: np.ndarray, za):
    """a (uint8) @ fast (int8 [K, N]) in int32, minus za times each column's sum."""
    out = cx.op("matmul", [a, cx.b.const(fast, f"{cx.name}_weight")])
    zv = None if za is None else cx.b.value(za)
    if za is None or (zv is not None and not zv.any()):
        return out
    colsum = fast.astype(np.int64).sum(axis=0).astype(np.int32)
    za32 = cx.b.cast(_row_zero_point(cx, za, a), "int32", cx.name)
    return cx.op("subtract", [out, cx.op("multiply", [za32, cx.b.const(colsum,
                                                                         f"{cx.name}_colsum")])])


def _patchify(cx, x, w, zx, zw, attrs):
    """A 2-d ConvInteger whose stride is its kernel (no padding, dilation or groups: ViT's
    patch embedding) as a product over patches: x's non-overlapping k x k windows become rows
    (two uint8 copies), the filters int8 columns, and the product the uint8 x int8 one of
    MatMulInteger (vpdpbusd; the int32 convolution took 4.5 ms of ViT-B/16's 80). None when
    the convolution is not of that kind."""
    wv = cx.b.value(w)
    if x.dtype != "uint8" or wv is None or len(x.shape) != 4 or wv.ndim != 4:
        return None
    oc, c, kh, kw = wv.shape
    n, _, hh, ww = x.shape
    if list(attrs.get("strides", [1, 1])) != [kh, kw] or any(attrs.get("pads", [])) or \
            attrs.get("auto_pad", "NOTSET") not in ("NOTSET", "VALID") or \
            any(d != 1 for d in attrs.get("dilations", [1, 1])) or \
            int(attrs.get("group", 1)) != 1 or hh % kh or ww % kw or (c * kh * kw) % 4:
        return None
    fast = _int8_weights(cx, wv.reshape(oc, -1).T, zw)  # [C*kh*kw, OC]
    if fast is None:
        return None
    ph, pw = hh // kh, ww // kw
    rows = cx.b.reshape(x, (n, c, ph, kh, pw, kw), cx.name)
    rows = cx.op("transpose", [rows], axes=(0, 2, 4, 1, 3, 5))
    rows = cx.b.reshape(rows, (n * ph * pw, c * kh * kw), cx.name)
    out = _product_minus_zero_point(cx, rows, fast, zx)
    out = cx.b.reshape(out, (n, ph, pw, oc), cx.name)
    return cx.op("transpose", [out], axes=(0, 3, 1, 2))


def _shifted(cx, w: np.ndarray, zw, axis: int) -> np.ndarray:
    """Constant weights minus their zero point (a scalar, or one per index of `axis`), int32."""
    zv = _zero_point(cx, zw, "weight")
    if zv is None:
        return w.astype(np.int32)
    zv = zv.astype(np.int32)
    if zv.ndim:
        zv = np.expand_dims(zv.reshape(-1), [d for d in range(w.ndim) if d != axis % w.ndim])
    return w.astype(np.int32) - zv


def _int8_weights(cx, w, zb) -> np.ndarray | None:
    """Constant [K, N] weights minus their zero point (per column) as int8, or None when they
    are not constant or do not fit."""
    if w is None:
        return None
    shifted = _shifted(cx, w, zb, 1)
    if shifted.min(initial=0) < -128 or shifted.max(initial=0) > 127:
        return None
    return shifted.astype(np.int8)


def _row_zero_point(cx, za, a):
    """The activation zero point: a scalar, or one per row of a ([M] -> [M, 1])."""
    if len(za.shape) == 0 or (len(za.shape) == 1 and za.shape[0] == 1):
        return cx.b.reshape(za, (), cx.name) if za.shape else za
    return cx.b.reshape(za, (za.shape[0], 1), cx.name)


def _matmul_int32(cx, a, b, za, zb):
    """The general case: both operands widened to int32 and shifted, then multiplied."""
    def shifted(x, z, per_column: bool):
        x32 = cx.b.cast(x, "int32", cx.name)
        if z is None:
            return x32
        z32 = cx.b.cast(z, "int32", cx.name)
        if len(z.shape) == 1 and z.shape[0] > 1 and not per_column:
            z32 = cx.b.reshape(z32, (z.shape[0], 1), cx.name)
        return cx.op("subtract", [x32, z32])
    return cx.op("matmul", [shifted(a, za, False), shifted(b, zb, True)])


def _conv_integer(cx, ins, attrs):
    """ConvInteger (quantize_dynamic's convolutions): a patch embedding as a uint8 x int8
    product (_patchify); one group over channels a multiple of 16 as the channels-last
    product over the windows (_window_product, as the QDQ convolutions); otherwise the int32
    convolution of the operands minus their zero points (zero padding after the shift is
    ONNX's padding with the zero point), exact but without VNNI (the channel reduction is
    not the weight's last axis)."""
    from .onnx_nn import HANDLERS as NN
    x, w = ins[0], ins[1]
    zx = ins[2] if len(ins) > 2 else None
    zw = ins[3] if len(ins) > 3 else None
    if {x.dtype, w.dtype} - set(_RANGE):
        raise cx.fail(f"operands must be uint8 / int8, got {x.dtype} and {w.dtype}")
    patches = _patchify(cx, x, w, zx, zw, attrs)
    if patches is not None:
        return patches
    wv = cx.b.value(w)
    if wv is not None:
        qx, zq = _as_uint8(cx, x, zx)
        found = _window_product(cx, qx, zq, wv, zw, attrs)
        if found is not None:
            acc, nhwc = found
            return cx.op("transpose", [cx.b.reshape(acc, nhwc, cx.name)], axes=(0, 3, 1, 2))
    x32 = cx.b.cast(x, "int32", cx.name)
    if zx is not None:
        x32 = cx.op("subtract", [x32, cx.b.cast(zx, "int32", cx.name)])
    wv = cx.b.value(w)
    if wv is not None:  # a zero point per output channel: axis 0
        w32 = cx.b.const(_shifted(cx, wv, zw, 0), f"{cx.name}_weight")
    else:
        w32 = cx.b.cast(w, "int32", cx.name)
        if zw is not None:
            z = cx.b.cast(zw, "int32", cx.name)
            if len(zw.shape) == 1 and zw.shape[0] > 1:
                z = cx.b.reshape(z, (zw.shape[0],) + (1,) * (len(w.shape) - 1), cx.name)
            w32 = cx.op("subtract", [w32, z])
    return NN["Conv"](cx, [x32, w32], attrs)


def _is_scalar(v) -> bool:
    return v is None or int(np.prod(v.shape)) == 1


def _as_uint8(cx, q, z):
    """(q, zero point) with int8 q moved to uint8 (q + 128, zero point + 128, as int32)."""
    if q.dtype == "uint8":
        return q, z
    shift = cx.b.const(np.array(128, np.int32), f"{cx.name}_128")

    def plus128(v):
        return cx.op("add", [cx.b.cast(v, "int32", cx.name), shift])
    zero = plus128(cx.b.reshape(z, (), cx.name)) if z is not None else shift
    return cx.b.cast(plus128(q), "uint8", cx.name), zero


def _product_scale(cx, x: Dequantized, w: Dequantized):
    """x's scalar scale times w's (a scalar, or one per output channel: [OC])."""
    return cx.op("multiply", [cx.b.reshape(x.scale, (), cx.name),
                              cx.b.reshape(w.scale, (-1,) if w.scale.shape else (), cx.name)])


def _int8_linear(cx, a: Dequantized, w: Dequantized, n_axis: int):
    """a @ w for dequantized operands as the uint8 x int8 product (module docstring), w a
    constant [K, N] (n_axis 1) or [N, K] (n_axis 0, Gemm's transB); None when the operands
    do not allow it (a scale or zero point per row of a, a weight scale per K, a constant
    that does not fit int8 after its zero point)."""
    wv = cx.b.value(w.q)
    if wv is None or wv.ndim != 2 or a.q.dtype not in _RANGE or w.q.dtype not in _RANGE or \
            not _is_scalar(a.scale) or not _is_scalar(a.zero):
        return None
    if not (_is_scalar(w.scale) and _is_scalar(w.zero)) and w.axis % 2 != n_axis:
        return None
    fast = _int8_weights(cx, wv if n_axis == 1 else wv.T, w.zero)
    if fast is None:
        return None
    qa, za = _as_uint8(cx, a.q, a.zero)
    acc = _product_minus_zero_point(cx, qa, fast, za)
    return cx.op("multiply", [cx.b.cast(acc, "float32", cx.name), _product_scale(cx, a, w)])


def _dequantized(cx, ins, count: int) -> list | None:
    got = [cx.dequantized.get(x.uid) if x is not None else None for x in ins[:count]]
    return None if any(d is None for d in got) else got


def _qdq_matmul(cx, ins, attrs):
    d = _dequantized(cx, ins, 2)
    return None if d is None else _int8_linear(cx, d[0], d[1], 1)


def _qdq_gemm(cx, ins, attrs):
    d = _dequantized(cx, ins, 2)
    if d is None or attrs.get("transA", 0):
        return None
    y = _int8_linear(cx, d[0], d[1], 0 if attrs.get("transB", 0) else 1)
    if y is None:
        return None
    return gemm_epilogue(cx, y, ins[2] if len(ins) > 2 else None,
                         float(attrs.get("alpha", 1.0)), float(attrs.get("beta", 1.0)))


def _requantize(cx, y, scale, zero):
    """QuantizeLinear of y with the QLinear ops' output scale and zero point."""
    return _quantize_linear(cx, [y, scale] + ([zero] if zero is not None else []), {})


def _qlinear_matmul(cx, ins, attrs):
    """QLinearMatMul: a per tensor or per row, b per tensor or per column, requantized."""
    a = Dequantized(ins[0], ins[1], ins[2], 0)
    b = Dequantized(ins[3], ins[4], ins[5], -1)
    y = _int8_linear(cx, a, b, 1)
    if y is None:
        y = cx.op("matmul", [_dequantize(cx, a), _dequantize(cx, b)])
    return _requantize(cx, y, ins[6], ins[7] if len(ins) > 7 else None)


def _window_rows(cx, q, zero, kernel, geo):
    """(rows [N*OH*OW, KH*KW*C] uint8, (N, OH, OW)) of the uint8 NCHW input q, padded with
    its zero point (a scalar; one known at run time only, DynamicQuantizeLinear's, is put
    where a constant mask says the padding is)."""
    n, c, h, w = q.shape
    (t, left, b, r), (sh, sw), (dh, dw) = geo["padding"], geo["strides"], geo["dilation"]
    xt = cx.op("transpose", [q], axes=(0, 2, 3, 1))
    if t or left or b or r:
        zv = None if zero is None else cx.b.value(zero)
        xt = cx.op("pad", [xt], pad_width=((0, 0), (t, b), (left, r), (0, 0)),
                   pad_value=float(0 if zv is None else np.asarray(zv).reshape(())))
        if zero is not None and zv is None:
            inside = np.zeros((1, h + t + b, w + left + r, 1), bool)
            inside[:, t:t + h, left:left + w] = True
            fill = cx.b.cast(cx.b.reshape(zero, (), cx.name), "uint8", cx.name)
            xt = cx.op("where", [cx.b.const(inside, f"{cx.name}_inside"), xt, fill])
    kh, kw = kernel
    if (kh, kw, sh, sw) == (1, 1, 1, 1):
        return cx.b.reshape(xt, (n * h * w, c), cx.name), (n, h, w)
    oh, ow, _ = im2col_shape(xt.shape, (kh, kw), (sh, sw), (dh, dw))
    return cx.op("im2col", [xt], kernel=[kh, kw], strides=[sh, sw], dilation=[dh, dw]), \
        (n, oh, ow)


def _qdq_conv(cx, ins, attrs):
    """A Conv of dequantized operands as the channels-last uint8 x int8 product (module
    docstring), or None."""
    d = _dequantized(cx, ins, 2)
    if d is None:
        return None
    return _int8_conv(cx, d[0], d[1], ins[2] if len(ins) > 2 else None, attrs)


def _int8_conv(cx, x: Dequantized, w: Dequantized, bias, attrs):
    """conv(x, w) + bias (float32 [OC] or None) for dequantized operands as the
    channels-last uint8 x int8 product, or None when they do not allow it."""
    wv = cx.b.value(w.q)
    if wv is None or wv.ndim != 4 or x.q.dtype not in _RANGE or w.q.dtype not in _RANGE or \
            not _is_scalar(x.scale) or not _is_scalar(x.zero) or \
            (not (_is_scalar(w.scale) and _is_scalar(w.zero)) and w.axis % 4 != 0):
        return None
    oc = wv.shape[0]
    scale = _product_scale(cx, x, w)
    qx, zx = _as_uint8(cx, x.q, x.zero)
    if x.q.shape[1] % 16:  # a patch embedding still is a product over whole patches
        acc = _patchify(cx, qx, w.q, zx, w.zero, attrs)
        if acc is None:
            return None
        y = cx.op("multiply", [cx.b.cast(acc, "float32", cx.name),
                               cx.b.reshape(scale, scale.shape + (1, 1), cx.name)])
        return y if bias is None else \
            cx.op("add", [y, cx.b.reshape(bias, (oc, 1, 1), cx.name)])
    found = _window_product(cx, qx, zx, wv, w.zero, attrs)
    if found is None:
        return None
    acc, nhwc = found
    y = cx.op("multiply", [cx.b.cast(acc, "float32", cx.name), scale])
    if bias is not None:
        y = cx.op("add", [y, bias])
    return cx.op("transpose", [cx.b.reshape(y, nhwc, cx.name)], axes=(0, 3, 1, 2))


def _window_product(cx, qx, zx, wv: np.ndarray, zw, attrs):
    """(int32 [N*OH*OW, OC] = windows of the uint8 NCHW qx times the constant weight wv
    [OC, C, KH, KW] less its zero points zw, minus zx times the column sums; (N, OH, OW, OC))
    for a 2-d convolution of one group over channels a multiple of 16, else None."""
    from .onnx_nn import _spatial
    if len(qx.shape) != 4 or wv.ndim != 4 or int(attrs.get("group", 1)) != 1 or \
            qx.shape[1] % 16 or qx.shape[1] != wv.shape[1]:
        return None
    oc = wv.shape[0]
    fast = _int8_weights(cx, wv.transpose(2, 3, 1, 0).reshape(-1, oc), zw)
    if fast is None:
        return None
    rows, (n, oh, ow) = _window_rows(cx, qx, zx, wv.shape[2:],
                                     _spatial(cx, [qx], attrs, wv.shape[2:]))
    return _product_minus_zero_point(cx, rows, fast, zx), (n, oh, ow, oc)


def _qlinear_conv(cx, ins, attrs):
    """QLinearConv: the int32 bias has the scale x_scale * w_scale and no zero point."""
    from .onnx_nn import HANDLERS as NN
    x = Dequantized(ins[0], ins[1], ins[2], 1)
    w = Dequantized(ins[3], ins[4], ins[5], 0)
    bias = ins[8] if len(ins) > 8 else None
    if bias is not None:
        bias = _dequantize(cx, Dequantized(bias, _product_scale(cx, x, w), None, 0))
    y = _int8_conv(cx, x, w, bias, attrs)
    if y is None:
        y = NN["Conv"](cx, [_dequantize(cx, x), _dequantize(cx, w)] +
                       ([bias] if bias is not None else []), attrs)
    return _requantize(cx, y, ins[6], ins[7] if len(ins) > 7 else None)


QDQ_PRODUCTS = {"MatMul": _qdq_matmul, "Gemm": _qdq_gemm, "Conv": _qdq_conv}

HANDLERS = {
    "QLinearConv": _qlinear_conv,
    "QLinearMatMul": _qlinear_matmul,
    "ConvInteger": _conv_integer,
    "QuantizeLinear": _quantize_linear,
    "DequantizeLinear": _dequantize_linear,
    "DynamicQuantizeLinear": _dynamic_quantize_linear,
    "MatMulInteger": _matmul_integer,
}
