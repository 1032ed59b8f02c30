"""LocalRunner: built candidates in, measured seconds (or an error kind) out.

In: MeasureInputs and their BuildResults (from LocalBuilder, or any BuildResult whose library
exports a kiln kernel with the task's argument shapes).
Out: one MeasureResult per candidate: costs (seconds per run, one per repeat) when the output
matched the reference, else "runtime" / "timeout" / "wrong_answer" (build errors pass through).
Why: generated code can segfault or hang. Every candidate runs in a long-lived worker process
(worker.py, JSON lines over pipes); a crash (EOF) or a timeout (the runner kills it) costs that
candidate only, and the next one gets a fresh worker. The reference output of a task is
computed once, by the task's default schedule (naive loops, trusted), and kept as .npy files
that the worker loads; compute graphs never cross the process boundary.
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

from ...codegen.c import render
from ...schedule.layout import input_layouts
from ...tir.lower import lower
from .builder import compile_with_timeout
from .common import BuildResult, ErrorNo, MeasureInput, MeasureResult, arg_specs

START_TIMEOUT = 60.0       # seconds for a fresh worker to import numpy and kiln
MAX_RUNS_PER_WORKER = 256  # loaded libraries are never unloaded: recycle the worker now and then
FLUSH_CAP = 256 << 20
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


class LocalRunner:
    """Runs candidates one at a time in a worker process, with a timeout per candidate."""

    def __init__(self, timeout: float = 10, number: int = 3, repeat: int = 1,
                 min_repeat_ms: float = 100, cooldown_interval: float = 0,
                 enable_cpu_cache_flush: bool = False, check_correctness: bool = True):
        self.timeout = float(timeout)
        self.number, self.repeat = max(1, int(number)), max(1, int(repeat))
        self.min_repeat_ms = float(min_repeat_ms)
        self.cooldown_interval = float(cooldown_interval)
        self.enable_cpu_cache_flush = enable_cpu_cache_flush
        self.check_correctness = check_correctness
        self._worker: Worker | None = None
        self._refs: dict = {}  # (workload key, specs) -> reference dir or None
        self._ref_root = tempfile.mkdtemp(prefix="kiln-ref-")
        self._finalizer = weakref.finalize(self, shutil.rmtree, self._ref_root, True)

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

    def run_one(self, inp: MeasureInput, br: BuildResult) -> MeasureResult:
        if br.error_no != ErrorNo.OK or br.lib_path is None:
            return MeasureResult([], br.error_no, br.error_msg, br.time_cost, time.time())
        t0 = time.perf_counter()
        try:
            request = self._request(inp, br)
        except Exception as err:  # noqa: BLE001 - a bad task is this candidate's error
            return self._result({"error_no": ErrorNo.RUNTIME,
                                 "error_msg": f"{type(err).__name__}: {err}"}, br, t0)
        reply = self._call(request, self.timeout)
        if reply["error_no"] == ErrorNo.TIMEOUT:
            # a busy machine can stall one run: a timeout is stored only if it happens twice
            reply = self._call(request, self.timeout)
        return self._result(reply, br, t0)

    def close(self) -> None:
        """Stop the worker and delete the reference files."""
        if self._worker is not None:
            self._worker.kill()
            self._worker = None
        self._finalizer()

    def __enter__(self) -> LocalRunner:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # ------------------------------------------------------------ helpers
    def _request(self, inp: MeasureInput, br: BuildResult) -> dict:
        specs = arg_specs(inp.task)
        ref_dir = self._reference(inp.task, specs) if self.check_correctness else None
        layouts = input_layouts(inp.state, inp.task.args)
        specs = [dict(sp, layout=[list(p) for p in lay]) if lay else sp
                 for sp, lay in zip(specs, layouts)]
        flush = _flush_bytes(inp.task.target) if self.enable_cpu_cache_flush else 0
        return {"cmd": "measure", "lib": br.lib_path, "specs": specs, "ref_dir": ref_dir,
                "seed": _seed(inp.task.workload_key), "number": self.number,
                "repeat": self.repeat, "min_repeat_ms": self.min_repeat_ms,
                "flush_bytes": flush}

    def _result(self, reply: dict, br: BuildResult, t0: float) -> MeasureResult:
        ok = reply["error_no"] == ErrorNo.OK
        return MeasureResult(list(reply.get("costs", [])) if ok else [], reply["error_no"],
                             reply.get("error_msg", ""),
                             br.time_cost + time.perf_counter() - t0, time.time(),
                             checked=bool(ok and reply.get("checked")))

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

    def _reference(self, task, specs: list) -> str | None:
        """Directory with the task's reference inputs/outputs (built once per workload)."""
        key = (task.workload_key, json.dumps(specs))
        if key not in self._refs:
            self._refs[key] = self._make_reference(task, specs)
        return self._refs[key]

    def _make_reference(self, task, specs: list) -> str | None:
        digest = hashlib.sha256(json.dumps([task.workload_key, specs]).encode()).hexdigest()[:16]
        ref_dir = os.path.join(self._ref_root, digest)
        limit = max(60.0, 6 * self.timeout)
        try:
            func = lower(task.compute_dag.init_state(), task.args)
            lib = compile_with_timeout(render(func, task.target), task.target, limit)
        except Exception as err:  # noqa: BLE001
            return _no_reference(task, f"the default schedule did not build: {err}")
        reply = self._call({"cmd": "reference", "lib": lib, "specs": specs,
                            "seed": _seed(task.workload_key), "dir": ref_dir}, limit)
        if reply["error_no"] != ErrorNo.OK:
            return _no_reference(task, reply.get("error_msg", ""))
        return ref_dir


def _no_reference(task, why: str) -> None:
    warnings.warn(f"kiln: no reference output for {task.desc} ({task.workload_key}); its "
                  f"candidates are timed without a correctness check: {why[:300]}", stacklevel=3)
    return None


def _seed(workload_key: str) -> int:
    return int(hashlib.sha256(workload_key.encode()).hexdigest()[:8], 16)


def _flush_bytes(target) -> int:
    """Twice the last-level cache (capped), enough to evict the kernel's data between repeats."""
    sizes = getattr(target, "cache_sizes", {}) or {}
    last = sizes.get("l3") or sizes.get("l2") or (8 << 20)
    return int(min(FLUSH_CAP, 2 * last))
