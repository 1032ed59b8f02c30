"""The CUDA driver API from Python: context, memory, modules, launches, streams, events, graphs.

In: cubin bytes (from `kiln.codegen.nvrtc`), device pointers, NumPy arrays and scalars.
Out: `DeviceBuffer` (device memory), `CuModule` / `CuFunction` (loaded kernels you launch),
`device_properties` (the limits schedules and codegen read) and `available` / `require`; and,
from cuda_stream.py, `Stream`, `Event`, `Graph`, `capture`, `time_kernels` (event timing).
Why: kiln talks to the driver directly through cuda-bindings (12.x or 13.x), so it needs no
CUDA toolkit and no PyTorch; it uses the device's primary context, the one the CUDA runtime
(and so PyTorch and CuPy) uses too, which makes their device pointers valid here. cuda-bindings
is imported lazily: `import kiln` works without it. Every CUresult is checked; failures raise
`DeviceError` naming what failed (a kernel, a copy, an allocation). Errors that poison the
context (an illegal address in a kernel...) are remembered, and later calls say so instead of
failing in confusing ways. kiln drives GPU 0 only.
"""

from __future__ import annotations

import ctypes
import os
import threading

import numpy as np

from ..errors import ArgumentError, DeviceError

STATIC_SHARED_LIMIT = 48 * 1024  # dynamic shared memory beyond this needs an opt-in attribute
_STICKY = frozenset({  # errors after which the context can no longer be used
    "CUDA_ERROR_ILLEGAL_ADDRESS", "CUDA_ERROR_LAUNCH_FAILED", "CUDA_ERROR_LAUNCH_TIMEOUT",
    "CUDA_ERROR_HARDWARE_STACK_ERROR", "CUDA_ERROR_ILLEGAL_INSTRUCTION",
    "CUDA_ERROR_MISALIGNED_ADDRESS", "CUDA_ERROR_INVALID_ADDRESS_SPACE", "CUDA_ERROR_INVALID_PC",
    "CUDA_ERROR_ASSERT", "CUDA_ERROR_ECC_UNCORRECTABLE", "CUDA_ERROR_CONTEXT_IS_DESTROYED"})
_HINTS = {
    "CUDA_ERROR_NO_BINARY_FOR_GPU": "the cubin was built for another GPU architecture than "
                                    "this one",
    "CUDA_ERROR_UNSUPPORTED_PTX_VERSION": "the code was compiled by a CUDA newer than the driver",
    "CUDA_ERROR_LAUNCH_OUT_OF_RESOURCES": "too many registers or threads per block for this GPU",
    "CUDA_ERROR_INVALID_VALUE": "a launch dimension or argument is out of range",
}

_LOCK = threading.Lock()
_TLS = threading.local()
_STATE: dict = {}          # driver, ctx, device, count once initialised; "error" if that failed
_PROPS: dict = {}          # dev_id -> device_properties()
_POISON: list = []         # the message of a sticky error, once one happened
CAPTURE_STATE = {"depth": 0, "deferred": []}   # frees postponed while a stream is being captured
FLUSH_STATE: dict = {}          # the L2 flush buffer and the last byte written


# ---------------------------------------------------------------- initialisation

def _import_driver():
    try:
        from cuda.bindings import driver
    except ImportError:
        try:
            from cuda import cuda as driver  # cuda-python before the cuda.bindings split
        except ImportError:
            return None
    return driver


def _init():
    """Initialise the driver and retain GPU 0's primary context, once per process."""
    with _LOCK:
        if "ctx" in _STATE or "error" in _STATE:
            return
        try:
            _STATE.update(_open_primary_context())
        except DeviceError as err:
            text = str(err)
            prefix = "no CUDA GPU is present"
            _STATE["error"] = text if text.startswith(prefix) else f"{prefix}: {text}"
        except Exception as err:  # the bindings raise their own types for a missing libcuda
            reason = (str(err).strip().splitlines() or [type(err).__name__])[0]
            _STATE["error"] = f"no CUDA GPU is present: {reason}"


def _open_primary_context() -> dict:
    drv = _import_driver()
    if drv is None:
        raise DeviceError("no CUDA GPU is present: cuda-bindings is not installed "
                          "(pip install 'kiln[cuda]')")
    (err,) = drv.cuInit(0)
    if int(err) != 0:
        raise DeviceError(f"no CUDA GPU is present: cuInit failed with {_err_name(err)}")
    err, count = drv.cuDeviceGetCount()
    if int(err) != 0 or count == 0:
        raise DeviceError("no CUDA GPU is present: the driver sees 0 devices")
    dev = check(drv.cuDeviceGet(0), "cuDeviceGet(0)", drv=drv)
    ctx = check(drv.cuDevicePrimaryCtxRetain(dev), "cuDevicePrimaryCtxRetain", drv=drv)
    return {"driver": drv, "ctx": ctx, "device": dev, "count": int(count)}


def _after_fork_in_child() -> None:
    """A forked child cannot use its parent's CUDA context: say so instead of failing later."""
    if "ctx" in _STATE:
        _STATE.clear()
        _STATE["error"] = ("no CUDA GPU is present: this process was forked after CUDA was "
                           "initialised in its parent; start workers with the 'spawn' method")
    _PROPS.clear()
    FLUSH_STATE.clear()
    _TLS.__dict__.clear()
    CAPTURE_STATE.update(depth=0, deferred=[])


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)


def available() -> bool:
    """True when a CUDA GPU and its driver can be used; never raises."""
    try:
        _init()
    except Exception:
        return False
    return "ctx" in _STATE


def require():
    """The driver module, with the primary context current in this thread; else DeviceError."""
    if "ctx" not in _STATE:
        _init()
        if "ctx" not in _STATE:
            raise DeviceError(_STATE.get("error", "no CUDA GPU is present"))
    if _POISON:
        raise DeviceError(f"the CUDA context is unusable after an earlier error ({_POISON[0]}); "
                          "restart the process to use the GPU again")
    drv = _STATE["driver"]
    if getattr(_TLS, "ctx", None) is not _STATE["ctx"]:  # the current context is per thread
        check(drv.cuCtxSetCurrent(_STATE["ctx"]), "cuCtxSetCurrent", drv=drv)
        _TLS.ctx = _STATE["ctx"]
    return drv


def device_count() -> int:
    """How many CUDA devices the driver sees (0 without a GPU)."""
    return _STATE.get("count", 0) if available() else 0


# ---------------------------------------------------------------- errors

def _err_name(err) -> str:
    return getattr(err, "name", None) or f"CUresult {int(err)}"


def _err_text(drv, err) -> str:
    try:
        res, text = drv.cuGetErrorString(err)
        if int(res) == 0 and text:
            return text.decode() if isinstance(text, bytes) else str(text)
    except Exception:
        pass
    return ""


def check(result, what: str, nbytes: int | None = None, drv=None):
    """The value(s) of a cuda-bindings call result `(CUresult, values...)`; DeviceError if the
    CUresult is an error. `what` names the failed operation (e.g. "kernel foo")."""
    err, values = (result[0], result[1:]) if isinstance(result, tuple) else (result, ())
    if int(err) != 0:
        raise _device_error(drv or _STATE.get("driver"), err, what, nbytes)
    if not values:
        return None
    return values[0] if len(values) == 1 else values


def _device_error(drv, err, what: str, nbytes: int | None) -> DeviceError:
    name = _err_name(err)
    text = _err_text(drv, err) if drv is not None else ""
    detail = f"{name}: {text}" if text else name
    if name == "CUDA_ERROR_OUT_OF_MEMORY":
        asked = f" (asked for {nbytes} bytes{_free_text(drv)})" if nbytes is not None else ""
        return DeviceError(f"out of device memory in {what}{asked}")
    if name in _STICKY:
        _POISON.append(f"{what}: {name}")
        return DeviceError(f"{what} failed: {detail}; the CUDA context is now unusable (a sticky "
                           "error): restart the process to use the GPU again")
    hint = f" ({_HINTS[name]})" if name in _HINTS else ""
    return DeviceError(f"{what} failed: {detail}{hint}")


def _free_text(drv) -> str:
    try:
        err, free, total = drv.cuMemGetInfo()
        return f"; {int(free)} of {int(total)} bytes free" if int(err) == 0 else ""
    except Exception:
        return ""


# ---------------------------------------------------------------- device facts

_ATTRS = {  # key: CU_DEVICE_ATTRIBUTE_ name
    "sm_count": "MULTIPROCESSOR_COUNT",
    "max_threads_per_block": "MAX_THREADS_PER_BLOCK",
    "max_shared_memory_per_block": "MAX_SHARED_MEMORY_PER_BLOCK",
    "max_shared_memory_per_block_optin": "MAX_SHARED_MEMORY_PER_BLOCK_OPTIN",
    "warp_size": "WARP_SIZE",
    "max_registers_per_block": "MAX_REGISTERS_PER_BLOCK",
    "max_registers_per_sm": "MAX_REGISTERS_PER_MULTIPROCESSOR",
    "max_shared_memory_per_sm": "MAX_SHARED_MEMORY_PER_MULTIPROCESSOR",
    "max_threads_per_sm": "MAX_THREADS_PER_MULTIPROCESSOR",
    "l2_bytes": "L2_CACHE_SIZE",
    "cc_major": "COMPUTE_CAPABILITY_MAJOR",
    "cc_minor": "COMPUTE_CAPABILITY_MINOR",
}


def device_properties(dev_id: int = 0) -> dict:
    """Name, arch ("sm_90"), compute capability and the limits of GPU `dev_id` (cached)."""
    if dev_id in _PROPS:
        return dict(_PROPS[dev_id])
    drv = require()
    if not 0 <= dev_id < _STATE["count"]:
        raise DeviceError(f"no CUDA device {dev_id}: the driver sees {_STATE['count']}")
    dev = check(drv.cuDeviceGet(dev_id), f"cuDeviceGet({dev_id})")
    props = {}
    for key, attr in _ATTRS.items():
        enum = getattr(drv.CUdevice_attribute, f"CU_DEVICE_ATTRIBUTE_{attr}")
        props[key] = int(check(drv.cuDeviceGetAttribute(enum, dev), f"device attribute {attr}"))
    raw = check(drv.cuDeviceGetName(256, dev), "cuDeviceGetName")
    name = raw.decode(errors="replace") if isinstance(raw, bytes) else str(raw)
    major, minor = props.pop("cc_major"), props.pop("cc_minor")
    props.update(name=name.split("\0")[0].strip(), arch=f"sm_{major}{minor}",
                 compute_capability=(major, minor),
                 total_memory=int(check(drv.cuDeviceTotalMem(dev), "cuDeviceTotalMem")))
    _PROPS[dev_id] = props
    return dict(props)


def synchronize(what: str = "") -> None:
    """Wait for all work on the GPU; an asynchronous kernel failure is reported naming `what`."""
    drv = require()
    check(drv.cuCtxSynchronize(), f"synchronizing after {what}" if what else "cuCtxSynchronize")


# ---------------------------------------------------------------- memory

class DeviceBuffer:
    """`nbytes` of device memory (cuMemAlloc); freed by `free()` or when collected."""

    def __init__(self, nbytes: int):
        nbytes = int(nbytes)
        if nbytes < 0:
            raise ArgumentError(f"DeviceBuffer: nbytes must be >= 0, got {nbytes}")
        self.ptr, self.nbytes = 0, nbytes
        drv = require()
        # cuMemAlloc rejects 0 bytes; an empty array still needs a distinct valid pointer
        self.ptr = int(check(drv.cuMemAlloc(max(1, nbytes)), "cuMemAlloc",
                             nbytes=nbytes))

    def copy_from_host(self, arr: np.ndarray) -> None:
        """Copy a C-contiguous numpy array of at most `nbytes` bytes to the buffer's start."""
        copy_host_to_device(self.ptr, self._host_array(arr, "copy_from_host"))

    def copy_to_host(self, arr: np.ndarray) -> np.ndarray:
        """Fill a writeable, C-contiguous numpy array of at most `nbytes` bytes from the
        buffer's start."""
        arr = self._host_array(arr, "copy_to_host")
        if not arr.flags.writeable:
            raise ArgumentError("copy_to_host: the destination array is read-only")
        return copy_device_to_host(arr, self.ptr)

    def copy_from_device(self, ptr: int, nbytes: int) -> None:
        """Copy `nbytes` from device address `ptr` to the start of this buffer."""
        if not 0 <= nbytes <= self.nbytes:
            raise ArgumentError(f"copy_from_device: {nbytes} bytes do not fit in a buffer of "
                                f"{self.nbytes}")
        copy_device_to_device(self.ptr, ptr, nbytes)

    def memset_d8(self, value: int = 0, nbytes: int | None = None) -> None:
        """Set the first `nbytes` (default all) bytes to `value`."""
        n = self.nbytes if nbytes is None else int(nbytes)
        if n:
            check(require().cuMemsetD8(self.ptr, int(value) & 0xFF, n), f"cuMemsetD8({n})")

    def _host_array(self, arr, what: str) -> np.ndarray:
        if not isinstance(arr, np.ndarray) or not arr.flags.c_contiguous:
            raise ArgumentError(f"{what}: expects a C-contiguous numpy array, got "
                                f"{type(arr).__name__}")
        if arr.nbytes > self.nbytes:
            raise ArgumentError(f"{what}: the array has {arr.nbytes} bytes, more than the "
                                f"device buffer's {self.nbytes}")
        return arr

    def free(self) -> None:
        """Release the memory now (idempotent; never raises)."""
        ptr, self.ptr = getattr(self, "ptr", 0), 0
        if ptr:
            release(lambda drv: drv.cuMemFree(ptr))

    def __del__(self):
        try:
            self.free()
        except Exception:  # at interpreter exit module globals may already be gone
            pass

    def __repr__(self) -> str:
        return f"DeviceBuffer(0x{self.ptr:x}, {self.nbytes} bytes)"


def copy_host_to_device(dst: int, arr: np.ndarray) -> None:
    """Copy a C-contiguous numpy array to device address `dst` (synchronous)."""
    if arr.nbytes:
        check(require().cuMemcpyHtoD(int(dst), arr.ctypes.data, arr.nbytes),
              f"copying {arr.nbytes} bytes to the device")


def copy_device_to_host(arr: np.ndarray, src: int) -> np.ndarray:
    """Fill a C-contiguous numpy array from device address `src` (synchronous)."""
    if arr.nbytes:
        check(require().cuMemcpyDtoH(arr.ctypes.data, int(src), arr.nbytes),
              f"copying {arr.nbytes} bytes from the device")
    return arr


def copy_device_to_device(dst: int, src: int, nbytes: int) -> None:
    if nbytes:
        check(require().cuMemcpyDtoD(int(dst), int(src), int(nbytes)),
              f"copying {nbytes} bytes on the device")


def release(fn) -> None:
    """Run a driver free/destroy call, ignoring every failure (also at interpreter exit);
    postponed while a stream capture is open, where such calls would invalidate the capture."""
    try:
        if CAPTURE_STATE["depth"]:
            CAPTURE_STATE["deferred"].append(fn)
            return
        drv = _STATE.get("driver")
        if drv is not None and "ctx" in _STATE:
            fn(drv)
    except Exception:
        pass


def release_quietly(fn) -> None:
    """`release` from a __del__, which must not raise even at interpreter exit."""
    try:
        release(fn)
    except Exception:
        pass


# ---------------------------------------------------------------- modules and launches

class CuModule:
    """A cubin loaded into the context (cuModuleLoadData)."""

    def __init__(self, cubin: bytes):
        drv = require()
        image = np.frombuffer(bytes(cubin), dtype=np.uint8).copy()  # owned, stable address
        self.handle = check(drv.cuModuleLoadData(image.ctypes.data), "loading the cubin "
                            "(cuModuleLoadData)")
        self._functions: dict = {}

    def function(self, name: str) -> CuFunction:
        if name not in self._functions:
            drv = require()
            handle = check(drv.cuModuleGetFunction(self.handle, name.encode()),
                           f"looking up kernel {name!r} in the cubin")
            self._functions[name] = CuFunction(self, handle, name)
        return self._functions[name]

    def __del__(self):
        handle, self.handle = getattr(self, "handle", None), None
        if handle is not None:
            release_quietly(lambda drv: drv.cuModuleUnload(handle))


class CuFunction:
    """One kernel of a `CuModule`."""

    def __init__(self, module: CuModule, handle, name: str):
        self.module, self.handle, self.name = module, handle, name
        self._dynamic_limit = None  # dynamic shared bytes a launch may use without an opt-in

    def allow_dynamic_shared(self, nbytes: int) -> None:
        """Make launches with `nbytes` of dynamic shared memory legal: beyond 48 KiB minus the
        kernel's static shared memory that needs an opt-in attribute (done once, and best
        before any stream capture)."""
        drv = require()
        if self._dynamic_limit is None:
            enum = drv.CUfunction_attribute.CU_FUNC_ATTRIBUTE_SHARED_SIZE_BYTES
            static = int(check(drv.cuFuncGetAttribute(enum, self.handle),
                               f"kernel {self.name}: static shared memory"))
            self._dynamic_limit = max(0, STATIC_SHARED_LIMIT - static)
        if nbytes > self._dynamic_limit:
            attr = drv.CUfunction_attribute.CU_FUNC_ATTRIBUTE_MAX_DYNAMIC_SHARED_SIZE_BYTES
            check(drv.cuFuncSetAttribute(self.handle, attr, int(nbytes)),
                  f"kernel {self.name}: opting in to {nbytes} bytes of dynamic shared memory")
            self._dynamic_limit = int(nbytes)

    def launch(self, grid, block, args, shared_bytes: int = 0, stream=None,
               overlap: bool = False) -> None:
        """Launch on `grid` x `block`; args are device pointers (int) and numpy scalars.
        overlap: programmatic dependent launch (sm_90): the kernel may be scheduled while
        the kernel before it on the stream finishes; it must wait for it itself (kiln's
        kernels begin with griddepcontrol.wait)."""
        drv = require()
        if shared_bytes > 0 and (self._dynamic_limit is None or
                                 shared_bytes > self._dynamic_limit):
            self.allow_dynamic_shared(shared_bytes)
        params, _keep = pack_params(args, self.name)
        g, b = _dim3(grid, "grid", self.name), _dim3(block, "block", self.name)
        what = f"launching kernel {self.name} (grid {g}, block {b})"
        if not overlap:
            check(drv.cuLaunchKernel(self.handle, *g, *b, int(shared_bytes),
                                     stream_handle(stream), params, 0), what)
            return
        attr = drv.CUlaunchAttribute()
        attr.id = drv.CUlaunchAttributeID.CU_LAUNCH_ATTRIBUTE_PROGRAMMATIC_STREAM_SERIALIZATION
        attr.value.programmaticStreamSerializationAllowed = 1
        cfg = drv.CUlaunchConfig()
        cfg.gridDimX, cfg.gridDimY, cfg.gridDimZ = g
        cfg.blockDimX, cfg.blockDimY, cfg.blockDimZ = b
        cfg.sharedMemBytes, cfg.hStream = int(shared_bytes), stream_handle(stream)
        cfg.attrs, cfg.numAttrs = [attr], 1
        check(drv.cuLaunchKernelEx(cfg, self.handle, params, 0), what + " (overlapped)")

    def attributes(self) -> dict:
        """Registers per thread, static shared / local bytes, max threads per block."""
        drv = require()
        names = {"num_regs": "NUM_REGS", "shared_bytes": "SHARED_SIZE_BYTES",
                 "local_bytes": "LOCAL_SIZE_BYTES", "max_threads": "MAX_THREADS_PER_BLOCK"}
        out = {}
        for key, attr in names.items():
            enum = getattr(drv.CUfunction_attribute, f"CU_FUNC_ATTRIBUTE_{attr}")
            out[key] = int(check(drv.cuFuncGetAttribute(enum, self.handle),
                                 f"kernel {self.name}: attribute {attr}"))
        return out

    def __repr__(self) -> str:
        return f"CuFunction({self.name!r})"


def _dim3(dims, what: str, kernel: str) -> tuple:
    dims = tuple(int(d) for d in dims)
    if not 1 <= len(dims) <= 3 or any(d < 1 for d in dims):
        raise ArgumentError(f"kernel {kernel}: {what} must be 1 to 3 positive sizes, got {dims}")
    return dims + (1,) * (3 - len(dims))


def pack_params(args, kernel: str = "?") -> tuple:
    """(address of the void*[] kernelParams array or 0, the objects to keep alive).

    Each argument gets an 8-byte slot: a device pointer (an int, a DeviceBuffer, a CUDA
    NDArray) as a 64-bit value, a numpy scalar as its own bytes; the driver copies as many
    bytes per slot as the kernel's parameter needs. A plain address works with every
    cuda-bindings version."""
    if not args:
        return 0, ()
    slots = np.zeros(len(args), dtype=np.uint64)
    raw = slots.view(np.uint8)
    for i, a in enumerate(args):
        if isinstance(a, np.generic):
            if a.nbytes > 8:
                raise ArgumentError(f"kernel {kernel}: argument {i} ({a.dtype}) is wider than "
                                    "8 bytes")
            raw[8 * i: 8 * i + a.nbytes] = np.frombuffer(a.tobytes(), dtype=np.uint8)
        elif isinstance(a, int) and not isinstance(a, bool):
            slots[i] = a & 0xFFFF_FFFF_FFFF_FFFF
        elif isinstance(_pointer_of(a), int):
            slots[i] = _pointer_of(a)
        else:
            raise ArgumentError(f"kernel {kernel}: argument {i} must be a device pointer (int) "
                                f"or a numpy scalar such as np.int32(n), got {type(a).__name__}")
    base = slots.ctypes.data
    params = (ctypes.c_void_p * len(args))(*[base + 8 * i for i in range(len(args))])
    return ctypes.addressof(params), (slots, params)


def _pointer_of(obj):
    """The device address of a DeviceBuffer (`.ptr`) or a CUDA NDArray (`.data_ptr`)."""
    ptr = getattr(obj, "ptr", None)
    return ptr if isinstance(ptr, int) else getattr(obj, "data_ptr", None)


# streams, events, graphs and timing live in cuda_stream.py; they are part of this API
from .cuda_stream import (  # noqa: E402
    Event,
    Graph,
    Stream,
    capture,
    flush_l2,
    stream_handle,
    time_kernels,
)

__all__ = ["CuFunction", "CuModule", "DeviceBuffer", "Event", "Graph", "Stream", "available",
           "capture", "check", "copy_device_to_device", "copy_device_to_host",
           "copy_host_to_device", "device_count", "device_properties", "flush_l2",
           "pack_params", "require", "stream_handle", "synchronize", "time_kernels"]
