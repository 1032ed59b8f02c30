"""kiln.graph.build: a whole model in, one compiled library and a GraphModule out.

In: a Graph (inputs, outputs, params), optionally extra params, and a target.
Out: a GraphModule (executable.py) over ONE shared library holding every unique kernel and
`kiln_graph_run`, the static memory plan and the bound, pre-packed parameters.
Steps: default pass pipeline (when present) + fusion -> one te workload per group -> per
unique workload key, the best tuning record (under auto_scheduler.ApplyHistoryBest) or the
rule-based default schedule -> lower -> render -> one C file -> compile once. Constants are
packed (layout rewrite) with NumPy here, at build time; inference runs only generated code.
A group that only reshapes a computed tensor is no step: its readers read the source's
memory (_Program.views), whose lifetime the memory plan extends over theirs.
Why: a model is one Python -> C call per inference, with kernels shared by identical layers.
A cuda target goes to build_cuda.py (same passes, fusion, memory plan; a launch list).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from ..codegen import toolchain
from ..codegen.c import c_name, render
from ..errors import ArgumentError, DTypeError, KilnError, TargetError
from ..schedule.layout import input_layouts
from ..target import Target, as_target
from ..tir.lower import lower
from .checks import index_ranges
from .csource import ENTRY, Arg, Call, Copy, program_source
from .default_schedule import default_schedule, simple_schedule
from .executable import META_VERSION, GraphModule
from .ir import Graph, main_graph
from .memplan import Buffer, plan_memory
from .passes.layout import ParamTable
from .tasks import (
    GroupWorkload,
    check_compute_dtype,
    check_dtype_target,
    group_workloads,
    prepare_graph,
)

__all__ = ["build"]

log = logging.getLogger("kiln.graph")


@dataclass
class Kernel:
    """One compiled kernel, shared by every group with its workload key."""

    name: str
    key: str
    state: object
    tuned: bool
    layouts: list  # per argument (placeholders, then output)
    text: str


def _record_state(wl: GroupWorkload, target: Target):
    """The replayed best record of this workload, or None."""
    from ..auto_scheduler.measure.record import ApplyHistoryBest
    ctx = ApplyHistoryBest.current()
    state = ctx.query_state(wl.dag, target, wl.key) if ctx is not None else None
    if state is None:  # no record, or none that replays (skipped with a warning)
        return None
    layouts = input_layouts(state, wl.args[:-1])
    if any(lay and n.op != "const" for lay, n in zip(layouts, wl.arg_nodes)):
        log.warning("record of %s packs a non-constant input; using the default schedule",
                    wl.desc)
        return None
    return state


def first_lowering(wl: GroupWorkload, name: str, candidates: list, check=None):
    """(state, PrimFunc, tuned) of the first (state or state factory, tuned) candidate that
    lowers (and passes `check(func)`, e.g. the GPU limits); each failure is logged."""
    last = None
    for make, tuned in candidates:
        try:
            state = make() if callable(make) else make
            func = lower(state, wl.args, name)
            if check is not None:
                check(func)
            return state, func, tuned
        except KilnError as err:
            last = err
            log.warning("schedule of %s failed (%s); trying a simpler one", wl.desc, err)
    raise KilnError(f"group {wl.desc}: no schedule could be lowered: {last}")


def record_candidates(wl: GroupWorkload, target: Target) -> list:
    """[(the replayed best record, True)] when one applies, else []."""
    state = _record_state(wl, target)
    return [] if state is None else [(state, True)]


def _lowered(wl: GroupWorkload, name: str, target: Target):
    """(state, PrimFunc, tuned): the record if any, else the default, else simpler ones."""
    return first_lowering(wl, name, record_candidates(wl, target) + [
        (lambda: default_schedule(wl.dag, wl.layout_free, target), False),
        (lambda: simple_schedule(wl.dag, target), False)])


def _kernels(workloads: list, target: Target, kernels: dict | None = None) -> dict:
    """Workload key -> Kernel, one per unique key (added to `kernels` when given)."""
    kernels = {} if kernels is None else kernels
    for wl in workloads:
        if wl.key in kernels:
            continue
        name = c_name(f"k{len(kernels)}_{wl.desc}"[:60])
        state, func, tuned = _lowered(wl, name, target)
        text = render(func, target, module=False)
        kernels[wl.key] = Kernel(name, wl.key, state, tuned, input_layouts(state, wl.args), text)
    return kernels


def _warn_untuned(workloads: list, kernels: dict) -> None:
    from ..auto_scheduler.measure.record import ApplyHistoryBest
    ctx = ApplyHistoryBest.current()
    if ctx is None or not ctx.counts:  # no context, or an empty one: defaults on purpose
        return
    missing = [wl for wl in workloads if not kernels[wl.key].tuned]
    if missing:
        names = ", ".join(f"{wl.group.index}:{wl.desc}" for wl in missing)
        log.warning("no tuned record for %d of %d groups (default schedules used): %s",
                    len(missing), len(workloads), names)


class _Program:
    """Maps graph nodes to the tensors kiln_graph_run passes (inputs, outputs, params, arena)."""

    def __init__(self, graph: Graph, workloads: list, kernels: dict):
        self.graph, self.kernels = graph, kernels
        self.input_index = {n.uid: i for i, n in enumerate(graph.inputs)}
        self.output_index: dict = {}
        for j, n in enumerate(graph.outputs):
            if n.op not in ("input", "const"):
                self.output_index.setdefault(n.uid, j)
        self.views: dict = {}  # node uid -> the node whose memory it reads (a reshape)
        self.workloads = [wl for wl in workloads if not self._view(wl)]
        self.table = ParamTable(graph.params)
        self.plan = plan_memory(self._buffers())

    def _view(self, wl) -> bool:
        """A group that only reshapes one computed tensor is no kernel: its readers read the
        source's memory (row-major either way). Not for a graph output, which has its own
        buffer."""
        out, ins = wl.group.output, wl.arg_nodes
        if out.uid in self.output_index or len(ins) != 1 or ins[0].op == "const" or \
                ins[0].dtype != out.dtype or any(n.op not in VIEW_RESHAPES
                                                  for n in wl.group.nodes):
            return False
        self.views[out.uid] = self.views.get(ins[0].uid, ins[0])
        return True

    def _buffers(self) -> list:
        last: dict = {}
        for k, wl in enumerate(self.workloads):
            for n in wl.arg_nodes:
                last[self.views.get(n.uid, n).uid] = k
        out = []
        for k, wl in enumerate(self.workloads):
            node = wl.group.output
            if node.uid not in self.output_index:
                out.append(Buffer(node.uid, _nbytes(node), k, last.get(node.uid, k)))
        return out

    def arg(self, node, layout=()) -> Arg:
        node = self.views.get(node.uid, node)
        if node.op == "input":
            return Arg("input", self.input_index[node.uid], node.dtype)
        if node.op == "const":
            idx = self.table.bind(node.attrs["name"], node.dtype, tuple(node.shape), layout)
            return Arg("param", idx, node.dtype)
        if node.uid in self.output_index:
            return Arg("output", self.output_index[node.uid], node.dtype)
        return Arg("workspace", self.plan.offsets[node.uid], node.dtype)

    def steps(self) -> list:
        steps = []
        for wl in self.workloads:
            kern = self.kernels[wl.key]
            args = [self.arg(n, lay) for n, lay in zip(wl.arg_nodes, kern.layouts)]
            args.append(self.arg(wl.group.output))
            steps.append(Call(kern.name, tuple(args), f"group {wl.group.index}: {wl.desc}"))
        for j, n in enumerate(self.graph.outputs):
            if self.output_index.get(n.uid) != j:
                steps.append(Copy(Arg("output", j, n.dtype), self.arg(n), _nbytes(n)))
        return steps


VIEW_RESHAPES = ("reshape", "flatten", "squeeze", "expand_dims")


def _nbytes(node) -> int:
    size = 1
    for d in node.shape:
        size *= int(d)
    item = {"float64": 8, "int64": 8, "float16": 2, "int8": 1, "uint8": 1, "bool": 1}
    return size * item.get(node.dtype, 4)


def _names(nodes: list, what: str, given=None) -> list:
    """Unique names: given ones (a frontend's output names), input names, node names."""
    out = []
    for j, n in enumerate(nodes):
        if given is not None and len(given) == len(nodes) and given[j]:
            base = str(given[j])
        elif n.op == "input":
            base = n.attrs.get("name")
        else:
            base = n.name or f"{what}{j}"
        name, k = base, 1
        while name in out:
            name, k = f"{base}_{k}", k + 1
        out.append(name)
    return out


def flush_threads(target: Target, flush: bool) -> int:
    """program_source's flush_threads: the kernels' OpenMP width when flushing, else 0."""
    return max(1, target.cores) if flush else 0


@dataclass(frozen=True)
class Outside:
    """What the user sees of a model, read before the passes: its output names (when the
    frontend set them) and the dtypes of its inputs and outputs."""

    output_names: list | None
    input_dtypes: list
    output_dtypes: list

    @staticmethod
    def of(graph: Graph) -> Outside:
        return Outside(getattr(graph, "output_names", None),
                       [n.dtype for n in graph.inputs], [n.dtype for n in graph.outputs])


def _io(nodes: list, what: str, names, dtypes: list) -> list:
    """Metadata of a model's inputs or outputs. A float16 value that the passes widened is
    computed as "carried" (float32) and fed / returned as its "dtype" (passes/float16.py)."""
    rows = []
    for name, n, outer in zip(_names(nodes, what, names), nodes, dtypes):
        row = {"name": name, "shape": [int(d) for d in n.shape], "dtype": n.dtype}
        if outer == "float16" and n.dtype != outer:
            row.update(dtype=outer, carried=n.dtype)
        rows.append(row)
    return rows


def _meta(graph: Graph, target: Target, prog: _Program, steps: list, kernels: dict,
          outside: Outside, flush_denormals: bool = False) -> dict:
    return {
        "version": META_VERSION, "name": graph.name, "target": str(target), "entry": ENTRY,
        "inputs": _io(graph.inputs, "input", None, outside.input_dtypes),
        "outputs": _io(graph.outputs, "output", outside.output_names, outside.output_dtypes),
        "params": [{"name": name, "layout": [list(p) for p in lay], "shape": list(a.shape),
                    "dtype": "bool" if a.dtype.name == "bool" else a.dtype.name}
                   for name, lay, a in prog.table.entries],
        "workspace_bytes": prog.plan.arena_bytes, "naive_bytes": prog.plan.naive_bytes,
        "steps": [s.comment if isinstance(s, Call) else "copy to output" for s in steps],
        "step_kernels": [s.kernel if isinstance(s, Call) else "(other)" for s in steps],
        "kernels": [{"name": k.name, "key": k.key, "tuned": k.tuned} for k in kernels.values()],
        "groups": [{"index": wl.group.index, "name": wl.desc, "kernel": kernels[wl.key].name}
                   for wl in prog.workloads],
        "index_ranges": index_ranges(graph),
        "flush_denormals": bool(flush_denormals),
    }


def _main(graph):
    """A Graph (or list of (graph, params)) from what build accepts: graphs or kiln.relay
    IRModules of them."""
    if isinstance(graph, list):
        return [(_main(i[0]), i[1]) if isinstance(i, tuple) and len(i) == 2 else i
                for i in graph]
    main = main_graph(graph)
    if main is None:
        raise ArgumentError(f"build takes a kiln Graph, a kiln.relay IRModule or a list of "
                            f"(graph, params) pairs, got {type(graph).__name__}")
    return main


def build(graph: Graph, params: dict | None = None, target="cpu",
          run_passes: bool = True, dtype: str = "float32",
          tensor_cores: bool = False, flush_denormals: bool = False) -> GraphModule:
    """Compile a whole graph into a GraphModule (see the module docstring).

    run_passes=False skips the default pass pipeline (fusion still runs): every op then
    becomes exactly the computes kiln.graph.ops gives it. Outputs are named by
    `graph.output_names` when a frontend sets it, else by their nodes' names.
    `graph` may also be a list of (graph, params) pairs, one model imported at several input
    shapes: one library then serves them all (build_variants.py).
    dtype="bfloat16" (or "bf16") runs the dense products in bfloat16 with float32
    accumulation (weights stored in bfloat16; needs AVX512-BF16); the rest stays float32.
    dtype="int8" quantizes the dense products dynamically (int8 weights per channel, uint8
    activations per row at run time, int32 sums; needs AVX512-VNNI; passes/int8.py).
    tensor_cores=True (CUDA, sm_80 and newer): untuned matmuls run on the tensor cores in
    float32 accuracy (3xTF32) where their tiles fit; tuning records still take precedence.
    flush_denormals=True (CPU): while the model runs, denormal results are flushed to zero
    and denormal inputs read as zero (FTZ + DAZ, as ONNX Runtime's
    session.set_denormal_as_zero): on CPUs that slow down on denormals (Intel's take a
    microcode assist each) a model whose activations decay into them runs at full speed;
    results below ~1.2e-38 become zero.
    """
    target = as_target(target)
    check_dtype_target(dtype, target)
    graph = _main(graph)
    if isinstance(graph, list):
        from .build_variants import build_variants
        return build_variants(graph, target, run_passes, dtype, flush_denormals)
    if tensor_cores and not target.tf32_tensor_cores:
        raise TargetError(f"tensor_cores=True needs a CUDA target of sm_80 or newer, got "
                          f"{target}")
    if flush_denormals and target.kind != "cpu":
        raise TargetError(f"flush_denormals=True is a CPU build option ({target} given): "
                          "NVIDIA GPUs compute on denormal floats at full speed")
    if target.kind == "cuda":
        if check_compute_dtype(dtype) != "float32":
            raise DTypeError("the CUDA build runs models in float32 only (dtype='bfloat16' "
                             "and 'int8' are CPU features for now)")
        from .build_cuda import build_cuda
        return build_cuda(graph, params, target, run_passes, tensor_cores)
    outside = Outside.of(graph)
    graph, groups = prepare_graph(graph, params, run_passes, dtype, target)
    workloads = group_workloads(groups, graph.params)
    prog = _Program(graph, workloads, {})  # first: reshape-only groups are no kernels
    prog.kernels = kernels = _kernels(prog.workloads, target)
    _warn_untuned(prog.workloads, kernels)
    steps = prog.steps()
    source = program_source([k.text for k in kernels.values()],
                            [k.name for k in kernels.values()], steps,
                            flush_threads=flush_threads(target, flush_denormals))
    lib = toolchain.compile(source, target)
    meta = _meta(graph, target, prog, steps, kernels, outside, flush_denormals)
    log.info("built %s: %d groups, %d kernels, %s", graph.name, len(groups), len(kernels),
             prog.plan)
    return GraphModule(lib, meta, prog.table.arrays, source)
