"""The global function registry: Python functions that kernels call by name.

In: `register_func(name)(f)` (TVM's tvm.register_func). Out: `get_global_func(name)` and the
dispatch that a kernel's te.extern call site goes through (kiln.runtime.packed): buffers
arrive as NDArrays that view the kernel's memory, scalars as Python numbers.
"""

from __future__ import annotations

from ..errors import KilnError

_FUNCS: dict = {}


class RegistryError(KilnError):
    """A packed function is missing, or registered twice without override."""


def register_func(func_name, f=None, override: bool = False):
    """Register `f` as the packed function `func_name`; as a decorator without `f`
    (`@register_func("my.add_one")` or bare `@register_func`, named after the function)."""
    if callable(func_name) and f is None:
        fn = func_name
        return register_func(fn.__name__, fn, override)

    def register(fn):
        if not isinstance(func_name, str) or not func_name:
            raise RegistryError(f"register_func: the name must be a non-empty string, got "
                                f"{func_name!r}")
        if func_name in _FUNCS and not override:
            raise RegistryError(f"register_func: {func_name!r} is already registered; pass "
                                "override=True to replace it")
        _FUNCS[func_name] = fn
        return fn
    return register if f is None else register(f)


def get_global_func(name: str, allow_missing: bool = False):
    """The function registered as `name` (None when missing and allow_missing)."""
    _builtins()
    if name in _FUNCS:
        return _FUNCS[name]
    if allow_missing:
        return None
    raise RegistryError(f"no packed function {name!r} is registered (tvm.register_func); "
                        f"known: {', '.join(sorted(_FUNCS)) or 'none'}")


def list_global_func_names() -> list:
    _builtins()
    return sorted(_FUNCS)


def remove_global_func(name: str) -> None:
    _FUNCS.pop(name, None)


def _builtins() -> None:
    """kiln's own packed functions register when first looked up (contrib.cblas imports
    NumPy's BLAS wrappers only then)."""
    from ..contrib import cblas  # noqa: F401  (registers tvm.contrib.cblas.*)


__all__ = ["RegistryError", "get_global_func", "list_global_func_names", "register_func",
           "remove_global_func"]
