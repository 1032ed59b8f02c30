"""Linear-algebra patterns: dense layers, batched products, batch norm folded into conv.

In: a Graph. Out: a new Graph where
  * matmul(x, W) with a constant 2-d W is dense(x, Wᵀ) (the transposed weight, [N, K], is a
    new constant made once per weight) and a following + bias[N] becomes dense's bias input;
  * matmul(a, b) of two activations is batch_matmul, absorbing a transpose that moves the
    contraction axis into transpose_a / transpose_b (BERT's Kᵀ then has the same [b, h, s, d]
    layout as Q and V, and no transpose kernel of its own);
  * batch_norm(conv2d(x, W, b)) with constant parameters is one conv2d with rescaled W, b;
  * dense(reshape(x)) where the reshape only merges leading axes is reshape(dense(x)), so
    the view -> addmm -> view sandwiches of GPT-2 style exports collapse (simplify then
    fuses the two reshapes).
Why: dense / batch_matmul / conv2d are the ops the tuner has good sketches for; each absorbed
bias, transpose or normalisation is a pass over memory that disappears.
"""

from __future__ import annotations

import numpy as np

from ..ir import Graph, Node
from .rewrite import Rewriter, rewrite


def _swap_source(rw: Rewriter, t: Node) -> tuple[Node, bool]:
    """(u, True) when t == swap_last_two(u) and u is cheaper to read, else (t, False)."""
    if t.op != "transpose" or len(t.shape) < 2:
        return t, False
    r = len(t.shape)
    perm = [int(p) for p in t.attrs["axes"]]
    if perm[-1] == r - 1 or perm[-2] != r - 1:
        return t, False
    perm = perm[:-2] + [perm[-1], perm[-2]]
    src = t.inputs[0]
    if perm == list(range(r)):
        return src, True
    return rw.op("transpose", [src], t.name, axes=perm), True


def _batch_matmul(n: Node, rw: Rewriter) -> Node:
    a, ta = _swap_source(rw, n.inputs[0])
    b, tb = _swap_source(rw, n.inputs[1])
    return rw.op("batch_matmul", [a, b], n.name, transpose_a=ta, transpose_b=tb)


def _bias_vector(rw: Rewriter, c: Node, width: int) -> np.ndarray | None:
    v = rw.param(c)
    if v is None or v.size != width or v.ndim == 0 or v.shape[-1] != width:
        return None
    return v.reshape(width)


def _absorb_bias(n: Node, rw: Rewriter) -> Node | None:
    for d, c in ((n.inputs[0], n.inputs[1]), (n.inputs[1], n.inputs[0])):
        if d.op != "dense" or len(d.inputs) != 2 or rw.uses[d.uid] != 1:
            continue
        bias = _bias_vector(rw, c, d.shape[-1])
        if bias is None or n.shape != d.shape or bias.dtype != d.dtype:
            continue
        return rw.op("dense", [*d.inputs, rw.const(bias, f"{n.name or 'dense'}_bias")], n.name)
    return None


def _fold_batch_norm(n: Node, rw: Rewriter) -> Node | None:
    conv = n.inputs[0]
    if conv.op != "conv2d" or rw.uses[conv.uid] != 1:
        return None
    w = rw.param(conv.inputs[1])
    b0 = rw.param(conv.inputs[2]) if len(conv.inputs) > 2 else np.zeros(conv.shape[1], w.dtype)
    gamma, beta, mean, var = (rw.param(i) for i in n.inputs[1:])
    if any(v is None for v in (w, b0, gamma, beta, mean, var)):
        return None
    scale = gamma / np.sqrt(var + np.asarray(n.attrs["epsilon"], var.dtype))
    wk = (w * scale.reshape(-1, 1, 1, 1)).astype(w.dtype)
    bias = ((b0 - mean) * scale + beta).astype(w.dtype)
    hint = conv.name or "conv"
    return rw.op("conv2d", [conv.inputs[0], rw.const(wk, f"{hint}_weight_bn"),
                            rw.const(bias, f"{hint}_bias_bn")], n.name, **conv.attrs)


def _dense_through_reshape(n: Node, rw: Rewriter) -> Node | None:
    r = n.inputs[0]
    if r.op != "reshape" or rw.uses[r.uid] != 1:
        return None
    src = r.inputs[0]
    if len(src.shape) < 2 or src.shape[-1] != r.shape[-1]:
        return None
    inner = rw.op("dense", [src, *n.inputs[1:]], n.name)
    return rw.op("reshape", [inner], n.name, newshape=tuple(n.shape))


class _LinearRule:
    """The rule of one sweep; remembers transposed weights so shared weights stay shared."""

    def __init__(self):
        self.transposed: dict[str, Node] = {}

    def _dense(self, n: Node, rw: Rewriter) -> Node:
        w = n.inputs[1]
        key = w.attrs["name"]
        if key not in self.transposed:
            wt = np.ascontiguousarray(rw.param(w).T)
            self.transposed[key] = rw.const(wt, f"{key}_T")
        return rw.op("dense", [n.inputs[0], self.transposed[key]], n.name)

    def __call__(self, n: Node, rw: Rewriter) -> Node | None:
        if n.op == "matmul":
            x, w = n.inputs
            if rw.param(w) is not None and len(w.shape) == 2 and rw.param(x) is None:
                return self._dense(n, rw)
            if rw.param(x) is None and rw.param(w) is None and min(len(x.shape),
                                                                   len(w.shape)) >= 2:
                return _batch_matmul(n, rw)
        if n.op == "add":
            return _absorb_bias(n, rw)
        if n.op == "dense":
            return _dense_through_reshape(n, rw)
        if n.op == "batch_norm":
            return _fold_batch_norm(n, rw)
        return None


def recognize_linear(g: Graph) -> Graph:
    """matmul -> dense / batch_matmul, bias absorption, conv + batch_norm folding."""
    return rewrite(g, _LinearRule())
