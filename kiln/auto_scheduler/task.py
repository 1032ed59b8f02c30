"""Workload registry (register_workload) and, later, SearchTask and TuningOptions.

In: Python functions that build te workloads. Out: a registry keyed by function name, so a
task can be rebuilt from (name, args) in any process without pickling compute graphs.
"""

from __future__ import annotations

import json

from ..errors import KilnError

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
        if key in WORKLOAD_FUNCS and not override and WORKLOAD_FUNCS[key] is not fn:
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
