"""A stand-in for cuda.bindings.driver that keeps "device" memory in host RAM and runs
kernels as Python functions, so the CUDA runtime's plumbing (parameter packing, copies,
workspace, graphs, events, error handling) is tested on machines without a GPU. It follows
cuda-bindings' calling convention: every call returns a tuple (CUresult, values...)."""

import ctypes
import enum
import itertools
import time

import numpy as np


class CUresult(enum.IntEnum):
    CUDA_SUCCESS = 0
    CUDA_ERROR_INVALID_VALUE = 1
    CUDA_ERROR_OUT_OF_MEMORY = 2
    CUDA_ERROR_NOT_FOUND = 500
    CUDA_ERROR_ILLEGAL_ADDRESS = 700


class CUdevice_attribute(enum.IntEnum):  # noqa: N801 (the driver's spelling)
    CU_DEVICE_ATTRIBUTE_MULTIPROCESSOR_COUNT = 16
    CU_DEVICE_ATTRIBUTE_MAX_THREADS_PER_BLOCK = 1
    CU_DEVICE_ATTRIBUTE_MAX_SHARED_MEMORY_PER_BLOCK = 8
    CU_DEVICE_ATTRIBUTE_MAX_SHARED_MEMORY_PER_BLOCK_OPTIN = 97
    CU_DEVICE_ATTRIBUTE_WARP_SIZE = 10
    CU_DEVICE_ATTRIBUTE_MAX_REGISTERS_PER_BLOCK = 12
    CU_DEVICE_ATTRIBUTE_L2_CACHE_SIZE = 38
    CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MAJOR = 75
    CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MINOR = 76
    CU_DEVICE_ATTRIBUTE_MAX_THREADS_PER_MULTIPROCESSOR = 39
    CU_DEVICE_ATTRIBUTE_MAX_SHARED_MEMORY_PER_MULTIPROCESSOR = 81
    CU_DEVICE_ATTRIBUTE_MAX_REGISTERS_PER_MULTIPROCESSOR = 82


class CUfunction_attribute(enum.IntEnum):  # noqa: N801
    CU_FUNC_ATTRIBUTE_MAX_THREADS_PER_BLOCK = 0
    CU_FUNC_ATTRIBUTE_SHARED_SIZE_BYTES = 1
    CU_FUNC_ATTRIBUTE_LOCAL_SIZE_BYTES = 3
    CU_FUNC_ATTRIBUTE_NUM_REGS = 4
    CU_FUNC_ATTRIBUTE_MAX_DYNAMIC_SHARED_SIZE_BYTES = 8


class CUstreamCaptureMode(enum.IntEnum):
    CU_STREAM_CAPTURE_MODE_GLOBAL = 0
    CU_STREAM_CAPTURE_MODE_THREAD_LOCAL = 1


_ATTRS = {1: 1024, 8: 48 * 1024, 97: 227 * 1024, 10: 32, 12: 65536, 16: 132,
          38: 4 * 2 ** 20, 75: 9, 76: 0, 39: 2048, 81: 228 * 1024, 82: 65536}
OK = CUresult.CUDA_SUCCESS


class Handle:
    """Opaque handles (CUstream, CUevent...): int() gives a distinct non-zero value."""
    _ids = itertools.count(1)

    def __init__(self, **fields):
        self.id = next(self._ids)
        self.__dict__.update(fields)

    def __int__(self):
        return self.id


class FakeDriver:
    """One fake GPU. `kernels` maps a kernel name to fn(grid, block, param_addresses)."""

    CUresult, CUdevice_attribute = CUresult, CUdevice_attribute
    CUfunction_attribute, CUstreamCaptureMode = CUfunction_attribute, CUstreamCaptureMode

    def __init__(self, kernels: dict):
        self.kernels = kernels
        self.memory: dict = {}      # address -> numpy buffer
        self.launches: list = []    # (kernel name, grid, block, shared) in order
        self.func_attrs: dict = {}
        self.pending = None         # an asynchronous error, reported at the next sync
        self.capturing: dict = {}   # stream id -> recorded launches
        self.streams: dict = {}

    # context and device
    def cuInit(self, flags):
        return (OK,)

    def cuDeviceGetCount(self):
        return OK, 1

    def cuDeviceGet(self, ordinal):
        return (OK, 0) if ordinal == 0 else (CUresult.CUDA_ERROR_INVALID_VALUE, None)

    def cuDevicePrimaryCtxRetain(self, dev):
        return OK, Handle()

    def cuCtxSetCurrent(self, ctx):
        return (OK,)

    def cuDeviceGetAttribute(self, attr, dev):
        return OK, _ATTRS[int(attr)]

    def cuDeviceGetName(self, length, dev):
        return OK, b"Fake H200\0\0\0"

    def cuDeviceTotalMem(self, dev):
        return OK, 141 * 2 ** 30

    def cuMemGetInfo(self):
        return OK, 2 ** 30, 141 * 2 ** 30

    def cuGetErrorString(self, err):
        return OK, f"fake {CUresult(err).name}".encode()

    def cuCtxSynchronize(self):
        return self._sync()

    def _sync(self):
        if self.pending is not None:
            return (self.pending,)  # sticky: stays
        return (OK,)

    # memory
    def cuMemAlloc(self, n):
        if n > 2 ** 40:
            return CUresult.CUDA_ERROR_OUT_OF_MEMORY, None
        if n == 0:
            return CUresult.CUDA_ERROR_INVALID_VALUE, None
        buf = np.zeros(n, np.uint8)
        self.memory[buf.ctypes.data] = buf
        return OK, buf.ctypes.data

    def cuMemFree(self, ptr):
        return (OK,) if self.memory.pop(int(ptr), None) is not None else \
            (CUresult.CUDA_ERROR_INVALID_VALUE,)

    def cuMemcpyHtoD(self, dst, src, n):
        ctypes.memmove(int(dst), int(src), n)
        return (OK,)

    def cuMemcpyDtoH(self, dst, src, n):
        ctypes.memmove(int(dst), int(src), n)
        return (OK,)

    cuMemcpyDtoD = cuMemcpyHtoD

    def cuMemsetD8(self, ptr, value, n):
        ctypes.memset(int(ptr), value, n)
        return (OK,)

    def cuMemsetD8Async(self, ptr, value, n, stream):
        return self.cuMemsetD8(ptr, value, n)

    # modules and launches
    def cuModuleLoadData(self, image):
        assert isinstance(image, int) and ctypes.string_at(image, 4) == b"\x7fELF"
        return OK, Handle()

    def cuModuleUnload(self, mod):
        return (OK,)

    def cuModuleGetFunction(self, mod, name):
        name = name.decode()
        if name not in self.kernels:
            return CUresult.CUDA_ERROR_NOT_FOUND, None
        return OK, Handle(name=name)

    def cuFuncSetAttribute(self, fn, attr, value):
        self.func_attrs[(fn.name, int(attr))] = value
        return (OK,)

    def cuFuncGetAttribute(self, attr, fn):
        return OK, {4: 12, 1: 0, 3: 0, 0: 1024}[int(attr)]

    def cuLaunchKernel(self, fn, gx, gy, gz, bx, by, bz, shared, stream, params, extra):
        if bx * by * bz > 1024:
            return (CUresult.CUDA_ERROR_INVALID_VALUE,)
        if shared > 48 * 1024 and self.func_attrs.get((fn.name, 8), 0) < shared:
            return (CUresult.CUDA_ERROR_INVALID_VALUE,)
        n = self.kernels[fn.name].__code__.co_argcount - 2
        slots = list((ctypes.c_void_p * n).from_address(params)) if n else []
        # the driver copies parameter values at launch: snapshot them like it does
        values = [ctypes.string_at(p, 8) for p in slots]
        call = (fn.name, (gx, gy, gz), (bx, by, bz), shared, values)
        if int(stream) in self.capturing:
            self.capturing[int(stream)].append(call)
        else:
            self._run(call)
        return (OK,)

    def _run(self, call):
        name, grid, block, shared, values = call
        self.launches.append((name, grid, block, shared))
        if self.pending is None:
            error = self.kernels[name](grid, block, *values)
            if error is not None:
                self.pending = error

    # streams, events, graphs
    def cuStreamCreate(self, flags):
        s = Handle(flags=flags)
        return OK, s

    def cuStreamDestroy(self, s):
        return (OK,)

    def cuStreamSynchronize(self, s):
        return self._sync()

    def cuEventCreate(self, flags):
        return OK, Handle(t=None)

    def cuEventRecord(self, ev, stream):
        ev.t = time.perf_counter()
        return (OK,)

    def cuEventSynchronize(self, ev):
        return self._sync()

    def cuEventElapsedTime(self, a, b):
        return OK, (b.t - a.t) * 1e3

    def cuEventDestroy(self, ev):
        return (OK,)

    def cuStreamBeginCapture(self, stream, mode):
        self.capturing[int(stream)] = []
        return (OK,)

    def cuStreamEndCapture(self, stream):
        return OK, Handle(calls=self.capturing.pop(int(stream)))

    def cuGraphInstantiate(self, graph, flags):
        return OK, Handle(calls=list(graph.calls))

    def cuGraphLaunch(self, graph_exec, stream):
        for call in graph_exec.calls:
            self._run(call)
        return (OK,)

    def cuGraphDestroy(self, g):
        return (OK,)

    cuGraphExecDestroy = cuGraphDestroy


def floats(value: bytes, n: int) -> np.ndarray:
    """The float32[n] device array a pointer parameter points at."""
    ptr = int.from_bytes(value, "little")
    return np.ctypeslib.as_array((ctypes.c_float * n).from_address(ptr))
