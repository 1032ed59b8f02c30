"""kiln: an auto-scheduling tensor compiler. Public face: te, topi, schedule, auto_scheduler,
build / lower, target, runtime, nd, errors. `import kiln as tvm` runs classic TVM examples;
relay, contrib.graph_executor and transform.PassContext run TVM's whole-model scripts."""

from __future__ import annotations

import importlib

from . import errors, te
from .errors import KilnError

__version__ = "0.1.0"

_LAZY = {"topi": ".topi", "runtime": ".runtime", "target": ".target", "tir": ".tir",
         "schedule": ".schedule", "auto_scheduler": ".auto_scheduler", "codegen": ".codegen",
         "autotvm": ".autotvm",
         "nd": ".runtime.ndarray", "testing": ".testing", "graph": ".graph",
         "frontend": ".graph.frontend", "relay": ".relay", "contrib": ".contrib",
         "transform": ".transform"}


def __getattr__(name: str):
    if name in _LAZY:
        mod = importlib.import_module(_LAZY[name], __name__)
        globals()[name] = mod
        return mod
    if name == "cpu":
        from .runtime.ndarray import cpu
        return cpu
    if name == "device":
        from .runtime.ndarray import device
        return device
    if name in ("register_func", "get_global_func", "list_global_func_names"):
        from .runtime import registry
        return getattr(registry, name)
    if name in ("cuda", "gpu"):
        from .runtime.ndarray import cuda
        return cuda
    raise AttributeError(f"module 'kiln' has no attribute {name!r}")


def build(sch, args=None, target="cpu", target_host=None, name: str = "default_function"):
    """Compile a schedule (or a lowered PrimFunc) for the target; returns a runtime Module
    (TVM's argument order; a schedule over te.var sizes compiles once per shape called)."""
    from .build_module import build as _build
    return _build(sch, args, target=target, name=name, target_host=target_host)


def lower(sch, args=None, name: str = "default_function", simple_mode: bool = False):
    """The loop IR (PrimFunc) of a schedule; print it to read the loop nest."""
    from .build_module import lower as _lower
    return _lower(sch, args, name=name)


__all__ = ["KilnError", "build", "errors", "lower", "te", *_LAZY]
