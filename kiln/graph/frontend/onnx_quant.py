"""ONNX handlers for quantized models: what `onnxruntime.quantization` writes.

In: the converting context, the node's input graph nodes and attributes. Out: graph nodes.
Dynamic quantization (`quantize_dynamic`) writes DynamicQuantizeLinear + MatMulInteger (or
ConvInteger) + Cast + Mul for every MatMul (Conv), and DequantizeLinear after gathers of
quantized embeddings;
static QDQ models write QuantizeLinear / DequantizeLinear pairs around float ops.

MatMulInteger with constant int8 weights becomes a product of uint8 activations and int8
weights accumulated in int32 (the vpdpbusd shape, te/int8_quads.py) minus the activations'
zero point times each weight column's sum, folded at import:
    sum_k (a[k] - za) * w[k, n] = sum_k a[k] * w[k, n] - za * sum_k w[k, n].
Constant weights with a zero point are shifted into int8 at import when they fit; anything
else (int8 activations, non-constant weights) is the plain int32 product, exact but slower.
All arithmetic follows ONNX Runtime's CPU kernels: x / scale (not x * (1 / scale)), rounding
to nearest even, saturation to the output type.
"""

from __future__ import annotations

import numpy as np

from .onnx_math import onnx_dtype

_RANGE = {"uint8": (0, 255), "int8": (-128, 127)}


def _scalar(cx, value, dtype: str):
    return cx.b.const(np.array(value, dtype=dtype), f"{cx.name}_scalar")


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


def _quantize(cx, x, scale, zp_float, dtype: str):
    """saturate(round(x / scale) + zp) as `dtype` (zp_float: the zero point as float32)."""
    lo, hi = _RANGE[dtype]
    q = cx.op("round", [cx.op("divide", [x, scale])])
    if zp_float is not None:
        q = cx.op("add", [q, zp_float])
    return cx.b.cast(cx.op("clip", [q], a_min=float(lo), a_max=float(hi)), dtype, cx.name)


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
    return _quantize(cx, x, scale, zpf, dtype)


def _dequantize_linear(cx, ins, attrs):
    _check_attrs(cx, attrs)
    x, scale = ins[0], ins[1]
    zp = ins[2] if len(ins) > 2 else None
    if x.dtype not in (*_RANGE, "int32"):
        raise cx.fail(f"dequantizing {x.dtype} is not supported (uint8, int8, int32 are)")
    axis = int(attrs.get("axis", 1))
    xi = cx.b.cast(x, "int32", cx.name)
    if zp is not None:
        xi = cx.op("subtract", [xi, cx.b.cast(_per_axis(cx, zp, x, axis), "int32", cx.name)])
    return cx.op("multiply", [cx.b.cast(xi, "float32", cx.name), _per_axis(cx, scale, x, axis)])


def _dynamic_quantize_linear(cx, ins, attrs):
    """(y uint8, scale, zero point) from the range of x widened to include 0."""
    x = ins[0]
    if x.dtype != "float32":
        raise cx.fail(f"input must be float32, got {x.dtype}")
    axes = list(range(len(x.shape)))
    zero = _scalar(cx, 0.0, "float32")
    lo = cx.op("minimum", [cx.op("min", [x], axis=axes, keepdims=False), zero])
    hi = cx.op("maximum", [cx.op("max", [x], axis=axes, keepdims=False), zero])
    span = cx.op("subtract", [hi, lo])
    scale = cx.op("where", [cx.op("equal", [span, zero]), _scalar(cx, 1.0, "float32"),
                            cx.op("divide", [span, _scalar(cx, 255.0, "float32")])])
    zpf = cx.op("round", [cx.op("clip", [cx.op("negative", [cx.op("divide", [lo, scale])])],
                                a_min=0.0, a_max=255.0)])
    y = _quantize(cx, x, scale, zpf, "uint8")
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
    w = cx.b.value(b)
    fast = _int8_weights(cx, w, zb) if a.dtype == "uint8" and len(b.shape) == 2 else None
    if fast is None:
        return _matmul_int32(cx, a, b, za, zb)
    return _product_minus_zero_point(cx, a, fast, za)


def _product_minus_zero_point(cx, a, fast: np.ndarray, za):
    """a (uint8) @ fast (int8 [K, N]) in int32, minus za times each column's sum."""
    out = cx.op("matmul", [a, cx.b.const(fast, f"{cx.name}_weight")])
    if za is None:
        return out
    colsum = fast.astype(np.int64).sum(axis=0).astype(np.int32)
    if isinstance(cx.b.value(za), np.ndarray) and not cx.b.value(za).any():
        return out
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


def _int8_weights(cx, w, zb) -> np.ndarray | None:
    """Constant weights minus their zero point as int8, or None when that does not fit."""
    if w is None:
        return None
    zbv = _zero_point(cx, zb, "weight")
    shifted = w.astype(np.int32)
    if zbv is not None:
        zbv = zbv.astype(np.int32)
        shifted = shifted - (zbv.reshape(1, -1) if zbv.ndim == 1 else zbv)
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
    product (_patchify); otherwise the int32 convolution of the operands minus their zero
    points (zero padding after the shift is ONNX's padding with the zero point), exact but
    without VNNI (the channel reduction is not the weight's last axis)."""
    from .onnx_nn import HANDLERS as NN
    x, w = ins[0], ins[1]
    zx = ins[2] if len(ins) > 2 else None
    zw = ins[3] if len(ins) > 3 else None
    if {x.dtype, w.dtype} - set(_RANGE):
        raise cx.fail(f"operands must be uint8 / int8, got {x.dtype} and {w.dtype}")
    patches = _patchify(cx, x, w, zx, zw, attrs)
    if patches is not None:
        return patches
    x32 = cx.b.cast(x, "int32", cx.name)
    if zx is not None:
        x32 = cx.op("subtract", [x32, cx.b.cast(zx, "int32", cx.name)])
    wv = cx.b.value(w)
    if wv is not None:
        zwv = _zero_point(cx, zw, "weight")
        w32 = wv.astype(np.int32)
        if zwv is not None:  # per output channel: [OC] -> [OC, 1, 1, 1]
            zwv = zwv.astype(np.int32)
            w32 = w32 - (zwv.reshape((-1,) + (1,) * (w32.ndim - 1)) if zwv.ndim else zwv)
        w32 = cx.b.const(w32, f"{cx.name}_weight")
    else:
        w32 = cx.b.cast(w, "int32", cx.name)
        if zw is not None:
            z = cx.b.cast(zw, "int32", cx.name)
            if len(zw.shape) == 1 and zw.shape[0] > 1:
                z = cx.b.reshape(z, (zw.shape[0],) + (1,) * (len(w.shape) - 1), cx.name)
            w32 = cx.op("subtract", [w32, z])
    return NN["Conv"](cx, [x32, w32], attrs)


HANDLERS = {
    "ConvInteger": _conv_integer,
    "QuantizeLinear": _quantize_linear,
    "DequantizeLinear": _dequantize_linear,
    "DynamicQuantizeLinear": _dynamic_quantize_linear,
    "MatMulInteger": _matmul_integer,
}
