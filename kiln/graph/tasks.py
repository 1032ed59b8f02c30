"""Fused groups -> te workloads -> tuning tasks (extract_tasks).

In: a Graph (or an ONNX model when the frontend is present) and its parameters.
Out: per fused group a GroupWorkload (te placeholders for its external tensor inputs in the
DAG's own order, the output tensor, the ComputeDAG, the constant placeholders the anchor may
read in a packed layout, and a structural key); `extract_tasks` returns the unique
SearchTasks and how many kernels of the model each one stands for.
Why: identical groups (the 12 layers of BERT) produce the same DAG and therefore the same key,
so they are tuned once and share one compiled kernel. Size-1 constants read by elementwise
ops become immediates in the compute, so scalars (a 1/sqrt(d) scale) cost no argument.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass

import numpy as np

from .. import te
from ..auto_scheduler.task import LayoutRewriteOption, SearchTask
from ..errors import ArgumentError, DTypeError, KilnError, TargetError
from ..schedule import ComputeDAG
from ..target import as_target
from ..te.tensor import PlaceholderOp
from .default_attention import is_attention
from .default_im2col import is_im2col
from .default_winograd import is_winograd
from .ir import Graph, main_graph, verify
from .ops import ANCHOR_TAGS, OpPattern, to_te
from .passes.float16 import widen_float16
from .passes.fuse import FusedGroup, fuse

__all__ = ["GroupWorkload", "extract_tasks", "group_workload", "prepare_graph"]

_SCALAR_OK = ("add", "subtract", "multiply", "divide", "power", "maximum", "minimum", "equal",
              "less", "greater", "where")


@dataclass
class GroupWorkload:
    """A fused group as a te workload; args = placeholders (DAG order) + [output]."""

    group: FusedGroup
    args: list
    arg_nodes: list  # the graph node behind each placeholder in args[:-1]
    dag: ComputeDAG
    layout_free: tuple  # names of constant placeholders the anchor reads
    key: str

    @property
    def desc(self) -> str:
        return self.group.name


def with_params(graph: Graph, params: dict) -> Graph:
    """The graph with `params` replacing the values of its constants of the same names
    (values may be kiln NDArrays: TVM scripts pass relay's params around; names the graph
    does not have are ignored, as relay.build ignores them). A value whose shape or dtype
    differs from the constant's is an ArgumentError: it would change the model silently."""
    merged = dict(graph.params)
    for name, value in params.items():
        arr = np.asarray(value)
        old = merged.get(name)
        if old is None:
            continue
        if arr.shape != old.shape or arr.dtype != old.dtype:
            raise ArgumentError(f"param {name!r}: the model's constant is {old.dtype}"
                                f"{list(old.shape)}, the value given is {arr.dtype}"
                                f"{list(arr.shape)}")
        merged[name] = arr
    out = Graph(graph.inputs, graph.outputs, merged, graph.name)
    if hasattr(graph, "output_names"):
        out.output_names = graph.output_names
    return out


def prepare_graph(graph: Graph, params: dict | None = None,
                  run_passes: bool = True, dtype: str = "float32",
                  target=None) -> tuple[Graph, list]:
    """The graph after the default pass pipeline (when available and run_passes), and its
    fused groups. dtype="bfloat16": dense products in bfloat16 (graph/passes/bf16.py).
    On a GPU target, parallel dense ops sharing an input become one (BERT's Q, K and V: one
    wider product instead of three, their slices folded into the consumers): at batch 1 a
    GPU's time goes to launches and to grids too small to fill it, a CPU's to arithmetic.
    For the same reason K's head split folds into Q.K^T there (fuse's staged_operands)."""
    if params:
        graph = with_params(graph, params)
    graph = widen_float16(graph)  # computed in float32 (passes/float16.py)
    gpu = _is_gpu(target)
    lanes = 0 if gpu else as_target(target).vector_lanes("float32")
    pipeline = _default_pipeline() if run_passes else None
    if pipeline is not None:
        graph = pipeline(graph, combine_dense=gpu, conv_gemm_lanes=lanes,
                         winograd_lanes=lanes)
    if check_compute_dtype(dtype) == "bfloat16":
        from .passes.bf16 import to_bfloat16_graph
        graph = to_bfloat16_graph(graph)
    elif check_compute_dtype(dtype) == "int8":
        from .passes.int8 import to_int8_graph
        graph = to_int8_graph(graph)
    verify(graph)
    if gpu:
        return graph, fuse(graph, staged_operands=True)
    return graph, fuse(graph, attention_bytes=as_target(target).l2_bytes,
                       attention_dim=4 * lanes)


_DTYPE_ALIASES = {"float32": "float32", "fp32": "float32", "bfloat16": "bfloat16",
                  "bf16": "bfloat16", "int8": "int8"}
_NEEDS = {"bfloat16": ("avx512bf16", "AVX512-BF16"), "int8": ("avx512vnni", "AVX512-VNNI")}


def check_compute_dtype(dtype: str) -> str:
    """The canonical name of a model compute dtype ("bf16" -> "bfloat16"), or a clear error."""
    try:
        return _DTYPE_ALIASES[str(dtype)]
    except KeyError:
        raise DTypeError(f"model dtype {dtype!r} is not supported; use 'float32', "
                         "'bfloat16' (alias 'bf16') or 'int8'") from None


def check_dtype_target(dtype: str, target) -> None:
    """bfloat16 models need AVX512-BF16 on CPUs, int8 models AVX512-VNNI (else they would
    run slower than float32)."""
    from ..target import as_target
    t = as_target(target)
    dt = check_compute_dtype(dtype)
    feature, shown = _NEEDS.get(dt, (None, None))
    if feature and t.kind == "cpu" and not t.has(feature):
        raise TargetError(f"dtype={dt!r} needs a CPU with {shown}; target '{t}' lacks it "
                          f"(build in float32, or name a target with -mattr=+{feature})")


def _is_gpu(target) -> bool:
    return target is not None and as_target(target).kind == "cuda"


def _default_pipeline():
    try:
        from .passes import default_pipeline
    except ImportError:
        return None
    return default_pipeline


def _scalar_const(node, consumer, params: dict):
    """A te immediate for a size-1 constant read by a broadcasting op, when the constant does
    not change the consumer's output shape; else None. Not where the consumer is a scalar
    too: a quantized model multiplies each activation scale by its layer's own weight scale,
    and as immediates those would make every layer's product a different workload."""
    if node.op != "const" or consumer.op not in _SCALAR_OK or int(np.prod(node.shape)) != 1 \
            or int(np.prod(consumer.shape)) == 1:
        return None
    others = [tuple(i.shape) for i in consumer.inputs if i is not node]
    if not others or np.broadcast_shapes(*others) != tuple(consumer.shape):
        return None
    value = np.asarray(params[node.attrs["name"]]).reshape(()).item()
    return te.const(value, node.dtype)


def _scalar_slots(group: FusedGroup, params: dict) -> list:
    """The value of each size-1 constant the group's computes would take as an immediate,
    in the order _build_computes meets them (its slots)."""
    return [c.value for n in group.nodes for i in n.inputs
            if (c := _scalar_const(i, n, params)) is not None]


def _build_computes(group: FusedGroup, params: dict,
                    as_args: frozenset = frozenset()) -> tuple[dict, te.Tensor]:
    """Placeholders by input uid, and the group's output tensor; the scalar slots in
    `as_args` are kernel arguments, the others immediates."""
    holders: dict = {}
    values: dict = {}
    slot = 0
    for n in group.nodes:
        args = []
        for i in n.inputs:
            if i.uid in values:
                args.append(values[i.uid])
                continue
            scalar = _scalar_const(i, n, params)
            if scalar is not None:
                slot += 1
            if scalar is not None and slot - 1 not in as_args:
                args.append(scalar)
                continue
            if i.uid not in holders:
                holders[i.uid] = te.placeholder(tuple(i.shape), i.dtype, name="p")
            args.append(holders[i.uid])
        values[n.uid] = to_te(n, args)
    return holders, values[group.output.uid]


def _uniquify_names(dag: ComputeDAG) -> None:
    """Distinct op names inside one DAG (schedules and genomes find stages by name)."""
    seen: dict = {}
    k = 0
    for op in dag.ops:
        if isinstance(op, PlaceholderOp):
            op.name = f"p{k}"
            k += 1
            continue
        base = op.name
        count = seen.get(base, 0)
        seen[base] = count + 1
        if count:
            op.name = f"{base}_{count}"


def _mark_layout_free(dag: ComputeDAG, const_ops: set) -> tuple:
    """Constant placeholders read directly by the anchor compute may be stored packed."""
    names = []
    for op in dag.ops:
        if getattr(op, "tag", "") not in ANCHOR_TAGS:
            continue
        free = [t for t in op.input_tensors if id(t.op) in const_ops]
        if free:
            op.attrs["layout_free_placeholders"] = free
            names.extend(t.name for t in free)
    return tuple(names)


def group_workloads(groups: list, params: dict) -> list:
    """The te workloads of a graph's fused groups. A size-1 constant is a te immediate (the C
    compiler folds it into the arithmetic), except in groups that would then differ from
    another group of the graph only in such constants: there each constant whose value
    differs among them is a kernel argument, and the groups share one kernel (a statically
    quantized model has a scale and a zero point per tensor: as immediates every layer's
    quantize step was a kernel of its own, 200 compilations for BERT-base instead of 31)."""
    out = [group_workload(g, params) for g in groups]
    classes: dict = {}  # structure (every scalar an argument) -> [(group index, slots)]
    for k, g in enumerate(groups):
        slots = _scalar_slots(g, params)
        if slots:
            key = group_workload(g, params, frozenset(range(len(slots)))).key
            classes.setdefault(key, []).append((k, slots))
    for members in classes.values():
        if len({out[k].key for k, _ in members}) < 2:
            continue
        # only the slots whose values differ become arguments: an exponent of 3 or GELU's
        # constants stay immediates the computes can specialize on
        differ = frozenset(j for j in range(len(members[0][1]))
                           if len({repr(s[j]) for _, s in members}) > 1)
        for k, _ in members:
            out[k] = group_workload(groups[k], params, differ)
    return out


def group_workload(group: FusedGroup, params: dict, as_args: frozenset = frozenset()
                   ) -> GroupWorkload:
    """The te workload of one fused group (params give the values of scalar constants: te
    immediates, except the slots in `as_args`, see group_workloads)."""
    holders, out = _build_computes(group, params, as_args)
    by_op = {id(t.op): uid for uid, t in holders.items()}
    node_of = {n.uid: n for n in group.inputs}
    dag = ComputeDAG([*holders.values(), out])
    phs = [op for op in dag.ops if isinstance(op, PlaceholderOp)]
    args = [op.output(0) for op in phs] + [out]
    dag = ComputeDAG(args)
    _uniquify_names(dag)
    arg_nodes = [node_of[by_op[id(op)]] for op in phs]
    const_ops = {id(op) for op, n in zip(phs, arg_nodes) if n.op == "const"}
    layout_free = _mark_layout_free(dag, const_ops)
    key = dag.workload_key()
    if layout_free:
        pos = [i for i, op in enumerate(phs) if op.name in layout_free]
        key = hashlib.sha256(json.dumps([key, "layout_free", pos]).encode()).hexdigest()[:32]
    return GroupWorkload(group, list(dag.tensors), arg_nodes, dag, layout_free, key)


def make_task(wl: GroupWorkload, target="cpu") -> SearchTask:
    """The SearchTask of a workload (layout rewrite of constant weights allowed; the weights
    the anchor reads are cold inputs: in the network they stream from memory, so tuning
    measures with them flushed from the caches). On a CPU its baseline, measured first, is
    the schedule the untuned build gives the group (the GPU search starts from its own)."""
    baseline = None
    if not _is_gpu(target):
        from .default_schedule import default_schedule
        try:
            baseline = default_schedule(wl.dag, wl.layout_free, target)
        except KilnError:
            pass  # no rule-based schedule: the search starts from its sketches alone
    return SearchTask(compute_dag=wl.dag, workload_key=wl.key, target=target, desc=wl.desc,
                      layout_rewrite_option=LayoutRewriteOption.REWRITE_FOR_PRE_TRANSFORMED,
                      cold_inputs=wl.layout_free, baseline=baseline)


def _as_graph(graph_or_mod, params):
    graph = main_graph(graph_or_mod)  # a Graph, or kiln.relay's IRModule of one
    if graph is not None:
        return graph
    try:
        from .frontend import from_onnx
    except ImportError:
        from_onnx = None
    if from_onnx is not None and type(graph_or_mod).__name__ == "ModelProto":
        return from_onnx(graph_or_mod)
    raise TypeError(f"extract_tasks takes a kiln Graph or a kiln.relay IRModule (or an ONNX "
                    f"ModelProto when the ONNX frontend is installed), got "
                    f"{type(graph_or_mod).__name__}")


def extract_tasks(graph_or_mod, params: dict | None = None, target="cpu",
                  include_simple_tasks: bool = True,
                  run_passes: bool = True, dtype: str = "float32") -> tuple[list, list]:
    """(unique SearchTasks, weights): weights[i] = how many kernels of the model task i is.

    With include_simple_tasks=False only groups with an anchor or a reduction are returned
    (elementwise/injective kernels are cheap and their default schedule is fine).
    run_passes must match the kiln.graph.build call the tasks are tuned for. A list of
    (graph, params) pairs (one model imported at several shapes) gives the union of their
    tasks: a kernel shared by the shapes is one task, its weight summed over them.
    dtype="bfloat16" gives the tasks of the mixed-precision build (build(..., dtype=...)).
    A fused attention group (graph.default_attention), a Winograd transform
    (graph.default_winograd) or an im2col copy (graph.default_im2col) is not a task: the
    build always gives it its rule-based schedule.
    """
    check_dtype_target(dtype, target)
    variants = list(graph_or_mod) if isinstance(graph_or_mod, list) else \
        [(graph_or_mod, params)]  # a list of (graph, params): one model at several shapes
    tasks: dict = {}
    weights: dict = {}
    for mod, prm in variants:
        graph = _as_graph(mod, prm)
        graph, groups = prepare_graph(graph, prm, run_passes, dtype, target)
        for g, wl in zip(groups, group_workloads(groups, graph.params)):
            if not include_simple_tasks and g.pattern < OpPattern.COMM_REDUCE:
                continue
            if is_attention(wl.dag) or is_winograd(wl.dag) or is_im2col(wl.dag):
                continue  # no sketch rule covers it: its rule-based schedule always runs
            if wl.key not in tasks:
                tasks[wl.key] = make_task(wl, target)
            weights[wl.key] = weights.get(wl.key, 0) + 1
    return list(tasks.values()), [weights[k] for k in tasks]
