"""ONNX handlers for the neural-network ops: products, convolution, pooling and norms.

In: the converting context, input graph nodes and attributes. Out: graph nodes. MatMul stays
`matmul` (the patterns pass turns constant-weight products into `dense`); Gemm with a constant
B becomes `dense` directly, with alpha folded into the weight and beta into the bias.
"""

from __future__ import annotations

import numpy as np

from .common import norm_axis


def _mat_mul(cx, ins, attrs):
    return cx.op("matmul", ins[:2])


def _gemm(cx, ins, attrs):
    a, bmat = ins[0], ins[1]
    c = ins[2] if len(ins) > 2 else None
    alpha, beta = float(attrs.get("alpha", 1.0)), float(attrs.get("beta", 1.0))
    if attrs.get("transA", 0):
        a = cx.op("transpose", [a], axes=(1, 0))
    w = cx.b.value(bmat)
    if w is not None:
        w = w if attrs.get("transB", 0) else w.T
        if alpha != 1.0:
            w = w * np.asarray(alpha, w.dtype)
        inputs = [a, cx.b.const(np.ascontiguousarray(w), f"{cx.name}_weight")]
        bias = cx.b.value(c) if c is not None and beta != 0 else None
        if bias is not None and bias.size == w.shape[0] and bias.ndim <= 2:
            inputs.append(cx.b.const((bias * np.asarray(beta, bias.dtype)).reshape(-1),
                                     f"{cx.name}_bias"))
            c = None
        out = cx.op("dense", inputs)
    else:
        if attrs.get("transB", 0):
            bmat = cx.op("transpose", [bmat], axes=(1, 0))
        out = cx.op("matmul", [a, bmat])
        if alpha != 1.0:
            out = cx.op("multiply", [out, cx.b.const(np.array(alpha, out.dtype), "alpha")])
    if c is None or beta == 0:
        return out
    if beta != 1.0:
        c = cx.op("multiply", [c, cx.b.const(np.array(beta, c.dtype), "beta")])
    return cx.op("add", [out, c])


def _same_pads(cx, attrs, size, kernel, strides, dilations) -> list:
    mode = attrs.get("auto_pad", "NOTSET")
    if mode in ("NOTSET", ""):
        pads = list(attrs.get("pads", [0] * 4))
        return [pads[0], pads[1], pads[2], pads[3]]
    if mode == "VALID":
        return [0, 0, 0, 0]
    lo, hi = [], []
    for n, k, s, d in zip(size, kernel, strides, dilations):
        total = max((-(-n // s) - 1) * s + (k - 1) * d + 1 - n, 0)
        small, big = total // 2, total - total // 2
        lo.append(big if mode == "SAME_LOWER" else small)
        hi.append(small if mode == "SAME_LOWER" else big)
    return [lo[0], lo[1], hi[0], hi[1]]


def _spatial(cx, ins, attrs, kernel) -> dict:
    if len(ins[0].shape) != 4:
        raise cx.fail(f"only 2-d (NCHW) inputs are supported, got rank {len(ins[0].shape)}")
    strides = list(attrs.get("strides", [1, 1]))
    dilations = list(attrs.get("dilations", [1, 1]))
    pads = _same_pads(cx, attrs, ins[0].shape[2:], kernel, strides, dilations)
    return {"strides": strides, "padding": pads, "dilation": dilations}


def _conv(cx, ins, attrs):
    w = ins[1]
    if len(w.shape) != 4:
        raise cx.fail("only 2-d convolutions are supported")
    geo = _spatial(cx, ins, attrs, w.shape[2:])
    inputs = [ins[0], w] + ([ins[2]] if len(ins) > 2 and ins[2] is not None else [])
    return cx.op("conv2d", inputs, groups=int(attrs.get("group", 1)), **geo)


def _batch_norm(cx, ins, attrs):
    if attrs.get("training_mode", 0):
        raise cx.fail("training_mode=1 is not supported (inference only)")
    out = cx.op("batch_norm", ins[:5], epsilon=float(attrs.get("epsilon", 1e-5)))
    return [out, None, None]


def _pool(op: str):
    def handler(cx, ins, attrs):
        kernel = list(attrs["kernel_shape"])
        if len(kernel) != 2:
            raise cx.fail("only 2-d pooling is supported")
        geo = _spatial(cx, ins, attrs, kernel)
        if geo.pop("dilation") != [1, 1]:
            raise cx.fail("dilated pooling is not supported")
        extra = {}
        if op == "avg_pool2d":
            extra["count_include_pad"] = bool(attrs.get("count_include_pad", 0))
        out = cx.op(op, [ins[0]], pool_size=kernel, ceil_mode=bool(attrs.get("ceil_mode", 0)),
                    **geo, **extra)
        return [out, None]
    handler.__name__ = f"_onnx_{op}"
    return handler


def _global_average_pool(cx, ins, attrs):
    if len(ins[0].shape) != 4:
        raise cx.fail("only NCHW inputs are supported")
    return cx.op("global_avg_pool2d", [ins[0]])


def _global_max_pool(cx, ins, attrs):
    if len(ins[0].shape) != 4:
        raise cx.fail("only NCHW inputs are supported")
    return cx.op("max", [ins[0]], axis=[2, 3], keepdims=True)


def _layer_normalization(cx, ins, attrs):
    x = ins[0]
    rank = len(x.shape)
    axis = norm_axis(attrs.get("axis", -1), rank)
    axes = list(range(axis, rank))
    pshape = tuple(x.shape[axis:])
    gamma = cx.b.reshape(ins[1], pshape, f"{cx.name}_scale")
    if len(ins) > 2 and ins[2] is not None:
        beta = cx.b.reshape(ins[2], pshape, f"{cx.name}_bias")
    else:
        beta = cx.b.const(np.zeros(pshape, x.dtype), f"{cx.name}_bias")
    out = cx.op("layer_norm", [x, gamma, beta], axis=axes[0] if len(axes) == 1 else axes,
                epsilon=float(attrs.get("epsilon", 1e-5)))
    return [out, None, None]


HANDLERS = {
    "MatMul": _mat_mul, "Gemm": _gemm, "Conv": _conv, "BatchNormalization": _batch_norm,
    "MaxPool": _pool("max_pool2d"), "AveragePool": _pool("avg_pool2d"),
    "GlobalAveragePool": _global_average_pool, "GlobalMaxPool": _global_max_pool,
    "LayerNormalization": _layer_normalization,
}
