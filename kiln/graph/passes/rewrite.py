"""The one graph-rewriting loop every pass uses, plus small node helpers.

In: a Graph and a callback that may return a replacement for a node. Out: a NEW Graph (the
input graph is never mutated: nodes are cloned first), with every use of a replaced node
redirected to its replacement and unused parameters dropped. Passes stay short because they
only say "this node becomes that node"; the loop handles order, uses and the outputs.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable

import numpy as np

from ..ir import Graph, Node
from .infer import infer_node


def clone(g: Graph) -> Graph:
    """A copy of `g` with fresh nodes (same ops, attrs copied, params shared by value)."""
    new: dict[int, Node] = {}
    for n in g.nodes():
        new[n.uid] = Node(n.op, [new[i.uid] for i in n.inputs], dict(n.attrs), n.shape,
                          n.dtype, n.name)
    return Graph([new[n.uid] for n in g.inputs], [new[n.uid] for n in g.outputs],
                 dict(g.params), g.name)


def use_counts(g: Graph) -> Counter:
    """uid -> number of uses (each consumer input slot and each graph output counts once)."""
    uses: Counter = Counter()
    for n in g.nodes():
        for i in n.inputs:
            uses[i.uid] += 1
    for o in g.outputs:
        uses[o.uid] += 1
    return uses


Rule = Callable[[Node, "Rewriter"], "Node | None"]


class Rewriter:
    """State shared with a rule: the graph being rebuilt, use counts, new-const creation."""

    def __init__(self, g: Graph):
        self.graph = clone(g)
        self.uses = use_counts(self.graph)
        self.memo: dict = {}  # for rules that build on what they made for earlier nodes

    def param(self, node: Node) -> np.ndarray | None:
        """The value of a const node, else None."""
        return self.graph.params.get(node.attrs["name"]) if node.op == "const" else None

    def const(self, value: np.ndarray, hint: str) -> Node:
        """A new const node holding `value` under a fresh parameter name."""
        return add_const(self.graph.params, np.asarray(value), hint)

    def op(self, op: str, inputs: list, name: str = "", **attrs) -> Node:
        """A new node with its shape and dtype inferred."""
        return infer_node(Node(op, list(inputs), attrs, name=name))


def add_const(params: dict, value: np.ndarray, hint: str) -> Node:
    """Register `value` in `params` under a name derived from `hint`; return a const node."""
    base = hint or "const"
    name, k = base, 1
    while name in params:
        name, k = f"{base}_{k}", k + 1
    params[name] = value
    return Node("const", [], {"name": name}, tuple(value.shape), value.dtype.name, name)


def rewrite(g: Graph, rule: Rule) -> Graph:
    """Apply `rule` to every node, producers first; a returned node replaces the visited one.

    The rule sees the node with its inputs already redirected to earlier replacements.
    """
    rw = Rewriter(g)
    out = rw.graph
    subst: dict[int, Node] = {}
    for n in out.nodes():
        n.inputs = [subst.get(i.uid, i) for i in n.inputs]
        new = rule(n, rw)
        if new is not None and new is not n:
            subst[n.uid] = new
            rw.uses[new.uid] += rw.uses[n.uid]
    out.outputs = [subst.get(o.uid, o) for o in out.outputs]
    return prune_params(out)


def prune_params(g: Graph) -> Graph:
    """Dead-code elimination: Graph.nodes() already drops unreachable nodes; drop their params."""
    live = {n.attrs["name"] for n in g.nodes() if n.op == "const"}
    g.params = {k: v for k, v in g.params.items() if k in live}
    return g


def op_histogram(g: Graph) -> Counter:
    """op name -> number of nodes (leaves included)."""
    return Counter(n.op for n in g.nodes())


def scalar_value(params: dict, node: Node) -> float | None:
    """The single value of a const node holding one element (any shape), else None."""
    if node.op != "const":
        return None
    v = params.get(node.attrs["name"])
    return float(v.reshape(-1)[0]) if v is not None and v.size == 1 else None
