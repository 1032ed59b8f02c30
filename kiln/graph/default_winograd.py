"""The CPU schedules of the Winograd transforms (graph/passes/winograd.py).

In: a ComputeDAG whose output stage is (or inlines) a `winograd_input` or `winograd_output`
compute (kiln.topi.nn.winograd), and a CPU Target.
Out: a complete State, or None for another kind of DAG.
  input   V[e, tile, c]: parallel over tiles; per vector of channels, every transform
          position e unrolled (its Select branch becomes a straight-line sum of contiguous
          vector loads of the channels-last patch).
  output  Y[n, oc, h, w] with its epilogue inlined (and the [N, C, H*W] view a following
          product reads, its pixel axis split back into rows; or the channels-last padded copy
          the next Winograd convolution reads, its axes found through the transposes'
          `axes`): parallel over tile rows; per tile and vector of output channels, the m x m
          positions unrolled, each a sum of contiguous vector loads of the products, stored
          along oc (a scatter into NCHW, contiguous into NHWC).
Why a rule-based schedule: the default injective schedule vectorizes the innermost axis and
leaves the transform positions as loop variables, so every element would evaluate its
Select chain lane by lane; graph.tasks does not offer these groups for tuning either.
"""

from __future__ import annotations

from ..auto_scheduler import analysis as A
from ..errors import KilnError
from ..target import Target

__all__ = ["is_winograd", "winograd_schedule"]

_TAGS = ("winograd_input", "winograd_output")


def _transform(dag):
    """The transform's compute op in `dag`, or None."""
    found = [op for op in dag.ops if getattr(op, "tag", "") in _TAGS]
    return found[0] if len(found) == 1 else None


def is_winograd(dag) -> bool:
    """Whether `dag` is a Winograd transform group."""
    return _transform(dag) is not None


def winograd_schedule(dag, target: Target):
    """The State described in the module docstring, or None for another kind of DAG."""
    op = _transform(dag)
    if op is None:
        return None
    lanes = target.vector_lanes("float32")
    state = dag.init_state()
    for si in range(len(state.stages)):
        if A.is_strict_inlinable(state, si):
            state = state.compute_inline(state.stages[si].op)
    out = state.stages[-1]
    try:
        if op.tag == "winograd_input":
            return _input(state, out.op, lanes)
        return _output(state, op, int(op.attrs["tile"]), int(op.axis[3].extent.value),
                       lanes)
    except KilnError:
        return None


def _input(state, out, lanes: int):
    e, tile, c = (it.name for it in state.stage(out).iters)
    state = state.split(out, c, [lanes])
    state = state.reorder(out, [tile, c + ".0", e, c + ".1"])
    return state.parallel(out, tile).unroll(out, e).vectorize(out, c + ".1")


def _axis_roles(state, op) -> list:
    """Per axis of the group's output, the axis of Y (0..3 = n, oc, h, w) it runs along:
    elementwise ops and pads keep the axes, a transpose on the chain permutes them."""
    roles, cur = [0, 1, 2, 3], op
    while True:
        users = state.dag.consumers(cur)
        if len(users) != 1:
            return roles
        cur = users[0]
        axes = cur.attrs.get("axes")
        if axes is not None:
            roles = [roles[p] for p in axes]


def _output(state, op, m: int, width: int, lanes: int):
    out = state.stages[-1].op
    names = [it.name for it in state.stage(out).iters]
    if len(names) == 3:  # ends in the [N, C, H*W] view a product reads: rows of width
        state = state.split(out, names[2], [width])
        names = [it.name for it in state.stage(out).iters]
    if len(names) != 4:
        raise KilnError("winograd output: neither NCHW nor [N, C, H*W]")
    n, oc, h, w = (names[_axis_roles(state, op).index(r)] for r in range(4))
    for axis, f in ((h, m), (w, m), (oc, lanes)):
        state = state.split(out, axis, [f])
    state = state.reorder(out, [n, h + ".0", w + ".0", oc + ".0", h + ".1", w + ".1",
                                oc + ".1"])
    state = state.fuse(out, [n, h + ".0"])
    rows = state.stage(out).iters[0].name
    state = state.parallel(out, rows).unroll(out, h + ".1").unroll(out, w + ".1")
    return state.vectorize(out, oc + ".1")
