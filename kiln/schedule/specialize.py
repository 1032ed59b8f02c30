"""Shape specialization: a schedule written over symbolic sizes (te.var) made concrete.

In: the argument tensors of a workload whose shapes or axis extents name symbolic sizes
(`n = te.var("n")`), a State scheduled over them, and values for those sizes.
Out: the same workload rebuilt with constant shapes (op, axis and tensor names kept) and the
State's steps replayed on it; steps refer to stages and loops by position, so the replay is
the schedule the user wrote.
Why: kiln's lowering, code generation and search decide vector widths, tile guards and
buffer sizes from constant extents. A TVM program written over `te.var` sizes still runs:
`kiln.build` returns a module that compiles its kernel once per shape it is called with
(build_module.SpecializingModule), and the schedule itself is written and printed
symbolically, as in TVM.
"""

from __future__ import annotations

from ..errors import ScheduleError
from ..te import expr as E
from ..te.tensor import ComputeOp, PlaceholderOp
from .dag import ComputeDAG, topo_ops
from .steps import SplitStep


def shape_vars(ops) -> list:
    """The symbolic sizes named by the shapes and axis extents of `ops`, in first-seen order."""
    seen, out = set(), []
    for op in ops:
        if isinstance(op, ComputeOp):
            dims = [a.extent for a in list(op.axis) + list(op.reduce_axis)]
        else:  # placeholders, te.extern outputs
            dims = [d for k in range(op.num_outputs) for d in op.output(k).shape]
        for d in dims:
            if not isinstance(d, E.Expr):
                continue
            for v in E.walk(d):
                if isinstance(v, E.Var) and v.uid not in seen:
                    seen.add(v.uid)
                    out.append(v)
    return out


def eval_int(e, values: dict) -> int:
    """The value of an integer size expression with its vars bound by `values` {Var: int}."""
    if isinstance(e, int):
        return e
    if isinstance(e, E.IntImm):
        return e.value
    if isinstance(e, E.Var):
        if e not in values:
            raise ScheduleError(f"the size {e.name} has no value")
        return int(values[e])
    if isinstance(e, E.Cast):
        return eval_int(e.value, values)
    if isinstance(e, E.BinOp) and e.op in _INT_OPS:
        return _INT_OPS[e.op](eval_int(e.a, values), eval_int(e.b, values))
    raise ScheduleError(f"the size {e!r} is not integer arithmetic on te.var sizes")


_INT_OPS = {"add": lambda a, b: a + b, "sub": lambda a, b: a - b, "mul": lambda a, b: a * b,
            "floordiv": lambda a, b: a // b, "div": lambda a, b: a // b,
            "floormod": lambda a, b: a % b, "min": min, "max": max}


def concrete_tensors(tensors: list, values: dict) -> list:
    """`tensors` (and everything they read) rebuilt with the sizes in `values` {Var: int}."""
    consts = {v: E.IntImm(int(x), v.dtype) for v, x in values.items()}
    new_of: dict = {}
    axes: dict = {}
    for op in topo_ops([t.op for t in tensors]):
        new_of[id(op)] = _rebuild(op, consts, values, new_of, axes)
    return [new_of[id(t.op)].output(t.value_index) for t in tensors]


def _rebuild(op, consts: dict, values: dict, new_of: dict, axes: dict):
    if isinstance(op, PlaceholderOp):
        return PlaceholderOp(op.name, tuple(_size(d, values, op.name) for d in op.shape),
                             op.dtype)
    if getattr(op, "is_scan", False):  # the same recurrence over the rebuilt tensors
        def new(ts):
            return [new_of[id(t.op)].output(t.value_index) for t in ts]
        return type(op)(op.name, new(op.init), new(op.update), new(op.state), op.tag,
                        dict(op.attrs or {}))
    if not isinstance(op, ComputeOp):
        raise ScheduleError(f"{op.name}: only te.placeholder and te.compute ops take symbolic "
                            "sizes")

    def axis(a):
        if a not in axes:
            axes[a] = E.IterVar(_size(a.extent, values, op.name), a.name, a.kind)
        return axes[a]

    mapping = dict(consts)
    for a in list(op.axis) + list(op.reduce_axis):
        mapping[a] = axis(a)

    def fn(n):
        if isinstance(n, E.Var):
            return mapping.get(n)
        if isinstance(n, E.TensorLoad) and id(n.tensor.op) in new_of:
            return E.TensorLoad(new_of[id(n.tensor.op)].output(n.tensor.value_index), n.indices)
        if isinstance(n, E.Reduce):
            init = None if n.init is None else E.transform(n.init, fn)
            return n.rebuilt(n.sources, [axis(a) for a in n.axis], n.condition, init)
        return None
    body = [E.transform(b, fn) for b in op.body]
    return ComputeOp(op.name, [axis(a) for a in op.axis], body, op.tag, dict(op.attrs or {}))


def _size(d, values: dict, where: str) -> int:
    n = eval_int(d, values)
    if n < 0:
        raise ScheduleError(f"{where}: the size {d!r} is {n} for {_text(values)}")
    return n


def _text(values: dict) -> str:
    return ", ".join(f"{v.name}={x}" for v, x in values.items())


def specialize(state, tensors: list, values: dict) -> tuple:
    """(State, tensors): `state`'s steps replayed on `tensors` rebuilt with `values`."""
    concrete = concrete_tensors(tensors, values)
    new = ComputeDAG(concrete).init_state()
    if len(new.stages) != len(state.dag.init_state().stages):
        raise ScheduleError("the specialized workload has a different structure; kiln cannot "
                            f"replay the schedule for {_text(values)}")
    for step in state.steps:
        if isinstance(step, SplitStep):
            step = SplitStep(step.stage_id, step.iter_id,
                             tuple(max(1, eval_int(x, values)) for x in step.lengths))
        new = new.apply(step)
    return new, concrete


__all__ = ["concrete_tensors", "eval_int", "shape_vars", "specialize"]
