"""ATen handlers for the neural-network ops: products, convolution, pooling, norms, attention.

In: the converting context and the call's args / kwargs (graph nodes for tensors). Out:
graph nodes. linear (and addmm with a constant matrix) become `dense` directly, since
PyTorch already stores weights as [N, K]; scaled_dot_product_attention is decomposed into
batch_matmul -> scale (+ mask) -> softmax -> batch_matmul.
"""

from __future__ import annotations

import math

import numpy as np

from ..ir import Node
from .common import norm_axis
from .lowering import conv_nd, conv_transpose
from .torch_ops import _arg


def _linear(cx, args, kw):
    x, w = args[0], args[1]
    b = _arg(args, kw, 2, "bias")
    if cx.b.value(w) is not None:
        return cx.op("dense", [x, w] + ([b] if b is not None else []))
    out = cx.op("matmul", [x, cx.op("transpose", [w], axes=[1, 0])])
    return cx.op("add", [out, b]) if b is not None else out


def _addmm(cx, args, kw):
    bias, m1, m2 = args[0], args[1], args[2]
    beta, alpha = kw.get("beta", 1), kw.get("alpha", 1)
    w = cx.b.value(m2)
    if w is not None and beta == 1 and alpha == 1 and bias.shape == (m2.shape[1],):
        wt = cx.b.const(np.ascontiguousarray(w.T), f"{cx.name}_weight")
        return cx.op("dense", [m1, wt, bias])
    out = cx.op("matmul", [m1, m2])
    if alpha != 1:
        out = cx.op("multiply", [out, cx.tensor(alpha, out.dtype)])
    if beta != 1:
        bias = cx.op("multiply", [bias, cx.tensor(beta, bias.dtype)])
    return cx.op("add", [out, bias])


def _matmul(cx, args, kw):
    return cx.op("matmul", [args[0], args[1]])


def _pair(v, n: int = 2) -> list[int]:
    if isinstance(v, int):
        return [v] * n
    v = list(v)
    return v * n if len(v) == 1 else v


def _padding(pad, kernel, dilation) -> list[int]:
    """PyTorch padding (int, per-axis list, 'same', 'valid') as [lo..., hi...]."""
    nd = len(kernel)
    if pad == "valid":
        return [0] * (2 * nd)
    if pad == "same":
        total = [d * (k - 1) for k, d in zip(kernel, dilation)]
        return [t // 2 for t in total] + [t - t // 2 for t in total]
    p = _pair(pad, nd)
    return p + p


def _conv(cx, args, kw):
    x, w = args[0], args[1]
    b = _arg(args, kw, 2, "bias")
    nd = len(w.shape) - 2
    if nd not in (1, 2):
        raise cx.fail(f"only 1-d and 2-d convolutions are supported, got {nd}-d")
    transposed, out_pad = False, [0] * nd
    if cx.node.target.__name__.startswith("convolution"):
        stride, pad, dil, transposed, out_pad, groups = args[3:9]
    else:
        stride, pad = _arg(args, kw, 3, "stride", 1), _arg(args, kw, 4, "padding", 0)
        dil, groups = _arg(args, kw, 5, "dilation", 1), _arg(args, kw, 6, "groups", 1)
    dil, stride = _pair(dil, nd), _pair(stride, nd)
    pads = _padding(pad, w.shape[2:], dil)
    if transposed:
        weight = cx.need(w, "a transposed convolution's weight")
        return conv_transpose(cx.b, x, weight, b, stride, pads, dil, _pair(out_pad, nd),
                              int(groups), cx.name)
    return conv_nd(cx.b, x, w, b, stride, pads, dil, int(groups), cx.name)


def _batch_norm(cx, args, kw):
    x, w, b, mean, var = args[:5]
    legit = cx.node.target.__name__.startswith("_native_batch_norm_legit_no_training")
    if not legit and _arg(args, kw, 5, "training", False):
        raise cx.fail("batch_norm in training mode; call model.eval() before exporting")
    eps = float(args[6] if legit else _arg(args, kw, 7, "eps", 1e-5))
    c = x.shape[1]
    w = w if w is not None else cx.b.const(np.ones(c, x.dtype), f"{cx.name}_weight")
    b = b if b is not None else cx.b.const(np.zeros(c, x.dtype), f"{cx.name}_bias")
    out = cx.op("batch_norm", [x, w, b, mean, var], epsilon=eps)
    return (out, None, None) if legit else out


def _max_pool(cx, args, kw):
    x = args[0]
    kernel = _pair(args[1])
    stride = _pair(_arg(args, kw, 2, "stride", None) or kernel)
    ph, pw = _pair(_arg(args, kw, 3, "padding", 0))
    if _pair(_arg(args, kw, 4, "dilation", 1)) != [1, 1]:
        raise cx.fail("dilated pooling is not supported")
    out = cx.op("max_pool2d", [x], pool_size=kernel, strides=stride, padding=[ph, pw, ph, pw],
                ceil_mode=bool(_arg(args, kw, 5, "ceil_mode", False)))
    return (out, None) if cx.node.target.__name__.startswith("max_pool2d_with") else out


def _avg_pool(cx, args, kw):
    x = args[0]
    kernel = _pair(args[1])
    stride = _pair(_arg(args, kw, 2, "stride", None) or kernel)
    ph, pw = _pair(_arg(args, kw, 3, "padding", 0))
    if _arg(args, kw, 6, "divisor_override") is not None:
        raise cx.fail("divisor_override is not supported")
    return cx.op("avg_pool2d", [x], pool_size=kernel, strides=stride, padding=[ph, pw, ph, pw],
                 ceil_mode=bool(_arg(args, kw, 4, "ceil_mode", False)),
                 count_include_pad=bool(_arg(args, kw, 5, "count_include_pad", True)))


def _adaptive_avg_pool(cx, args, kw):
    x = args[0]
    size = [x.shape[2 + k] if s is None else int(s) for k, s in enumerate(_pair(args[1]))]
    if size == [1, 1]:
        return cx.op("global_avg_pool2d", [x])
    if size == list(x.shape[2:]):
        return x
    h, w = x.shape[2:]
    if h % size[0] or w % size[1]:
        raise cx.fail(f"adaptive pooling to {size} from {[h, w]} is not supported")
    k = [h // size[0], w // size[1]]
    return cx.op("avg_pool2d", [x], pool_size=k, strides=k, padding=[0, 0, 0, 0],
                 ceil_mode=False, count_include_pad=False)


def _layer_norm(cx, args, kw):
    x, shape = args[0], list(args[1])
    w, b = _arg(args, kw, 2, "weight"), _arg(args, kw, 3, "bias")
    eps = float(_arg(args, kw, 4, "eps", 1e-5))
    rank = len(x.shape)
    axes = list(range(rank - len(shape), rank))
    pshape = tuple(shape)
    w = w if w is not None else cx.b.const(np.ones(pshape, x.dtype), f"{cx.name}_weight")
    b = b if b is not None else cx.b.const(np.zeros(pshape, x.dtype), f"{cx.name}_bias")
    out = cx.op("layer_norm", [x, w, b], axis=axes[0] if len(axes) == 1 else axes,
                epsilon=eps)
    return (out, None, None) if cx.node.target.__name__.startswith("native") else out


def _group_norm(cx, args, kw):
    """aten.group_norm(x, groups, weight, bias, eps) and aten.native_group_norm(x, weight,
    bias, N, C, HxW, groups, eps), whose mean and rstd outputs are not produced."""
    x = args[0]
    if cx.node.target.__name__.startswith("native"):
        w, b, groups, eps = args[1], args[2], int(args[6]), float(args[7])
        return (cx.b.group_norm(x, groups, w, b, eps, cx.name), None, None)
    groups = int(_arg(args, kw, 1, "num_groups"))
    w, b = _arg(args, kw, 2, "weight"), _arg(args, kw, 3, "bias")
    return cx.b.group_norm(x, groups, w, b, float(_arg(args, kw, 4, "eps", 1e-5)), cx.name)


def _softmax(op: str):
    def handler(cx, args, kw):
        x = args[0]
        return cx.op(op, [x], axis=norm_axis(args[1], len(x.shape)))
    handler.__name__ = f"_aten_{op}"
    return handler


def _gelu(cx, args, kw):
    return cx.op("gelu", [args[0]], approximate=str(kw.get("approximate", "none")))


def _attention_mask(cx, scores: Node, mask, causal: bool) -> Node:
    if causal:
        lq, lk = scores.shape[-2:]
        bias = np.where(np.tril(np.ones((lq, lk), bool)), 0, -np.inf).astype(scores.dtype)
        scores = cx.op("add", [scores, cx.b.const(bias, f"{cx.name}_causal")])
    if mask is None:
        return scores
    if mask.dtype == "bool":
        fill = cx.b.const(np.array(-np.inf, scores.dtype), f"{cx.name}_neg_inf")
        return cx.op("where", [mask, scores, fill])
    return cx.op("add", [scores, cx.b.cast(mask, scores.dtype, cx.name)])


def _sdpa(cx, args, kw):
    q, k, v = args[:3]
    mask = _arg(args, kw, 3, "attn_mask")
    if float(_arg(args, kw, 4, "dropout_p", 0.0)) != 0.0:
        raise cx.fail("attention dropout is not supported in inference")
    if kw.get("enable_gqa") and q.shape[-3] != k.shape[-3]:
        raise cx.fail("grouped-query attention is not supported")
    scale = _arg(args, kw, 6, "scale")
    scale = 1.0 / math.sqrt(q.shape[-1]) if scale is None else float(scale)
    scores = cx.op("batch_matmul", [q, k], transpose_a=False, transpose_b=True)
    scores = cx.op("multiply", [scores, cx.tensor(scale, scores.dtype)])
    scores = _attention_mask(cx, scores, mask, bool(_arg(args, kw, 5, "is_causal", False)))
    probs = cx.op("softmax", [scores], axis=len(scores.shape) - 1)
    return cx.op("batch_matmul", [probs, v], transpose_a=False, transpose_b=False)


HANDLERS = {
    "linear": _linear, "addmm": _addmm, "mm": _matmul, "bmm": _matmul, "matmul": _matmul,
    "conv2d": _conv, "convolution": _conv, "batch_norm": _batch_norm,
    "_native_batch_norm_legit_no_training": _batch_norm, "max_pool2d": _max_pool,
    "max_pool2d_with_indices": _max_pool, "avg_pool2d": _avg_pool,
    "adaptive_avg_pool2d": _adaptive_avg_pool, "_adaptive_avg_pool2d": _adaptive_avg_pool,
    "layer_norm": _layer_norm, "native_layer_norm": _layer_norm,
    "group_norm": _group_norm, "native_group_norm": _group_norm,
    "softmax": _softmax("softmax"), "_softmax": _softmax("softmax"),
    "log_softmax": _softmax("log_softmax"), "_log_softmax": _softmax("log_softmax"),
    "gelu": _gelu, "scaled_dot_product_attention": _sdpa,
}
