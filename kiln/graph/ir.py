"""Graph IR: typed SSA nodes for whole models (the output of frontends, input of fusion).

A Node has an op name from OP_SPECS (kiln's own vocabulary, close to Relay's), input nodes,
attributes, and its output shape and dtype. Two leaf ops: "input" (a model input, fed at run
time) and "const" (a parameter; its value lives in Graph.params under attrs["name"]). Every
node has exactly one output; frontends split multi-output ops (Split, ...) into nodes.
A Graph has inputs, outputs and params; nodes() lists what the outputs reach, producers first.
"""

from __future__ import annotations

import hashlib
import itertools
import json
from dataclasses import dataclass, field

import numpy as np

from ..errors import KilnError

_ids = itertools.count()

# op name -> attributes it takes (the contract between frontends, passes and graph/ops.py)
OP_SPECS = {
    "input": "name", "const": "name",
    # elementwise / broadcast (numpy broadcasting)
    "add": "", "subtract": "", "multiply": "", "divide": "", "power": "", "maximum": "",
    "minimum": "", "equal": "", "less": "", "greater": "", "where": "",
    "floor_mod": "(sign of the divisor)", "fmod": "(C fmod: sign of the dividend)",
    "negative": "", "exp": "", "log": "", "sqrt": "", "rsqrt": "", "tanh": "", "erf": "",
    "sin": "", "cos": "", "sign": "",
    "sigmoid": "", "abs": "", "relu": "", "gelu": "approximate ('none'|'tanh')",
    "hard_swish": "", "hard_sigmoid": "alpha, beta", "leaky_relu": "alpha",
    "clip": "a_min, a_max", "cast": "dtype", "floor": "", "ceil": "",
    "round": "(to nearest, ties to even)", "not": "",
    "lookup": "offset (table input 1, 1-d: out = table[clamp(int(x) - offset, 0, len - 1)])",
    # logic on bool tensors, float classification (-> bool)
    "logical_and": "", "logical_or": "", "logical_xor": "", "isnan": "", "isinf": "",
    # reductions
    "sum": "axis (list), keepdims", "mean": "axis (list), keepdims", "max": "axis, keepdims",
    "min": "axis, keepdims", "argmax": "axis, keepdims",
    "cumsum": "axis, exclusive, reverse (running sum along one axis)",
    # nn
    "dense": "weight [N, K] is input 1; optional bias input 2 (y = x @ W.T + b)",
    "matmul": "numpy matmul semantics (batch broadcast)",
    "batch_matmul": "transpose_a, transpose_b",
    "conv2d": "strides, padding [t, l, b, r], dilation, groups (NCHW, OIHW; optional bias)",
    "depthwise_conv2d_nhwc": "strides, padding [t, l, b, r], dilation (x NHWC, weight "
                             "[KH, KW, C]; optional bias [C])",
    "max_pool2d": "pool_size, strides, padding [t, l, b, r], ceil_mode",
    "avg_pool2d": "pool_size, strides, padding, ceil_mode, count_include_pad",
    "global_avg_pool2d": "", "softmax": "axis", "log_softmax": "axis",
    "layer_norm": "axis, epsilon (inputs: x, gamma, beta)",
    "batch_norm": "epsilon (inference: x, gamma, beta, mean, var; channel axis 1)",
    # injective / layout
    "reshape": "newshape (explicit, no -1 after inference)", "transpose": "axes",
    "take": "axis (indices input 1)", "concatenate": "axis",
    "strided_slice": "begin, end, strides, axes", "expand_dims": "axis, num_newaxis",
    "squeeze": "axis", "broadcast_to": "shape", "flatten": "",
    "pad": "pad_width [[lo, hi], ...], pad_value",
    "dilate": "strides (per axis; inserts strides-1 zeros between elements)",
    "im2col": "kernel, strides, dilation (input NHWC padded; out [N*OH*OW, KH*KW*C])",
    # 3x3 convolutions as Winograd F(m x m, 3 x 3) (graph/passes/winograd.py)
    "winograd_input": "tile m (input NHWC padded to m*T + 2; out [(m+2)^2, N*TH*TW, C])",
    "winograd_output": "tile m, shape [N, OC, H, W] (input [(m+2)^2, N*TH*TW, OC])",
}


@dataclass(eq=False)
class Node:
    op: str
    inputs: list
    attrs: dict = field(default_factory=dict)
    shape: tuple | None = None
    dtype: str | None = None
    name: str = ""
    uid: int = field(default_factory=lambda: next(_ids))

    def __repr__(self) -> str:
        return f"Node({self.op}, %{self.uid}, {self.shape}, {self.dtype})"


class Graph:
    """A model: input nodes, output nodes, and the parameters the const nodes name."""

    def __init__(self, inputs: list, outputs: list, params: dict | None = None,
                 name: str = "main"):
        self.inputs, self.outputs = list(inputs), list(outputs)
        self.params = dict(params or {})
        self.name = name

    def nodes(self) -> list:
        """Every node reachable from the outputs (and every input), producers first."""
        order, seen = [], set()
        for root in self.inputs + self.outputs:
            stack = [(root, False)]
            while stack:
                n, done = stack.pop()
                if done:
                    if n.uid not in seen:
                        seen.add(n.uid)
                        order.append(n)
                    continue
                if n.uid in seen:
                    continue
                stack.append((n, True))
                stack.extend((i, False) for i in reversed(n.inputs) if i.uid not in seen)
        return order

    def consumers(self) -> dict:
        """uid -> list of consumer nodes."""
        out: dict = {}
        for n in self.nodes():
            for i in n.inputs:
                out.setdefault(i.uid, []).append(n)
        return out

    def __str__(self) -> str:
        return graph_str(self)

    def structural_hash(self) -> str:
        return structural_hash(self.outputs)


def main_graph(obj):
    """The Graph of `obj`: a Graph itself, or an IRModule-like object (kiln.relay.IRModule)
    whose `functions["main"]` is one; None otherwise."""
    if isinstance(obj, Graph):
        return obj
    functions = getattr(obj, "functions", None)
    if isinstance(functions, dict) and isinstance(functions.get("main"), Graph):
        return functions["main"]
    return None


def _fmt_attrs(attrs: dict) -> str:
    if not attrs:
        return ""
    return " {" + ", ".join(f"{k}={v!r}" for k, v in sorted(attrs.items())) + "}"


def graph_str(g: Graph) -> str:
    """Readable text: one line per node, `%id = op(%a, %b) {attrs} : dtype[shape]`."""
    lines = [f"graph {g.name}(" + ", ".join(f"%{n.uid}: {n.attrs.get('name')}" for n in g.inputs)
             + "):"]
    for n in g.nodes():
        if n.op == "input":
            continue
        ty = f"{n.dtype}{list(n.shape) if n.shape is not None else '[?]'}"
        if n.op == "const":
            lines.append(f"  %{n.uid} = const({n.attrs.get('name')!r}) : {ty}")
            continue
        args = ", ".join(f"%{i.uid}" for i in n.inputs)
        lines.append(f"  %{n.uid} = {n.op}({args}){_fmt_attrs(n.attrs)} : {ty}")
    lines.append("  return " + ", ".join(f"%{o.uid}" for o in g.outputs))
    return "\n".join(lines)


class GraphError(KilnError, ValueError):
    """A graph is malformed (unknown op, missing shape, undefined parameter...)."""


def verify(g: Graph) -> None:
    """Raise GraphError naming the node if the graph breaks an invariant."""
    inputs = {n.uid for n in g.inputs}
    for n in g.nodes():
        where = f"node %{n.uid} ({n.op}{' ' + n.name if n.name else ''})"
        if n.op not in OP_SPECS:
            raise GraphError(f"{where}: unknown op {n.op!r}")
        if n.op == "input" and n.uid not in inputs:
            raise GraphError(f"{where}: an input node that is not a graph input")
        if n.op == "const" and n.attrs.get("name") not in g.params:
            raise GraphError(f"{where}: parameter {n.attrs.get('name')!r} is not in params")
        if n.shape is None or n.dtype is None:
            raise GraphError(f"{where}: shape/dtype unknown (run shape inference)")


def structural_hash(outputs) -> str:
    """Hash of ops, attrs, shapes and dtypes and how nodes connect; names are ignored."""
    g = Graph([], list(outputs))
    index = {}
    items = []
    for n in g.nodes():
        index[n.uid] = len(index)
        attrs = {k: v for k, v in n.attrs.items() if not (n.op in ("input", "const")
                                                          and k == "name")}
        items.append([n.op, [index[i.uid] for i in n.inputs], _jsonable(attrs),
                      list(n.shape or ()), n.dtype])
    return hashlib.sha256(json.dumps(items).encode()).hexdigest()[:32]


def _jsonable(x):
    if isinstance(x, dict):
        return {str(k): _jsonable(v) for k, v in sorted(x.items())}
    if isinstance(x, (list, tuple)):
        return [_jsonable(v) for v in x]
    if isinstance(x, np.ndarray):
        return x.tolist()
    if isinstance(x, (np.integer, np.floating)):
        return x.item()
    return x
