"""Pointwise functions of 8-bit values become table lookups.

In: a Graph. Out: a new Graph where an elementwise computation whose only run-time input
takes at most 256 integer values is replaced by `lookup(x, table)`: a 1-d constant holding
the computation's result for every value x can take, evaluated with NumPy at build time.

Why: a statically quantized model (ONNX Runtime's QDQ format) computes GELU in float32
between QuantizeLinear / DequantizeLinear pairs, one pair after each of GPT-2's Pow, Mul,
Add, Tanh, ... : seven divides, roundings and clips around a tanh, for every element (1.3 ms
per layer of GPT-2 on 2 cores). But the chain starts at the quantized output of the product
before it, so it is a function of one int8 value: a 256-entry table gives the same numbers
(every op evaluated in float32 as the model says, the transcendentals by NumPy), and the
lookup fuses into the product's epilogue (it is elementwise), so the product writes the
next product's uint8 input directly. ONNX Runtime does the same for some unary ops
(QLinearLookup); here any chain qualifies.

What has a small range (`int_range`): an int8 / uint8 tensor, a clip with integer bounds
of an integer-valued tensor (round, floor, an integer dtype, sums of those and integer
constants: what QuantizeLinear computes before its cast), and casts of those. A region
grows from such a root through elementwise ops whose other operands are one-element
constants and which keep the root's shape. An output of the region (a member read from
outside it) is tabled when computing it costs more than a lookup (`worth`): it holds a
transcendental or enough arithmetic; a plain requantize (scale, round, clip) does not.
The lookup clamps its index, so a NaN that reached a cast cannot read outside the table.
"""

from __future__ import annotations

import math

import numpy as np

from ..ir import Graph, Node
from ..ops import OpPattern, pattern
from .np_kernels import FOLDABLE, evaluate_op
from .rewrite import Rewriter, rewrite

__all__ = ["int_range", "lookup_tables"]

MAX_ENTRIES = 256
# rough cost of one element of each op in vector instructions: a cone is tabled when its
# cost reaches TABLE_COST (a lane-by-lane lookup costs about that much; a requantize,
# divide + round + clip + cast, stays below it)
TABLE_COST = 24
_COST = {"divide": 4, "exp": 16, "log": 16, "tanh": 16, "erf": 16, "sigmoid": 16,
         "sqrt": 4, "rsqrt": 4, "power": 16}
_INT_DTYPES = {"int8": (-128, 127), "uint8": (0, 255)}


def _scalar(n: Node, params: dict) -> np.ndarray | None:
    """A one-element constant's value as a 0-d array, else None."""
    v = params.get(n.attrs.get("name")) if n.op == "const" else None
    return v.reshape(()) if v is not None and v.size == 1 else None


def _integral(n: Node, params: dict, depth: int = 0) -> bool:
    """Whether every value of n is an integer (checked through a few ops)."""
    if n.dtype is not None and (n.dtype.startswith("int") or n.dtype.startswith("uint")):
        return True
    if n.op in ("round", "floor", "ceil"):
        return True
    if n.op == "const":
        v = _scalar(n, params)
        return v is not None and _whole(v)
    if n.op == "clip" and not all(n.attrs.get(k) is None or _whole(n.attrs[k])
                                  for k in ("a_min", "a_max")):
        return False
    if depth < 8 and n.op in ("add", "subtract", "clip", "cast", "relu", "negative"):
        return all(_integral(i, params, depth + 1) for i in n.inputs)
    return False


def _whole(v) -> bool:
    return v is not None and math.isfinite(float(v)) and float(v) == math.floor(float(v))


def int_range(n: Node, params: dict) -> tuple | None:
    """(lo, hi) when n holds integers in [lo, hi] with at most MAX_ENTRIES values, else None."""
    if n.dtype in _INT_DTYPES:
        return _INT_DTYPES[n.dtype]
    if n.op == "cast" and n.dtype in ("int32", "int16", "float32"):
        return int_range(n.inputs[0], params)  # exact for integers this small
    if n.op == "clip" and None not in (n.attrs.get("a_min"), n.attrs.get("a_max")) and \
            _integral(n, params):
        lo, hi = int(n.attrs["a_min"]), int(n.attrs["a_max"])
        return (lo, hi) if 0 <= hi - lo < MAX_ENTRIES else None
    return None


VIEWS = ("reshape", "expand_dims", "squeeze", "flatten")  # element order kept


def _member_of(n: Node, params: dict, region: dict) -> int | None:
    """The root uid n is an elementwise function of, else None: an elementwise op of one
    region member (its other operands one-element constants) keeping that member's shape,
    or a view of a member (the table applies before the view as well as after it)."""
    if n.op in VIEWS:
        return region.get(n.inputs[0].uid)
    if n.op in ("input", "const", "lookup") or n.op not in FOLDABLE or \
            pattern(n) > OpPattern.BROADCAST:
        return None
    members = [i for i in n.inputs if i.uid in region]
    if any(i.uid not in region and _scalar(i, params) is None for i in n.inputs) or \
            len({region[i.uid] for i in members}) != 1 or \
            any(tuple(i.shape) != tuple(n.shape) for i in members):
        return None
    return region[members[0].uid]


def _plan(g: Graph) -> dict:
    """uid of each node to table -> (root node, lo, table)."""
    params = g.params
    region: dict = {}  # uid -> root uid
    nodes = g.nodes()
    by_uid = {n.uid: n for n in nodes}
    ranges: dict = {}
    for n in nodes:
        root = _member_of(n, params, region)
        if root is not None:
            region[n.uid] = root
            continue
        r = int_range(n, params) if n.shape is not None else None
        if r is not None:
            region[n.uid] = n.uid
            ranges[n.uid] = r
    outputs = {o.uid for o in g.outputs}
    plan: dict = {}
    for n in nodes:
        for i in [*n.inputs, *([n] if n.uid in outputs else [])]:
            if i.uid in plan or i.uid not in region or region[i.uid] == i.uid:
                continue
            inside = i is not n and region.get(n.uid) == region[i.uid]
            if not inside:
                _maybe_table(i, by_uid[region[i.uid]], ranges, params, plan)
    return plan


def _cone(n: Node, root: int) -> list:
    """The region nodes n depends on (root excluded), producers first."""
    order, seen, stack = [], set(), [(n, False)]
    while stack:
        m, done = stack.pop()
        if done:
            order.append(m)
            continue
        if m.uid in seen or m.uid == root or m.op == "const":
            continue
        seen.add(m.uid)
        stack.append((m, True))
        stack.extend((i, False) for i in m.inputs)
    return order


def worth(cone: list) -> bool:
    """Whether computing the cone per element costs more than a table lookup."""
    return sum(_COST.get(m.op, 1) for m in cone) >= TABLE_COST


def _maybe_table(n: Node, root: Node, ranges: dict, params: dict, plan: dict) -> None:
    cone = _cone(n, root.uid)
    if not worth(cone):
        return
    lo, hi = ranges[root.uid]
    values = {root.uid: np.arange(lo, hi + 1).astype(root.dtype)}
    for m in cone:
        xs = [values[i.uid] if i.uid in values else _scalar(i, params) for i in m.inputs]
        values[m.uid] = xs[0] if m.op in VIEWS else \
            evaluate_op(m.op, xs, m.attrs, m.dtype).reshape(-1)
    plan[n.uid] = (root, lo, values[n.uid])


def lookup_tables(g: Graph) -> Graph:
    """The rewrite in the module docstring."""
    def rule(n: Node, rw: Rewriter) -> Node | None:
        if "plan" not in rw.memo:
            rw.memo["plan"] = _plan(rw.graph)
        found = rw.memo["plan"].get(n.uid)
        if found is None:
            return None
        root, lo, table = found
        # narrow integers are tabled as int32 and cast: a 32-bit table is one hardware
        # gather per vector (vpgatherdd), bytes are read lane by lane
        wide = table.dtype.kind in "biu" and table.dtype.itemsize < 4
        out = rw.op("lookup", [root, rw.const(table.astype(np.int32) if wide else table,
                                              f"{n.name or 'lookup'}_table")],
                    n.name, offset=int(lo))
        if wide:
            out = rw.op("cast", [out], n.name, dtype=n.dtype)
        if tuple(out.shape) != tuple(n.shape):
            out = rw.op("reshape", [out], n.name, newshape=list(n.shape))
        return out
    return rewrite(g, rule)
