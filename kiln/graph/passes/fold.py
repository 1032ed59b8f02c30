"""Constant folding with NumPy at build time, and dead-code elimination.

In: a Graph. Out: a new Graph where every node whose inputs are all constants (and whose op
has a NumPy kernel in np_kernels) is replaced by a const holding its value, and nodes and
params nothing uses any more are gone. This is what dissolves the Shape -> Gather ->
Unsqueeze -> Concat -> Cast chains around BERT's reshapes, the all-true attention masks and
the position/token-type index tensors, leaving only work that depends on the model inputs.

`evaluate(node, params)` is the same machinery for one node on demand: frontends use it to
read attribute-like inputs (a Reshape's shape, a Slice's starts) while they import a model.
"""

from __future__ import annotations

import math

import numpy as np

from ..ir import Graph, Node
from .np_kernels import FOLDABLE, evaluate_op
from .rewrite import Rewriter, prune_params, rewrite

MAX_FOLD_ELEMS = 1 << 22  # larger results are folded only when no input is smaller


def _worth_folding(n: Node, values: list) -> bool:
    if n.op not in FOLDABLE or n.shape is None:
        return False
    size = math.prod(n.shape)
    return size <= MAX_FOLD_ELEMS or size <= max((v.size for v in values), default=0)


def _fold_rule(n: Node, rw: Rewriter) -> Node | None:
    if n.op in ("input", "const") or not n.inputs:
        return None
    values = [rw.param(i) for i in n.inputs]
    if any(v is None for v in values) or not _worth_folding(n, values):
        return None
    value = evaluate_op(n.op, values, n.attrs, n.dtype)
    return rw.const(value, n.name or f"folded_{n.op}")


def fold_constants(g: Graph) -> Graph:
    """Replace constant subexpressions by their values; drop dead nodes and params."""
    return rewrite(g, _fold_rule)


def dead_code_elimination(g: Graph) -> Graph:
    """Drop nodes the outputs do not reach (Graph.nodes() never lists them) and their params."""
    return prune_params(Graph(g.inputs, g.outputs, dict(g.params), g.name))


def evaluate(node: Node, params: dict, limit: int = 256) -> np.ndarray | None:
    """The value of `node` when it depends only on constants (at most `limit` nodes), else None.

    Iterative, so asking about a deep activation returns None quickly instead of recursing.
    """
    memo: dict[int, np.ndarray] = {}
    stack, seen = [node], 0
    while stack:
        n = stack[-1]
        if n.uid in memo:
            stack.pop()
            continue
        if n.op == "const":
            memo[n.uid] = params[n.attrs["name"]]
            stack.pop()
            continue
        if n.op == "input" or n.op not in FOLDABLE:
            return None
        todo = [i for i in n.inputs if i.uid not in memo]
        if todo:
            seen += len(todo)
            if seen > limit:
                return None
            stack.extend(todo)
            continue
        stack.pop()
        memo[n.uid] = evaluate_op(n.op, [memo[i.uid] for i in n.inputs], n.attrs, n.dtype)
    return memo[node.uid]
