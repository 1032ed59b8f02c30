"""What both frontends share: a node builder with eager shape inference, and their errors.

In: calls from an importer (make an input, a const, an op node). Out: graph nodes whose shape
and dtype are known the moment they exist, parameters collected in one dict, and a finished
Graph. Knowing shapes during import is what lets ONNX `Shape` become a constant and lets a
Reshape's computed target shape be read with `value()` (NumPy constant folding on demand).
"""

from __future__ import annotations

import math

import numpy as np

from ...errors import KilnError, ShapeError
from ..ir import Graph, GraphError, Node
from ..passes.fold import evaluate
from ..passes.infer import infer_node
from ..passes.rewrite import add_const, prune_params


class UnsupportedOpError(KilnError, NotImplementedError):
    """A model uses ops (or op configurations) kiln cannot import; `.ops` lists them all."""

    def __init__(self, framework: str, items: list):
        self.ops = [(str(op), str(name), str(why)) for op, name, why in items]
        types = sorted({op for op, _, _ in self.ops})
        lines = "\n".join(f"  {op} at node {name!r}" + (f": {why}" if why else "")
                          for op, name, why in self.ops)
        super().__init__(f"{framework} model uses {len(types)} unsupported op type(s) "
                         f"{', '.join(types)}:\n{lines}")


class ConversionError(UnsupportedOpError):
    """One node could not be converted (an unsupported attribute, a non-constant shape)."""

    def __init__(self, framework: str, op: str, name: str, why: str):
        super().__init__(framework, [(op, name, why)])


class GraphBuilder:
    """Creates nodes for an importer; every node gets its shape and dtype immediately."""

    def __init__(self, framework: str):
        self.framework = framework
        self.params: dict = {}
        self.inputs: list = []

    def input(self, name: str, shape: tuple, dtype: str) -> Node:
        n = Node("input", [], {"name": name}, tuple(int(d) for d in shape), dtype, name)
        self.inputs.append(n)
        return n

    def const(self, value, hint: str = "const", dtype: str | None = None) -> Node:
        arr = np.array(value, dtype=dtype, order="C")
        return add_const(self.params, arr, hint)

    def op(self, op: str, inputs: list, name: str = "", **attrs) -> Node:
        node = Node(op, list(inputs), attrs, name=name)
        try:
            return infer_node(node)
        except GraphError as e:
            raise GraphError(f"{self.framework} import: {e}") from None

    def value(self, node: Node) -> np.ndarray | None:
        """The node's value when it depends only on constants, else None."""
        return evaluate(node, self.params)

    def need(self, node: Node, op: str, name: str, what: str) -> np.ndarray:
        """The constant value of `node`, or a ConversionError explaining `what` it should be."""
        v = self.value(node)
        if v is None:
            raise ConversionError(self.framework, op, name, f"{what} must be a constant")
        return v

    def reshape(self, x: Node, shape, name: str = "", allow_zero: bool = False) -> Node:
        """Reshape to `shape`, resolving one -1 (and 0 = keep that dim, unless allow_zero)."""
        dims = [int(d) for d in shape]
        if not allow_zero:
            dims = [x.shape[i] if d == 0 else d for i, d in enumerate(dims)]
        if dims.count(-1) > 1:
            raise ShapeError(f"{name or 'reshape'}: more than one -1 in {dims}")
        if -1 in dims:
            known = math.prod(d for d in dims if d != -1)
            dims[dims.index(-1)] = math.prod(x.shape) // known if known else 0
        if tuple(dims) == tuple(x.shape):
            return x
        return self.op("reshape", [x], name, newshape=tuple(dims))

    def group_norm(self, x: Node, groups: int, scale, bias, eps: float, name: str = "") -> Node:
        """GroupNorm of x [N, C, ...]: each group of C / groups channels normalized over its
        channels and the spatial dims, then scaled and shifted per channel (scale, bias: [C]
        nodes or None). InstanceNorm is groups == C. Built from layer_norm over a reshape."""
        n, c, rest = x.shape[0], x.shape[1], tuple(x.shape[2:])
        if groups < 1 or c % groups:
            raise ShapeError(f"{name or 'group_norm'}: {c} channels do not split into {groups} "
                             "groups")
        per = c // groups * math.prod(rest)
        y = self.reshape(x, (n, groups, per), f"{name}_groups")
        unit = self.const(np.ones((per,), x.dtype), f"{name}_one")
        zero = self.const(np.zeros((per,), x.dtype), f"{name}_zero")
        y = self.op("layer_norm", [y, unit, zero], name, axis=2, epsilon=float(eps))
        y = self.reshape(y, x.shape, f"{name}_back")
        per_channel = (1, c) + (1,) * len(rest)
        if scale is not None:
            y = self.op("multiply", [y, self.reshape(scale, per_channel, f"{name}_scale")])
        if bias is not None:
            y = self.op("add", [y, self.reshape(bias, per_channel, f"{name}_bias")])
        return y

    def tile(self, x: Node, reps, name: str = "") -> Node:
        """x repeated reps[k] times along axis k (NumPy's tile; more reps than axes add
        leading axes): one gather per repeated axis."""
        reps = [int(r) for r in reps]
        if len(reps) > len(x.shape):
            lead = len(reps) - len(x.shape)
            x = self.reshape(x, (1,) * lead + tuple(x.shape), f"{name}_lead")
        reps = [1] * (len(x.shape) - len(reps)) + reps
        for axis, r in enumerate(reps):
            if r != 1:
                idx = np.tile(np.arange(x.shape[axis], dtype=np.int64), r)
                x = self.op("take", [x, self.const(idx, f"{name}_tile{axis}")], name, axis=axis)
        return x

    def cast(self, x: Node, dtype: str, name: str = "") -> Node:
        return x if x.dtype == dtype else self.op("cast", [x], name, dtype=dtype)

    def finish(self, outputs: list, name: str = "main") -> Graph:
        """The Graph over `outputs` (dead nodes and their params dropped)."""
        g = Graph(self.inputs, outputs, self.params, name)
        return prune_params(g)


def norm_axis(axis: int, rank: int) -> int:
    """A possibly negative axis as a non-negative one (rank 0 counts as rank 1)."""
    return int(axis) % max(rank, 1)


def norm_axes(axes, rank: int) -> list[int]:
    return sorted({norm_axis(a, rank) for a in axes})
