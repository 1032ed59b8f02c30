"""Operator fusion: a graph in, fused groups out (one kernel each).

In: a verified Graph (shapes and dtypes known). Out: a list of FusedGroup in execution order;
each holds its nodes (producers first), its external inputs (graph inputs, constants or other
groups' outputs), its one output node, its anchor (if any) and its overall pattern kind.
`groups_str` prints them.

Rules (after TVM's FuseOps, simplified to two phases):
  1. an anchor (out_elemwise_fusable: dense, matmul, batch_matmul, conv2d) absorbs the chain
     of elemwise/broadcast ops after it while each link has a single consumer and keeps the
     anchor's output shape (bias add, GELU, hard_swish, residual add, scaling), or while its
     readers meet again in one node (a SiLU, x * sigmoid(x): _absorb_diamond); so does a
     row normalization (softmax, log_softmax, layer_norm: a cast to bfloat16 after it);
  2. a group made only of elemwise/broadcast/injective ops whose output has a single consumer
     joins that consumer's group, unless the consumer is an anchor (anchors take no
     producers) or opaque. So injective chains fuse together and into the elementwise op
     after them, and a reduction (softmax, layer_norm, mean) takes its cheap producers.
  3. (staged_operands, GPU) a softmax read only as a product's A operand joins it: the
     kernel computes the rows' statistics first and normalizes the panel as it fetches it.
  4. (attention_bytes, CPU) attention whose score matrix per batch index is larger than
     attention_bytes (the L2): the q @ k^T group (with its scale / mask epilogue) and the
     softmax join the p @ v product that reads the probabilities, one kernel that computes
     a block of rows' scores, softmax and output while they stay in cache
     (graph.default_attention schedules it).
Never two anchors or two reductions in one group, except the softmax of rule 3 and the
attention of rule 4. Merging a
group into the only group that reads it can never create a cycle, so every group stays
convex.
Why: each group becomes one te workload (a tuning task) and one C kernel; fusion decides how
many times the model's activations travel through memory.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from ..ir import Graph, Node
from ..ops import OpPattern, pattern

__all__ = ["FusedGroup", "fuse", "groups_str"]

LEAVES = ("input", "const")
# ops that only move elements: an anchor reading one can index its input directly. Not cast:
# a bfloat16 product needs its operands stored in bfloat16 for vdpbf16ps (casting inside
# the product measured 2.7-3x slower than the cast copy + product)
VIEW_OPS = ("reshape", "transpose", "squeeze", "expand_dims", "flatten", "strided_slice")
# reductions whose output has their input's shape: like an anchor, each takes the elementwise
# chain after it (the bfloat16 build's cast after softmax / layer norm then costs no kernel
# and no float32 round trip through memory)
ROW_NORMS = ("softmax", "log_softmax", "layer_norm")
VIEW_RUN = 16  # contiguous innermost elements a folded view must keep (one AVX-512 vector)
VIEW_MAX_ELEMS = 1 << 24  # larger views are not analysed (and stay copies)


@dataclass(eq=False)
class FusedGroup:
    """One kernel's worth of nodes."""

    nodes: list
    inputs: list
    output: Node
    anchor: Node | None
    pattern: OpPattern
    index: int = 0
    members: set = field(default_factory=set, repr=False)

    @property
    def name(self) -> str:
        """fused_<op>_<op>... (ops in order, repeats collapsed, at most five)."""
        ops: list = []
        for n in self.nodes:
            if not ops or ops[-1] != n.op:
                ops.append(n.op)
        more = "_etc" if len(ops) > 5 else ""
        return "fused_" + "_".join(ops[:5]) + more

    def __repr__(self) -> str:
        return f"FusedGroup({self.index}, {self.name}, out=%{self.output.uid})"


class _Builder:
    """Union of nodes into groups; each group remembers members, output and anchor."""

    def __init__(self, graph: Graph):
        self.order = [n for n in graph.nodes() if n.op not in LEAVES]
        self.pos = {n.uid: i for i, n in enumerate(self.order)}
        self.outputs = {n.uid for n in graph.outputs}
        self.consumers: dict = {}
        for n in self.order:
            for i in n.inputs:
                lst = self.consumers.setdefault(i.uid, [])
                if n not in lst:
                    lst.append(n)
        self.group: dict = {}
        for n in self.order:
            pat = pattern(n)
            anchor = n if pat == OpPattern.OUT_ELEMWISE_FUSABLE else None
            self.group[n.uid] = {"members": [n], "output": n, "anchor": anchor, "pattern": pat}

    def merge(self, src: dict, dst: dict, new_output: Node | None = None) -> None:
        dst["members"].extend(src["members"])
        dst["pattern"] = max(dst["pattern"], src["pattern"])
        dst["anchor"] = dst["anchor"] or src["anchor"]
        if new_output is not None:
            dst["output"] = new_output
        for n in src["members"]:
            self.group[n.uid] = dst

    def single_consumer(self, n: Node) -> Node | None:
        cons = self.consumers.get(n.uid, [])
        if n.uid in self.outputs or len(cons) != 1:
            return None
        return cons[0]


def _absorb_epilogues(b: _Builder) -> None:
    """Phase 1: every anchor (and every row normalization) takes the elemwise/broadcast
    chain that follows it."""
    for n in b.order:
        g = b.group[n.uid]
        if g["anchor"] is not n and n.op not in ROW_NORMS:
            continue
        tail = n
        while True:
            c = b.single_consumer(tail)
            if c is None:
                tail = _absorb_diamond(b, n, tail, g)
                if tail is None:
                    break
                continue
            if pattern(c) > OpPattern.BROADCAST:
                break
            gc = b.group[c.uid]
            if len(gc["members"]) != 1 or tuple(c.shape) != tuple(tail.shape):
                break
            b.merge(gc, g, new_output=c)
            tail = c


DIAMOND_MAX = 6  # elementwise nodes a diamond epilogue may hold


def _absorb_diamond(b: _Builder, anchor: Node, tail: Node, g: dict) -> Node | None:
    """The group's output read by several elementwise ops that meet again in one node (a
    swish: x * sigmoid(x)): they all join the group, whose output becomes that node, so
    x never goes through memory. None (nothing merged) unless every reader of tail and of
    the nodes added is added too, except the one exit."""
    if tail.uid in b.outputs:
        return None
    found: list = []
    todo = list(b.consumers.get(tail.uid, []))
    while todo and len(found) <= DIAMOND_MAX:
        m = todo.pop(0)
        if m in found:
            continue
        if pattern(m) > OpPattern.BROADCAST or len(b.group[m.uid]["members"]) != 1 or \
                tuple(m.shape) != tuple(tail.shape) or not all(
                    b.group.get(i.uid) is g or i in found or i in todo or
                    i.op in LEAVES or b.pos[i.uid] < b.pos[anchor.uid]
                    or any(i is x for x in b.consumers.get(tail.uid, [])) for i in m.inputs):
            return None
        found.append(m)
        exits = [x for x in found if x.uid in b.outputs or
                 any(c not in found for c in b.consumers.get(x.uid, []))]
        if len(exits) == 1 and not todo:
            for x in sorted(found, key=lambda x: b.pos[x.uid]):
                b.merge(b.group[x.uid], g, new_output=exits[0])
            return exits[0]
        if not todo:  # extend with the readers of all but the last exit
            last = max(exits, key=lambda x: b.pos[x.uid])
            todo = [c for x in exits if x is not last for c in b.consumers.get(x.uid, [])
                    if c not in found]
    return None


def _absorb_producers(b: _Builder, staged_operands: bool = False) -> None:
    """Phase 2: cheap groups (<= injective) join the only group that reads them."""
    for n in b.order:
        g = b.group[n.uid]
        if g["output"] is not n or g["pattern"] > OpPattern.INJECTIVE:
            continue
        c = b.single_consumer(n)
        if c is None:
            continue
        gc = b.group[c.uid]
        if gc is g or pattern(c) > OpPattern.COMM_REDUCE and gc["anchor"] is not c:
            continue
        if gc["anchor"] is c and not (_is_view(g) and (staged_operands or _reads_rows(c, n))):
            continue
        b.merge(g, gc)


def _absorb_row_prologues(b: _Builder) -> None:
    """Phase 3 (staged_operands): a softmax over the last axis whose only reader is a product
    anchor's A operand joins the anchor's group (its kernel computes each block's row
    statistics first, then normalizes the panel as it fetches it: attention's P never goes
    through memory, and one launch fewer)."""
    for n in b.order:
        g = b.group[n.uid]
        if g["output"] is not n or n.op != "softmax" or g["anchor"] is not None or \
                int(n.attrs.get("axis", -1)) % len(n.shape) != len(n.shape) - 1:
            continue
        c = b.single_consumer(n)
        if c is None or b.group[c.uid]["anchor"] is not c or c.inputs[0] is not n or \
                c.op not in ("batch_matmul", "dense") or c.attrs.get("transpose_a"):
            continue
        b.merge(g, b.group[c.uid])


def _absorb_attention(b: _Builder, min_bytes: int, max_dim: int) -> None:
    """Phase 4 (CPU): softmax(q @ k^T [epilogue]) @ v in float32 becomes one group when each
    batch index's score matrix exceeds min_bytes (Whisper's 1500 x 1500 per head: written,
    read and written again, and read by p @ v, 9 MB each time) and the head dim is at most
    max_dim (4 vectors: with 80 or 128 the output tile leaves room for only 2-3 rows per
    block, and the fused kernel measured 20-30% slower than three kernels)."""
    for c in b.order:
        gc = b.group[c.uid]
        if gc["anchor"] is not c or gc["output"] is not c or c.op != "batch_matmul" or \
                c.attrs.get("transpose_a") or c.attrs.get("transpose_b"):
            continue
        sm = c.inputs[0]
        g2 = b.group.get(sm.uid)
        if sm.op != "softmax" or g2 is None or g2["members"] != [sm] or \
                int(sm.attrs.get("axis", -1)) % len(sm.shape) != len(sm.shape) - 1 or \
                b.single_consumer(sm) is not c:
            continue
        qk = sm.inputs[0]
        g1 = b.group.get(qk.uid)
        if g1 is None or g1["output"] is not qk or g1["anchor"] is None or \
                g1["anchor"].op != "batch_matmul" or g1["anchor"].attrs.get("transpose_a") or \
                b.single_consumer(qk) is not sm:
            continue
        if any(n.dtype != "float32" for n in (c, sm, qk, g1["anchor"])) or \
                int(sm.shape[-1]) * int(sm.shape[-2]) * 4 <= min_bytes or \
                int(c.shape[-1]) > max_dim:
            continue
        b.merge(g1, gc)
        b.merge(g2, gc)


def _is_view(g: dict) -> bool:
    """A chain of layout ops from one source tensor whose innermost output axis reads the
    source in contiguous runs of VIEW_RUN or more."""
    members = g["members"]
    ops = {m.op for m in members}
    if not ops <= set(VIEW_OPS):
        return False
    sources = {i.uid for m in members for i in m.inputs} - {m.uid for m in members}
    if len(sources) != 1:
        return False
    idx = _source_index(g["output"], members)
    if idx is None:
        return False
    last = idx.reshape(-1, idx.shape[-1]) if idx.ndim else idx.reshape(1, 1)
    run = min(VIEW_RUN, last.shape[1])
    steps = np.diff(last[:, :run], axis=1)
    return bool(np.all(steps == 1))


def _reads_rows(anchor: Node, n: Node) -> bool:
    """Whether the anchor's vector loads of `n` run along n's innermost axis. Not so for the
    B operand of a batch_matmul with transpose_b (lanes walk n's rows: each load a gather,
    and over a folded view rows lie a whole activation row apart), which keeps its copy."""
    return not (anchor.op == "batch_matmul" and anchor.attrs.get("transpose_b")
                and anchor.inputs[1] is n)


def _source_index(node: Node, members: list):
    """For each element of `node`, its flat position in the chain's source (None if the
    chain is too large to analyse)."""
    if node not in members:
        size = math.prod(int(d) for d in node.shape)
        if size > VIEW_MAX_ELEMS:
            return None
        return np.arange(size, dtype=np.int64).reshape([int(d) for d in node.shape])
    src = _source_index(node.inputs[0], members)
    if src is None:
        return None
    if node.op == "transpose":
        axes = node.attrs.get("axes")
        return np.transpose(src, None if axes is None else [int(a) for a in axes])
    if node.op == "strided_slice":
        return _sliced(src, node.attrs)
    return src.reshape([int(d) for d in node.shape])  # reshape, squeeze, expand_dims...


def _sliced(src: np.ndarray, a: dict) -> np.ndarray:
    """src[begin:end:strides] on the given axes (Python slice semantics, as topi's)."""
    begin = [int(b) for b in a["begin"]]
    axes = a.get("axes") or range(len(begin))
    strides = a.get("strides") or [1] * len(begin)
    index = [slice(None)] * src.ndim
    for ax, b, e, st in zip(axes, begin, a["end"], strides):
        index[int(ax) % src.ndim] = slice(b, int(e), int(st))
    return src[tuple(index)]


def _finish(b: _Builder) -> list:
    groups, seen = [], set()
    for n in b.order:
        g = b.group[n.uid]
        if id(g) in seen:
            continue
        seen.add(id(g))
        groups.append(g)
    groups.sort(key=lambda g: b.pos[g["output"].uid])
    out = []
    for idx, g in enumerate(groups):
        nodes = sorted(g["members"], key=lambda m: b.pos[m.uid])
        uids = {m.uid for m in nodes}
        inputs, seen_in = [], set()
        for m in nodes:
            for i in m.inputs:
                if i.uid not in uids and i.uid not in seen_in:
                    seen_in.add(i.uid)
                    inputs.append(i)
        out.append(FusedGroup(nodes, inputs, g["output"], g["anchor"], g["pattern"], idx, uids))
    return out


def fuse(graph: Graph, staged_operands: bool = False, attention_bytes: int = 0,
         attention_dim: int = 64) -> list:
    """The fused groups of `graph`, in an order that respects their dependencies.
    staged_operands: the anchors' kernels copy operand tiles through on-chip panels along
    the reduction axis (the CUDA schedules' shared-memory fetches), so every view that reads
    its source in contiguous runs can fold into them, transposed B operands included.
    attention_bytes: when positive (CPU targets: their L2 size), attention whose score matrix
    per batch index is larger, and whose head dim is at most attention_dim (4 vectors),
    becomes one group (rule 4)."""
    b = _Builder(graph)
    _absorb_epilogues(b)
    _absorb_producers(b, staged_operands)
    if staged_operands:
        _absorb_row_prologues(b)
    elif attention_bytes > 0:
        _absorb_attention(b, attention_bytes, attention_dim)
    return _finish(b)


def _ref(n: Node) -> str:
    if n.op in LEAVES:
        return f"%{n.uid}:{n.op} {n.attrs.get('name')!r}"
    return f"%{n.uid}"


def groups_str(groups: list) -> str:
    """One block per group: header (name, pattern, inputs -> output type), then its nodes."""
    lines = []
    for g in groups:
        ty = f"{g.output.dtype}{list(g.output.shape)}"
        anchor = f" anchor=%{g.anchor.uid}" if g.anchor is not None else ""
        ins = ", ".join(_ref(i) for i in g.inputs)
        lines.append(f"group {g.index} {g.name} [{g.pattern.name.lower()}{anchor}]"
                     f"({ins}) -> %{g.output.uid} : {ty}")
        for n in g.nodes:
            args = ", ".join(f"%{i.uid}" for i in n.inputs)
            lines.append(f"  %{n.uid} = {n.op}({args}) : {n.dtype}{list(n.shape)}")
    return "\n".join(lines)
