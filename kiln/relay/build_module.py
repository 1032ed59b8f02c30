"""Relay's build entry points over kiln.graph: IRModule, build, create_executor.

In: an IRModule (or a kiln Graph) from kiln.relay.frontend, its params (NumPy arrays or kiln
NDArrays) and a target. Out: the compiled model (kiln.graph's GraphModule), which also
answers TVM's factory protocol `lib["default"](dev)`; `create_executor(...).evaluate()` gives
a plain function of the inputs.

Diverges from TVM: there is no Relay expression language. An IRModule holds one function,
"main", which is the kiln Graph; `mod["main"]` returns it, so `extract_tasks(mod["main"],
params, target)` is kiln's own extract_tasks. The PassContext's opt_level and config are
accepted (kiln.transform) but kiln always runs its full, exact pass pipeline; tuned records
are used whenever an `auto_scheduler.ApplyHistoryBest` is active, with or without the
`relay.backend.use_auto_scheduler` flag (TVM ignores the records without it).
"""

from __future__ import annotations

import numpy as np

from ..errors import ArgumentError
from ..graph.ir import Graph

__all__ = ["IRModule", "build", "create_executor"]

EXECUTOR_KINDS = ("graph", "debug", "vm", "aot")


class IRModule:
    """A whole model as TVM's IRModule: one function, "main" (a kiln Graph)."""

    def __init__(self, graph: Graph):
        if not isinstance(graph, Graph):
            raise ArgumentError(f"IRModule wants a kiln Graph, got {type(graph).__name__}")
        self.graph = graph

    @staticmethod
    def from_graph(graph: Graph) -> IRModule:
        return IRModule(graph)

    @property
    def functions(self) -> dict:
        return {"main": self.graph}

    def get_global_vars(self) -> list:
        return ["main"]

    def __getitem__(self, name: str) -> Graph:
        if name != "main":
            raise ArgumentError(f"IRModule has one function, 'main'; got {name!r}")
        return self.graph

    def __contains__(self, name: str) -> bool:
        return name == "main"

    def astext(self, show_meta_data: bool = True) -> str:
        return str(self.graph)

    def __str__(self) -> str:
        return self.astext()

    def __repr__(self) -> str:
        return f"IRModule(main: {len(self.graph.inputs)} inputs, {len(self.graph.nodes())} nodes)"


def as_graph(mod) -> Graph:
    """The kiln Graph of an IRModule, a Graph, or anything whose ["main"] is a Graph."""
    if isinstance(mod, Graph):
        return mod
    if isinstance(mod, IRModule):
        return mod.graph
    raise ArgumentError(f"expected an IRModule from kiln.relay.frontend (or a kiln Graph), got "
                        f"{type(mod).__name__}")


def numpy_params(params: dict | None) -> dict:
    """params with every value a NumPy array (TVM hands them around as NDArrays)."""
    out = {}
    for name, value in (params or {}).items():
        out[str(name)] = value.numpy() if hasattr(value, "numpy") else np.asarray(value)
    return out


def _target(target, target_host=None):
    from ..target import Target, as_target
    if isinstance(target, dict):  # TVM's old {"cuda": ..., "llvm": host} form
        kinds = [t for t in target.values() if Target(str(t)).kind != "cpu"] or \
            list(target.values())
        if len(kinds) != 1:
            raise ArgumentError(f"target {target!r}: kiln builds for one target (plus the host)")
        target = kinds[0]
    return as_target(target)


def build(ir_mod, target=None, target_host=None, executor=None, runtime=None,
          params: dict | None = None, mod_name: str = "default"):
    """Compile a whole model (relay.build): kiln.graph.build of the module's graph with
    `params` bound; `lib["default"](dev)` then gives what graph_executor.GraphModule wraps.
    `target` is a target string, a Target or None (the `with Target(...)` target, else this
    host); `executor`, `runtime` and `mod_name` are accepted for TVM's signature."""
    from ..graph import build as graph_build
    from ..transform import PassContext
    PassContext.current()  # validated when entered; nothing in it changes kiln's pipeline
    graph = as_graph(ir_mod)
    bound = numpy_params(params)
    lib = graph_build(graph, bound or None, target=_target(target, target_host))
    lib.bound_params = {**graph.params, **bound}
    return lib


class Executor:
    """relay.create_executor(...): `evaluate()` returns a function of the model's inputs
    (positional, in the model's input order, or by name) returning its output (an NDArray)
    or, for several outputs, a list of them."""

    def __init__(self, kind: str, mod, device, target, params: dict | None):
        if kind not in EXECUTOR_KINDS:
            raise ArgumentError(f"executor kind {kind!r}: known kinds {', '.join(EXECUTOR_KINDS)}")
        self.kind, self.mod, self.device = kind, mod, device
        self.target, self.params = target, params
        self._lib = None

    def evaluate(self, expr=None):
        if expr is not None:
            raise ArgumentError("evaluate(expr): kiln has no Relay expressions; call "
                                "evaluate() on the executor of an IRModule")
        if self._lib is None:
            self._lib = build(self.mod, target=self.target, params=self.params)
        from ..contrib.graph_executor import GraphModule
        module = GraphModule(self._lib["default"](self.device))

        def run(*args, **kwargs):
            names = module.input_names
            if len(args) > len(names):
                raise ArgumentError(f"the model takes {len(names)} inputs ({', '.join(names)}),"
                                    f" got {len(args)} positional arguments")
            module.run(**dict(zip(names, args)), **kwargs)
            outs = [module.get_output(i) for i in range(module.get_num_outputs())]
            return outs[0] if len(outs) == 1 else outs
        return run


def create_executor(kind: str = "debug", mod=None, device=None, target="llvm",
                    params: dict | None = None) -> Executor:
    """relay.create_executor / relay.build_module.create_executor: every kind runs the same
    compiled kiln library (built on the first evaluate())."""
    if mod is None:
        raise ArgumentError("create_executor needs the IRModule (mod=...)")
    from ..runtime.ndarray import as_device
    dev = as_device(device) if device is not None else None
    return Executor(kind, mod, dev, target, params)
