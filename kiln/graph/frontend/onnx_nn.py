"""ONNX handlers for the neural-network ops: products, convolution, pooling and norms.

In: the converting context, input graph nodes and attributes. Out: graph nodes. MatMul stays
`matmul` (the patterns pass turns constant-weight products into `dense`); Gemm with a constant
B becomes `dense` directly, with alpha folded into the weight and beta into the bias. 1-d and
transposed convolutions and Resize are composites of graph ops (see lowering).
"""

from __future__ import annotations

import numpy as np

from .common import norm_axes, norm_axis
from .lowering import conv_nd, conv_transpose, resize_axis


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
        return gemm_epilogue(cx, cx.op("dense", inputs), c, 1.0, beta)
    if attrs.get("transB", 0):
        bmat = cx.op("transpose", [bmat], axes=(1, 0))
    return gemm_epilogue(cx, cx.op("matmul", [a, bmat]), c, alpha, beta)


def gemm_epilogue(cx, out, c, alpha: float, beta: float):
    """alpha * out + beta * c (c may be None) of a Gemm whose product is `out`."""
    if alpha != 1.0:
        out = cx.op("multiply", [out, cx.b.const(np.array(alpha, out.dtype), "alpha")])
    if c is None or beta == 0:
        return out
    if beta != 1.0:
        c = cx.op("multiply", [c, cx.b.const(np.array(beta, c.dtype), "beta")])
    return cx.op("add", [out, c])


def _same_pads(cx, attrs, size, kernel, strides, dilations) -> list:
    """Pads as [lo..., hi...] from `pads` or auto_pad (SAME_UPPER puts the odd one last)."""
    nd = len(kernel)
    mode = attrs.get("auto_pad", "NOTSET")
    if mode in ("NOTSET", ""):
        return list(attrs.get("pads", [0] * (2 * nd)))
    if mode == "VALID":
        return [0] * (2 * nd)
    lo, hi = [], []
    for n, k, s, d in zip(size, kernel, strides, dilations):
        total = max((-(-n // s) - 1) * s + (k - 1) * d + 1 - n, 0)
        small, big = total // 2, total - total // 2
        lo.append(big if mode == "SAME_LOWER" else small)
        hi.append(small if mode == "SAME_LOWER" else big)
    return lo + hi


def _spatial(cx, ins, attrs, kernel) -> dict:
    nd = len(kernel)
    if len(ins[0].shape) != nd + 2:
        raise cx.fail(f"input rank {len(ins[0].shape)} does not match a {nd}-d kernel")
    strides = list(attrs.get("strides", [1] * nd))
    dilations = list(attrs.get("dilations", [1] * nd))
    pads = _same_pads(cx, attrs, ins[0].shape[2:], kernel, strides, dilations)
    return {"strides": strides, "padding": pads, "dilation": dilations}


def _conv(cx, ins, attrs):
    w = ins[1]
    if len(w.shape) not in (3, 4):
        raise cx.fail("only 1-d and 2-d convolutions are supported")
    geo = _spatial(cx, ins, attrs, w.shape[2:])
    bias = ins[2] if len(ins) > 2 and ins[2] is not None else None
    return conv_nd(cx.b, ins[0], w, bias, geo["strides"], geo["padding"], geo["dilation"],
                   int(attrs.get("group", 1)), cx.name)


def _conv_transpose(cx, ins, attrs):
    x, w = ins[0], cx.need(ins[1], "a ConvTranspose weight")
    nd = w.ndim - 2
    if nd not in (1, 2) or len(x.shape) != nd + 2:
        raise cx.fail("only 1-d and 2-d transposed convolutions are supported")
    kernel = list(w.shape[2:])
    strides = list(attrs.get("strides", [1] * nd))
    dil = list(attrs.get("dilations", [1] * nd))
    out_pad = list(attrs.get("output_padding", [0] * nd))
    pads = list(attrs.get("pads", [0] * (2 * nd)))
    shape = attrs.get("output_shape")
    mode = attrs.get("auto_pad", "NOTSET")
    if shape is not None or mode in ("SAME_UPPER", "SAME_LOWER"):
        want = list(shape)[-nd:] if shape is not None else \
            [n * s for n, s in zip(x.shape[2:], strides)]
        total = [s * (n - 1) + op + (k - 1) * d + 1 - o for n, s, op, k, d, o in
                 zip(x.shape[2:], strides, out_pad, kernel, dil, want)]
        # SAME_UPPER puts the odd padding at the end, anything else at the start
        first = [t // 2 if mode == "SAME_UPPER" else t - t // 2 for t in total]
        pads = first + [t - f for t, f in zip(total, first)]
    elif mode == "VALID":
        pads = [0] * (2 * nd)
    bias = ins[2] if len(ins) > 2 and ins[2] is not None else None
    return conv_transpose(cx.b, x, w, bias, strides, pads, dil, out_pad,
                          int(attrs.get("group", 1)), cx.name)


def _resize(cx, ins, attrs):
    x = ins[0]
    rank = len(x.shape)
    method = attrs.get("mode", "nearest")
    if method not in ("nearest", "linear", "cubic"):
        raise cx.fail(f"mode {method!r} is not supported (nearest, linear and cubic are)")
    if attrs.get("antialias", 0):
        raise cx.fail("antialias=1 is not supported")
    legacy = cx.node.op_type == "Upsample" or cx.opset < 11  # out[i] = in[floor(i / scale)]
    coord = attrs.get("coordinate_transformation_mode",
                      "asymmetric" if legacy else "half_pixel")
    rule = attrs.get("nearest_mode", "floor" if legacy else "round_prefer_floor")
    if coord == "tf_crop_and_resize":
        raise cx.fail("coordinate_transformation_mode 'tf_crop_and_resize' is not supported")
    axes = norm_axes(attrs.get("axes", range(rank)), rank)
    scales = sizes = None
    if "scales" in attrs:  # Upsample-7
        scales = np.asarray(attrs["scales"], np.float32)
    elif cx.opset < 11:
        scales = cx.need(ins[1], "scales").reshape(-1)
    else:
        if len(ins) > 3 and ins[3] is not None and len(ins[3].shape) and ins[3].shape[0]:
            sizes = cx.need(ins[3], "sizes").reshape(-1)
        elif len(ins) > 2 and ins[2] is not None:
            scales = cx.need(ins[2], "scales").reshape(-1)
    out = x
    for k, a in enumerate(axes):
        size = x.shape[a]
        new = int(sizes[k]) if sizes is not None else int(np.floor(size * float(scales[k])))
        scale = float(scales[k]) if scales is not None else new / size
        if new == size and scale == 1.0:
            continue
        out = resize_axis(cx.b, out, a, new, scale, method, coord, rule, cx.name,
                          float(attrs.get("cubic_coeff_a", -0.75)),
                          bool(attrs.get("exclude_outside", 0)))
    return out


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
    """NCHW: the pooling op; other ranks (N, C, L... : AdaptiveAvgPool1d, 3-D) a mean."""
    x = ins[0]
    if len(x.shape) < 3:
        raise cx.fail(f"the input needs a channel axis and spatial axes, got {list(x.shape)}")
    if len(x.shape) == 4:
        return cx.op("global_avg_pool2d", [x])
    return cx.op("mean", [x], axis=list(range(2, len(x.shape))), keepdims=True)


def _global_max_pool(cx, ins, attrs):
    x = ins[0]
    if len(x.shape) < 3:
        raise cx.fail(f"the input needs a channel axis and spatial axes, got {list(x.shape)}")
    return cx.op("max", [x], axis=list(range(2, len(x.shape))), keepdims=True)


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


def _instance_normalization(cx, ins, attrs):
    x = ins[0]
    return cx.b.group_norm(x, x.shape[1], ins[1], ins[2], float(attrs.get("epsilon", 1e-5)),
                           cx.name)


def _group_normalization(cx, ins, attrs):
    """Opset 18 gives scale and bias per group, opset 21 per channel."""
    x, groups = ins[0], int(attrs["num_groups"])
    c = x.shape[1]
    scale, bias = ins[1], ins[2]
    if groups != c and scale.shape and scale.shape[0] == groups:
        scale = cx.b.const(np.repeat(cx.need(scale, "a per-group scale"), c // groups),
                           f"{cx.name}_scale")
        bias = cx.b.const(np.repeat(cx.need(bias, "a per-group bias"), c // groups),
                          f"{cx.name}_bias")
    return cx.b.group_norm(x, groups, scale, bias, float(attrs.get("epsilon", 1e-5)), cx.name)


HANDLERS = {
    "InstanceNormalization": _instance_normalization,
    "GroupNormalization": _group_normalization,
    "MatMul": _mat_mul, "Gemm": _gemm, "Conv": _conv, "ConvTranspose": _conv_transpose,
    "Resize": _resize, "Upsample": _resize, "BatchNormalization": _batch_norm,
    "MaxPool": _pool("max_pool2d"), "AveragePool": _pool("avg_pool2d"),
    "GlobalAveragePool": _global_average_pool, "GlobalMaxPool": _global_max_pool,
    "LayerNormalization": _layer_normalization,
}
