"""Compiled CUDA kernels as Python callables: the GPU counterpart of `runtime.module.Module`.

In: the path of a cubin (from `codegen.nvrtc.compile_cuda`), the codegen's metadata (the
function's parameters, the device workspace its kernels share, and per kernel its name,
launch grid / block, dynamic shared memory and argument list) and the CUDA source.
Out: a `CudaModule` with the same surface as `Module`: calling it runs every kernel in order
on NumPy arrays (copied to the GPU and back), kiln CUDA NDArrays or `__cuda_array_interface__`
objects (PyTorch CUDA tensors, CuPy arrays; used in place); `time_evaluator` times with CUDA
events; `export_library` writes one self-contained JSON file that `load_cuda_module` reads.
Why: a module is built and checked on any machine (the GPU is touched only on the first
call), so tuning can compile on CPU workers and measure on a GPU elsewhere.
"""

from __future__ import annotations

import base64
import hashlib
import json
import math
import os
import threading
import time

import numpy as np

from ..errors import ArgumentError, BuildError
from .module import MAX_NUMBER, KernelTable, ProfileResult, _shape_ok, _shape_text
from .ndarray import CudaNDArray, NDArray, cuda_array_info

MAGIC = "kiln_cuda_module"
FORMAT_VERSION = 1
ALIGN = 16  # bytes: the widest access kernels make (float4); device arguments start on it


class CudaFunction:
    """The module's function: argument checks, the launches of its kernels, the timer."""

    def __init__(self, module: CudaModule, meta: dict):
        self.module, self.meta = module, meta
        self.name = meta["name"]
        self.params = meta["params"]
        self.scalar_params = meta.get("scalar_params", [])
        self.kernels = meta["kernels"]

    @property
    def arg_names(self) -> list:
        return [p["name"] for p in self.params] + [p["name"] for p in self.scalar_params]

    def __call__(self, *args) -> None:
        call = self.prepare(args)
        self.module.launch_all(call.pointers, call.scalars)
        self.module.synchronize()
        call.copy_back()

    # ------------------------------------------------------------ arguments
    def prepare(self, args) -> _Call:
        """Check `args` and map each array parameter to a device pointer (uploading host
        arrays); raises ArgumentError before any GPU work when an argument is wrong."""
        want = len(self.params) + len(self.scalar_params)
        if len(args) != want:
            raise ArgumentError(f"{self.name} takes {want} arguments "
                                f"({', '.join(self.arg_names)}), got {len(args)}")
        sizes: dict = {}
        kinds = [self._check_array(i, p, a, sizes)
                 for i, (p, a) in enumerate(zip(self.params, args))]
        scalars = [self._check_scalar(len(self.params) + j, p, a, sizes)
                   for j, (p, a) in enumerate(zip(self.scalar_params, args[len(self.params):]))]
        self._check_aliasing(args, kinds)
        return _Call(self, args, kinds, scalars)

    def _check_aliasing(self, args, kinds: list) -> None:
        """Kernels declare their pointers __restrict__: an array they write must not overlap
        another argument (host arrays by NumPy's test, device arrays by address range)."""
        spans = [_span(a) if k == "device" else None for a, k in zip(args, kinds)]
        for i, p in enumerate(self.params):
            if not p.get("written"):
                continue
            for j in range(len(self.params)):
                if j == i or kinds[i] != kinds[j]:
                    continue
                if (kinds[i] == "host" and np.may_share_memory(_host(args[i]), _host(args[j]))) \
                        or (kinds[i] == "device" and _overlap(spans[i], spans[j])):
                    raise ArgumentError(
                        f"argument {i + 1} '{p['name']}' is written by {self.name} but shares "
                        f"memory with argument {j + 1} '{self.params[j]['name']}'; kernels "
                        "assume outputs do not alias other arguments: pass a separate array")

    def _check_array(self, i: int, p: dict, a, sizes: dict) -> str:
        """'device' or 'host' for a valid argument; ArgumentError naming it otherwise."""
        want = f"shape {_shape_text(p['shape'])} {p['dtype']}"
        where = f"argument {i + 1} '{p['name']}'"
        if isinstance(a, CudaNDArray) or hasattr(a, "__cuda_array_interface__"):
            if isinstance(a, CudaNDArray):
                shape, dtype, contiguous = a.shape, np.dtype(a.dtype), True
            else:
                _, shape, dtype, contiguous, _ = cuda_array_info(a)
            kind = "device"
        elif isinstance(a, (np.ndarray, NDArray)):
            arr = a._data if isinstance(a, NDArray) else a
            shape, dtype, contiguous, kind = arr.shape, arr.dtype, arr.flags.c_contiguous, "host"
            if p.get("written") and not arr.flags.writeable:
                raise ArgumentError(f"{where} is written by the kernel but the array is "
                                    "read-only")
        else:
            raise ArgumentError(f"{where} expects a numpy.ndarray, a kiln NDArray or a CUDA "
                                f"array (e.g. a torch CUDA tensor) of {want}, got "
                                f"{type(a).__name__}")
        got = "bool" if dtype == np.bool_ else str(dtype)
        if got != p["dtype"] or not _shape_ok(p["shape"], tuple(shape), sizes):
            raise ArgumentError(f"{where} expects {want}, got {tuple(shape)} {got}")
        if not contiguous:
            raise ArgumentError(f"{where} must be C-contiguous (got a strided view); pass "
                                "a contiguous copy")
        return kind

    def _check_scalar(self, k: int, p: dict, a, sizes: dict) -> np.generic:
        where = f"argument {k + 1} '{p['name']}'"
        if isinstance(a, (np.ndarray, NDArray)) and np.ndim(a) != 0:
            raise ArgumentError(f"{where} expects a scalar {p['dtype']}, got an array")
        value = a.item() if hasattr(a, "item") else a
        if not isinstance(value, (int, float, bool)):
            raise ArgumentError(f"{where} expects a number ({p['dtype']}), got "
                                f"{type(a).__name__}")
        if np.dtype(p["dtype"]).kind in "iub" and not isinstance(value, (int, bool)):
            raise ArgumentError(f"{where} expects an integer ({p['dtype']}), got "
                                f"{type(a).__name__} {a!r}")
        bound = sizes.get(p["name"])
        if bound is not None and bound != value:
            raise ArgumentError(f"{where} is {value} but the array shapes say {bound}")
        return np.dtype(p["dtype"]).type(value)

    # ------------------------------------------------------------ timing
    def measure(self, args, number: int, repeat: int, min_repeat_ms: float,
                cooldown_interval_ms: float = 0, repeats_to_cooldown: int = 1,
                flush_l2: bool = False) -> ProfileResult:
        """Seconds per call (CUDA events), one entry per repeat.

        Host arrays are uploaded once, before timing; nothing is copied inside the timed
        region. With several kernels or number >= 2, one call is captured into a CUDA graph
        and the graph is launched `number` times per repeat: one launch per call instead of
        one per kernel, which keeps Python launch overhead out of short kernels' times."""
        from . import cuda as rt
        call = self.prepare(args)
        mod = self.module
        mod.load()
        stream = rt.Stream()
        launch = lambda s: mod.launch_all(call.pointers, call.scalars, s)
        what = f"timing {self.name} (kernels {mod.kernel_names})"
        rt.synchronize(what)  # the uploads (legacy stream) must land before the timed stream runs
        if len(self.kernels) > 1 or number >= 2:
            launch(stream)  # one plain call first, so a failing kernel is named
            stream.synchronize(what)
            launch = rt.capture(launch, stream).launch
        number, results = max(1, int(number)), []
        for r in range(max(1, int(repeat))):
            t = rt.time_kernels(launch, number, 1, stream, flush_l2, what)[0]
            while min_repeat_ms > 0 and t * number * 1e3 < min_repeat_ms and number < MAX_NUMBER:
                need = math.ceil(min_repeat_ms / 1e3 / max(t, 1e-9))
                number = min(MAX_NUMBER, max(need, int(number * 1.618) + 1))
                t = rt.time_kernels(launch, number, 1, stream, flush_l2, what)[0]
            results.append(t)
            if cooldown_interval_ms > 0 and (r + 1) % max(1, repeats_to_cooldown) == 0:
                time.sleep(cooldown_interval_ms / 1e3)
        rt.synchronize(what)
        return ProfileResult(results)


class _Call:
    """One call's device pointers; host arrays uploaded, copied back after the run."""

    def __init__(self, fn: CudaFunction, args, kinds: list, scalars: list):
        from . import cuda as rt
        self.pointers, self.scalars, self._back, self._keep = [], scalars, [], []
        self._back_device: list = []  # (caller's misaligned array, its aligned stand-in)
        sync_first = False
        for p, a, kind in zip(fn.params, args, kinds):
            if kind == "device":
                view = a if isinstance(a, CudaNDArray) else CudaNDArray.view_of(a)
                if not isinstance(a, CudaNDArray) and cuda_array_info(a)[4] is not None:
                    sync_first = True  # the producer's stream may still be writing it
                if view.data_ptr % ALIGN:
                    view = self._staged(view, bool(p.get("written")))
                self.pointers.append(view.data_ptr)
                self._keep.append(view)
                continue
            host = a._data if isinstance(a, NDArray) else a
            dev = CudaNDArray(host)
            self.pointers.append(dev.data_ptr)
            self._keep.append(dev)
            if p.get("written"):
                self._back.append((host, dev))
        if sync_first:
            rt.synchronize(f"waiting for the inputs of {fn.name}")

    def _staged(self, view: CudaNDArray, written: bool) -> CudaNDArray:
        """An aligned device copy of an array that starts off ALIGN bytes (a view such as
        torch's x[1:]): kernels read and write 16 bytes at a time where their indices allow,
        and a misaligned such access is a launch failure that poisons the CUDA context."""
        staged = CudaNDArray.allocate(view.shape, view.dtype, view.device).copyfrom(view)
        if written:
            self._back_device.append((view, staged))
        return staged

    def copy_back(self) -> None:
        if self._back_device:
            from . import cuda as rt
            for dst, dev in self._back_device:
                dst.copyfrom(dev)
            rt.synchronize("copying outputs back into misaligned arrays")
        for host, dev in self._back:
            host[...] = dev.numpy()


class CudaModule(KernelTable):
    """A cubin and its metadata; calling it runs the entry function's kernels on the GPU."""

    type_key = "kiln_cuda"

    def __init__(self, cubin_path: str, meta: dict, source: str | None = None):
        self.cubin_path = os.path.abspath(cubin_path)
        if not os.path.exists(self.cubin_path):
            raise BuildError(f"no cubin at {self.cubin_path}")
        _check_meta(meta, self.cubin_path)
        self.meta, self._source = meta, source
        self.entry_name = meta["name"]
        self.kernels = {self.entry_name: CudaFunction(self, meta)}
        self.imported_modules: list = []
        self._cu = None           # the loaded CuModule, on first use
        self._load_lock = threading.Lock()
        self._launchers: list = []
        self._workspace: list = []

    # ------------------------------------------------------------ Module's surface

    @property
    def source(self) -> str:
        return self._source or ""

    def get_source(self, fmt: str = "cuda") -> str:
        return self.source

    @property
    def cubin(self) -> bytes:
        with open(self.cubin_path, "rb") as f:
            return f.read()

    @property
    def kernel_names(self) -> str:
        return ", ".join(k["name"] for k in self.meta["kernels"])

    def export_library(self, path: str) -> str:
        """Write one self-contained file: JSON with the metadata, the source and the cubin."""
        path = os.path.abspath(os.fspath(path))
        doc = {MAGIC: FORMAT_VERSION, "meta": self.meta, "source": self.source,
               "cubin": base64.b64encode(self.cubin).decode("ascii")}
        tmp = path + ".tmp"
        with open(tmp, "w") as f:
            json.dump(doc, f)
        os.replace(tmp, path)
        return path

    def time_evaluator(self, func_name: str | None = None, dev=None, number: int = 10,
                       repeat: int = 1, min_repeat_ms: float = 0,
                       cooldown_interval_ms: float = 0, repeats_to_cooldown: int = 1,
                       f_preproc: str = ""):
        """A function(*args) -> ProfileResult timing `func_name` (default: the entry) with
        CUDA events; `f_preproc="cache_flush"` (any name containing it) flushes the L2 before
        each repeat. See `CudaFunction.measure` for what is timed."""
        fn = self.get_function(func_name) if func_name else self.entry
        flush = "cache_flush" in (f_preproc or "")

        def evaluator(*args) -> ProfileResult:
            return fn.measure(args, number, repeat, min_repeat_ms, cooldown_interval_ms,
                              repeats_to_cooldown, flush)
        return evaluator

    # ------------------------------------------------------------ the GPU side
    def load(self) -> None:
        """Load the cubin, look up the kernels, allocate the workspace (first call only)."""
        if self._cu is not None:
            return
        from . import cuda as rt
        with self._load_lock:
            if self._cu is not None:
                return
            rt.require()
            cu = rt.CuModule(self.cubin)
            self._launchers = [cu.function(k["name"]) for k in self.meta["kernels"]]
            for k, fn in zip(self.meta["kernels"], self._launchers):
                if int(k.get("shared_bytes", 0)) > 0:  # opt in now, not inside a capture
                    fn.allow_dynamic_shared(int(k["shared_bytes"]))
            self._workspace = [rt.DeviceBuffer(int(w["nbytes"]))
                               for w in self.meta.get("workspace", [])]
            self._cu = cu

    def launch_all(self, pointers: list, scalars: list, stream=None) -> None:
        """Enqueue every kernel once, in order (asynchronous)."""
        self.load()
        for k, fn in zip(self.meta["kernels"], self._launchers):
            fn.launch(k["grid"], k["block"], self._kernel_args(k, pointers, scalars),
                      int(k.get("shared_bytes", 0)), stream)

    def _kernel_args(self, kernel: dict, pointers: list, scalars: list) -> list:
        out = []
        for kind, index in kernel["args"]:
            if kind == "param":
                out.append(pointers[index])
            elif kind == "workspace":
                out.append(self._workspace[index].ptr)
            elif kind == "scalar":
                out.append(scalars[index])
            else:
                raise BuildError(f"kernel {kernel['name']}: unknown argument kind {kind!r}")
        return out

    def synchronize(self) -> None:
        """Wait for the launched kernels; a failure is a DeviceError naming them."""
        from . import cuda as rt
        rt.synchronize(f"running {self.entry_name} (kernels {self.kernel_names})")

    def __repr__(self) -> str:
        return f"CudaModule({self.entry_name!r}, {self.cubin_path!r})"


def load_cuda_module(path: str) -> CudaModule:
    """Load a file written by `CudaModule.export_library` (no GPU needed until called)."""
    try:
        with open(path) as f:
            doc = json.load(f)
    except (OSError, ValueError) as err:
        raise BuildError(f"cannot read CUDA module {path}: {err}") from err
    if not isinstance(doc, dict) or MAGIC not in doc:
        raise BuildError(f"{path} is not a kiln CUDA module (no {MAGIC!r} key)")
    if doc[MAGIC] != FORMAT_VERSION:
        raise BuildError(f"{path}: CUDA module format {doc[MAGIC]} is not {FORMAT_VERSION}")
    cubin = base64.b64decode(doc["cubin"])
    return CudaModule(_cache_cubin(cubin), doc["meta"], doc.get("source", ""))


def _cache_cubin(cubin: bytes) -> str:
    """The cubin stored in the build cache under its own hash (shared by identical loads)."""
    from ..codegen.toolchain import cache_dir
    path = os.path.join(cache_dir(), hashlib.sha256(cubin).hexdigest() + ".cubin")
    if not os.path.exists(path):
        tmp = f"{path}.{os.getpid()}.tmp"
        with open(tmp, "wb") as f:
            f.write(cubin)
        os.replace(tmp, path)
    return path


def _check_meta(meta: dict, where: str) -> None:
    missing = [k for k in ("name", "params", "kernels") if k not in meta]
    if missing:
        raise BuildError(f"CUDA module metadata for {where} lacks {', '.join(missing)}")
    for k in meta["kernels"]:
        for kind, index in k.get("args", []):
            limit = {"param": len(meta["params"]), "workspace": len(meta.get("workspace", [])),
                     "scalar": len(meta.get("scalar_params", []))}.get(kind)
            if limit is None or not 0 <= index < limit:
                raise BuildError(f"CUDA module metadata for {where}: kernel {k.get('name')} "
                                 f"has an invalid argument {[kind, index]}")


def _host(a) -> np.ndarray:
    return a._data if isinstance(a, NDArray) else a


def _span(a) -> tuple:
    """(start, end) device addresses of a CUDA array argument."""
    if isinstance(a, CudaNDArray):
        ptr, nbytes = a.data_ptr, int(np.prod(a.shape)) * np.dtype(a.dtype).itemsize
    else:
        ptr, shape, dtype, _, _ = cuda_array_info(a)
        nbytes = int(np.prod(shape)) * dtype.itemsize
    return ptr, ptr + nbytes


def _overlap(a: tuple, b: tuple) -> bool:
    return a[0] < b[1] and b[0] < a[1]
