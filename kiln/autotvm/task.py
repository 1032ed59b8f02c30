"""Templates, tasks and the dispatch of configs to templates (TVM's autotvm.task).

In: a function decorated with `@autotvm.template("name")` that builds a schedule and reads
knobs through `autotvm.get_config()`; `task.create(name, args, target)`.
Out: a Task (its ConfigSpace, FLOPs, `instantiate(config) -> (schedule, tensors)`); while
a template runs, `get_config()` answers from the innermost dispatch context: the space being
collected (task creation), one point (tuning), the best record of a log
(`apply_history_best`), else a fallback config with a warning, as TVM does.
Why: the workload of a template call is its name and arguments; records and the history
look configs up by (target, workload).
"""

from __future__ import annotations

import functools
import json
import logging
import threading

from ..errors import KilnError, ScheduleError
from ..target import Target, as_target
from ..te.tensor import Tensor
from .config import ConfigEntity, ConfigSpace, FallbackConfigEntity

logger = logging.getLogger("autotvm")
TASK_TABLE: dict = {}
_LOCAL = threading.local()


def _stack() -> list:
    if not hasattr(_LOCAL, "contexts"):
        _LOCAL.contexts = []
    return _LOCAL.contexts


def serialize_args(args) -> list:
    """Template arguments as JSON data (a tensor as ["TENSOR", shape, dtype], as in TVM)."""
    out = []
    for a in args:
        if isinstance(a, Tensor):
            out.append(["TENSOR", [int(getattr(d, "value", d)) for d in a.shape], a.dtype])
        elif isinstance(a, (list, tuple)):
            out.append(serialize_args(a))
        elif a is None or isinstance(a, (bool, int, float, str)):
            out.append(a)
        else:
            raise ScheduleError(f"template argument {a!r} ({type(a).__name__}) cannot be part of "
                                "a workload; pass ints, floats, strings or tensors")
    return out


def workload_of(name: str, args) -> str:
    """The workload key of a template call: its name and arguments, as JSON text."""
    return json.dumps([name, serialize_args(args)])


def template(task_name: str, func=None):
    """Register `func` as the schedule template `task_name` (decorator). Calling it runs the
    template with the config that the innermost dispatch context gives its workload."""
    def register(f):
        @functools.wraps(f)
        def wrapper(*args, **kwargs):
            if kwargs:
                raise ScheduleError(f"template {task_name!r}: pass its arguments by position "
                                    "(they name the workload)")
            outer = getattr(_LOCAL, "workload", None)  # a template may call another
            _LOCAL.workload = workload_of(task_name, args)
            try:
                return f(*args)
            finally:
                _LOCAL.workload = outer
        wrapper.task_name = task_name
        TASK_TABLE[task_name] = wrapper
        return wrapper
    return register(func) if func is not None else register


def get_config():
    """The config of the template now running (ConfigSpace, ConfigEntity or fallback)."""
    workload = getattr(_LOCAL, "workload", None)
    target = Target.current(allow_none=True) or Target.host()
    for ctx in reversed(_stack()):
        cfg = ctx.query(target, workload)
        if cfg is not None:
            return cfg
    return _FALLBACK.query(target, workload)


class DispatchContext:
    """A `with` context that answers get_config() for the workloads it knows."""

    def query(self, target: Target, workload: str | None):
        raise NotImplementedError

    def __enter__(self):
        _stack().append(self)
        return self

    def __exit__(self, *exc) -> None:
        _stack().remove(self)


class ApplyConfig(DispatchContext):
    """Every template run inside gets `config` (task creation and tuning)."""

    def __init__(self, config):
        self.config = config

    def query(self, target, workload):
        return self.config


class FallbackContext(DispatchContext):
    """A FallbackConfigEntity per (target, workload), with one warning each."""

    def __init__(self):
        self.memory: dict = {}
        self.silent = False

    def query(self, target, workload):
        key = (str(target), workload)
        if key not in self.memory:
            if not self.silent:
                logger.warning("Cannot find config for target=%s, workload=%s. A fallback "
                               "configuration is used, which may bring great performance "
                               "regression.", target, workload)
            self.memory[key] = FallbackConfigEntity()
        return self.memory[key]


_FALLBACK = FallbackContext()


class Task:
    """A tunable template call: name, args, target, its ConfigSpace and FLOP count."""

    def __init__(self, name: str, args, target, target_host=None):
        if name not in TASK_TABLE:
            raise KilnError(f"no autotvm template {name!r} is registered (known: "
                            f"{sorted(TASK_TABLE)})")
        self.name, self.args = name, tuple(args)
        self.target = as_target(target)
        self.func = TASK_TABLE[name]
        self.workload = workload_of(name, self.args)
        self.config_space = ConfigSpace()
        with self.target, ApplyConfig(self.config_space):
            _, tensors = self.func(*self.args)
        self.flop = self.config_space.flop or _dag_flops(tensors)

    def instantiate(self, config) -> tuple:
        """(schedule, tensors) of the template with `config`."""
        with self.target, ApplyConfig(config):
            return self.func(*self.args)

    def __repr__(self) -> str:
        return (f"Task(func_name={self.name}, args={self.args}, "
                f"workload={self.workload})")


def _dag_flops(tensors) -> float:
    from ..schedule.dag import ComputeDAG
    try:
        return float(ComputeDAG(list(tensors)).flop_ct)
    except KilnError:
        return 0.0


def create(task_name: str, args, target, target_host=None) -> Task:
    """The Task of template `task_name` with `args` on `target` (TVM's autotvm.task.create)."""
    return Task(task_name, args, target, target_host)


__all__ = ["ApplyConfig", "ConfigEntity", "DispatchContext", "FallbackContext", "Task",
           "TASK_TABLE", "create", "get_config", "serialize_args", "template", "workload_of"]
