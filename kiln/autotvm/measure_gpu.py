"""Measuring template configs on an NVIDIA GPU (autotvm tasks with a CUDA target).

In: a Task whose target is CUDA, its configs, the measure option's builder and runner.
Out: one autotvm MeasureResult per config, in order.
Why: a GPU candidate goes the auto-scheduler's GPU way (auto_scheduler.gpu.measure): CUDA
source from the lowered config, cubins compiled by NVRTC in parallel processes (spilling or
register-starved kernels are compile errors), run in a worker process that owns the CUDA
context, outputs checked on the GPU against the task's default GPU schedule, timed with CUDA
events. autotvm.LocalBuilder / LocalRunner settings carry over; a runner object with the GPU
protocol (`set_task`, `run`), such as the tests' interpreter-backed fake, is used as given.
"""

from __future__ import annotations

import time

from ..auto_scheduler.gpu.measure import GpuBuilder, GpuRunner
from ..auto_scheduler.measure import ErrorNo
from ..codegen import cuda
from ..errors import KilnError
from ..schedule.dag import ComputeDAG
from ..tir.lower import lower
from .measure import (
    LocalBuilder,
    LocalRunner,
    MeasureErrorNo,
    MeasureResult,
    instantiate,
    result_of,
)


class GpuTask:
    """One config's kernel as the GPU runner sees a task: tensors, target, FLOPs, name."""

    def __init__(self, task, tensors, dag: ComputeDAG):
        self.args, self.target = list(tensors), task.target
        self.flop_ct = dag.flop_ct
        self.workload_key = dag.workload_key()
        self.desc = f"autotvm {task.name}{tuple(task.args)}"


class GpuMeasurer:
    """Builds (NVRTC) and runs (GPU worker) the configs of one CUDA task."""

    def __init__(self, task, option: dict):
        b, r = option["builder"], option["runner"]
        self.task, self.target = task, task.target
        self.builder = GpuBuilder(n_parallel=b.n_parallel, timeout=max(60.0, b.timeout)) \
            if isinstance(b, LocalBuilder) else b
        if isinstance(r, LocalRunner):
            k = r.kwargs
            r = GpuRunner(repeat=k["repeat"], min_repeat_ms=max(1.0, k["min_repeat_ms"]),
                          timeout=k["timeout"])
        if not hasattr(r, "set_task"):
            raise KilnError("a CUDA task is measured by autotvm.LocalRunner or a GPU runner "
                            "(set_task / run)")
        self.runner = r
        self.n_parallel = getattr(self.builder, "n_parallel", 2)
        self._ready = False

    def measure(self, configs: list) -> list:
        results: list = [None] * len(configs)
        todo = []  # (index, (state, func, plan))
        for i, cfg in enumerate(configs):
            made = instantiate(self.task, cfg, self._lowered)
            if isinstance(made, MeasureResult):
                results[i] = made
                continue
            _, tensors, (func, plan) = made
            if not self._ready:
                self._reference(tensors)
            todo.append((i, func, plan))
        if todo:
            self._run(todo, results)
        return results

    def _lowered(self, sch, tensors) -> tuple:
        func = lower(getattr(sch, "state", sch), tensors)
        return func, cuda.launch_plan(func, self.target)

    def _run(self, todo: list, results: list) -> None:
        t0 = time.time()
        built = self.builder.build(self.target, [cuda.render(f, self.target) for _, f, _ in todo],
                                   [plan for _, _, plan in todo])
        runnable = [(i, (path, plan, f)) for (i, f, plan), (path, kind, _) in
                    zip(todo, built, strict=True) if kind == ErrorNo.OK]
        ran = dict(zip([i for i, _ in runnable], self.runner.run([it for _, it in runnable]),
                       strict=True))
        for (i, _, _), (_, _, msg) in zip(todo, built, strict=True):
            res = ran.get(i)
            results[i] = result_of(res) if res is not None else MeasureResult(
                [msg[:500]], MeasureErrorNo.COMPILE_DEVICE, time.time() - t0, time.time())

    def _reference(self, tensors) -> None:
        """The task's default GPU schedule: the runner checks every config against it."""
        from ..graph.default_schedule import gpu_schedules
        dag = ComputeDAG(list(tensors))
        states = gpu_schedules(dag, self.target)
        if not states:
            raise KilnError(f"{self.task}: no default GPU schedule to check configs against")
        func = lower(states[0], tensors)
        (path, kind, msg), = self.builder.build(self.target, [cuda.render(func, self.target)])
        if path is None:
            raise KilnError(f"{self.task}: the default GPU schedule does not compile: {msg}")
        self.runner.set_task(GpuTask(self.task, tensors, dag),
                             (path, cuda.launch_plan(func, self.target), func))
        self._ready = True

    def close(self) -> None:
        for part in (self.runner, self.builder):
            close = getattr(part, "close", None)
            if close is not None:
                close()
