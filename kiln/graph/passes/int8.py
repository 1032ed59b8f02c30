"""Dynamic int8 quantization for the CPU: dense products in uint8 x int8 with int32 sums.

In: a graph after the default pipeline (dense ops carry their weights as constants [N, K]).
Out: a new graph where each float32 dense with a constant weight and K a multiple of 4 runs
as a uint8 x int8 product (te/dot_groups.py, AVX512-VNNI's vpdpbusd):
  - the weight is quantized once, at build time, per output channel and symmetric:
    s_w[n] = max_k |W[n, k]| / 127, Wq = round(W / s_w) in int8;
  - the activation is quantized at run time per row (each token its own range, as
    SmoothQuant / LLM.int8 do, finer than ONNX Runtime's one range per tensor), asymmetric
    over a range that includes 0: s_x = (hi - lo) / 255, z = round(-lo / s_x),
    xq = clip(round(x / s_x) + z, 0, 255) in uint8; one quantization per activation, shared
    by the denses that read it (BERT's Q, K and V);
  - y = (sum_k xq * Wq - z * sum_k Wq[n, k]) * s_x * s_w[n] (+ bias): the zero point's part
    is a constant column sum times z, so the product itself is pure uint8 x int8.
Everything else (attention's activation x activation products, softmax, layer norm, GELU,
residual adds) stays float32.
Why here: the rows' min / max are ordinary row reductions (one parallel pass, SIMD lanes) and
the quantize step is an elementwise kernel, so fusion and the default schedules already
handle them; the dequantizing epilogue fuses into the product like a bias.
"""

from __future__ import annotations

import numpy as np

from ..ir import Graph, Node
from .rewrite import Rewriter, rewrite

QMAX = 127.0


def to_int8_graph(graph: Graph) -> Graph:
    """A copy of `graph` whose dense products run in int8 (see the module docstring)."""
    quantized: dict = {}

    def rule(n: Node, rw: Rewriter) -> Node | None:
        if not _eligible(n, rw):
            return None
        x = n.inputs[0]
        if x.uid not in quantized:  # one quantization per activation (Q, K, V share it)
            def const(v):
                return rw.const(np.asarray(v, np.float32), "int8_q")
            xq, scale, zpf = dynamic_uint8(rw.op, const, x, [len(x.shape) - 1], True)
            quantized[x.uid] = xq, scale, rw.op("cast", [zpf], dtype="uint8")
        xq, scale, zp = quantized[x.uid]
        wq, w_scale, colsum = _weight(rw, n.inputs[1])
        acc = rw.op("dense", [xq, wq], f"{n.name}_int8")
        acc = rw.op("subtract", [acc, rw.op("multiply", [rw.op("cast", [zp], dtype="int32"),
                                                         colsum])])
        y = rw.op("multiply", [rw.op("cast", [acc], dtype="float32"),
                               rw.op("multiply", [scale, w_scale])], n.name)
        return rw.op("add", [y, n.inputs[2]], n.name) if len(n.inputs) > 2 else y
    return rewrite(graph, rule)


def _eligible(n: Node, rw: Rewriter) -> bool:
    if n.op != "dense" or len(n.inputs) < 2:
        return False
    x, w = n.inputs[0], n.inputs[1]
    return x.dtype == "float32" and w.dtype == "float32" and rw.param(w) is not None and \
        len(w.shape) == 2 and w.shape[1] % 4 == 0 and w.shape[1] >= 16


RANGE = {"uint8": (0, 255), "int8": (-128, 127)}


def quantize(op, x: Node, scale: Node, zpf: Node | None, dtype: str) -> Node:
    """saturate(round(x / scale) + zp) as `dtype`, as ONNX Runtime computes it (x / scale,
    ties to even); zpf is the zero point as float32. `op(name, inputs, **attrs)` makes a node
    (a Rewriter's or an importer's)."""
    lo, hi = RANGE[dtype]
    q = op("round", [op("divide", [x, scale])])
    if zpf is not None:
        q = op("add", [q, zpf])
    return op("cast", [op("clip", [q], a_min=float(lo), a_max=float(hi))], dtype=dtype)


def dynamic_uint8(op, const, x: Node, axes: list, keepdims: bool) -> tuple:
    """(xq uint8, scale, zero point as float32) from the range of x over `axes` widened to
    include 0 (ONNX's DynamicQuantizeLinear over all axes; the pass above per row):
    scale = (hi - lo) / 255 (1 for an all-zero range), zp = round(clip(-lo / scale, 0, 255)).
    `const(value)` makes a float32 constant node."""
    zero = const(0.0)
    lo = op("minimum", [op("min", [x], axis=axes, keepdims=keepdims), zero])
    hi = op("maximum", [op("max", [x], axis=axes, keepdims=keepdims), zero])
    span = op("subtract", [hi, lo])
    scale = op("where", [op("equal", [span, zero]), const(1.0),
                         op("divide", [span, const(255.0)])])
    zpf = op("round", [op("clip", [op("negative", [op("divide", [lo, scale])])],
                          a_min=0.0, a_max=255.0)])
    return quantize(op, x, scale, zpf, "uint8"), scale, zpf


def _weight(rw: Rewriter, w: Node) -> tuple:
    """(int8 weight, per-channel scale [N], int32 column sums [N]) of a constant [N, K]."""
    name = w.attrs["name"]
    wv = np.asarray(rw.param(w), np.float32)
    amax = np.abs(wv).max(axis=1)
    scale = np.where(amax > 0, amax / QMAX, 1.0).astype(np.float32)
    wq = np.clip(np.round(wv / scale[:, None]), -QMAX, QMAX).astype(np.int8)
    colsum = wq.astype(np.int32).sum(axis=1).astype(np.int32)
    return (rw.const(wq, f"{name}.int8"), rw.const(scale, f"{name}.int8_scale"),
            rw.const(colsum, f"{name}.int8_colsum"))


__all__ = ["RANGE", "dynamic_uint8", "quantize", "to_int8_graph"]
