"""CudaGraphModule: a compiled model on an NVIDIA GPU (one cubin + launch list + parameters).

In: the cubin built by kiln.graph.build_cuda, the metadata (inputs, outputs, parameters, arena
and scratch sizes, and `launches`: kernels with grid, block and resolved arguments, plus
device-to-device copies) and the parameter arrays.
Out: the GraphModule interface (`run(**inputs) -> {name: numpy array}`, set_input / run /
get_output, export_library / load) on the GPU. Parameters are uploaded once; the activation
arena, the scratch area, the inputs and the outputs live in device memory allocated once. The
first run captures every launch into one CUDA graph on a private stream; each run then copies
the inputs in, replays the graph and copies the outputs out. Inputs may also be device arrays
(kiln CUDA NDArrays, PyTorch / CuPy tensors: anything with `__cuda_array_interface__`), copied
on the device. `time_evaluator(number, repeat)` times graph replays alone (inputs already on
the device), like the peers' CUDA-graph timings. On sm_90 and later each kernel after a
kernel is captured as a programmatic dependent launch (`overlap_launches`, default on there;
KILN_CUDA_OVERLAP=0 turns it off): the GPU schedules it while the one before drains, and the
kernel itself waits for its predecessor (codegen.cuda's KILN_GRID_DEPENDENCY). A capture that
the driver refuses with it is redone without it.
Why: at batch 1 a BERT layer's kernels run for microseconds each; launched one by one from
Python, launch overhead would be most of the time. Nothing touches the GPU before the first
run, so a model builds (and exports) on a machine without one.
"""

from __future__ import annotations

import logging
import os
import threading

import numpy as np

from ..errors import ArgumentError, BuildError, DeviceError
from ..runtime.module import ProfileResult
from ..runtime.ndarray import cuda_array_info
from .executable import META_VERSION, GraphModule, carried_dtype, to_outer

log = logging.getLogger("kiln.graph")

__all__ = ["CudaGraphModule", "load_cuda"]


class CudaGraphModule(GraphModule):
    """A compiled model on the GPU; runs from several threads are serialised by a lock."""

    SOURCE_SUFFIX = ".cu"

    def __init__(self, cubin_path: str, meta: dict, params: list, source: str | None = None):
        if meta.get("version") != META_VERSION:
            raise BuildError(f"model metadata version {meta.get('version')} is not "
                             f"{META_VERSION}; rebuild the model with this kiln")
        self.lib_path, self.meta, self._source = os.path.abspath(cubin_path), meta, source
        self._params = [np.ascontiguousarray(p) for p in params]
        self._lock = threading.RLock()  # one set of device buffers: one run at a time
        self._in = {d["name"]: d for d in meta["inputs"]}
        self._variants = [{"inputs": meta["inputs"], "outputs": meta["outputs"]}]
        self._dev = None  # device state, made on the first run
        self.functions: dict = {}  # name -> lowered PrimFunc (set by build_cuda, not saved)
        self.overlap_launches = os.environ.get("KILN_CUDA_OVERLAP", "1") != "0" and \
            _overlap_capable(meta.get("target", ""))

    # ------------------------------------------------------------ device state
    def _device(self) -> dict:
        if self._dev is not None:
            return self._dev
        from ..runtime import cuda as rt
        rt.require()
        with open(self.lib_path, "rb") as f:
            module = rt.CuModule(f.read())
        names = {x[1] for x in self.meta["launches"] if x[0] == "kernel"}
        dev = {"rt": rt, "module": module, "fn": {n: module.function(n) for n in names},
               "stream": rt.Stream(), "graphs": {}}
        dev["param"] = [self._upload(rt, p) for p in self._params]
        dev["input"] = [rt.DeviceBuffer(_nbytes(d)) for d in self.meta["inputs"]]
        dev["output"] = [rt.DeviceBuffer(_nbytes(d)) for d in self.meta["outputs"]]
        dev["arena"] = rt.DeviceBuffer(max(1, self.meta["workspace_bytes"]))
        dev["scratch"] = rt.DeviceBuffer(max(1, self.meta.get("scratch_bytes", 0)))
        self._dev = dev
        return dev

    @staticmethod
    def _upload(rt, arr: np.ndarray):
        buf = rt.DeviceBuffer(max(arr.nbytes, 1))
        if arr.nbytes:
            buf.copy_from_host(arr)
        return buf

    def _ptr(self, dev: dict, ref) -> int:
        kind, index = ref
        if kind in ("arena", "scratch"):
            return dev[kind].ptr + int(index)
        return dev[kind][int(index)].ptr

    def _enqueue(self, stream, overlap: bool = False) -> None:
        """Every launch and copy of one inference, in order, on `stream`; with `overlap`,
        a kernel that follows a kernel is a programmatic dependent launch."""
        dev = self._dev
        rt = dev["rt"]
        drv = rt.require()
        after_kernel = False
        for item in self.meta["launches"]:
            if item[0] == "copy":
                _, dst, src, nbytes = item
                rt.check(drv.cuMemcpyDtoDAsync(self._ptr(dev, dst), self._ptr(dev, src),
                                               int(nbytes), rt.stream_handle(stream)),
                         "copying a model output on the device")
                after_kernel = False
                continue
            _, name, grid, block, args = item
            dev["fn"][name].launch(grid, block, [self._ptr(dev, a) for a in args],
                                   stream=stream, overlap=overlap and after_kernel)
            after_kernel = True

    def _graph(self):
        """The captured graph of one inference (one per overlap setting, made once)."""
        dev = self._device()
        key = bool(self.overlap_launches)
        if key not in dev["graphs"]:
            try:
                dev["graphs"][key] = dev["rt"].capture(
                    lambda st: self._enqueue(st, overlap=key), dev["stream"])
            except DeviceError as err:
                if not key:
                    raise
                log.warning("%s: overlapped launches refused (%s); capturing plain launches",
                            self.meta["name"], err)
                self.overlap_launches = key = False
                return self._graph()
        return dev["graphs"][key]

    def _replay(self) -> None:
        self._graph().launch(self._device()["stream"])

    # ------------------------------------------------------------ inputs
    def _check(self, name: str, value):
        if hasattr(value, "__cuda_array_interface__"):
            return self._check_device(name, value)
        return super()._check(name, value)

    def _check_device(self, name: str, value):
        spec = self._in.get(name)
        if spec is None:
            raise ArgumentError(f"unknown input {name!r}; the model's inputs are "
                                f"{', '.join(self.input_names) or '(none)'}")
        if "carried" in spec:
            raise ArgumentError(f"input {name!r} is {spec['dtype']} and computed in "
                                f"{spec['carried']} on the device: pass it as a NumPy array "
                                "(converted on the host)")
        _, shape, dtype, contiguous, _ = cuda_array_info(value)
        got = "bool" if dtype == np.bool_ else str(dtype)
        if shape != tuple(spec["shape"]) or got != spec["dtype"]:
            raise ArgumentError(f"input {name!r} expects shape {tuple(spec['shape'])} "
                                f"{spec['dtype']}, got device array {shape} {got}")
        if not contiguous:
            raise ArgumentError(f"input {name!r}: the device array must be C-contiguous")
        return value

    def _copy_inputs(self) -> None:
        dev = self._device()
        rt = dev["rt"]
        dev["stream"].synchronize("before copying the inputs")
        for i, name in enumerate(self.input_names):
            v = self._inputs[name]
            buf = dev["input"][i]
            if hasattr(v, "__cuda_array_interface__"):
                ptr = cuda_array_info(v)[0]
                rt.copy_device_to_device(buf.ptr, ptr, _nbytes(self._in[name]))
            else:
                buf.copy_from_host(v)

    # ------------------------------------------------------------ running
    def run(self, **inputs) -> dict:
        """Run the model on `inputs` (plus earlier set_input values); {output name: array}.
        Threads may call it concurrently: runs are serialised (one set of device buffers)."""
        with self._lock:
            return self._run_locked(inputs)

    def _run_locked(self, inputs: dict) -> dict:
        self.set_input(**inputs)
        self._require_inputs()
        self._copy_inputs()
        self._replay()
        dev = self._dev
        dev["stream"].synchronize(f"running model {self.meta['name']}")
        outs = [np.empty(d["shape"], carried_dtype(d)) for d in self.meta["outputs"]]
        for buf, out in zip(dev["output"], outs):
            buf.copy_to_host(out)
        self._outputs = to_outer(outs, self.meta["outputs"])
        return dict(zip(self.output_names, self._outputs))

    def time_evaluator(self, number: int = 100, repeat: int = 5, flush_l2: bool = False):
        """A function() -> ProfileResult timing graph replays with CUDA events (run() or
        set_input() first: the inputs are whatever is on the device)."""
        def evaluator() -> ProfileResult:
            if not self._inputs or any(n not in self._inputs for n in self.input_names):
                raise ArgumentError("time_evaluator: set every input first (set_input or run)")
            self._copy_inputs()
            self._replay()
            dev = self._dev
            graph = self._graph()
            times = dev["rt"].time_kernels(lambda s: graph.launch(s), number, repeat,
                                           dev["stream"], flush_l2,
                                           f"model {self.meta['name']}")
            return ProfileResult(times)
        return evaluator

    def profile(self, number: int = 20, repeat: int = 3, **inputs) -> list:
        """Where the time goes: per kernel, [name, launches per inference, median seconds per
        launch], each timed alone from a CUDA graph of `number` launches (the first launch of
        that kernel in the list stands for all: a kernel's cost does not depend on which
        buffers it is given). With `inputs` (as for `run`) the model runs on them first, so
        the kernels read real activations; else run the model once before (the same rows as
        GraphModule.profile on the CPU, which times each kernel inside the network)."""
        if inputs:
            self.run(**inputs)
        dev = self._device()
        rt = dev["rt"]
        first: dict = {}
        counts: dict = {}
        for item in self.meta["launches"]:
            if item[0] == "kernel":
                first.setdefault(item[1], item)
                counts[item[1]] = counts.get(item[1], 0) + 1
        out = []
        for name, (_, _, grid, block, args) in first.items():
            ptrs = [self._ptr(dev, a) for a in args]
            fn = dev["fn"][name]
            graph = rt.capture(lambda st, fn=fn, ptrs=ptrs, grid=grid, block=block: [
                fn.launch(grid, block, ptrs, stream=st) for _ in range(number)], dev["stream"])
            times = rt.time_kernels(lambda st, g=graph: g.launch(st), 1, repeat, dev["stream"],
                                    what=f"kernel {name}")
            out.append([name, counts[name], sorted(times)[len(times) // 2] / number])
        return sorted(out, key=lambda r: -r[1] * r[2])

    def memory_report(self) -> str:
        m = self.meta
        params = sum(p.nbytes for p in self._params)
        return (f"device memory: activation arena {m['workspace_bytes']} bytes (naive: "
                f"{m['naive_bytes']} bytes), scratch {m.get('scratch_bytes', 0)} bytes, "
                f"parameters {params} bytes")

    # ------------------------------------------------------------ files
    def export_library(self, path: str) -> str:
        """Write the cubin to `path`, with `.params.npz`, `.json`, `.cu` and the manifest
        `.manifest.json` beside it, each atomically; kiln.graph.load verifies them."""
        from .executable import export_model_files
        return export_model_files(path, self.lib_path, self.meta, self._params, self.source,
                                  ".cu")



def load_cuda(path: str, meta: dict, params: list) -> CudaGraphModule:
    return CudaGraphModule(path, meta, params)


def _overlap_capable(target: str) -> bool:
    """Whether kernels built for `target` ("cuda -arch=sm_90") can be launched overlapped."""
    from ..errors import KilnError
    from ..target import Target
    try:
        return Target(target).programmatic_launch
    except KilnError:  # an unreadable target string: plain launches
        return False


def _nbytes(spec: dict) -> int:
    """Bytes of an input's or output's device buffer (its dtype on the device)."""
    n = int(np.dtype(carried_dtype(spec)).itemsize)
    for d in spec["shape"]:
        n *= int(d)
    return max(n, 1)
