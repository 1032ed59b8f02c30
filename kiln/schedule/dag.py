"""ComputeDAG: the ops of a workload in topological order, with the analysis schedules need.

In: the argument tensors of a workload (inputs and outputs, as TVM's build takes them).
Out: ops in topological order, consumers of each op, FLOP count, a structural workload key
(a hash of the normalised compute, never of Python ids or names), and init_state().
"""

from __future__ import annotations

import hashlib
import json

from ..errors import ScheduleError
from ..te import expr as E
from ..te.dot_groups import group_dot_reductions
from ..te.tensor import ComputeOp, Operation, PlaceholderOp, Tensor


def topo_ops(outputs) -> list:
    """Every op reachable from `outputs`, producers before consumers."""
    order, seen = [], set()

    def visit(op: Operation) -> None:
        stack = [(op, False)]
        while stack:
            node, done = stack.pop()
            if done:
                if id(node) not in seen:
                    seen.add(id(node))
                    order.append(node)
                continue
            if id(node) in seen:
                continue
            stack.append((node, True))
            for t in reversed(node.input_tensors):
                if id(t.op) not in seen:
                    stack.append((t.op, False))
    for o in outputs:
        visit(o)
    return order


def _as_ops(x) -> list:
    items = x if isinstance(x, (list, tuple)) else [x]
    out = []
    for t in items:
        if isinstance(t, Tensor):
            out.append(t.op)
        elif isinstance(t, Operation):
            out.append(t)
        else:
            raise ScheduleError(f"expected a te Tensor or operation, got {type(t).__name__} {t!r}")
    return out


class ComputeDAG:
    """The compute definition of a workload (TVM's auto_scheduler.ComputeDAG)."""

    def __init__(self, tensors):
        self.tensors = list(tensors) if isinstance(tensors, (list, tuple)) else [tensors]
        if all(isinstance(t, Tensor) for t in self.tensors):
            # narrow dot products reduce in groups (vdpbf16ps, vpdpbusd); te/dot_groups.py
            self.tensors = group_dot_reductions(self.tensors)
        ops = _as_ops(self.tensors)
        consumed = {id(t.op) for op in topo_ops(ops) for t in op.input_tensors}
        made = [op for op in ops if not isinstance(op, PlaceholderOp)]  # computes, externs
        self.outputs = [op for op in made if id(op) not in consumed] or made[-1:]
        if not self.outputs:
            raise ScheduleError("a ComputeDAG needs at least one te.compute output")
        self.ops = topo_ops(self.outputs)

    def consumers(self, op: Operation) -> list:
        return [c for c in self.ops if any(t.op is op for t in c.input_tensors)]

    @property
    def has_extern(self) -> bool:
        return any(getattr(op, "is_extern", False) for op in self.ops)

    @property
    def has_scan(self) -> bool:
        return any(getattr(op, "is_scan", False) for op in self.ops)

    @property
    def flop_ct(self) -> int:
        return sum(_op_flops(op) for op in self.ops if isinstance(op, ComputeOp))

    def workload_key(self) -> str:
        return hashlib.sha256(json.dumps(self.normalized()).encode()).hexdigest()[:32]

    def normalized(self) -> list:
        """The compute as nested lists with vars and ops numbered by position, not by name."""
        names = {id(op): i for i, op in enumerate(self.ops)}
        from .specialize import shape_vars
        if shape_vars(self.ops):
            raise ScheduleError(
                f"the workload has symbolic sizes {[v.name for v in shape_vars(self.ops)]}; "
                "tuning and tuning records need constant shapes (kiln.build compiles a "
                "symbolic schedule once per shape it is called with)")
        out = []
        for op in self.ops:
            if isinstance(op, PlaceholderOp):
                out.append(["placeholder", [int(d) for d in _shape_ints(op.shape)], op.dtype])
                continue
            if not isinstance(op, ComputeOp):
                outs = [op.output(k) for k in range(op.num_outputs)]
                out.append(["extern", op.call.func_name, [names[id(t.op)] for t in op.inputs],
                            [[int(d) for d in _shape_ints(t.shape)] for t in outs]])
                continue
            vmap = {}
            for a in list(op.axis) + list(op.reduce_axis):
                vmap[a.uid] = len(vmap)
            out.append(["compute", [int(a.extent.value) for a in op.axis],
                        [int(a.extent.value) for a in op.reduce_axis],
                        [_norm(b, vmap, names) for b in op.body]])
        return out

    def init_state(self):
        from .state import State
        return State.initial(self)

    def apply_steps_from_state(self, state, layout_rewrite=None) -> tuple:
        """(TVM-style Schedule, argument tensors) of a State of this DAG (TVM's API): print it,
        lower it or build it like a hand-written schedule."""
        from .facade import Schedule
        return Schedule.from_state(self, state), list(self.tensors)

    def __str__(self) -> str:
        lines = []
        for op in self.ops:
            if isinstance(op, PlaceholderOp):
                lines.append(f"{op.name} = PLACEHOLDER {list(_shape_ints(op.shape))} {op.dtype}")
            elif not isinstance(op, ComputeOp):
                lines.append(f"{op.name} = EXTERN {op.call!r}")
            else:
                idx = ", ".join(a.name for a in op.axis)
                for k, b in enumerate(op.body):
                    lines.append(f"{op.output(k).name}({idx}) = {b!r}")
        return "\n".join(lines)

    __repr__ = __str__


def _shape_ints(shape) -> tuple:
    return tuple(d.value if isinstance(d, E.IntImm) else d for d in shape)


def _norm(e, vmap: dict, names: dict):
    if isinstance(e, E.Var):
        return ["var", vmap.get(e.uid, e.name)]
    if isinstance(e, (E.IntImm, E.FloatImm)):
        return [e.dtype, e.value]
    head = [type(e).__name__, getattr(e, "op", None) or getattr(e, "name", None), e.dtype]
    if isinstance(e, E.TensorLoad):
        head.append(names.get(id(e.tensor.op), -1))
    if isinstance(e, E.Reduce):
        head.append(e.combiner.name)
        head.append([vmap.get(a.uid, a.name) for a in e.axis])
        if e.init is not None:
            head.append(_norm(e.init, vmap, names))
    return head + [_norm(c, vmap, names) for c in E.children(e)]


def _op_flops(op: ComputeOp) -> int:
    points = 1
    for a in list(op.axis) + list(op.reduce_axis):
        points *= int(a.extent.value) if isinstance(a.extent, E.IntImm) else 1
    per = 0
    for b in op.body:
        if isinstance(b, E.Reduce) and not E.is_float(b.dtype):
            per += 1 + _value_ops(b.source)  # an integer dot product's work is integer
            continue
        for n in E.walk(b):
            if isinstance(n, E.BinOp) and E.is_float(n.dtype):
                per += 1
            elif isinstance(n, E.Call):
                per += 1
            elif isinstance(n, E.Reduce) and E.is_float(n.dtype):
                per += 1
    return points * max(per, 1 if op.reduce_axis else 0)


def _value_ops(e) -> int:
    """Arithmetic on values in e (loads' index math excluded): an int8 quad's 4 mul + 3 add."""
    if isinstance(e, E.TensorLoad):
        return 0
    if isinstance(e, E.BinOp):
        return 1 + _value_ops(e.a) + _value_ops(e.b)
    if isinstance(e, E.Cast):
        return _value_ops(e.value)
    return 0
