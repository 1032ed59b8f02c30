"""The values that flow through measurement: MeasureInput -> BuildResult -> MeasureResult.

In: a SearchTask and a State to measure (MeasureInput).
Out: plain data: what the builder made (BuildResult: the library, as a path on the building
machine and/or its bytes with their sha256, and the source, or an error) and what the runner saw
(MeasureResult: seconds per run, or an error kind).
Why: builder, runner, measurer and the record writer share these types and nothing else; the
error kinds are strings so that they read the same in a record file and in Python.
"""

from __future__ import annotations

import hashlib
import math
import os
import tempfile
import time
from dataclasses import dataclass, field, replace

from ...te.tensor import PlaceholderOp


class ErrorNo:
    """Kinds of measurement outcome (the `error` field of a record)."""

    OK = "ok"
    LOWER = "lower"            # the state could not be lowered to the loop IR
    COMPILE = "compile"        # C generation or the C compiler failed (or timed out)
    RUNTIME = "runtime"        # the kernel crashed, returned an error code or could not load
    TIMEOUT = "timeout"        # the kernel ran past the runner's timeout and was killed
    WRONG_ANSWER = "wrong_answer"  # outputs differ from the reference (default schedule)

    ALL = (OK, LOWER, COMPILE, RUNTIME, TIMEOUT, WRONG_ANSWER)


@dataclass
class MeasureInput:
    """One candidate: a task and a State of its DAG. `extra` is passed into the record's "meta"."""

    task: object
    state: object
    extra: dict | None = None


@dataclass
class BuildResult:
    """A compiled candidate, or an error (then neither lib_path nor artifact is set).

    `lib_path` is the library on the machine that built it; `artifact` its bytes and `sha256`
    their hash, set by packed() when the result leaves that machine (a Ray builder, a runner
    in another process). A local builder leaves the bytes unread: a local runner loads the path.
    """

    lib_path: str | None
    source: str
    error_no: str = ErrorNo.OK
    error_msg: str = ""
    time_cost: float = 0.0
    artifact: bytes | None = field(default=None, repr=False)
    sha256: str = ""

    @property
    def ok(self) -> bool:
        """Built, with a library to run."""
        return self.error_no == ErrorNo.OK and (self.lib_path is not None or
                                                self.artifact is not None)

    def packed(self) -> BuildResult:
        """This result carrying its library's bytes and sha256 (read once from lib_path)."""
        if self.artifact is not None or not self.ok:
            return self
        with open(self.lib_path, "rb") as f:
            data = f.read()
        return replace(self, artifact=data, sha256=hashlib.sha256(data).hexdigest())

    def local_path(self, cache_dir: str | None = None) -> str:
        """A path to the library on this machine: the bytes written once to
        `<cache>/artifacts/<sha256>.so` when they travelled with the result, else lib_path."""
        if self.artifact is None:
            if self.lib_path is None:
                raise ValueError("the build failed: no library")
            return self.lib_path
        if hashlib.sha256(self.artifact).hexdigest() != self.sha256:
            raise ValueError("the library's bytes do not match their sha256 (corrupted)")
        folder = os.path.join(cache_dir or _cache_dir(), "artifacts")
        path = os.path.join(folder, f"{self.sha256}.so")
        if not os.path.exists(path):
            os.makedirs(folder, exist_ok=True)
            fd, tmp = tempfile.mkstemp(dir=folder, suffix=".so.tmp")
            with os.fdopen(fd, "wb") as f:
                f.write(self.artifact)
            os.replace(tmp, path)  # atomic: concurrent runners on one node agree
        return path


def _cache_dir() -> str:
    from ...codegen import toolchain
    return toolchain.cache_dir()


@dataclass
class MeasureResult:
    """What one candidate measured: seconds per run (one per repeat) or an error.

    `costs` is empty unless error_no is "ok"; `all_cost` is the wall time of building and
    running this candidate; `timestamp` is when the measurement finished (time.time());
    `checked` says whether the output was verified against the reference output; `cache`
    how the caches were left before each timed call ("warm", or "flushed": the runner
    evicted the task's cold inputs, see LocalRunner).
    """

    costs: list
    error_no: str = ErrorNo.OK
    error_msg: str = ""
    all_cost: float = 0.0
    timestamp: float = field(default_factory=time.time)
    checked: bool = False  # the output was compared with the reference and matched
    cache: str = "warm"  # "flushed": the task's cold inputs were evicted before every call

    @property
    def mean_cost(self) -> float:
        """Mean seconds per run; inf for an error (never a winner)."""
        if self.error_no != ErrorNo.OK or not self.costs:
            return math.inf
        return sum(self.costs) / len(self.costs)


def arg_specs(task) -> list:
    """[{"shape", "dtype", "output"}] for the task's build arguments, in order (JSON-ready)."""
    specs = []
    for t in task.args:
        shape = [_dim(d, t) for d in t.shape]
        specs.append({"name": t.name, "shape": shape, "dtype": str(t.dtype),
                      "output": not isinstance(t.op, PlaceholderOp)})
    return specs


def _dim(d, tensor) -> int:
    value = getattr(d, "value", d)
    if not isinstance(value, int):
        raise ValueError(f"argument {tensor.name} has a symbolic dimension {d}; measurement "
                         "needs concrete shapes")
    return int(value)
