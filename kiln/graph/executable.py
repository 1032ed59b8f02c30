"""GraphModule: a compiled model (one shared library + bound parameters + metadata).

In: the library built by kiln.graph.build (it exports `kiln_graph_run`), the metadata dict
(inputs, outputs, parameter layouts, workspace size, kernels) and the parameter arrays.
Out: `run(**inputs) -> {output name: array}` (also TVM-style set_input / run / get_output),
with every input checked (a missing, unknown, mis-shaped or mis-typed input raises an
ArgumentError naming it); `export_library(path)` writes path (the .so), path + ".params.npz",
path + ".json" (and the C source as path + ".c"), each atomically, then path +
".manifest.json" with their hashes; `load(path)` verifies and reads them back without a
compiler. `time_evaluator(number, repeat)` times the compiled entry on the current inputs.
TVM's factory protocol: `lib["default"](dev)` checks the device against the target and
returns the model itself (what kiln.contrib.graph_executor.GraphModule wraps).
Why: inference is one ctypes call into generated code; NumPy only allocates the outputs.
Threads: the generated code keeps no state between calls, so per-thread arenas make run()
safe to call concurrently (ctypes releases the GIL during the call, so threads overlap).
"""

from __future__ import annotations

import ctypes
import json
import os
import threading
import time
import zipfile

import numpy as np

from ..errors import ArgumentError, BuildError, RuntimeFailure
from .checks import check_index_ranges
from .csource import PROFILE_SUFFIX
from .passes.layout import aligned_copy

__all__ = ["META_VERSION", "GraphModule", "load"]

META_VERSION = 1


def _np_dtype(dtype: str):
    return np.bool_ if dtype == "bool" else np.dtype(dtype)


def carried_dtype(spec: dict):
    """The NumPy dtype an input or output has inside the library: its "carried" dtype when
    the passes widened it (a float16 model computes in float32), else its own."""
    return _np_dtype(spec.get("carried", spec["dtype"]))


def to_outer(arrays: list, specs: list) -> list:
    """Outputs as the user reads them: widened ones narrowed back to their own dtype."""
    return [a.astype(_np_dtype(d["dtype"])) if "carried" in d else a
            for a, d in zip(arrays, specs)]


def _dtype_name(a: np.ndarray) -> str:
    return "bool" if a.dtype == np.bool_ else str(a.dtype)


def _aligned(a: np.ndarray) -> np.ndarray:
    ok = a.flags.c_contiguous and a.ctypes.data % 64 == 0
    return a if ok else aligned_copy(a)


def _pointers(arrays: list):
    arr = (ctypes.c_void_p * max(len(arrays), 1))()
    for i, a in enumerate(arrays):
        arr[i] = a.ctypes.data
    return arr


class GraphModule:
    """A compiled model. Safe to call from several threads at once: each thread has its own
    activation arena and its own inputs / outputs (set_input, run and get_output act on the
    calling thread's), the weights are shared read-only."""

    def __init__(self, lib_path: str, meta: dict, params: list, source: str | None = None):
        if meta.get("version") != META_VERSION:
            raise BuildError(f"model metadata version {meta.get('version')} is not "
                             f"{META_VERSION}; rebuild the model with this kiln")
        self.lib_path, self.meta, self._source = os.path.abspath(lib_path), meta, source
        # one entry per input shape the library was built for (build_variants.py)
        self._variants = meta.get("variants") or [
            {k: meta[k] for k in ("entry", "inputs", "outputs", "steps", "step_kernels")
             if k in meta}]
        try:
            self._lib = ctypes.CDLL(self.lib_path)
            self._entries = [getattr(self._lib, v["entry"]) for v in self._variants]
        except (OSError, AttributeError) as err:
            raise BuildError(f"cannot load model library {self.lib_path}: {err}") from err
        from ..runtime.module import check_isa
        check_isa(meta.get("target", ""), self.lib_path)
        for fn in self._entries:
            fn.restype = ctypes.c_int32
            fn.argtypes = [ctypes.c_void_p] * 4
        self._params = [_aligned(p) for p in params]
        self._param_ptrs = _pointers(self._params)
        self._tls = threading.local()  # inputs, outputs and workspace: one set per thread
        self._in = {d["name"]: d for d in meta["inputs"]}

    # ------------------------------------------------------------ per-thread state
    def _thread_state(self) -> threading.local:
        tls = self.__dict__.get("_tls")
        if tls is None:  # subclasses that do not call __init__
            tls = self.__dict__["_tls"] = threading.local()
        if not hasattr(tls, "inputs"):
            tls.inputs, tls.outputs, tls.workspace = {}, [], None
        return tls

    @property
    def _inputs(self) -> dict:
        return self._thread_state().inputs

    @_inputs.setter
    def _inputs(self, value: dict) -> None:
        self._thread_state().inputs = value

    @property
    def _outputs(self) -> list:
        return self._thread_state().outputs

    @_outputs.setter
    def _outputs(self, value: list) -> None:
        self._thread_state().outputs = value

    @property
    def _workspace(self) -> np.ndarray:
        """This thread's activation arena (allocated on its first run)."""
        tls = self._thread_state()
        if tls.workspace is None:
            tls.workspace = aligned_copy(np.zeros(max(1, self.meta["workspace_bytes"]),
                                                  np.uint8))
        return tls.workspace

    # ------------------------------------------------------------ description
    @property
    def input_names(self) -> list:
        return [d["name"] for d in self.meta["inputs"]]

    @property
    def output_names(self) -> list:
        return [d["name"] for d in self.meta["outputs"]]

    def get_num_inputs(self) -> int:
        return len(self.meta["inputs"])

    def get_num_outputs(self) -> int:
        return len(self.meta["outputs"])

    @property
    def workspace_bytes(self) -> int:
        return self.meta["workspace_bytes"]

    @property
    def flush_denormals(self) -> bool:
        """Whether the model runs with denormals flushed to zero (build's option)."""
        return bool(self.meta.get("flush_denormals", False))

    SOURCE_SUFFIX = ".c"  # the generated source beside an exported library

    @property
    def source(self) -> str:
        if self._source is None:
            try:
                with open(self.lib_path + self.SOURCE_SUFFIX) as f:
                    self._source = f.read()
            except OSError:
                self._source = ""
        return self._source

    def memory_report(self) -> str:
        m = self.meta
        params = sum(p.nbytes for p in self._params)
        return (f"workspace arena {m['workspace_bytes']} bytes (naive: {m['naive_bytes']} "
                f"bytes, one buffer per intermediate); parameters {params} bytes")

    # values relay.build bound as weights (graph_executor accepts set_input of an unchanged one)
    bound_params: dict | None = None

    def __getitem__(self, name: str):
        """TVM's factory protocol: lib["default"](dev) -> this model, run on `dev`."""
        if name != "default":
            raise ArgumentError(f"a compiled model has one module, 'default'; got {name!r}")
        return self._on_device

    def _on_device(self, dev=None) -> GraphModule:
        from ..runtime.ndarray import as_device
        kind = "cuda" if str(self.meta.get("target", "")).startswith("cuda") else "cpu"
        if dev is not None and as_device(dev).device_type != kind:
            raise ArgumentError(f"model {self.meta['name']!r} was built for target "
                                f"{self.meta.get('target')!r}: run it on a {kind} device, not "
                                f"{as_device(dev)}")
        return self

    def get_graph_json(self) -> str:
        """The model's metadata (inputs, outputs, kernels, memory plan) as JSON."""
        return json.dumps(self.meta)

    def get_params(self) -> dict:
        """The weights as stored in the library (after kiln's layout passes), by name."""
        return {d["name"]: p for d, p in zip(self.meta["params"], self._params)}

    def get_lib(self) -> GraphModule:
        return self

    def __repr__(self) -> str:
        return (f"GraphModule({self.meta['name']!r}, {len(self.meta['groups'])} groups, "
                f"{len(self.meta['kernels'])} kernels, target={self.meta['target']!r})")

    # ------------------------------------------------------------ inputs
    def _shapes(self, name: str) -> list:
        """The shapes input `name` was built for, one per variant."""
        return [tuple(d["shape"]) for v in self._variants for d in v["inputs"]
                if d["name"] == name]

    def _check(self, name: str, value) -> np.ndarray:
        spec = self._in.get(name)
        if spec is None:
            raise ArgumentError(f"unknown input {name!r}; the model's inputs are "
                                f"{', '.join(self.input_names) or '(none)'}")
        arr = value if isinstance(value, np.ndarray) else np.asarray(value)
        shapes = self._shapes(name)
        if tuple(arr.shape) not in shapes or _dtype_name(arr) != spec["dtype"]:
            want = " or ".join(str(s) for s in dict.fromkeys(shapes))
            hint = ("; pad to the next built shape (with the attention mask) or build one for "
                    "this shape" if len(shapes) > 1 else "")
            raise ArgumentError(f"input {name!r} expects shape {want} {spec['dtype']}, got "
                                f"shape {tuple(arr.shape)} {_dtype_name(arr)}{hint}")
        check_index_ranges(name, arr, self.meta.get("index_ranges", {}))
        if "carried" in spec:  # a float16 input of a model computed in float32
            return arr.astype(carried_dtype(spec), order="C")
        # not np.ascontiguousarray: it makes a 0-d input (a scalar scale) 1-d
        return arr if arr.flags.c_contiguous else np.array(arr, order="C")

    def _require_inputs(self) -> None:
        """ArgumentError naming every input that neither run() nor set_input() gave."""
        missing = [n for n in self.input_names if n not in self._inputs]
        if missing:
            raise ArgumentError("missing input(s) " + ", ".join(
                f"{n!r} (shape {tuple(self._in[n]['shape'])} {self._in[n]['dtype']})"
                for n in missing))

    def _variant(self) -> int:
        """The variant whose input shapes are those of the current inputs."""
        for k, v in enumerate(self._variants):
            if all(tuple(self._inputs[d["name"]].shape) == tuple(d["shape"])
                   for d in v["inputs"]):
                return k
        got = {n: tuple(a.shape) for n, a in self._inputs.items()}
        built = [{d["name"]: tuple(d["shape"]) for d in v["inputs"]} for v in self._variants]
        raise ArgumentError(f"no built variant takes input shapes {got}; built: {built}")

    def set_input(self, key: str | None = None, value=None, **inputs) -> None:
        """Set one input (set_input("x", a)) or several (set_input(x=a, y=b))."""
        if key is not None:
            inputs = {key: value, **inputs}
        for name, v in inputs.items():
            self._inputs[name] = self._check(name, v)

    # ------------------------------------------------------------ running
    def run(self, **inputs) -> dict:
        """Run the model on `inputs` (plus earlier set_input values); {output name: array}."""
        k, call = self._prepared(inputs)
        call(self._entries[k])
        return dict(zip(self.output_names, self._outputs))

    def profile(self, number: int = 10, **inputs) -> list:
        """Where the time goes, measured inside the network: `number` runs of the profiling
        entry, which reads a clock after every step, so each kernel is timed where it really
        runs (its inputs just written by its producer, the weights wherever the previous
        kernels left them). Rows [kernel name, launches per inference, median seconds per
        launch], the most costly first; copies to outputs show as "(other)". Runs on the
        current inputs (or `inputs`); get_output then reads the last run's outputs."""
        k, call = self._prepared(inputs)
        var, fn = self._variants[k], self._profile_entry(k)
        stamps = np.zeros(len(var["steps"]) + 1, np.float64)
        per_run = []
        for _ in range(max(1, int(number))):
            call(fn, stamps.ctypes.data)
            per_run.append(np.diff(stamps))
        return _profile_rows(var["step_kernels"], np.array(per_run))

    def time_evaluator(self, number: int = 10, repeat: int = 3):
        """A function() -> ProfileResult: seconds per run of the compiled entry on the current
        inputs (set_input or run first), one entry per repeat of `number` runs."""
        from ..runtime.module import ProfileResult

        def evaluator() -> ProfileResult:
            k, call = self._prepared({})
            entry, n = self._entries[k], max(1, int(number))
            results = []
            for _ in range(max(1, int(repeat))):
                t0 = time.perf_counter()
                for _ in range(n):
                    call(entry)
                results.append((time.perf_counter() - t0) / n)
            return ProfileResult(results)
        return evaluator

    def _prepared(self, inputs: dict):
        """(variant index, call): call(entry, *extra) runs that entry of the variant matching
        the inputs on fresh output arrays, which become this thread's outputs."""
        self.set_input(**inputs)
        self._require_inputs()
        k = self._variant()
        var = self._variants[k]
        ins = [self._inputs[n] for n in self.input_names]

        def call(entry, *extra) -> None:
            outs = [np.empty(d["shape"], carried_dtype(d)) for d in var["outputs"]]
            rc = entry(_pointers(ins), _pointers(outs), self._param_ptrs,
                       self._workspace.ctypes.data, *extra)
            if rc != 0:
                step = var["steps"][rc - 1] if 0 < rc <= len(var["steps"]) else "?"
                raise RuntimeFailure(f"model {self.meta['name']}: step {rc - 1} ({step}) "
                                     "failed (a heap allocation inside the kernel failed)")
            self._outputs = to_outer(outs, var["outputs"])
        return k, call

    def _profile_entry(self, k: int):
        name = self._variants[k]["entry"] + PROFILE_SUFFIX
        fn = getattr(self._lib, name, None)
        if fn is None:
            raise BuildError(f"model library {self.lib_path} has no {name} (built by an "
                             "older kiln); rebuild it to profile")
        fn.restype = ctypes.c_int32
        fn.argtypes = [ctypes.c_void_p] * 5
        return fn

    def get_output(self, index: int | str) -> np.ndarray:
        """Output `index` (a position or a name) of the last run."""
        if not self._outputs:
            raise ArgumentError("get_output: the model has not run yet; call run() first")
        if isinstance(index, str):
            if index not in self.output_names:
                raise ArgumentError(f"unknown output {index!r}; outputs are "
                                    f"{', '.join(self.output_names)}")
            index = self.output_names.index(index)
        if not 0 <= index < len(self._outputs):
            raise ArgumentError(f"output index {index} out of range (the model has "
                                f"{len(self._outputs)} outputs)")
        return self._outputs[index]

    # ------------------------------------------------------------ files
    def export_library(self, path: str) -> str:
        """Write the library to `path`, with `.params.npz`, `.json`, `.c` and the manifest
        `.manifest.json` beside it (see export_model_files)."""
        return export_model_files(path, self.lib_path, self.meta, self._params, self.source,
                                  ".c")


def export_model_files(path: str, lib_path: str, meta: dict, params: list, source: str,
                       source_ext: str) -> str:
    """Write a compiled model's files, each atomically, then the manifest with their hashes
    and the target (kiln.runtime.files), which load() verifies."""
    from ..runtime import files
    path = os.path.abspath(os.fspath(path))
    files.copy_file(lib_path, path)
    files.save_npz(path + ".params.npz", {f"p{i}": p for i, p in enumerate(params)})
    files.write_bytes(path + ".json", json.dumps(meta, indent=1).encode())
    if source:
        files.write_bytes(path + source_ext, source.encode())
    files.write_manifest(path, ["", ".json", ".params.npz"],
                         meta.get("target", ""))
    return path


def _profile_rows(names: list, times: np.ndarray) -> list:
    """Per kernel: [name, launches per inference, median over runs of its seconds / launch]."""
    rows = []
    for name in dict.fromkeys(names):
        cols = [j for j, n in enumerate(names) if n == name]
        per_run = times[:, cols].sum(axis=1)
        rows.append([name, len(cols), float(np.median(per_run)) / len(cols)])
    return sorted(rows, key=lambda r: -r[1] * r[2])


def load(path: str) -> GraphModule:
    """A GraphModule from files written by export_library (no compiler needed); the files
    must match their manifest (BuildError naming the file otherwise)."""
    from ..runtime.files import verify_manifest
    path = os.path.abspath(os.fspath(path))
    for p in (path, path + ".json", path + ".params.npz"):
        if not os.path.exists(p):
            raise BuildError(f"cannot load model {path}: {p} is missing")
    entry = verify_manifest(path)
    try:
        with open(path + ".json") as f:
            meta = json.load(f)
        with np.load(path + ".params.npz") as z:
            params = [z[f"p{i}"] for i in range(len(meta["params"]))]
    except (ValueError, KeyError, OSError, zipfile.BadZipFile) as err:
        raise BuildError(f"cannot load model {path}: its .json or .params.npz is damaged "
                         f"({type(err).__name__}: {err})") from None
    if entry is not None and entry.get("target") != meta.get("target", ""):
        raise BuildError(f"cannot load model {path}: its manifest says target "
                         f"{entry.get('target')!r}, its metadata {meta.get('target')!r}")
    if str(meta.get("target", "")).startswith("cuda"):
        from .executable_cuda import load_cuda
        return load_cuda(path, meta, params)
    return GraphModule(path, meta, params)
