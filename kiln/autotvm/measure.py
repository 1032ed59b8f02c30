"""Measuring template configs (TVM's autotvm.measure) on kiln's builder and runner.

In: a Task and configs of it. Out: one MeasureResult per config (seconds per run, or an
error number), in TVM's autotvm types.
Why: a config instantiates the template into a kiln schedule; from there the candidate is
an auto_scheduler candidate like any other: the same parallel C builds, isolated worker
process, timeout, output check against the naive schedule, and cache flushing. Only the
adapters live here.
"""

from __future__ import annotations

import time
from typing import NamedTuple

from ..auto_scheduler.measure import ErrorNo, ProgramMeasurer
from ..auto_scheduler.measure import LocalBuilder as _Builder
from ..auto_scheduler.measure import LocalRunner as _Runner
from ..auto_scheduler.measure import MeasureInput as _Input
from ..errors import KilnError
from ..schedule.dag import ComputeDAG


class MeasureErrorNo:
    """TVM's error numbers of an autotvm result."""

    NO_ERROR = 0
    INSTANTIATION_ERROR = 1
    COMPILE_HOST = 2
    COMPILE_DEVICE = 3
    RUNTIME_DEVICE = 4
    WRONG_ANSWER = 5
    BUILD_TIMEOUT = 6
    RUN_TIMEOUT = 7
    UNKNOWN_ERROR = 8


_ERROR_NO = {ErrorNo.OK: MeasureErrorNo.NO_ERROR, ErrorNo.LOWER: MeasureErrorNo.COMPILE_HOST,
             ErrorNo.COMPILE: MeasureErrorNo.COMPILE_HOST,
             ErrorNo.RUNTIME: MeasureErrorNo.RUNTIME_DEVICE,
             ErrorNo.TIMEOUT: MeasureErrorNo.RUN_TIMEOUT,
             ErrorNo.WRONG_ANSWER: MeasureErrorNo.WRONG_ANSWER}


class MeasureInput(NamedTuple):
    target: object
    task: object
    config: object


class MeasureResult(NamedTuple):
    """costs: seconds per run (or the error, as text, in a one-item list); error_no as above;
    all_cost: seconds spent building and running; timestamp: when it finished."""

    costs: list
    error_no: int
    all_cost: float
    timestamp: float


class LocalBuilder:
    """Compiles candidates here, `n_parallel` compilers at once, each with a timeout."""

    def __init__(self, timeout: float = 10, n_parallel: int | None = None,
                 build_func: str = "default"):
        self.timeout, self.n_parallel = float(timeout), int(n_parallel or 2)


class LocalRunner:
    """Runs candidates in a worker process; `number` calls per timing, `repeat` timings."""

    def __init__(self, timeout: float = 10, number: int = 4, repeat: int = 3,
                 min_repeat_ms: float = 0, cooldown_interval: float = 0.0,
                 enable_cpu_cache_flush: bool = False, check_correctness: bool = True):
        self.kwargs = dict(timeout=timeout, number=number, repeat=repeat,
                           min_repeat_ms=min_repeat_ms, cooldown_interval=cooldown_interval,
                           enable_cpu_cache_flush=enable_cpu_cache_flush,
                           check_correctness=check_correctness)


class RPCRunner:
    """TVM's RPC runner needs a tracker and remote devices; kiln measures on this machine
    (LocalRunner) or on a Ray cluster through auto_scheduler.RayRunner."""

    def __init__(self, *args, **kwargs):
        raise KilnError("autotvm.RPCRunner: kiln has no RPC tracker; use autotvm.LocalRunner, "
                        "or auto_scheduler.RayRunner to measure on a cluster")


def measure_option(builder="local", runner="local") -> dict:
    """The builder and runner a tuner measures with ("local", autotvm.LocalBuilder /
    LocalRunner, or for CUDA tasks a GPU builder / runner object)."""
    builder = LocalBuilder() if builder == "local" else builder
    runner = LocalRunner() if runner == "local" else runner
    if not hasattr(builder, "build") and not isinstance(builder, LocalBuilder) or \
            not hasattr(runner, "run") and not isinstance(runner, LocalRunner):
        raise KilnError("autotvm.measure_option takes autotvm.LocalBuilder / LocalRunner (or "
                        "'local')")
    return {"builder": builder, "runner": runner}


def make_measurer(task, option: dict):
    """The measurer of a task: the GPU path for a CUDA target, else the CPU one."""
    if task.target.kind == "cuda":
        from .measure_gpu import GpuMeasurer
        return GpuMeasurer(task, option)
    if not isinstance(option["builder"], LocalBuilder) or \
            not isinstance(option["runner"], LocalRunner):
        raise KilnError("a CPU task is measured by autotvm.LocalBuilder / LocalRunner")
    return Measurer(task, option)


class _ConfigTask:
    """One config's candidate as an auto_scheduler task: its tensors, target, workload."""

    def __init__(self, task, tensors, dag: ComputeDAG):
        self.args, self.target, self.compute_dag = list(tensors), task.target, dag
        self.workload_key = dag.workload_key()
        self.desc = f"autotvm {task.name}{tuple(task.args)}"
        self.cold_inputs = ()


class Measurer:
    """Builds and runs configs of one task; keeps the worker process between batches."""

    def __init__(self, task, option: dict):
        b, r = option["builder"], option["runner"]
        self.task = task
        self.runner = _Runner(**r.kwargs)
        self.measurer = ProgramMeasurer(_Builder(b.timeout, b.n_parallel), self.runner,
                                        verbose=0)
        self.n_parallel = b.n_parallel

    def measure(self, configs: list) -> list:
        """One MeasureResult per config, in order (never raises for a bad config)."""
        results: list = [None] * len(configs)
        inputs, where = [], []
        for i, cfg in enumerate(configs):
            made = instantiate(self.task, cfg, lambda sch, tensors: ComputeDAG(list(tensors)))
            if isinstance(made, MeasureResult):
                results[i] = made
                continue
            sch, tensors, dag = made
            ctask = _ConfigTask(self.task, tensors, dag)
            inputs.append(_Input(ctask, getattr(sch, "state", sch)))
            where.append(i)
        if inputs:  # configs of one compute share one reference output (the naive schedule)
            outs = self.measurer.measure(inputs[0].task, [], inputs=inputs)
            for j, res in zip(where, outs, strict=True):
                results[j] = result_of(res)
        return results

    def close(self) -> None:
        self.runner.close()


def instantiate(task, cfg, prepare):
    """(schedule, tensors, prepare(schedule, tensors)) of a config, or the MeasureResult of
    its instantiation error (the template raised, called raise_error, or `prepare` failed):
    a bad config is that config's error, never the tuner's."""
    t0 = time.time()
    try:
        sch, tensors = task.instantiate(cfg)
        if not cfg.valid():
            raise KilnError("; ".join(cfg.errors))
        return sch, tensors, prepare(sch, tensors)
    except Exception as err:  # noqa: BLE001
        return MeasureResult([f"{type(err).__name__}: {err}"],
                             MeasureErrorNo.INSTANTIATION_ERROR, time.time() - t0, time.time())


def result_of(res) -> MeasureResult:
    """The autotvm MeasureResult of an auto-scheduler MeasureResult."""
    code = _ERROR_NO.get(res.error_no, MeasureErrorNo.UNKNOWN_ERROR)
    costs = list(res.costs) if code == MeasureErrorNo.NO_ERROR else [res.error_msg[:500]]
    return MeasureResult(costs, code, float(res.all_cost), float(res.timestamp))


__all__ = ["LocalBuilder", "LocalRunner", "MeasureErrorNo", "MeasureInput", "MeasureResult",
           "Measurer", "RPCRunner", "make_measurer", "measure_option", "result_of"]
