"""Run-time checks a model's inputs must pass, derived from the graph at build time.

In: a prepared Graph (after passes and folding).
Out: `index_ranges(graph) -> {input name: [lo, hi]}` for every graph input that reaches the
indices of a `take` (an embedding lookup, a gather) through shape-only ops; the executable
refuses inputs outside [-n, n - 1] with an ArgumentError naming the input, the bad value and
its position, as ONNX Runtime and PyTorch do, instead of reading another row.
Why: generated kernels clamp indices for memory safety; a token id equal to the vocabulary
size would otherwise silently embed as the last token.
"""

from __future__ import annotations

import numpy as np

from ..errors import ArgumentError
from .ir import Graph

__all__ = ["check_index_ranges", "index_ranges"]

_SHAPE_ONLY = ("cast", "reshape", "expand_dims", "squeeze", "flatten")


def _source_input(node):
    """The graph input `node` is a reshaped / cast view of, or None."""
    while node.op in _SHAPE_ONLY and node.inputs:
        node = node.inputs[0]
    return node if node.op == "input" else None


def index_ranges(graph: Graph) -> dict:
    out: dict = {}
    for node in graph.nodes():
        if node.op != "take" or len(node.inputs) < 2:
            continue
        src = _source_input(node.inputs[1])
        data = node.inputs[0]
        if src is None or data.shape is None:
            continue
        axis = node.attrs.get("axis")
        n = int(np.prod(data.shape)) if axis is None else int(data.shape[int(axis)])
        name = src.attrs.get("name")
        lo, hi = out.get(name, (-n, n - 1))
        out[name] = [max(lo, -n), min(hi, n - 1)]
    return out


def check_index_ranges(name: str, arr: np.ndarray, ranges: dict) -> None:
    """ArgumentError when input `name` holds an index outside its range."""
    rng = ranges.get(name)
    if rng is None or arr.size == 0 or not np.issubdtype(arr.dtype, np.integer):
        return
    lo, hi = rng
    bad = np.flatnonzero((arr < lo) | (arr > hi))
    if bad.size:
        pos = np.unravel_index(bad[0], arr.shape)
        raise ArgumentError(f"input {name!r} holds {int(arr.flat[bad[0]])} at position "
                            f"{tuple(int(p) for p in pos)}, outside the valid index range "
                            f"[{lo}, {hi}] of the table it indexes ({bad.size} such values)")
