"""Combine parallel dense ops that read the same input into one wider dense.

In: a Graph. Out: a new Graph where each group of >= `min_group` dense nodes sharing input x
(constant weights, all with constant biases or all without, same dtype) is replaced by ONE
dense over the concatenated weights [sum N_i, K] (and biases), followed by a strided_slice
per original output. BERT's Q, K and V projections become one [s, 3h] x [3h, h]ᵀ product:
one kernel, one pass over x, a larger N for the tiler. Not in the default pipeline: whether
it pays depends on how well the slices fuse into their consumers, so it is opt-in.
"""

from __future__ import annotations

import numpy as np

from ..ir import Graph, Node
from .rewrite import Rewriter, rewrite


def _key(n: Node, rw: Rewriter) -> tuple | None:
    """What dense nodes must share to be combined, or None if n cannot take part."""
    if n.op != "dense" or any(rw.param(i) is None for i in n.inputs[1:]):
        return None
    return (n.inputs[0].uid, len(n.inputs), n.dtype)


def _groups(rw: Rewriter, min_group: int) -> list[list[Node]]:
    by_key: dict[tuple, list[Node]] = {}
    for n in rw.graph.nodes():
        k = _key(n, rw)
        if k is not None:
            by_key.setdefault(k, []).append(n)
    return [members for members in by_key.values() if len(members) >= min_group]


class _CombineRule:
    def __init__(self, min_group: int):
        self.min_group = min_group
        self.planned: dict[int, list[Node]] | None = None
        self.done: dict[int, Node] = {}

    def _build(self, members: list[Node], rw: Rewriter) -> None:
        x = members[0].inputs[0]
        weights = [rw.param(m.inputs[1]) for m in members]
        hint = members[0].name or "dense"
        inputs = [x, rw.const(np.concatenate(weights, axis=0), f"{hint}_combined_weight")]
        if len(members[0].inputs) == 3:
            biases = [rw.param(m.inputs[2]) for m in members]
            inputs.append(rw.const(np.concatenate(biases), f"{hint}_combined_bias"))
        wide = rw.op("dense", inputs, f"{hint}_combined")
        axis, at = len(wide.shape) - 1, 0
        for m, w in zip(members, weights):
            self.done[m.uid] = rw.op("strided_slice", [wide], m.name, begin=[at],
                                     end=[at + w.shape[0]], strides=[1], axes=[axis])
            at += w.shape[0]

    def __call__(self, n: Node, rw: Rewriter) -> Node | None:
        if self.planned is None:
            self.planned = {m.uid: g for g in _groups(rw, self.min_group) for m in g}
        if n.uid in self.planned and n.uid not in self.done:
            self._build(self.planned[n.uid], rw)
        return self.done.get(n.uid)


def combine_parallel_dense(g: Graph, min_group: int = 2) -> Graph:
    """Merge groups of >= min_group dense ops with a common input into one dense + slices."""
    return rewrite(g, _CombineRule(min_group))
