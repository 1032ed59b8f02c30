"""Compiled kernels as Python callables: load a shared library, check arguments, call, time.

In: the path of a library built from `codegen.c.render` output (it exports, per kernel,
NAME, NAME_packed, NAME_time and NAME__kiln_meta, plus kiln_module_entries).
Out: a `Module` whose `__call__(*arrays)` runs the kernel in place on numpy arrays / NDArrays
after checking count, shape, dtype and layout of every argument (`ArgumentError` names the
parameter); `time_evaluator` measures with the library's own C timing loop.
Why: everything a caller needs is in the library (metadata is embedded as JSON), so an
exported library loads again (`load_module`) on a machine without a compiler.
"""

from __future__ import annotations

import ctypes
import json
import math
import os
import statistics
import time

import numpy as np

from ..errors import ArgumentError, BuildError, RuntimeFailure
from .bfloat16 import as_bits, is_bfloat16_array
from .ndarray import NDArray, as_numpy

SCALAR_CTYPES = {"int32": ctypes.c_int32, "int64": ctypes.c_int64, "float32": ctypes.c_float,
                  "float64": ctypes.c_double, "int8": ctypes.c_int8, "uint8": ctypes.c_uint8,
                  "bool": ctypes.c_uint8}
MAX_NUMBER = 2 ** 31 - 1


class ProfileResult:
    """Seconds per call, one entry per repeat (like TVM's ProfileResult)."""

    def __init__(self, results):
        self.results = tuple(float(r) for r in results)

    @property
    def mean(self) -> float:
        return statistics.fmean(self.results)

    @property
    def median(self) -> float:
        return statistics.median(self.results)

    @property
    def min(self) -> float:
        return min(self.results)

    @property
    def max(self) -> float:
        return max(self.results)

    @property
    def std(self) -> float:
        return statistics.pstdev(self.results) if len(self.results) > 1 else 0.0

    def __repr__(self) -> str:
        return (f"ProfileResult(mean={self.mean:.6g}s, median={self.median:.6g}s, "
                f"min={self.min:.6g}s, max={self.max:.6g}s, std={self.std:.3g}s, "
                f"repeats={len(self.results)})")


class Kernel:
    """One entry point of a library: argument checks, the call, the timer."""

    def __init__(self, lib: ctypes.CDLL, meta: dict):
        self.meta = meta
        self.name = meta["name"]
        self.params = meta["params"]
        self.scalar_params = meta["scalar_params"]
        self._packed = _symbol(lib, f"{self.name}_packed", ctypes.c_int32, [ctypes.c_void_p])
        self._time = _symbol(lib, f"{self.name}_time", ctypes.c_int32,
                             [ctypes.c_void_p, ctypes.c_int32, ctypes.c_int32,
                              ctypes.POINTER(ctypes.c_double)])
        self._hook = None
        if meta.get("packed_calls"):  # te.extern call sites: the Python callback
            from .packed import PackedHook
            self._hook = PackedHook(lib, self.name, meta["packed_calls"])

    def _run(self, entry, *args) -> int:
        """entry(*args); with te.extern call sites, their functions are looked up first and a
        packed function's exception is raised after the kernel returns."""
        if self._hook is None:
            return entry(*args)
        self._hook.check()
        rc = entry(*args)
        if rc != 0:
            self._hook.raise_failure(rc)
        return rc

    @property
    def arg_names(self) -> list:
        return [p["name"] for p in self.params] + [p["name"] for p in self.scalar_params]

    def __call__(self, *args) -> None:
        argv, _keep = self.pack(args)
        rc = self._run(self._packed, argv)
        if rc != 0:
            raise RuntimeFailure(f"kernel {self.name} failed with code {rc}"
                                 f"{' (a heap allocation failed)' if rc == -1 else ''}")

    # ------------------------------------------------------------ arguments
    def pack(self, args) -> tuple:
        """(void*[] for NAME_packed, objects that must stay alive during the call)."""
        want = len(self.params) + len(self.scalar_params)
        if len(args) != want:
            raise ArgumentError(f"{self.name} takes {want} arguments "
                                f"({', '.join(self.arg_names)}), got {len(args)}")
        sizes: dict = {}
        argv = (ctypes.c_void_p * max(want, 1))()
        keep = []
        for i, (p, a) in enumerate(zip(self.params, args[:len(self.params)], strict=True)):
            arr = self._check_array(i, p, a, sizes)
            argv[i] = arr.ctypes.data
            keep.append(arr)
        self._check_aliasing(keep)
        for j, (p, a) in enumerate(zip(self.scalar_params, args[len(self.params):], strict=True)):
            k = len(self.params) + j
            value = self._check_scalar(k, p, a, sizes)
            keep.append(value)
            argv[k] = ctypes.addressof(value)
        return argv, keep

    def _check_array(self, i: int, p: dict, a, sizes: dict) -> np.ndarray:
        arr = as_numpy(a)
        want = f"shape {_shape_text(p['shape'])} {p['dtype']}"
        where = f"argument {i + 1} '{p['name']}'"
        if not isinstance(arr, np.ndarray):
            raise ArgumentError(f"{where} expects a numpy.ndarray or kiln NDArray of {want}, "
                                f"got {type(a).__name__}")
        got_dtype = "bool" if arr.dtype == np.bool_ else str(arr.dtype)
        if p["dtype"] == "bfloat16" and is_bfloat16_array(arr):
            arr, got_dtype = as_bits(arr), "bfloat16"  # uint16 bits or ml_dtypes.bfloat16
        if got_dtype != p["dtype"] or not _shape_ok(p["shape"], arr.shape, sizes):
            raise ArgumentError(f"{where} expects {want}, got {tuple(arr.shape)} {got_dtype}")
        if not arr.flags.c_contiguous:
            raise ArgumentError(f"{where} must be C-contiguous (got a strided view); pass "
                                "np.ascontiguousarray(x)")
        if p.get("written") and not arr.flags.writeable:
            raise ArgumentError(f"{where} is written by the kernel but the array is read-only")
        return arr

    def _check_aliasing(self, arrays: list) -> None:
        """Kernels declare their pointers `restrict`: an array they write must not overlap
        any other argument (f(A, B, A) would silently compute garbage)."""
        for i, p in enumerate(self.params):
            if not p.get("written"):
                continue
            for j, other in enumerate(arrays):
                if j != i and np.may_share_memory(arrays[i], other):
                    raise ArgumentError(
                        f"argument {i + 1} '{p['name']}' is written by {self.name} but shares "
                        f"memory with argument {j + 1} '{self.params[j]['name']}'; kernels "
                        "assume outputs do not alias other arguments: pass a separate array")

    def _check_scalar(self, k: int, p: dict, a, sizes: dict):
        where = f"argument {k + 1} '{p['name']}'"
        dtype = p["dtype"]
        if isinstance(a, (NDArray, np.ndarray)) and np.ndim(a) != 0:
            raise ArgumentError(f"{where} expects a scalar {dtype}, got an array")
        value = a.item() if hasattr(a, "item") else a
        is_int = dtype.startswith("int") or dtype.startswith("uint") or dtype == "bool"
        if is_int and not isinstance(value, (int, bool)):
            raise ArgumentError(f"{where} expects an integer ({dtype}), got "
                                f"{type(a).__name__} {a!r}")
        if not is_int and not isinstance(value, (int, float)):
            raise ArgumentError(f"{where} expects a number ({dtype}), got {type(a).__name__}")
        bound = sizes.get(p["name"])
        if bound is not None and bound != value:
            raise ArgumentError(f"{where} is {value} but the array shapes say {bound}")
        if is_int and dtype != "bool":
            info = np.iinfo(dtype)
            if not info.min <= int(value) <= info.max:
                raise ArgumentError(f"{where} is {value}, outside the range of {dtype} "
                                    f"[{info.min}, {info.max}]")
        return SCALAR_CTYPES[dtype](value)

    # ------------------------------------------------------------ timing
    def time_once(self, argv, number: int) -> float:
        out = (ctypes.c_double * 1)()
        rc = self._run(self._time, argv, number, 1, out)
        if rc != 0:
            raise RuntimeFailure(f"kernel {self.name} failed with code {rc} while timing")
        return out[0]

    def measure(self, args, number: int, repeat: int, min_repeat_ms: float,
                cooldown_interval_ms: float = 0, repeats_to_cooldown: int = 1) -> ProfileResult:
        argv, _keep = self.pack(args)
        number, results = max(1, int(number)), []
        for r in range(max(1, int(repeat))):
            t = self.time_once(argv, number)
            while min_repeat_ms > 0 and t * number * 1e3 < min_repeat_ms and number < MAX_NUMBER:
                need = math.ceil(min_repeat_ms / 1e3 / max(t, 1e-9))
                number = min(MAX_NUMBER, max(need, int(number * 1.618) + 1))
                t = self.time_once(argv, number)
            results.append(t)
            if cooldown_interval_ms > 0 and (r + 1) % max(1, repeats_to_cooldown) == 0:
                time.sleep(cooldown_interval_ms / 1e3)
        return ProfileResult(results)


class KernelTable:
    """What Module and CudaModule share: kernels by name (`kernels`), the entry kernel
    (`entry_name`), calling the module runs the entry."""

    kernels: dict
    entry_name: str

    @property
    def entry(self):
        return self.kernels[self.entry_name]

    @property
    def params(self) -> list:
        return self.entry.params

    def __call__(self, *args) -> None:
        self.entry(*args)

    def __getitem__(self, name: str):
        return self.get_function(name)

    def get_function(self, name: str):
        if name not in self.kernels:
            raise ArgumentError(f"no function {name!r} in this module; it has "
                                f"{', '.join(self.kernels)}")
        return self.kernels[name]


class Module(KernelTable):
    """A loaded library of kernels; calling it runs its (first) entry kernel."""

    type_key = "kiln_c"

    def __init__(self, lib_path: str, source: str | None = None):
        self.lib_path = os.path.abspath(lib_path)
        try:
            self._lib = ctypes.CDLL(self.lib_path)
        except OSError as err:
            raise BuildError(f"cannot load library {self.lib_path}: {err}") from err
        names = json.loads(_meta_text(self._lib, "kiln_module_entries"))
        self.kernels = {n: Kernel(self._lib, json.loads(_meta_text(self._lib, f"{n}__kiln_meta")))
                        for n in names}
        if not self.kernels:
            raise BuildError(f"library {self.lib_path} holds no kiln kernels")
        check_isa(self.entry_meta_target(), self.lib_path)
        self.entry_name = names[0]
        self._source = source
        self.imported_modules: list = []

    def entry_meta_target(self) -> str:
        return next(iter(self.kernels.values())).meta.get("target", "")


    @property
    def source(self) -> str:
        if self._source is None:
            self._source = _read_sidecar(self.lib_path)
        return self._source

    def get_source(self, fmt: str = "c") -> str:
        return self.source

    def export_library(self, path: str) -> str:
        """Copy the library to `path` (metadata is inside), the C source beside it, each
        atomically, then `path.manifest.json` (its sha256 and target) that load_module checks."""
        from .files import copy_file, write_bytes, write_manifest
        path = os.path.abspath(os.fspath(path))
        copy_file(self.lib_path, path)
        if self.source:
            write_bytes(_sidecar(path), self.source.encode())
        write_manifest(path, [""], self.entry_meta_target())
        return path

    def save(self, path: str, fmt: str = "") -> str:
        """TVM's Module.save: "x.o" an object file (link it with contrib.cc.create_shared),
        "x.c" the C source, "x.so" the library itself."""
        from .files import copy_file, write_bytes
        path = os.fspath(path)
        kind = fmt or os.path.splitext(path)[1].lstrip(".")
        if kind == "o":
            # compiling is the toolchain's job: imported here, the runtime stays loadable
            # without it
            from ..codegen.toolchain import compile_object
            return compile_object(self.source, self.entry_meta_target(), path)
        if kind in ("c", "cc"):
            write_bytes(path, self.source.encode())
            return path
        if kind == "so":
            copy_file(self.lib_path, path)
            return path
        raise ArgumentError(f"Module.save({path!r}): kiln saves .o, .c or .so files")

    def time_evaluator(self, func_name: str | None = None, dev=None, number: int = 10,
                       repeat: int = 1, min_repeat_ms: float = 0,
                       cooldown_interval_ms: float = 0, repeats_to_cooldown: int = 1,
                       f_preproc: str = "", flush_args: list[int] | None = None):
        """A function(*args) -> ProfileResult timing `func_name` (default: the entry).

        Cache flushing (weights cold, as inside a network): `f_preproc` as in TVM
        ("cache_flush_cpu_non_first_arg") or `flush_args`, the indices of the array arguments
        to evict before every call; then each call is timed alone (see measure_flushed)."""
        from .cache_flush import flush_indices, measure_flushed
        kernel = self.get_function(func_name) if func_name else self.entry
        idx = flush_indices(kernel, f_preproc, flush_args)

        def evaluator(*args) -> ProfileResult:
            if idx:
                return measure_flushed(kernel, args, idx, number, repeat, min_repeat_ms)
            return kernel.measure(args, number, repeat, min_repeat_ms, cooldown_interval_ms,
                                  repeats_to_cooldown)
        return evaluator

    def __repr__(self) -> str:
        return f"Module({self.entry_name!r}, {self.lib_path!r})"


def load_module(path: str) -> Module:
    """Load a library built by kiln (e.g. one written by `Module.export_library`); a CUDA
    module file (JSON starting with {"kiln_cuda_module") loads as a CudaModule, a whole model
    exported by kiln.graph (relay.build) as its GraphModule (`lib["default"](dev)`)."""
    if not os.path.exists(path):
        raise BuildError(f"no library at {path}")
    with open(path, "rb") as f:
        head = f.read(32)
    if head.startswith(b'{"kiln_cuda_module"'):
        from .cuda_module import load_cuda_module
        return load_cuda_module(path)
    if os.path.exists(path + ".params.npz") and os.path.exists(path + ".json"):
        # a whole model exported by kiln.graph (TVM's load_module of a relay.build library);
        # imported here, not above, because kiln.graph builds on this runtime
        from ..graph.executable import load as load_model
        return load_model(path)
    from .files import manifest_path, verify_manifest
    if os.path.exists(manifest_path(path)):  # exported: refuse a damaged or swapped file
        verify_manifest(path)
    return Module(path)


# ---------------------------------------------------------------- helpers

def check_isa(target_text: str, path: str) -> None:
    """A library built for instructions this CPU lacks must not be called (it would die
    with SIGILL): refuse it when it is loaded."""
    from ..target import missing_features
    missing = missing_features(target_text)
    if missing:
        raise BuildError(f"library {path} was built for target {target_text!r}; this CPU lacks "
                         f"{', '.join(missing)}: rebuild it here")

def _symbol(lib, name: str, restype, argtypes):
    try:
        fn = getattr(lib, name)
    except AttributeError:
        raise BuildError(f"library {lib._name} lacks the symbol {name}; was it built by "
                         "kiln?") from None
    fn.restype, fn.argtypes = restype, argtypes
    return fn


def _meta_text(lib, name: str) -> str:
    fn = _symbol(lib, name, ctypes.c_char_p, [])
    return fn().decode()


def _shape_text(shape) -> str:
    return "(" + ", ".join(str(d) for d in shape) + ("," if len(shape) == 1 else "") + ")"


def _shape_ok(want, got, sizes: dict) -> bool:
    if len(want) != len(got):
        return False
    for w, g in zip(want, got, strict=True):
        if isinstance(w, str):
            if sizes.setdefault(w, g) != g:
                return False
        elif w != g:
            return False
    return True


def _sidecar(lib_path: str) -> str:
    return os.path.splitext(lib_path)[0] + ".c"


def _read_sidecar(lib_path: str) -> str:
    try:
        with open(_sidecar(lib_path)) as f:
            return f.read()
    except OSError:
        return ""
