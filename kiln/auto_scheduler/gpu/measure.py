"""Measuring GPU candidates: compile on the CPU cores, run in a worker that owns the GPU.

In: lowered candidates (GpuSpace.lowered: State, PrimFunc, launch plan) of one task, and the
task's reference (its default GPU schedule, built the same way).
Out: `GpuBuilder.build(target, cands) -> [(cubin path | None, error kind, message)]` (NVRTC
in a pool of spawned processes; no GPU needed; candidates whose kernels spill registers are
dropped as compile errors, read from ptxas's report); `GpuRunner.run(items) ->
[MeasureResult]`: every output checked against the reference output on the GPU (relative
error <= 1e-4), then timed with CUDA events (a CUDA graph of the launches, repeated until a
repeat lasts min_repeat_ms, so microsecond kernels are timed over many launches; optionally
with the L2 flushed before each repeat).
Why a worker process: an illegal address poisons a CUDA context for good; the worker that
owned it exits, the candidate is recorded as a runtime error, a fresh worker takes the next
one, and the tuner never stops. A candidate running past the timeout is killed the same way.
Runners share one protocol (`set_task(task, reference)`, `run(items)`), so tests use a fake
runner (the loop-IR interpreter and an analytical cost) and a cluster could use remote ones.
"""

from __future__ import annotations

import multiprocessing as mp
import os
import time
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout

import numpy as np

from ..measure.common import ErrorNo, MeasureResult, arg_specs

REL_TOL = 1e-4


def _compile_job(source: str, arch: str):
    from ...codegen import nvrtc
    path = nvrtc.compile_cuda(source, arch)
    return path, nvrtc.ptxas_info(path)


class GpuBuilder:
    """NVRTC compiles in parallel worker processes (spawned: no CUDA state is inherited)."""

    def __init__(self, n_parallel: int | None = None, timeout: float = 60.0):
        self.n_parallel = n_parallel or max(1, (os.cpu_count() or 2) - 1)
        self.timeout = timeout
        self._pool = None

    def _executor(self) -> ProcessPoolExecutor:
        if self._pool is None:
            self._pool = ProcessPoolExecutor(self.n_parallel, mp_context=mp.get_context("spawn"))
        return self._pool

    def build(self, target, sources: list, plans: list | None = None) -> list:
        """[(cubin path or None, error kind, message)] for CUDA sources, in order. With the
        launch plans, a kernel whose registers x threads exceed the target's registers per
        block (it could not launch) is a compile error too."""
        futures = [self._executor().submit(_compile_job, src, target.arch) for src in sources]
        out = []
        for k, fut in enumerate(futures):
            try:
                path, info = fut.result(timeout=self.timeout)
            except FutureTimeout:
                out.append((None, ErrorNo.COMPILE, f"NVRTC ran past {self.timeout:.0f} s"))
                continue
            except Exception as err:  # noqa: BLE001 - a compile failure costs one candidate
                out.append((None, ErrorNo.COMPILE, str(err).splitlines()[0][:300]))
                continue
            spills = {n: v["spill_stores"] for n, v in info.items() if v.get("spill_stores")}
            too_big = _register_overflow(info, plans[k] if plans else None,
                                         target.max_registers_per_block)
            if spills:
                out.append((None, ErrorNo.COMPILE, f"register spills {spills}"))
            elif too_big:
                out.append((None, ErrorNo.COMPILE, too_big))
            else:
                out.append((path, ErrorNo.OK, ""))
        return out

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(cancel_futures=True)
            self._pool = None


def _register_overflow(info: dict, plan: dict | None, limit: int) -> str:
    """Why a kernel of `plan` cannot launch for lack of registers, or ""."""
    for kern in (plan or {}).get("kernels", []):
        regs = info.get(kern["name"], {}).get("registers", 0)
        threads = kern["block"][0] * kern["block"][1] * kern["block"][2]
        if regs * threads > limit:
            return (f"{kern['name']} needs {regs} registers x {threads} threads per block, "
                    f"more than the target's {limit}")
    return ""


# ---------------------------------------------------------------- the worker (own process)

def _inputs(specs: list, seed: int) -> list:
    rng = np.random.default_rng(seed)
    out = []
    for sp in specs:
        if sp["output"]:
            out.append(np.full(sp["shape"], np.nan, sp["dtype"]) if "float" in sp["dtype"]
                       else np.zeros(sp["shape"], sp["dtype"]))
        elif "float" in sp["dtype"]:
            out.append(rng.standard_normal(sp["shape"]).astype(sp["dtype"]))
        else:
            out.append(rng.integers(0, 4, sp["shape"]).astype(sp["dtype"]))
    return out


def _worker(conn) -> None:
    """Serve ("task", ...) and ("measure", ...) requests until told to stop."""
    from ...errors import KilnError
    from ...runtime import ndarray as nd
    from ...runtime.cuda_module import CudaModule
    state: dict = {}
    while True:
        try:
            msg = conn.recv()
        except (EOFError, OSError):  # the tuner went away without saying stop
            return
        if msg[0] == "stop":
            return
        try:
            if msg[0] == "task":
                _, specs, ref_path, ref_plan, seed = msg
                host = _inputs(specs, seed)
                args = [nd.array(a, nd.cuda(0)) for a in host]
                CudaModule(ref_path, ref_plan, "")(*args)
                state.update(specs=specs, args=args,
                             ref=[a.numpy() for a, s in zip(args, specs) if s["output"]])
                conn.send(("ok",))
                continue
            _, path, plan, repeat, min_ms, flush = msg
            conn.send(_measure_one(state, CudaModule(path, plan, ""), repeat, min_ms, flush))
        except KilnError as err:
            poisoned = "unusable" in str(err) or "illegal" in str(err).lower()
            conn.send(("error", ErrorNo.RUNTIME, str(err).splitlines()[0][:300], poisoned))
            if poisoned:
                return  # the context is poisoned: the parent starts a fresh worker


def _measure_one(state: dict, mod, repeat: int, min_ms: float, flush: bool) -> tuple:
    args, specs = state["args"], state["specs"]
    for a, sp in zip(args, specs):
        if sp["output"] and "float" in sp["dtype"]:
            a.copyfrom(np.full(sp["shape"], np.nan, sp["dtype"]))
    mod(*args)
    outs = [a.numpy() for a, sp in zip(args, specs) if sp["output"]]
    for got, want in zip(outs, state["ref"]):
        err = float(np.linalg.norm(got.astype(np.float64) - want) /
                    max(np.linalg.norm(want.astype(np.float64)), 1e-30))
        if not np.isfinite(err) or err > REL_TOL:
            return ("error", ErrorNo.WRONG_ANSWER, f"relative error {err:.3g} vs the reference")
    res = mod.time_evaluator(number=1, repeat=repeat, min_repeat_ms=min_ms,
                             f_preproc="cache_flush" if flush else "")(*args)
    return ("ok", list(res.results))


class GpuRunner:
    """Measures candidates in a worker process owning the CUDA context (restarted when a
    candidate poisons it or runs past `timeout` seconds)."""

    def __init__(self, repeat: int = 3, min_repeat_ms: float = 20.0, timeout: float = 20.0,
                 flush_l2: bool = False, seed: int = 0):
        self.repeat, self.min_repeat_ms, self.timeout = repeat, min_repeat_ms, timeout
        self.flush_l2, self.seed = flush_l2, seed
        self._proc = self._conn = None
        self._task_msg = None

    def set_task(self, task, reference: tuple) -> None:
        """reference: (cubin path, launch plan, PrimFunc) of the task's default schedule."""
        self._task_msg = ("task", arg_specs(task), reference[0], reference[1], self.seed)
        self._send_task()

    def _start(self) -> None:
        ctx = mp.get_context("spawn")
        self._conn, child = ctx.Pipe()
        self._proc = ctx.Process(target=_worker, args=(child,), daemon=True)
        self._proc.start()

    def _send_task(self) -> None:
        if self._proc is None or not self._proc.is_alive():
            self._start()
        self._conn.send(self._task_msg)
        reply = self._wait(self.timeout * 3)
        if reply is None or reply[0] != "ok":
            self.close()
            from ...errors import DeviceError
            raise DeviceError(f"the GPU measurement worker could not run the reference: "
                              f"{reply}")

    def _wait(self, timeout: float):
        """The worker's reply; None when it ran past `timeout`; ("gone",) when it died."""
        try:
            if self._conn.poll(timeout):
                return self._conn.recv()
        except (EOFError, OSError):
            return ("gone",)
        return None

    def run(self, items: list) -> list:
        """items: (cubin path, launch plan, PrimFunc) per candidate -> MeasureResults."""
        out = []
        for path, plan, *_ in items:
            t0 = time.time()
            reply = None
            for _ in range(2):  # the worker died before or while running it: once more
                if self._proc is None or not self._proc.is_alive():
                    self._send_task()
                try:
                    self._conn.send(("measure", path, plan, self.repeat, self.min_repeat_ms,
                                     self.flush_l2))
                except (OSError, BrokenPipeError):
                    reply = ("gone",)
                else:
                    reply = self._wait(self.timeout)
                if reply != ("gone",):
                    break
                self.close()
            out.append(self._result(reply, time.time() - t0))
        return out

    def _result(self, reply, elapsed: float) -> MeasureResult:
        if reply == ("gone",):  # died while running it (an illegal address, say)
            self.close()
            return MeasureResult([], ErrorNo.RUNTIME, "the worker died (illegal address?)",
                                 elapsed)
        if reply is None:  # hung or died: kill it, a fresh worker takes the next candidate
            died = self._proc is not None and not self._proc.is_alive()
            self.close()
            kind = ErrorNo.RUNTIME if died else ErrorNo.TIMEOUT
            msg = "the worker died (illegal address?)" if died else \
                f"ran past {self.timeout:.0f} s"
            return MeasureResult([], kind, msg, elapsed)
        if reply[0] == "ok":
            return MeasureResult(reply[1], ErrorNo.OK, "", elapsed, checked=True)
        if len(reply) > 3 and reply[3]:  # its context is poisoned and it is exiting: wait
            self.close()
        return MeasureResult([], reply[1], reply[2], elapsed)

    def close(self) -> None:
        if self._proc is not None:
            try:
                self._conn.send(("stop",))
            except (OSError, BrokenPipeError):
                pass
            self._proc.join(timeout=2)
            if self._proc.is_alive():
                self._proc.kill()
        self._proc = self._conn = None


def as_gpu_builder(builder):
    """The GPU builder for TuningOptions' builder: None or "local" -> None (the policy's
    default); a CPU LocalBuilder (what TVM's scripts pass) -> a GpuBuilder with its timeout
    and parallelism; a GPU builder (or a test's fake) as it is."""
    from ..measure import LocalBuilder
    if builder is None or isinstance(builder, str):
        return None
    if isinstance(builder, LocalBuilder):
        return GpuBuilder(n_parallel=builder.n_parallel, timeout=max(60.0, builder.timeout))
    return builder


def as_gpu_runner(runner):
    """The GPU runner for TuningOptions' runner: a CPU LocalRunner (e.g. TVM's
    LocalRPCMeasureContext().runner) -> a GpuRunner with its repeat, min_repeat_ms and
    timeout; None / "local" -> None; a GPU runner (or a fake) as it is."""
    from ..measure import LocalRunner
    if runner is None or isinstance(runner, str):
        return None
    if isinstance(runner, LocalRunner):
        return GpuRunner(repeat=runner.repeat, min_repeat_ms=max(1.0, runner.min_repeat_ms),
                         timeout=runner.timeout)
    return runner
