"""LocalRunner: built candidates in, measured seconds (or an error kind) out.

In: MeasureInputs and their BuildResults (from LocalBuilder, or any BuildResult whose library
exports a kiln kernel with the task's argument shapes).
Out: one MeasureResult per candidate: costs (seconds per run, one per repeat) when the output
matched the reference, else "runtime" / "timeout" / "wrong_answer" (build errors pass through).
Why: generated code can segfault or hang. Every candidate runs in a long-lived worker process
(worker.py, JSON lines over pipes); a crash (EOF) or a timeout (the runner kills it) costs that
candidate only, and the next one gets a fresh worker. The reference output of a task is
computed once, by the task's default schedule (naive loops, trusted) built like any candidate
(the measurer hands it over with set_reference(); a runner used on its own builds it with a
LocalBuilder), and kept as .npy files that the worker loads; compute graphs never cross the
process boundary.

Split for other machines: MeasureExecutor is the part that runs where the measurement happens
(worker process, reference files) and takes plain data only (a job dict and a BuildResult);
LocalRunner adds the tuner-side part that turns tasks and States into those jobs (measure_job,
reference_job), which a Ray runner reuses to feed executors in actors on other nodes.
"""

from __future__ import annotations

import hashlib
import json
import os
import select
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import warnings
import weakref
from collections.abc import Callable

from ...schedule.layout import input_layouts
from .builder import LocalBuilder
from .common import BuildResult, ErrorNo, MeasureInput, MeasureResult, arg_specs

START_TIMEOUT = 60.0       # seconds for a fresh worker to import numpy and kiln
MAX_RUNS_PER_WORKER = 256  # loaded libraries are never unloaded: recycle the worker now and then
STDERR_TAIL = 400


class WorkerDied(Exception):
    """The worker exited (crash, signal) before answering."""


class WorkerTimeout(Exception):
    """The worker did not answer in time."""


class Worker:
    """One child process speaking JSON lines; call() sends a request and waits for the reply.

    The child runs in its own session (a Ctrl-C at the terminal reaches the tuner only, which
    decides what to stop), with an isolated sys.path (only the kiln this process runs, never a
    `kiln/` folder of the current directory) and a watchdog that ends it when we die.
    """

    def __init__(self):
        self.err = tempfile.TemporaryFile()
        self.proc = subprocess.Popen(
            worker_command(), stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self.err,
            bufsize=0, start_new_session=True)
        self.buf = b""
        self.runs = 0
        self._finalizer = weakref.finalize(self, _kill, self.proc)
        try:
            self._read(time.monotonic() + START_TIMEOUT)  # the {"ready": true} line
        except BaseException:
            self.kill()
            raise

    def call(self, request: dict, timeout: float) -> dict:
        self.runs += 1
        try:
            self.proc.stdin.write((json.dumps(request) + "\n").encode())
        except (BrokenPipeError, OSError):
            raise WorkerDied(self.death_message()) from None
        return self._read(time.monotonic() + timeout)

    def _read(self, deadline: float) -> dict:
        fd = self.proc.stdout.fileno()
        while b"\n" not in self.buf:
            left = deadline - time.monotonic()
            if left <= 0:
                raise WorkerTimeout()
            ready, _, _ = select.select([fd], [], [], left)
            if not ready:
                continue
            chunk = os.read(fd, 1 << 16)
            if not chunk:
                raise WorkerDied(self.death_message())
            self.buf += chunk
        line, _, self.buf = self.buf.partition(b"\n")
        return json.loads(line)

    def death_message(self) -> str:
        try:
            rc = self.proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            rc = None
        if rc is not None and rc < 0:
            how = f"killed by signal {signal.Signals(-rc).name}"
        else:
            how = f"exited with code {rc}"
        return f"worker process {how}{self.stderr_tail()}"

    def stderr_tail(self) -> str:
        try:
            self.err.seek(0, os.SEEK_END)
            size = self.err.tell()
            self.err.seek(max(0, size - STDERR_TAIL))
            text = self.err.read().decode(errors="replace").strip()
        except OSError:
            return ""
        return f"; stderr: ...{text}" if text else ""

    def kill(self) -> None:
        self._finalizer()
        self.err.close()


def worker_command() -> list:
    """`python -I` (no cwd, PYTHONPATH or user site on sys.path) running the worker, with
    sys.path set to the kiln package this process imported followed by our own sys.path
    entries (minus the current directory), and our pid for the worker's watchdog."""
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(
        os.path.abspath(__file__)))))
    cwd = os.getcwd()
    paths = [root] + [p for p in sys.path if p and os.path.abspath(p) != cwd]
    code = ("import json, sys; sys.path[:] = json.loads(sys.argv[1]); "
            "from kiln.auto_scheduler.measure.worker import main; main(int(sys.argv[2]))")
    return [sys.executable, "-I", "-c", code, json.dumps(paths), str(os.getpid())]


def _kill(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.kill()
    proc.wait()
    for f in (proc.stdin, proc.stdout):
        if f is not None:
            f.close()


class MeasureExecutor:
    """The measuring end: a worker process and the reference files, fed plain data only.

    execute(job, build) measures one built candidate described by a job (measure_job());
    add_reference(ref_job) computes a task's reference outputs (reference_job()) once.
    """

    def __init__(self, timeout: float = 10):
        self.timeout = float(timeout)
        self._worker: Worker | None = None
        self.refs: dict = {}  # reference key -> reference dir, or None (no reference)
        self._ref_root = tempfile.mkdtemp(prefix="kiln-ref-")
        self._finalizer = weakref.finalize(self, shutil.rmtree, self._ref_root, True)

    def execute(self, job: dict, build: BuildResult) -> dict:
        """The worker's reply for one candidate (error kinds, never raises for a bad one)."""
        try:
            lib = build.local_path()
        except (OSError, ValueError) as err:
            return {"error_no": ErrorNo.RUNTIME, "error_msg": f"library unavailable: {err}"}
        key = job.get("ref_key")
        request = dict(job, lib=lib, ref_dir=self.refs.get(key) if key else None)
        request.pop("ref_key", None)
        reply = self._call(request, self.timeout)
        if reply["error_no"] == ErrorNo.TIMEOUT:
            # a busy machine can stall one run: a timeout is stored only if it happens twice
            reply = self._call(request, self.timeout)
        return reply

    def add_reference(self, ref_job: dict) -> str | None:
        """Run the reference build of ref_job once; its directory (None: no reference)."""
        key = ref_job["key"]
        if key in self.refs:
            return self.refs[key]
        build = ref_job["build"]
        if build is None or not build.ok:
            why = "the default schedule did not build: " + (build.error_msg if build else "")
            self.refs[key] = _no_reference(ref_job["desc"], why)
            return None
        ref_dir = os.path.join(self._ref_root, key)
        limit = max(60.0, 6 * self.timeout)
        try:
            lib = build.local_path()
        except (OSError, ValueError) as err:
            reply = {"error_no": ErrorNo.RUNTIME, "error_msg": str(err)}
        else:
            reply = self._call({"cmd": "reference", "lib": lib, "specs": ref_job["specs"],
                                "seed": ref_job["seed"], "dir": ref_dir}, limit)
        if reply["error_no"] != ErrorNo.OK:
            self.refs[key] = _no_reference(ref_job["desc"], reply.get("error_msg", ""))
        else:
            self.refs[key] = ref_dir
        return self.refs[key]

    def close(self) -> None:
        """Stop the worker and delete the reference files."""
        self._drop_worker()
        self._finalizer()

    def _call(self, request: dict, timeout: float) -> dict:
        """The worker's reply, or a "runtime"/"timeout" reply when it died or hung."""
        try:
            if self._worker is None or self._worker.runs >= MAX_RUNS_PER_WORKER:
                self._restart()
            return self._worker.call(request, timeout)
        except (KeyboardInterrupt, SystemExit):
            self._drop_worker()  # its reply to this request must never answer the next one
            raise
        except WorkerDied as err:
            self._drop_worker()
            return {"error_no": ErrorNo.RUNTIME, "error_msg": str(err)}
        except WorkerTimeout:
            tail = self._worker.stderr_tail() if self._worker else ""
            self._drop_worker()
            return {"error_no": ErrorNo.TIMEOUT,
                    "error_msg": f"no answer within {timeout:g} s; worker killed{tail}"}

    def _restart(self) -> None:
        self._drop_worker()
        self._worker = Worker()

    def _drop_worker(self) -> None:
        if self._worker is not None:
            self._worker.kill()
            self._worker = None


class LocalRunner(MeasureExecutor):
    """Runs candidates one at a time in a worker process, with a timeout per candidate.

    enable_cpu_cache_flush: "auto" (default) evicts a task's cold inputs (the model weights of
    graph tasks, SearchTask.cold_inputs) from the caches before every timed call, as they are
    inside the network; True evicts every argument but the first (TVM's
    "cache_flush_cpu_non_first_arg"); False times everything warm. Records say which
    ("cache": "flushed" or "warm").
    """

    def __init__(self, timeout: float = 10, number: int = 3, repeat: int = 1,
                 min_repeat_ms: float = 100, cooldown_interval: float = 0,
                 enable_cpu_cache_flush: bool | str = "auto", check_correctness: bool = True):
        super().__init__(timeout)
        self.number, self.repeat = max(1, int(number)), max(1, int(repeat))
        self.min_repeat_ms = float(min_repeat_ms)
        self.cooldown_interval = float(cooldown_interval)
        self.enable_cpu_cache_flush = check_flush_mode(enable_cpu_cache_flush)
        self.check_correctness = check_correctness
        self._ref_builds: dict = {}  # workload key -> BuildResult of the default schedule

    # ------------------------------------------------------------ public
    def run(self, inputs: list[MeasureInput], build_results: list[BuildResult],
            on_result: Callable[[int, MeasureResult], None] | None = None) -> list[MeasureResult]:
        """Measure each built candidate in order; `on_result(i, result)` after each one."""
        results = []
        for i, (inp, br) in enumerate(zip(inputs, build_results, strict=True)):
            res = self.run_one(inp, br)
            results.append(res)
            if on_result is not None:
                on_result(i, res)
            if self.cooldown_interval > 0:
                time.sleep(self.cooldown_interval)
        return results

    def set_reference(self, task, build: BuildResult) -> None:
        """The build of the task's default schedule (reference_input()), made by the builder."""
        self._ref_builds[task.workload_key] = build

    def run_one(self, inp: MeasureInput, br: BuildResult) -> MeasureResult:
        if not br.ok:
            return MeasureResult([], br.error_no, br.error_msg, br.time_cost, time.time())
        t0 = time.perf_counter()
        try:
            job = self.job(inp)
        except Exception as err:  # noqa: BLE001 - a bad task is this candidate's error
            return self._result({"error_no": ErrorNo.RUNTIME,
                                 "error_msg": f"{type(err).__name__}: {err}"}, br, t0)
        return self._result(self.execute(job, br), br, t0)

    def job(self, inp: MeasureInput) -> dict:
        """The plain-data job of one candidate; makes the task's reference here first."""
        job = measure_job(inp, self)
        if job["ref_key"] and job["ref_key"] not in self.refs:
            self.add_reference(self.reference_job(inp.task))
        return job

    def reference_job(self, task) -> dict:
        """The task's reference job, from the builder's build (or a LocalBuilder's)."""
        build = self._ref_builds.get(task.workload_key)
        if build is None or not build.ok:
            limit = max(60.0, 6 * self.timeout)
            build = LocalBuilder(timeout=limit, n_parallel=1).build([reference_input(task)])[0]
        return reference_job(task, build)

    def __enter__(self) -> LocalRunner:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # ------------------------------------------------------------ helpers
    def _request(self, inp: MeasureInput, br: BuildResult) -> dict:
        """The worker request of one candidate (job plus library path and reference dir)."""
        job = self.job(inp)
        key = job.pop("ref_key")
        return dict(job, lib=br.local_path(), ref_dir=self.refs.get(key) if key else None)

    def _result(self, reply: dict, br: BuildResult, t0: float) -> MeasureResult:
        return result_of(reply, br.time_cost + time.perf_counter() - t0)


def result_of(reply: dict, all_cost: float) -> MeasureResult:
    """The MeasureResult of a worker reply."""
    ok = reply["error_no"] == ErrorNo.OK
    return MeasureResult(list(reply.get("costs", [])) if ok else [], reply["error_no"],
                         reply.get("error_msg", ""), all_cost, time.time(),
                         checked=bool(ok and reply.get("checked")),
                         cache=reply.get("cache", "warm"))


def reference_input(task) -> MeasureInput:
    """The task's default schedule (naive loops, trusted) as a candidate to build."""
    return MeasureInput(task, task.compute_dag.init_state(), extra={"reference": True})


def reference_key(task) -> str:
    """Names a task's reference outputs (workload and argument specs)."""
    text = json.dumps([task.workload_key, arg_specs(task)])
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def reference_job(task, build: BuildResult | None) -> dict:
    """Plain data from which an executor computes the task's reference outputs."""
    return {"key": reference_key(task), "specs": arg_specs(task),
            "seed": _seed(task.workload_key), "build": build,
            "desc": f"{task.desc} ({task.workload_key})"}


def measure_job(inp: MeasureInput, settings) -> dict:
    """Plain data describing how to measure one candidate (no paths of this machine):
    argument specs with packed layouts, seed, timing settings, the reference key."""
    task = inp.task
    specs = arg_specs(task)
    layouts = input_layouts(inp.state, task.args)
    specs = [dict(sp, layout=[list(p) for p in lay]) if lay else sp
             for sp, lay in zip(specs, layouts)]
    return {"cmd": "measure", "specs": specs, "seed": _seed(task.workload_key),
            "number": settings.number, "repeat": settings.repeat,
            "min_repeat_ms": settings.min_repeat_ms,
            "flush_args": flush_args(task, settings.enable_cpu_cache_flush),
            "ref_key": reference_key(task) if settings.check_correctness else None}


def _no_reference(desc: str, why: str) -> None:
    warnings.warn(f"kiln: no reference output for {desc}; its "
                  f"candidates are timed without a correctness check: {why[:300]}", stacklevel=3)
    return None


def _seed(workload_key: str) -> int:
    return int(hashlib.sha256(workload_key.encode()).hexdigest()[:8], 16)


def check_flush_mode(mode: bool | str) -> bool | str:
    """`mode` when it is a valid enable_cpu_cache_flush value, else ValueError."""
    if mode not in (True, False, "auto"):
        raise ValueError(f"enable_cpu_cache_flush must be True, False or 'auto', not {mode!r}")
    return mode


def flush_args(task, mode: bool | str) -> list[int]:
    """Indices of the task's arguments to evict before every timed call (see LocalRunner)."""
    if mode == "auto":
        cold = set(getattr(task, "cold_inputs", ()))
        return [i for i, t in enumerate(task.args) if t.name in cold]
    return list(range(1, len(task.args))) if check_flush_mode(mode) else []  # TVM's
    # cache_flush_cpu_non_first_arg when True


class LocalRPCMeasureContext:
    """TVM's LocalRPCMeasureContext: `.runner` measures candidates in a local worker process.
    kiln's LocalRunner already isolates every measurement in a worker (a crash or hang is a
    recorded error, never the tuner's end), so no RPC tracker or server is started; the same
    runner serves CUDA tasks (their GPU runner takes its repeat, min_repeat_ms and timeout).
    """

    def __init__(self, priority: int = 1, n_parallel: int = 1, timeout: float = 10,
                 number: int = 3, repeat: int = 1, min_repeat_ms: float = 0,
                 cooldown_interval: float = 0.0, enable_cpu_cache_flush: bool | str = "auto",
                 device: int = 0):
        self.runner = LocalRunner(timeout=timeout, number=number, repeat=repeat,
                                  min_repeat_ms=min_repeat_ms,
                                  cooldown_interval=cooldown_interval,
                                  enable_cpu_cache_flush=enable_cpu_cache_flush)
