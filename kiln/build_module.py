"""build(): a schedule or a PrimFunc in, a callable compiled Module out.

In: a `tir.PrimFunc`, or a schedule (TVM-style Schedule / State) plus its argument tensors.
Out: a `runtime.Module` (render -> compile -> load), with `.source` holding the C text; for a
cuda target a `runtime.CudaModule` (CUDA source -> NVRTC cubin -> launch plan), which can be
built on a machine without a GPU and says so clearly when it is called there.
Why: the one-line path users know from TVM: `mod = kiln.build(s, [A, B, C], "llvm")`.
"""

from __future__ import annotations

import sys

from .codegen import toolchain
from .codegen.c import render
from .errors import ScheduleError
from .recursion import deep_recursion
from .runtime.module import Module
from .target import Target, as_target
from .tir import gpu
from .tir import stmt as S


def lower(sch, args=None, name: str = "default_function", simple_mode: bool = False):
    """The loop IR (PrimFunc) of a schedule; print it to see the loop nest."""
    if isinstance(sch, S.PrimFunc):
        return sch
    from .tir.lower import lower as _lower
    return _lower(sch, args, name=name)


def build(sch_or_func, args=None, target: Target | str | None = "cpu",
          name: str = "default_function", target_host=None) -> Module:
    """Compile a PrimFunc or a schedule into a loaded Module for `target`."""
    target = as_target(target)
    with deep_recursion(f"kernel {name}"):
        if not isinstance(sch_or_func, S.PrimFunc):
            sch_or_func = _history_best(sch_or_func, target)
        func = sch_or_func if isinstance(sch_or_func, S.PrimFunc) else \
            lower(sch_or_func, args, name=name)
        if target.kind == "cuda":
            return _build_cuda(func, target)
        if gpu.is_gpu_func(func):
            raise ScheduleError(f"{func.name} binds loops to GPU threads but the target is "
                                f"{target}; build it with target='cuda'")
        source = render(func, target)
    path = toolchain.compile(source, target)
    return Module(path, source=source)


def _build_cuda(func: S.PrimFunc, target: Target):
    from .codegen import cuda
    from .runtime.cuda_module import CudaModule
    source = cuda.render(func, target)
    plan = cuda.launch_plan(func, target)
    return CudaModule(toolchain.compile(source, target), plan, source)


def _history_best(sch, target: Target):
    """Under an active auto_scheduler.ApplyHistoryBest, a default schedule (a State with no
    steps) becomes the best recorded State of its workload on `target`; else `sch` itself.
    The record module is imported only by code that can activate such a context."""
    record = sys.modules.get("kiln.auto_scheduler.measure.record")
    return sch if record is None else record.apply_history_best(sch, target)


__all__ = ["build", "lower"]
