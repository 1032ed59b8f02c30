"""TVM's `topi.generic` / `topi.x86` schedule functions: `schedule_X(outs)` returns a
schedule of the kernel computing `outs`, for the target of the enclosing
`with tvm.target.Target(...)`.

kiln has one default schedule per kernel, chosen from the kernel's shape rather than the
operator's name (graph.default_schedule: tiled and vectorized matmuls and convolutions,
row-parallel reductions, fused injective loops; the GPU schedules of topi.cuda on a CUDA
target), so every name here gives that schedule. The schedule is an ordinary one: print it,
lower it, change it further by hand, or build it. (The chooser lives in kiln.graph, which
builds on topi; it is imported when a schedule is asked for.)
"""

from __future__ import annotations

from ..schedule.dag import ComputeDAG
from ..schedule.facade import Schedule
from ..target import Target
from ..te.tensor import Tensor


def default_schedule(outs, target=None) -> Schedule:
    """kiln's default schedule of the kernel that computes `outs` (a tensor or a list)."""
    from ..graph.default_schedule import default_schedule as choose
    outs = [outs] if isinstance(outs, Tensor) else list(outs)
    target = target or Target.current()
    dag = ComputeDAG(outs)
    return Schedule.from_state(dag, choose(dag, target=target))


def schedule_injective(outs, layout: str = "NCHW") -> Schedule:
    """Every schedule_X below: the default schedule of the kernel computing `outs`."""
    return default_schedule(outs)


schedule_reduce = schedule_softmax = schedule_dense = schedule_batch_matmul = \
    schedule_injective
schedule_conv2d_nchw = schedule_pool = schedule_adaptive_pool = schedule_injective
schedule_elemwise = schedule_broadcast = schedule_injective
schedule_conv2d_nhwc = schedule_conv2d_nchw

__all__ = ["default_schedule", "schedule_adaptive_pool", "schedule_batch_matmul",
           "schedule_broadcast", "schedule_conv2d_nchw", "schedule_conv2d_nhwc",
           "schedule_dense", "schedule_elemwise", "schedule_injective", "schedule_pool",
           "schedule_reduce", "schedule_softmax"]
