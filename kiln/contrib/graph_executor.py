"""graph_executor: TVM's GraphModule over a compiled kiln model.

In: what `lib["default"](dev)` returns for a library from relay.build, kiln.graph.build or
kiln.graph.load / kiln.runtime.load_module (the compiled model itself, checked against the
device). Out: TVM's stateful interface: set_input, run, get_output (kiln NDArrays), the input
and output counts, benchmark(), and `.module.time_evaluator("run", dev, ...)`.

Inputs are cast to the model's input dtype when NumPy calls the cast "same kind" (int32 token
ids into an int64 input, float64 into float32), as TVM's NDArray.copyfrom does; anything else
is kiln's ArgumentError. The weights are compiled into the library: set_input of a parameter
name is accepted when the value is the one the model was built with, and refused otherwise
(rebuild with the new params) rather than silently ignored.
"""

from __future__ import annotations

import math
import statistics
import time

import numpy as np

from ..errors import ArgumentError

__all__ = ["BenchmarkResult", "GraphModule", "create"]


class BenchmarkResult:
    """Seconds per run, one entry per repeat; mean / median / min / max / std in seconds."""

    def __init__(self, results):
        self.results = tuple(float(r) for r in results)
        self.mean = statistics.fmean(self.results)
        self.median = statistics.median(self.results)
        self.min, self.max = min(self.results), max(self.results)
        self.std = statistics.pstdev(self.results) if len(self.results) > 1 else 0.0

    def __str__(self) -> str:
        head = "".join(f"{h:>13}" for h in ("mean (ms)", "median (ms)", "max (ms)", "min (ms)",
                                             "std (ms)"))
        row = "".join(f"{v * 1e3:>13.4f}" for v in (self.mean, self.median, self.max,
                                                     self.min, self.std))
        return f"Execution time summary:\n{head}\n{row}\n"

    def __repr__(self) -> str:
        return (f"BenchmarkResult(min={self.min}, mean={self.mean}, median={self.median}, "
                f"max={self.max}, std={self.std}, results={list(self.results)})")


class _RuntimeModule:
    """GraphModule.module: TVM's runtime-module view (functions by name, time_evaluator)."""

    def __init__(self, owner: GraphModule):
        self._owner = owner

    def __getitem__(self, name: str):
        fns = {"run": self._owner.run, "set_input": self._owner.set_input,
               "get_output": self._owner.get_output, "get_input": self._owner.get_input,
               "get_num_outputs": self._owner.get_num_outputs,
               "get_num_inputs": self._owner.get_num_inputs}
        if name not in fns:
            raise ArgumentError(f"graph executor has no function {name!r}; it has "
                                f"{', '.join(fns)}")
        return fns[name]

    def time_evaluator(self, func_name: str = "run", dev=None, number: int = 10,
                       repeat: int = 1, min_repeat_ms: float = 0, **_ignored):
        """A function(**inputs) -> ProfileResult (seconds per run, one entry per repeat)."""
        if func_name != "run":
            raise ArgumentError(f"time_evaluator times 'run', not {func_name!r}")
        owner = self._owner

        def evaluator(**inputs):
            if inputs:
                owner.set_input(**inputs)
            return owner.lib_timer(number, repeat, min_repeat_ms)()
        return evaluator


class GraphModule:
    """TVM's graph_executor.GraphModule: `GraphModule(lib["default"](dev))`."""

    def __init__(self, module, device=None):
        from ..graph.executable import GraphModule as CompiledModel
        if not isinstance(module, CompiledModel):
            raise ArgumentError(f"GraphModule wants a compiled model (lib['default'](dev) of a "
                                f"relay.build / kiln.graph.build result), got "
                                f"{type(module).__name__}")
        if device is not None:
            module = module["default"](device)
        self.lib = module
        self.module = _RuntimeModule(self)
        self._ran = False

    # ------------------------------------------------------------ description
    @property
    def input_names(self) -> list:
        return self.lib.input_names

    def get_num_inputs(self) -> int:
        return self.lib.get_num_inputs()

    def get_num_outputs(self) -> int:
        return self.lib.get_num_outputs()

    def get_input_index(self, name: str) -> int:
        if name not in self.input_names:
            raise ArgumentError(f"unknown input {name!r}; inputs: {', '.join(self.input_names)}")
        return self.input_names.index(name)

    def get_input_info(self) -> tuple:
        """({name: shape}, {name: dtype}) of the model's inputs."""
        specs = self.lib.meta["inputs"]
        return ({d["name"]: tuple(d["shape"]) for d in specs},
                {d["name"]: d["dtype"] for d in specs})

    # ------------------------------------------------------------ inputs
    def set_input(self, key=None, value=None, **params) -> None:
        """set_input("x", a), set_input(0, a) or set_input(x=a, y=b)."""
        if key is not None:
            if isinstance(key, int):
                key = self.input_names[key] if 0 <= key < len(self.input_names) else key
            params = {key: value, **params}
        inputs = {}
        for name, v in params.items():
            if name not in self.input_names and self._is_bound_param(name, v):
                continue
            inputs[name] = self._cast(name, v)
        self.lib.set_input(**inputs)

    def _is_bound_param(self, name: str, value) -> bool:
        bound = getattr(self.lib, "bound_params", None) or {}
        if name not in bound:
            return False
        given = value.numpy() if hasattr(value, "numpy") else np.asarray(value)
        if given.shape != bound[name].shape or not np.array_equal(given, bound[name]):
            raise ArgumentError(f"set_input({name!r}): kiln compiles the weights into the "
                                "library; this value differs from the one it was built with, "
                                "so rebuild with the new params")
        return True

    def _cast(self, name: str, value):
        from ..runtime.ndarray import NDArray, as_numpy
        if isinstance(value, NDArray) and value.device.device_type == "cuda":
            return value  # device arrays go straight to the GPU model
        arr = as_numpy(value) if isinstance(value, NDArray) else value
        if hasattr(arr, "__cuda_array_interface__"):
            return arr
        arr = np.asarray(arr.numpy() if hasattr(arr, "numpy") and not
                         isinstance(arr, np.ndarray) else arr)
        _, dtypes = self.get_input_info()
        want = dtypes.get(name)
        if want and str(arr.dtype) != want and want != "bfloat16" and \
                np.can_cast(arr.dtype, np.dtype(want), "same_kind"):
            arr = arr.astype(want)
        return arr

    def get_input(self, index):
        """The current value of input `index` (a position or a name) as an NDArray."""
        from ..runtime.ndarray import NDArray
        name = self.input_names[index] if isinstance(index, int) else index
        self.get_input_index(name)
        value = self.lib._inputs.get(name)
        if value is None:
            raise ArgumentError(f"input {name!r} has not been set")
        return value if isinstance(value, NDArray) else NDArray(np.asarray(value))

    # ------------------------------------------------------------ running
    def run(self, **input_dict) -> None:
        if input_dict:
            self.set_input(**input_dict)
        self.lib.run()
        self._ran = True

    def get_output(self, index: int, out=None):
        """Output `index` of the last run as an NDArray (copied into `out` when given)."""
        from ..runtime.ndarray import NDArray
        value = NDArray(self.lib.get_output(index))
        if out is not None:
            out.copyfrom(value)
            return out
        return value

    def __getitem__(self, name: str):
        return self.module[name]

    # ------------------------------------------------------------ timing
    def lib_timer(self, number: int, repeat: int, min_repeat_ms: float = 0):
        """A function() -> ProfileResult timing the model's runs on the current inputs:
        `number` runs per repeat, raised until a repeat lasts min_repeat_ms."""
        def timer():
            n = max(1, int(number))
            if min_repeat_ms:
                probe = self.lib.time_evaluator(number=1, repeat=1)().mean
                n = max(n, math.ceil(min_repeat_ms / 1e3 / max(probe, 1e-9)))
            return self.lib.time_evaluator(number=n, repeat=max(1, int(repeat)))()
        return timer

    def benchmark(self, device=None, func_name: str = "run", repeat: int = 5, number: int = 5,
                  min_repeat_ms: float | None = None, limit_zero_time_iterations: int = 100,
                  end_to_end: bool = False, cooldown_interval_ms: float = 0,
                  repeats_to_cooldown: int = 1, **kwargs) -> BenchmarkResult:
        """Time the model (TVM's GraphModule.benchmark): `repeat` results, each the mean of
        `number` runs (raised until a repeat lasts min_repeat_ms). kwargs set inputs first.
        end_to_end=True times whole run() calls from Python, input and output copies
        included; otherwise the compiled entry alone on the inputs already set."""
        if func_name != "run":
            raise ArgumentError(f"benchmark times 'run', not {func_name!r}")
        if kwargs:
            self.set_input(**kwargs)
        if not end_to_end:
            res = self.lib_timer(number, repeat, min_repeat_ms or 0)()
            return BenchmarkResult(res.results)
        results = []
        for _ in range(max(1, int(repeat))):
            t0 = time.perf_counter()
            for _ in range(max(1, int(number))):
                self.run()
            results.append((time.perf_counter() - t0) / max(1, int(number)))
            if cooldown_interval_ms:
                time.sleep(cooldown_interval_ms / 1e3)
        return BenchmarkResult(results)


def create(graph_json_str, libmod, device) -> GraphModule:
    """TVM's older graph_executor.create(graph_json, lib, dev): the graph is inside kiln's
    compiled library, so the JSON is not needed (lib.get_graph_json() gives its metadata)."""
    if isinstance(device, (list, tuple)):
        if len(device) != 1:
            raise ArgumentError("kiln runs a model on one device")
        device = device[0]
    return GraphModule(libmod["default"](device))
