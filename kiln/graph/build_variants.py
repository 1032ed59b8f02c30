"""One library for one model at several input shapes (e.g. sequence lengths 32 / 64 / 128).

In: a list of (Graph, params) pairs: the same model imported once per shape, e.g.
`[kiln.frontend.from_onnx(m, shape={"input_ids": (1, n)}) for n in (32, 64, 128)]`.
Out: a GraphModule over ONE shared library with every unique kernel once (a kernel whose
workload is the same at two shapes, such as a layer norm over the hidden size, is compiled
once and tuned once), one entry function per shape, the weights bound once (constants are
shared when name, shape, layout and contents agree) and one arena sized for the largest
shape; `run(**inputs)` picks the entry whose input shapes match and says which shapes exist
when none does.
Why: a served model sees many lengths; building (and tuning) each length separately would
compile and store the same kernels and weights again. Arbitrary lengths are served by padding
to the next built shape with the attention mask.
CPU targets only for now (the CUDA executable has one launch list).
"""

from __future__ import annotations

import hashlib
import logging

import numpy as np

from ..codegen import toolchain
from ..errors import KilnError
from ..schedule.layout import pack_array
from ..target import Target
from .build import Outside, _kernels, _meta, _Program, _warn_untuned, flush_threads
from .csource import ENTRY, program_source
from .executable import GraphModule
from .passes.layout import ParamTable, aligned_copy, param_value
from .tasks import group_workloads, prepare_graph

__all__ = ["build_variants"]

log = logging.getLogger("kiln.graph")


class SharedParamTable(ParamTable):
    """A ParamTable shared by several imports of one model: a constant is bound once when
    its name, shape, dtype, layout and contents agree (two imports may fold different values
    under one name, e.g. a shape-dependent mask)."""

    def __init__(self):
        super().__init__({})
        self._digests: dict = {}

    def use(self, params: dict) -> None:
        self.params = params

    def bind(self, name: str, dtype: str, shape: tuple, layout: tuple = ()) -> int:
        value = param_value(self.params[name], dtype).reshape(shape)
        lay = tuple(tuple(p) for p in layout)
        key = (name, lay, tuple(shape), value.dtype.str, self._digest(value))
        if key not in self.index:
            packed = pack_array(value, lay) if lay else value
            self.index[key] = len(self.entries)
            self.entries.append((name, lay, aligned_copy(packed)))
        return self.index[key]

    def _digest(self, value: np.ndarray) -> str:
        ident = (id(value), value.ctypes.data, value.nbytes)
        if ident not in self._digests:
            data = np.ascontiguousarray(value)
            self._digests[ident] = hashlib.blake2b(data.view(np.uint8).reshape(-1),
                                                   digest_size=16).hexdigest()
        return self._digests[ident]


def build_variants(pairs: list, target: Target, run_passes: bool = True,
                   dtype: str = "float32", flush_denormals: bool = False) -> GraphModule:
    """Compile one model imported at several shapes into one GraphModule."""
    if target.kind != "cpu":
        raise KilnError(f"building one library for several input shapes is supported for "
                        f"CPU targets only; build each shape for {target} separately")
    if not pairs:
        raise KilnError("build: the list of (graph, params) variants is empty")
    table, kernels, parts = SharedParamTable(), {}, []
    for k, item in enumerate(pairs):
        if not (isinstance(item, tuple) and len(item) == 2):
            raise KilnError(f"build: variant {k} must be a (graph, params) pair, as the "
                            "frontends return")
        graph, params = item
        outside = Outside.of(graph)
        graph, groups = prepare_graph(graph, params, run_passes, dtype, target)
        workloads = group_workloads(groups, graph.params)
        prog = _Program(graph, workloads, kernels)  # reshape-only groups are no kernels
        _kernels(prog.workloads, target, kernels)
        _warn_untuned(prog.workloads, kernels)
        table.use(graph.params)
        prog.table = table
        steps = prog.steps()
        parts.append((graph, prog, steps, workloads, outside))
    entries, variants = {}, []
    for k, (graph, prog, steps, _, outside) in enumerate(parts):
        entries[f"{ENTRY}_{k}"] = steps
        m = _meta(graph, target, prog, steps, kernels, outside, flush_denormals)
        variants.append({"entry": f"{ENTRY}_{k}", "inputs": m["inputs"],
                         "outputs": m["outputs"], "steps": m["steps"],
                         "step_kernels": m["step_kernels"],
                         "workspace_bytes": m["workspace_bytes"]})
    _check_same_io(variants)
    source = program_source([k.text for k in kernels.values()],
                            [k.name for k in kernels.values()], [], entries,
                            flush_threads(target, flush_denormals))
    lib = toolchain.compile(source, target)
    graph, prog, steps, _, outside = parts[0]
    meta = _meta(graph, target, prog, steps, kernels, outside, flush_denormals)
    meta.update(entry=variants[0]["entry"], variants=variants,
                workspace_bytes=max(v["workspace_bytes"] for v in variants),
                naive_bytes=max(p[1].plan.naive_bytes for p in parts),
                groups=[g for p in parts for g in _meta(p[0], target, p[1], p[2], kernels,
                                                        p[4])["groups"]])
    log.info("built %s at %d shapes: %d kernels", graph.name, len(parts), len(kernels))
    return GraphModule(lib, meta, table.arrays, source)


def _check_same_io(variants: list) -> None:
    """Every variant must have the same input and output names and dtypes."""
    def sig(v, what):
        return [(d["name"], d["dtype"]) for d in v[what]]
    for v in variants[1:]:
        for what in ("inputs", "outputs"):
            if sig(v, what) != sig(variants[0], what):
                raise KilnError(f"build: the variants do not share their {what} "
                                f"({sig(variants[0], what)} vs {sig(v, what)}); import the same "
                                "model at each shape")
