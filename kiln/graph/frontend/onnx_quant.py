"""ONNX handlers for quantized models: what `onnxruntime.quantization` writes.

In: the converting context, the node's input graph nodes and attributes. Out: graph nodes.
Dynamic quantization (`quantize_dynamic`) writes DynamicQuantizeLinear + MatMulInteger (or
ConvInteger) + Cast + Mul for every MatMul (Conv), and DequantizeLinear after gathers of
quantized embeddings;
static QDQ models write QuantizeLinear / DequantizeLinear pairs around float ops.

MatMulInteger with constant int8 weights becomes a product of uint8 activations and int8
weights accumulated in int32 (the vpdpbusd shape, te/dot_groups.py) minus the activations'
zero point times each weight column's sum, folded at import:
    sum_k (a[k] - za) * w[k, n] = sum_k a[k] * w[k, n] - za * sum_k w[k, n].
Constant weights with a zero point are shifted into int8 at import when they fit; anything
else (int8 activations, non-constant weights) is the plain int32 product, exact but slower.
All arithmetic follows ONNX Runtime's CPU kernels: x / scale (not x * (1 / scale)), rounding
to nearest even, saturation to the output type (the formulas shared with kiln's own
quantization, graph/passes/int8.py).
"""

from __future__ import annotations

import numpy as np

from ..passes.int8 import RANGE as _RANGE
from ..passes.int8 import dynamic_uint8, quantize
from .onnx_math import onnx_dtype


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
    w = cx.b.value(b)
    fast = _int8_weights(cx, w, zb) if a.dtype == "uint8" and len(b.shape) == 2 else None
    if fast is None:
        return _matmul_int32(cx, a, b, za, zb)
    return _product_minus_zero_point(cx, a, fast, za)


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


HANDLERS = {
    "ConvInteger": _conv_integer,
    "QuantizeLinear": _quantize_linear,
    "DequantizeLinear": _dequantize_linear,
    "DynamicQuantizeLinear": _dynamic_quantize_linear,
    "MatMulInteger": _matmul_integer,
}
