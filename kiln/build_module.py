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
from .errors import ArgumentError, BuildError, ScheduleError
from .recursion import deep_recursion
from .runtime.module import Module
from .schedule.specialize import shape_vars, specialize
from .target import Target, as_target
from .te import expr as E
from .te.tensor import Tensor
from .tir import gpu
from .tir import stmt as S


def lower(sch, args=None, name: str = "default_function", simple_mode: bool = False):
    """The loop IR (PrimFunc) of a schedule; print it to see the loop nest. A schedule over
    symbolic sizes (te.var) gives a SymbolicFunc: its loop nest printed with those sizes,
    which build() compiles once per shape."""
    if isinstance(sch, (S.PrimFunc, SymbolicFunc)):
        return sch
    state = getattr(sch, "state", sch)
    args = _with_outputs(state, args)
    if _symbolic(state):
        return SymbolicFunc(state, args, name)
    from .tir.lower import lower as _lower
    return _lower(sch, args, name=name)


def build(sch_or_func, args=None, target: Target | str | None = "cpu",
          name: str = "default_function", target_host=None) -> Module:
    """Compile a PrimFunc or a schedule into a loaded Module for `target`."""
    target = as_target(target)
    if isinstance(sch_or_func, SymbolicFunc):
        return SpecializingModule(sch_or_func, target)
    if not isinstance(sch_or_func, S.PrimFunc):
        state = getattr(sch_or_func, "state", sch_or_func)
        if _symbolic(state):
            return SpecializingModule(SymbolicFunc(state, args, name), target)
    with deep_recursion(f"kernel {name}"):
        if not isinstance(sch_or_func, S.PrimFunc):
            sch_or_func = _history_best(sch_or_func, target)
        if not isinstance(sch_or_func, S.PrimFunc):  # a built kernel must list its outputs
            from .tir.lower import lower as lower_exact
            sch_or_func = lower_exact(sch_or_func, args, name=name)
        func = sch_or_func
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


def _with_outputs(state, args):
    """TVM prints `lower(s, [inputs])` with the outputs left out of the arguments; kiln
    lists them after the given arguments so the printed kernel has somewhere to write."""
    dag = getattr(state, "dag", None)
    if args is None or dag is None:
        return args
    given = {(id(getattr(a, "op", None)), getattr(a, "value_index", 0)) for a in args}
    missing = [op.output(k) for op in dag.outputs for k in range(op.num_outputs)
               if (id(op), k) not in given]
    tensors = [a for a in args if not isinstance(a, E.Var)]
    return tensors + missing + [a for a in args if isinstance(a, E.Var)]


def _symbolic(state) -> bool:
    dag = getattr(state, "dag", None)
    return dag is not None and bool(shape_vars(dag.ops))


class SymbolicFunc:
    """What lower() gives for a schedule over te.var sizes: the schedule and its arguments,
    printed as its loop nest with the symbolic extents (build() specializes it per shape)."""

    def __init__(self, state, args, name: str):
        if args is None:
            raise ScheduleError(f"{name}: a schedule over symbolic sizes needs its argument "
                                "tensors (lower(s, [A, B, C]))")
        self.state, self.name = state, name
        self.args = [a for a in args if isinstance(a, Tensor)]
        self.size_vars = shape_vars(state.dag.ops)
        self._binders = _size_binders(self.args)
        missing = [v.name for v in self.size_vars if v not in self._binders]
        if missing:
            raise ScheduleError(f"{name}: the sizes {missing} appear in no argument's shape, so "
                                "a call cannot tell their values; make them a dimension of an "
                                "argument tensor")

    def values_of(self, arrays) -> dict:
        """{size Var: int} read off the shapes of the argument arrays of a call."""
        if len(arrays) < len(self.args):
            raise ArgumentError(f"{self.name} takes {len(self.args)} arrays "
                                f"({', '.join(t.name for t in self.args)}), got {len(arrays)}")
        out = {}
        for v, (i, d) in self._binders.items():
            shape = getattr(arrays[i], "shape", None)
            if shape is None or len(shape) != len(self.args[i].shape):
                got = f"shape {tuple(shape)}" if shape is not None else \
                    type(arrays[i]).__name__
                raise ArgumentError(f"argument {i + 1} {self.args[i].name!r} expects "
                                    f"{len(self.args[i].shape)} dimensions, got {got}")
            out[v] = int(shape[d])
        return out

    def specialize(self, values: dict) -> tuple:
        """(State, argument tensors) with the sizes in `values` {Var: int}."""
        return specialize(self.state, self.args, values)

    def __str__(self) -> str:
        def dims(t):
            return ", ".join(str(d) for d in t.shape)
        head = ", ".join(f"{t.name}: {t.dtype}[{dims(t)}]" for t in self.args)
        sizes = ", ".join(v.name for v in self.size_vars)
        body = "\n".join("  " + line for line in str(self.state).splitlines())
        return (f"def {self.name}({head}):\n  # symbolic sizes {sizes}: kiln compiles this "
                f"schedule once per shape it is called with\n{body}")

    __repr__ = __str__


def _size_binders(args: list) -> dict:
    """{size Var: (argument index, dimension)} of the first argument dim that is the var."""
    out = {}
    for i, t in enumerate(args):
        for d, dim in enumerate(t.shape):
            if isinstance(dim, E.Var) and dim not in out:
                out[dim] = (i, d)
    return out


class SpecializingModule:
    """kiln.build of a schedule over te.var sizes (TVM's symbolic `n`): calling it reads the
    sizes off the argument arrays and runs the kernel compiled for that shape (compiled at the
    first call with it, then cached). `specialize(n=1024)` gives that shape's Module."""

    def __init__(self, func: SymbolicFunc, target: Target):
        self.func, self.target, self.entry_name = func, target, func.name
        self.specializations: dict = {}  # (size values...) -> Module
        self.imported_modules: list = []

    def specialize(self, values: dict | None = None, **sizes) -> Module:
        """The Module for one shape: sizes by var or by name (`specialize(n=1024)`)."""
        by_name = {v.name: v for v in self.func.size_vars}
        vals = {}
        for k, x in {**(values or {}), **sizes}.items():
            v = by_name.get(k) if isinstance(k, str) else k
            if v is None or not any(v is w for w in self.func.size_vars):
                raise ArgumentError(f"{self.entry_name}: {k!r} is not one of its sizes "
                                    f"{list(by_name)}")
            vals[v] = int(x)
        missing = [v.name for v in self.func.size_vars if v not in vals]
        if missing:
            raise ArgumentError(f"{self.entry_name}: give the sizes {missing}")
        key = tuple(vals[v] for v in self.func.size_vars)
        if key not in self.specializations:
            state, args = self.func.specialize(vals)
            self.specializations[key] = build(state, args, self.target, self.entry_name)
        return self.specializations[key]

    def _module_for(self, args) -> Module:
        return self.specialize(self.func.values_of(args))

    def __call__(self, *args) -> None:
        self._module_for(args)(*args)

    def __getitem__(self, name: str):
        return self.get_function(name)

    def get_function(self, name: str):
        if name != self.entry_name:
            raise ArgumentError(f"no function {name!r} in this module; it has "
                                f"{self.entry_name}")
        return self

    def time_evaluator(self, func_name: str | None = None, dev=None, **kwargs):
        """As Module.time_evaluator; each call times the kernel of its arguments' shape."""
        def evaluator(*args):
            return self._module_for(args).time_evaluator(None, dev, **kwargs)(*args)
        return evaluator

    @property
    def source(self) -> str:
        """The source of the one shape compiled so far (see specialize)."""
        return self._only("source").source

    def get_source(self, fmt: str = "c") -> str:
        return self.source

    def export_library(self, path: str) -> str:
        """Export the kernel of the one shape it was called with (the library checks the
        shapes of its arguments and refuses others)."""
        return self._only("export_library").export_library(path)

    def save(self, path: str, fmt: str = "") -> str:
        return self._only("save").save(path, fmt)

    def _only(self, what: str) -> Module:
        if len(self.specializations) != 1:
            sizes = ", ".join(v.name + "=..." for v in self.func.size_vars)
            raise BuildError(f"{self.entry_name} has symbolic sizes and kiln compiles it once "
                             f"per shape; {what} needs one shape, and "
                             f"{len(self.specializations)} have been compiled: use "
                             f".specialize({sizes}).{what}")
        return next(iter(self.specializations.values()))

    def __repr__(self) -> str:
        return f"SpecializingModule({self.entry_name!r}, {len(self.specializations)} shapes)"


__all__ = ["SpecializingModule", "SymbolicFunc", "build", "lower"]
