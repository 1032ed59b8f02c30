"""SearchTask, TuningOptions and the workload registry (register_workload).

In: a registered workload function and its arguments (or a ComputeDAG), a target.
Out: a task with a structural workload_key that tune() searches and whose best record
apply_best() turns back into a schedule. The registry lets any process rebuild a
workload from (name, args) without pickling compute graphs.
"""

from __future__ import annotations

import json
import weakref
from dataclasses import dataclass, field

from ..errors import KilnError, ScheduleError
from ..schedule import ComputeDAG
from ..target import as_target

WORKLOAD_FUNCS: dict = {}


def register_workload(func_name=None, f=None, override: bool = False):
    """Register a function that returns [inputs..., outputs...]; usable as a decorator.

    As in TVM, the decorated function is returned unchanged, so calling it builds the tensors.
    """
    if callable(func_name):
        f, func_name = func_name, func_name.__name__
    name = func_name

    def register(fn):
        key = name or fn.__name__
        if key in WORKLOAD_FUNCS and not override and WORKLOAD_FUNCS[key] is not fn \
                and WORKLOAD_FUNCS[key].__qualname__ != fn.__qualname__:
            raise KilnError(f"workload {key!r} is already registered (pass override=True)")
        WORKLOAD_FUNCS[key] = fn
        return fn
    return register(f) if f is not None else register


def make_workload_key(func, args) -> str:
    """The registry key of a registered function called with `args`: JSON of [name, *args]."""
    name = func if isinstance(func, str) else func.__name__
    if name not in WORKLOAD_FUNCS:
        raise KilnError(f"workload {name!r} is not registered; decorate it with "
                        "@auto_scheduler.register_workload")
    return json.dumps([name, *args])


def workload_tensors(key: str) -> list:
    """Rebuild the tensors of a workload from its registry key."""
    name, *args = json.loads(key)
    try:
        fn = WORKLOAD_FUNCS[name]
    except KeyError:
        raise KilnError(f"workload {name!r} is not registered in this process") from None
    return list(fn(*args))


class LayoutRewriteOption:
    """Whether the search may rewrite the layout of constant inputs (as in TVM)."""

    NO_REWRITE = 0
    INSERT_TRANSFORM_STAGE = 1  # kiln treats this like REWRITE_FOR_PRE_TRANSFORMED
    REWRITE_FOR_PRE_TRANSFORMED = 2


def layout_free_names(dag) -> tuple:
    """Placeholders listed in attrs={"layout_free_placeholders": [...]} of the computes."""
    names = []
    for op in dag.ops:
        for t in (getattr(op, "attrs", None) or {}).get("layout_free_placeholders", []):
            if t.name not in names:
                names.append(t.name)
    return tuple(names)


@dataclass
class TuningOptions:
    """How long and how to tune (TVM's auto_scheduler.TuningOptions)."""

    num_measure_trials: int = 0
    early_stopping: int | None = None
    num_measures_per_round: int = 64
    verbose: int = 1
    builder: object = "local"
    runner: object = "local"
    measure_callbacks: list = field(default_factory=list)
    seed: int | None = None


# (workload key, target) -> the task last made for it in this process: what a log's records
# are replayed on when a cost model trains from a file (CostModel.update_from_file)
_KNOWN: weakref.WeakValueDictionary = weakref.WeakValueDictionary()


def known_task(workload_key: str, target: str):
    """The live SearchTask of this workload and target string, else None."""
    return _KNOWN.get((workload_key, target))


class SearchTask:
    """One workload on one target: what the search optimises."""

    def __init__(self, func=None, args=(), compute_dag: ComputeDAG | None = None,
                 workload_key: str | None = None, target="cpu", desc: str = "",
                 layout_rewrite_option=None, hardware_params=None, task_inputs=None,
                 cold_inputs: tuple = (), baseline=None):
        self.registry_key = None
        # a complete State the search measures first (a graph task's rule-based default):
        # tuning then never ends slower than the untuned build, whose schedule may lie
        # outside the sketches (row reductions) or postdate the records being resumed
        self.baseline = baseline
        if compute_dag is None:
            if func is None:
                raise KilnError("SearchTask needs func (a registered workload) or compute_dag")
            fn = WORKLOAD_FUNCS.get(func) if isinstance(func, str) else func
            if fn is None:
                raise KilnError(f"workload {func!r} is not registered")
            args = tuple(args)
            if getattr(fn, "__name__", None) in WORKLOAD_FUNCS:
                self.registry_key = make_workload_key(fn, args)
            compute_dag = ComputeDAG(list(fn(*args)))
            desc = desc or f"{fn.__name__}{args}"
        if compute_dag.has_extern or compute_dag.has_scan:
            what = "calls a te.extern packed function" if compute_dag.has_extern else \
                "is a te.scan recurrence"
            raise ScheduleError(f"the workload {what}; the auto-scheduler tunes te.compute "
                                "stages only (schedule this workload by hand)")
        self.compute_dag = compute_dag
        self.args = list(compute_dag.tensors)
        self.workload_key = workload_key or compute_dag.workload_key()
        self.target = as_target(target)
        self.desc = desc or "task"
        self.layout_rewrite_option = layout_rewrite_option or LayoutRewriteOption.NO_REWRITE
        self.layout_free = layout_free_names(compute_dag) if self.layout_rewrite_option else ()
        # inputs that are cold in cache when the kernel runs inside its network (model
        # weights): a runner with enable_cpu_cache_flush="auto" evicts them before each call
        names = {t.name for t in self.args}
        unknown = [n for n in cold_inputs if n not in names]
        if unknown:
            raise KilnError(f"cold_inputs {unknown} are not arguments of the task")
        self.cold_inputs = tuple(cold_inputs)
        _KNOWN[(self.workload_key, str(self.target))] = self

    @property
    def flop_ct(self) -> int:
        return self.compute_dag.flop_ct

    def tune(self, tuning_options: TuningOptions, search_policy=None):
        """Search for fast schedules; measured records go to the options' callbacks."""
        if search_policy is None and self.target.kind == "cuda":
            from .gpu import GpuSearchPolicy, as_gpu_builder, as_gpu_runner
            search_policy = GpuSearchPolicy(
                self, seed=tuning_options.seed or 0, verbose=tuning_options.verbose,
                builder=as_gpu_builder(tuning_options.builder),
                runner=as_gpu_runner(tuning_options.runner))
        from .policy import SketchPolicy
        policy = search_policy or SketchPolicy(self, seed=tuning_options.seed,
                                               verbose=tuning_options.verbose)
        return policy.tune(tuning_options)

    def apply_best(self, log_file: str, include_compatible: bool = False,
                   layout_rewrite_option=None):
        """(schedule, args) of the best record of this task in log_file."""
        from ..schedule.facade import Schedule
        _, state = self.best_record(log_file)
        return Schedule.from_state(self.compute_dag, state), self.args

    def best_record(self, log_file: str):
        """(Record, replayed State) of the best record of this task in log_file that replays
        (checked outputs first, then the lowest cost); KilnError if there is none."""
        from .measure.record import first_replaying, ranked_records
        hit = first_replaying(ranked_records(log_file, self.workload_key, str(self.target)),
                              self.compute_dag, log_file)
        if hit is None:
            raise KilnError(f"no valid record for task {self.desc} ({self.workload_key}) "
                            f"on {self.target} in {log_file}")
        return hit

    def replay(self, step_records):
        from ..schedule import replay
        return replay(self.compute_dag, step_records)

    def print_best(self, log_file: str, print_mode: str = "schedule") -> str:
        """The best schedule as readable schedule code (and its C when print_mode='cuda'/'c')."""
        from .printing import best_schedule_text
        return best_schedule_text(self, log_file, print_mode)

    def __repr__(self) -> str:
        return f"SearchTask({self.desc}, key={self.workload_key}, target={self.target})"
