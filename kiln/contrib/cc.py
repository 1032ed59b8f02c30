"""TVM's contrib.cc: link object files saved by `Module.save("x.o")` into a shared library
that `runtime.load_module` loads (the kernels' metadata travels inside the objects)."""

from __future__ import annotations

import os

from ..codegen.toolchain import compiler, link_shared


def create_shared(output: str, objects, options=None, cc: str | None = None) -> str:
    """Link `objects` (paths) into the shared library `output`."""
    objects = [os.fspath(o) for o in ([objects] if isinstance(objects, str) else objects)]
    return link_shared(os.fspath(output), objects, list(options or []), cc)


def get_cc() -> str:
    """The C compiler kiln uses (KILN_CC, else the system's)."""
    return compiler()


__all__ = ["create_shared", "get_cc"]
