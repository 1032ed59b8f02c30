"""GraphModule: a compiled model (one shared library + bound parameters + metadata).

In: the library built by kiln.graph.build (it exports `kiln_graph_run`), the metadata dict
(inputs, outputs, parameter layouts, workspace size, kernels) and the parameter arrays.
Out: `run(**inputs) -> {output name: array}` (also TVM-style set_input / run / get_output),
with every input checked (a missing, unknown, mis-shaped or mis-typed input raises an
ArgumentError naming it); `export_library(path)` writes path (the .so), path + ".params.npz",
path + ".json" (and the C source as path + ".c"); `load(path)` reads them back without a
compiler.
Why: inference is one ctypes call into generated code; NumPy only allocates the outputs.
"""

from __future__ import annotations

import ctypes
import json
import os
import shutil

import numpy as np

from ..errors import ArgumentError, BuildError, RuntimeFailure
from .passes.layout import aligned_copy

__all__ = ["META_VERSION", "GraphModule", "load"]

META_VERSION = 1


def _np_dtype(dtype: str):
    return np.bool_ if dtype == "bool" else np.dtype(dtype)


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
    """A compiled model; not thread-safe (one workspace per module)."""

    def __init__(self, lib_path: str, meta: dict, params: list, source: str | None = None):
        if meta.get("version") != META_VERSION:
            raise BuildError(f"model metadata version {meta.get('version')} is not "
                             f"{META_VERSION}; rebuild the model with this kiln")
        self.lib_path, self.meta, self._source = os.path.abspath(lib_path), meta, source
        try:
            self._lib = ctypes.CDLL(self.lib_path)
            self._run = getattr(self._lib, meta["entry"])
        except (OSError, AttributeError) as err:
            raise BuildError(f"cannot load model library {self.lib_path}: {err}") from err
        from ..runtime.module import check_isa
        check_isa(meta.get("target", ""), self.lib_path)
        self._run.restype = ctypes.c_int32
        self._run.argtypes = [ctypes.c_void_p] * 4
        self._params = [_aligned(p) for p in params]
        self._param_ptrs = _pointers(self._params)
        self._workspace = aligned_copy(np.zeros(max(1, meta["workspace_bytes"]), np.uint8))
        self._inputs: dict = {}
        self._outputs: list = []
        self._in = {d["name"]: d for d in meta["inputs"]}

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
    def source(self) -> str:
        if self._source is None:
            try:
                with open(self.lib_path + ".c") as f:
                    self._source = f.read()
            except OSError:
                self._source = ""
        return self._source

    def memory_report(self) -> str:
        m = self.meta
        params = sum(p.nbytes for p in self._params)
        return (f"workspace arena {m['workspace_bytes']} bytes (naive: {m['naive_bytes']} "
                f"bytes, one buffer per intermediate); parameters {params} bytes")

    def __repr__(self) -> str:
        return (f"GraphModule({self.meta['name']!r}, {len(self.meta['groups'])} groups, "
                f"{len(self.meta['kernels'])} kernels, target={self.meta['target']!r})")

    # ------------------------------------------------------------ inputs
    def _check(self, name: str, value) -> np.ndarray:
        spec = self._in.get(name)
        if spec is None:
            raise ArgumentError(f"unknown input {name!r}; the model's inputs are "
                                f"{', '.join(self.input_names) or '(none)'}")
        arr = value if isinstance(value, np.ndarray) else np.asarray(value)
        want = f"shape {tuple(spec['shape'])} {spec['dtype']}"
        if tuple(arr.shape) != tuple(spec["shape"]) or _dtype_name(arr) != spec["dtype"]:
            raise ArgumentError(f"input {name!r} expects {want}, got shape {tuple(arr.shape)} "
                                f"{_dtype_name(arr)}")
        return np.ascontiguousarray(arr)

    def set_input(self, key: str | None = None, value=None, **inputs) -> None:
        """Set one input (set_input("x", a)) or several (set_input(x=a, y=b))."""
        if key is not None:
            inputs = {key: value, **inputs}
        for name, v in inputs.items():
            self._inputs[name] = self._check(name, v)

    # ------------------------------------------------------------ running
    def run(self, **inputs) -> dict:
        """Run the model on `inputs` (plus earlier set_input values); {output name: array}."""
        self.set_input(**inputs)
        missing = [n for n in self.input_names if n not in self._inputs]
        if missing:
            raise ArgumentError("missing input(s) " + ", ".join(
                f"{n!r} (shape {tuple(self._in[n]['shape'])} {self._in[n]['dtype']})"
                for n in missing))
        ins = [self._inputs[n] for n in self.input_names]
        outs = [np.empty(d["shape"], _np_dtype(d["dtype"])) for d in self.meta["outputs"]]
        rc = self._run(_pointers(ins), _pointers(outs), self._param_ptrs,
                       self._workspace.ctypes.data)
        if rc != 0:
            step = self.meta["steps"][rc - 1] if 0 < rc <= len(self.meta["steps"]) else "?"
            raise RuntimeFailure(f"model {self.meta['name']}: step {rc - 1} ({step}) failed "
                                 "(a heap allocation inside the kernel failed)")
        self._outputs = outs
        return dict(zip(self.output_names, outs))

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
        """Write the library to `path`, with `.params.npz`, `.json` and `.c` beside it."""
        path = os.path.abspath(os.fspath(path))
        tmp = path + ".tmp"
        shutil.copyfile(self.lib_path, tmp)
        os.replace(tmp, path)
        np.savez(path + ".params.npz", **{f"p{i}": p for i, p in enumerate(self._params)})
        with open(path + ".json", "w") as f:
            json.dump(self.meta, f, indent=1)
        if self.source:
            with open(path + ".c", "w") as f:
                f.write(self.source)
        return path


def load(path: str) -> GraphModule:
    """A GraphModule from files written by export_library (no compiler needed)."""
    path = os.path.abspath(os.fspath(path))
    for p in (path, path + ".json", path + ".params.npz"):
        if not os.path.exists(p):
            raise BuildError(f"cannot load model {path}: {p} is missing")
    with open(path + ".json") as f:
        meta = json.load(f)
    with np.load(path + ".params.npz") as z:
        params = [z[f"p{i}"] for i in range(len(meta["params"]))]
    if str(meta.get("target", "")).startswith("cuda"):
        from .executable_cuda import load_cuda
        return load_cuda(path, meta, params)
    return GraphModule(path, meta, params)
