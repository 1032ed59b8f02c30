"""The CPU schedule of the im2col copy (kiln.topi.nn.im2col: the windows of quantized
convolutions, frontend/onnx_quant.py).

In: a ComputeDAG whose output stage is an `im2col` compute, and a CPU Target.
Out: a complete State, or None for another kind of DAG:
    rows[p, q] with p = (image row, ow) split by the output width and q = (window position,
    c) split by the channels, then the channels by a power-of-two vector width that divides
    them: parallel over image rows, a vector copy per run of channels.
Why a rule: the split points are the compute's own divisors, so every div / mod in its
indices simplifies away and each vector is one contiguous load and store; the default
injective schedule fuses p and q and splits the fused index by the lanes, which leaves the
div / mod in every lane. graph.tasks does not offer it for tuning (a copy has nothing to
search).
"""

from __future__ import annotations

from ..errors import KilnError
from ..target import Target

__all__ = ["im2col_schedule", "is_im2col"]


def _op(dag):
    found = [op for op in dag.ops if getattr(op, "tag", "") == "im2col"]
    return found[0] if len(found) == 1 and found[0] is dag.outputs[0] else None


def is_im2col(dag) -> bool:
    """Whether `dag` is an im2col copy."""
    return _op(dag) is not None


def im2col_schedule(dag, target: Target):
    """The State in the module docstring, or None for another kind of DAG."""
    op = _op(dag)
    if op is None:
        return None
    lanes = target.vector_lanes(op.output(0).dtype)
    channels, width = int(op.attrs["channels"]), int(op.attrs["width"])
    state = dag.init_state()
    out = state.stages[-1].op
    p, q = (it.name for it in state.stage(out).iters)
    try:
        state = state.split(out, p, [width]).split(out, q, [channels])
        order = [p + ".0", p + ".1", q + ".0"]
        width = max([w for w in (lanes, lanes // 2, lanes // 4) if w and channels % w == 0],
                    default=0)  # whole vectors of a power-of-two width
        if width and channels > width:
            state = state.split(out, q + ".1", [width])
            order += [q + ".1.0", q + ".1.1"]
            vec = q + ".1.1"
        else:
            order.append(q + ".1")
            vec = q + ".1" if width else None
        state = state.reorder(out, order).parallel(out, p + ".0")
        return state.vectorize(out, vec) if vec else state
    except KilnError:
        return None
