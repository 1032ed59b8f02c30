"""Mixed precision for the CPU: dense products in bfloat16, everything else in float32.

In: a graph after the default pipeline (dense ops carry their weights as constants).
Out: a new graph where each dense / matmul with a constant float32 weight reads that weight
stored in bfloat16 (a new constant, rounded to nearest even) and its activation through a
`cast` to bfloat16 (one cast per activation, shared by the denses that read it); the
product still accumulates and is returned in float32, so bias, GELU, residual adds,
softmax and layer norm stay float32. Activation x activation products (attention's Q.K^T
and P.V) read both operands in bfloat16 too: Q, K and V's casts fuse into the
reshape/transpose copies that produce them, P's is a small kernel after the softmax, and on
BERT-base the output keeps a cosine of 0.99999 with float32 either way (measured; the
untuned build is ~1% faster; activations=False keeps them float32).
Why here: fusion then places each cast where it is cheapest without new rules: after a
dense's epilogue (GELU -> cast: the group writes bfloat16), at the end of an injective
chain (transpose/reshape -> cast), or as a small kernel when the float32 value is needed
too (layer norm's output also feeds the residual add).
"""

from __future__ import annotations

import numpy as np

from ...runtime.bfloat16 import to_bfloat16
from ..ir import Graph, Node
from .rewrite import clone

BF16 = "bfloat16"


def to_bfloat16_graph(graph: Graph, activations: bool = True) -> Graph:
    """A copy of `graph` whose dense products read bfloat16 (see the module docstring);
    with `activations`, the activation x activation products (attention) too."""
    g = clone(graph)
    casts: dict = {}
    for n in g.nodes():
        if n.op not in ("dense", "matmul", "batch_matmul") or len(n.inputs) < 2:
            continue
        x, w = n.inputs[0], n.inputs[1]
        if x.dtype != "float32" or w.dtype != "float32":
            continue
        if w.op == "const" and n.op != "batch_matmul":
            n.inputs = [_cast(x, casts), _weight(g, w), *n.inputs[2:]]
        elif activations and w.op != "const" and x.op != "const":
            n.inputs = [_cast(x, casts), _cast(w, casts), *n.inputs[2:]]
    return g


def _cast(x: Node, casts: dict) -> Node:
    if x.uid not in casts:
        casts[x.uid] = Node("cast", [x], {"dtype": BF16}, x.shape, BF16,
                            f"{x.name or x.op}_bf16")
    return casts[x.uid]


def _weight(g: Graph, w: Node) -> Node:
    name = f"{w.attrs['name']}.bf16"
    if name not in g.params:
        g.params[name] = to_bfloat16(np.asarray(g.params[w.attrs["name"]], dtype=np.float32))
    return Node("const", [], {"name": name}, w.shape, BF16, name)


__all__ = ["to_bfloat16_graph"]
