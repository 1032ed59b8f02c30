"""The values that flow through measurement: MeasureInput -> BuildResult -> MeasureResult.

In: a SearchTask and a State to measure (MeasureInput).
Out: plain, picklable-free data: what the builder made (BuildResult: library path and source, or
an error) and what the runner saw (MeasureResult: seconds per run, or an error kind).
Why: builder, runner, measurer and the record writer share these types and nothing else; the
error kinds are strings so that they read the same in a record file and in Python.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field

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
    """A compiled candidate: the library path and its C source, or an error (lib_path None)."""

    lib_path: str | None
    source: str
    error_no: str = ErrorNo.OK
    error_msg: str = ""
    time_cost: float = 0.0


@dataclass
class MeasureResult:
    """What one candidate measured: seconds per run (one per repeat) or an error.

    `costs` is empty unless error_no is "ok"; `all_cost` is the wall time of building and
    running this candidate; `timestamp` is when the measurement finished (time.time());
    `checked` says whether the output was verified against the reference output.
    """

    costs: list
    error_no: str = ErrorNo.OK
    error_msg: str = ""
    all_cost: float = 0.0
    timestamp: float = field(default_factory=time.time)
    checked: bool = False  # the output was compared with the reference and matched

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
