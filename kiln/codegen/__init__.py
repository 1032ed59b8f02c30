"""Code generators: loop IR (PrimFunc) -> source text, and the toolchain that compiles it."""

from __future__ import annotations

from ..target import as_target
from . import c as _c
from .toolchain import compile


def render(func, target=None) -> str:
    """Source text of `func` for `target`: C for CPU targets, CUDA C++ for cuda targets."""
    target = as_target(target)
    if target.kind == "cuda":
        from . import cuda
        return cuda.render(func, target)
    return _c.render(func, target)


__all__ = ["render", "compile"]
