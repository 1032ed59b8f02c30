"""kiln.graph.build for CUDA targets: a whole model in, one cubin and a CudaGraphModule out.

In: a Graph (after the same passes and fusion as the CPU build), a cuda Target.
Out: a `CudaGraphModule` (executable_cuda.py) over ONE cubin holding every unique kernel, and
a launch list: per fused group, the CUDA kernels of its function with each argument resolved
to a graph input, output, parameter, an offset in the activation arena (the same static memory
plan as on the CPU, in device memory) or an offset in a scratch area (the global temporaries
inside one function, e.g. a reduction computed by its own kernel; groups run one after another,
so they share one scratch area sized for the largest).
Schedules: the best tuning record of the workload for this target (under ApplyHistoryBest),
else kiln.topi.cuda's default GPU schedules (tiled matmul, one block per row for reductions,
flat injective), else the always-legal simple schedule.
Why: separate from build.py because the CPU build emits one C entry function while the GPU
build emits a launch list that the runtime replays as one CUDA graph.
"""

from __future__ import annotations

import logging

from ..codegen import cuda, toolchain
from ..codegen.c import c_name
from ..target import Target
from .build import (
    Kernel,
    Outside,
    _meta,
    _Program,
    _warn_untuned,
    first_lowering,
    record_candidates,
)
from .csource import Arg, Call, Copy
from .default_schedule import gpu_schedules
from .executable_cuda import CudaGraphModule
from .tasks import GroupWorkload, group_workloads, prepare_graph

__all__ = ["build_cuda"]

log = logging.getLogger("kiln.graph")
_ALIGN = 256  # device allocations and scratch offsets: the driver's alignment


def _lowered(wl: GroupWorkload, name: str, target: Target, tensor_cores: bool = False):
    """(state, PrimFunc, launch plan, tuned): the first candidate that lowers and fits the
    target's limits (the launch plan checks them)."""
    candidates = record_candidates(wl, target) + \
        [(st, False) for st in gpu_schedules(wl.dag, target, tensor_cores)]
    plan: dict = {}
    state, func, tuned = first_lowering(
        wl, name, candidates, lambda f: plan.update(p=cuda.launch_plan(f, target)))
    return state, func, plan["p"], tuned


def _round(n: int) -> int:
    return (n + _ALIGN - 1) // _ALIGN * _ALIGN


def _scratch_offsets(plan: dict) -> list:
    out, acc = [], 0
    for ws in plan["workspace"]:
        out.append(acc)
        acc += _round(ws["nbytes"])
    return out


def _arg(a: Arg) -> list:
    return ["arena" if a.kind == "workspace" else a.kind, a.index]


def _launches(steps: list, kernels: dict, funcs: dict) -> list:
    """The launch list: ["kernel", name, grid, block, args] and ["copy", dst, src, nbytes]."""
    by_name = {k.name: k.key for k in kernels.values()}
    out = []
    for step in steps:
        if isinstance(step, Copy):
            out.append(["copy", _arg(step.dst), _arg(step.src), step.nbytes])
            continue
        assert isinstance(step, Call)
        plan = funcs[by_name[step.kernel]][1]
        offsets = _scratch_offsets(plan)
        for kern in plan["kernels"]:
            args = [_arg(step.args[i]) if kind == "param" else ["scratch", offsets[i]]
                    for kind, i in kern["args"]]
            out.append(["kernel", kern["name"], kern["grid"], kern["block"], args])
    return out


def build_cuda(graph, params, target: Target, run_passes: bool = True,
               tensor_cores: bool = False) -> CudaGraphModule:
    """Compile a whole graph for a CUDA target (see the module docstring). tensor_cores:
    untuned matmuls run on the tensor cores in float32 accuracy where their tiles fit
    (topi.cuda.schedule_auto(mma=True))."""
    outside = Outside.of(graph)
    graph, groups = prepare_graph(graph, params, run_passes, target=target)
    workloads = group_workloads(groups, graph.params)
    kernels: dict = {}
    funcs: dict = {}
    prog = _Program(graph, workloads, kernels)  # first: reshape-only groups are no kernels
    workloads = prog.workloads
    for wl in workloads:
        if wl.key in kernels:
            continue
        name = c_name(f"k{len(kernels)}_{wl.desc}"[:60])
        state, func, plan, tuned = _lowered(wl, name, target, tensor_cores)
        kernels[wl.key] = Kernel(name, wl.key, state, tuned, [()] * len(wl.args), "")
        funcs[wl.key] = (func, plan)
    _warn_untuned(workloads, kernels)
    steps = prog.steps()
    source = cuda.render_many([f for f, _ in funcs.values()], target)
    cubin = toolchain.compile(source, target)
    meta = _meta(graph, target, prog, steps, kernels, outside)
    meta["launches"] = _launches(steps, kernels, funcs)
    meta["scratch_bytes"] = max((sum(_round(w["nbytes"]) for w in p["workspace"])
                                 for _, p in funcs.values()), default=0)
    log.info("built %s for %s: %d groups, %d functions, %d kernel launches", graph.name,
             target, len(groups), len(kernels),
             sum(1 for x in meta["launches"] if x[0] == "kernel"))
    module = CudaGraphModule(cubin, meta, prog.table.arrays, source)
    module.functions = {f.name: f for f, _ in funcs.values()}  # the loop IR, to inspect
    # (groups whose kernel came from a tuning record, groups): a log tuned on another
    # frontend's graph may match none of them
    module.tuned_groups = (sum(kernels[wl.key].tuned for wl in workloads), len(workloads))
    return module
