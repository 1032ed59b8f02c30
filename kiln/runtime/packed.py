"""The callback through which a kernel's te.extern call sites run Python functions.

In: a loaded library and one kernel's metadata (`packed_calls`: per call site, the function's
name and each argument's shape and dtype, or a scalar's dtype). Out: `PackedHook`, installed
with the kernel's NAME__kiln_set_hook: the C code passes a site number and the argument
pointers; the hook views buffers as NDArrays over the kernel's memory (no copies), reads
scalars, and calls the registered function. A Python exception cannot cross C: the hook keeps
it and returns a non-zero status, and `raise_failure` raises it after the kernel returns.
"""

from __future__ import annotations

import ctypes

import numpy as np

from ..errors import RuntimeFailure
from .module import SCALAR_CTYPES
from .ndarray import NDArray
from .registry import get_global_func

HOOK = ctypes.CFUNCTYPE(ctypes.c_int32, ctypes.c_int32, ctypes.POINTER(ctypes.c_void_p))
FAILED = -8  # the status a raising packed function gives the kernel


class PackedHook:
    def __init__(self, lib: ctypes.CDLL, name: str, calls: list):
        self.name, self.calls, self.error = name, calls, None
        self._fn = HOOK(self._dispatch)  # kept alive as long as the kernel
        setter = getattr(lib, f"{name}__kiln_set_hook")
        setter.restype, setter.argtypes = None, [ctypes.c_void_p]
        setter(ctypes.cast(self._fn, ctypes.c_void_p))

    def check(self) -> None:
        """Before a call: every function the kernel calls is registered (RegistryError)."""
        self.error = None
        for c in self.calls:
            get_global_func(c["name"])

    def raise_failure(self, rc: int) -> None:
        err, self.error = self.error, None
        if err is not None:
            raise RuntimeFailure(f"kernel {self.name}: the packed function it calls raised "
                                 f"{type(err).__name__}: {err}") from err

    def _dispatch(self, site: int, argv) -> int:
        try:
            call = self.calls[site]
            args = [_arg(argv[k], a) for k, a in enumerate(call["args"])]
            get_global_func(call["name"])(*args)
            return 0
        except BaseException as err:  # noqa: BLE001  (reported by raise_failure)
            self.error = err
            return FAILED


def _arg(ptr: int, desc: dict):
    dtype = desc["dtype"]
    if "shape" not in desc:
        return ctypes.cast(ptr, ctypes.POINTER(SCALAR_CTYPES[dtype])).contents.value
    shape = tuple(int(d) for d in desc["shape"])
    npd = np.dtype("uint16" if dtype == "bfloat16" else dtype)
    count = int(np.prod(shape, dtype=np.int64))
    raw = (ctypes.c_char * max(count * npd.itemsize, 1)).from_address(ptr)
    return NDArray(np.frombuffer(raw, dtype=npd, count=count).reshape(shape))
