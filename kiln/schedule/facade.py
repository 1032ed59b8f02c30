"""TVM-style schedule objects: `s = te.create_schedule(op); s[C].split(...)`.

A thin façade over State: every call appends a Step to the schedule's State. Loop handles
(`LoopVar`) name a stage's iterator; the te IterVars in `C.op.axis` / `C.op.reduce_axis`
are accepted wherever a loop is expected.
"""

from __future__ import annotations

import operator

from ..errors import ScheduleError
from ..te import expr as E
from ..te.tensor import Tensor
from .dag import ComputeDAG
from .state import ceildiv


class LoopVar:
    """A handle on one loop of a stage (what split/fuse return)."""

    def __init__(self, stage: ScheduleStage, name: str):
        self.stage, self.name = stage, name

    @property
    def extent(self) -> int:
        st = self.stage.sch.state.stage(self.stage._op)
        return st.iters[st.iter_index(self.name)].extent

    def __repr__(self):
        return f"LoopVar({self.stage.op.name}.{self.name})"


class ScheduleStage:
    """`s[C]`: the schedule of one stage."""

    def __init__(self, sch: Schedule, op):
        self.sch, self._op = sch, op

    @property
    def op(self):
        """The stage's operation as the schedule has it now: after rfactor its reduction
        axes are the new ones (as TVM's s[T].op, which is then a new op)."""
        st = self._state.stage(self._op)
        now = () if st.compute is None else tuple(st.compute.reduce_axis)
        was = tuple(getattr(self._op, "reduce_axis", ()))
        if st.compute is None or (len(now) == len(was) and all(map(operator.is_, now, was))):
            return self._op
        return _RfactoredOp(self._op, st.compute)

    @property
    def _state(self):
        return self.sch.state

    def _name(self, ax) -> str:
        st = self._state.stage(self._op)
        if isinstance(ax, LoopVar):
            if ax.stage._op is not self._op:
                raise ScheduleError(f"loop {ax.name} belongs to stage {ax.stage.op.name}, "
                                    f"not {self._op.name}")
            return ax.name
        if isinstance(ax, E.IterVar):
            if st.compute is None or not any(ax is v for v in st.root_vars()):
                raise ScheduleError(f"axis {ax.name} is not an axis of stage {self._op.name}")
            return ax.name
        raise ScheduleError(f"expected a loop of stage {self._op.name}, got {ax!r}")

    def _apply(self, fn, *args):
        self.sch.state = fn(self._op, *args)

    @property
    def leaf_iter_vars(self) -> list:
        st = self._state.stage(self._op)
        return [LoopVar(self, it.name) for it in st.iters]

    def split(self, parent, factor=None, nparts=None):
        name = self._name(parent)
        st = self._state.stage(self._op)
        ext = st.iters[st.iter_index(name)].extent
        if (factor is None) == (nparts is None):
            raise ScheduleError(f"split of {self._op.name}.{name}: give exactly one of factor, "
                                "nparts")
        factor = _pos_int(factor if factor is not None else nparts, f"split of {name}")
        if nparts is not None:
            factor = ceildiv(ext, factor)
        self._apply(self._state.split, name, [factor])
        st = self._state.stage(self._op)
        rel = st.relations[-1]
        return LoopVar(self, rel.outs[0]), LoopVar(self, rel.outs[1])

    def tile(self, x_parent, y_parent, x_factor, y_factor):
        xo, xi = self.split(x_parent, factor=x_factor)
        yo, yi = self.split(y_parent, factor=y_factor)
        self.reorder(xo, yo, xi, yi)
        return xo, yo, xi, yi

    def fuse(self, *args):
        if len(args) == 1 and isinstance(args[0], (list, tuple)):
            args = tuple(args[0])
        names = [self._name(a) for a in args]
        self._apply(self._state.fuse, names)
        st = self._state.stage(self._op)
        return LoopVar(self, st.relations[-1].fused) if len(names) > 1 else \
            LoopVar(self, names[0])

    def reorder(self, *args):
        if len(args) == 1 and isinstance(args[0], (list, tuple)):
            args = tuple(args[0])
        self._apply(self._state.reorder, [self._name(a) for a in args])

    def compute_at(self, parent: ScheduleStage, axis):
        if not isinstance(parent, ScheduleStage):
            raise ScheduleError(f"compute_at of {self._op.name}: the target must be a stage "
                                "(s[T]), got {type(parent).__name__}")
        self.sch.state = self._state.compute_at(self._op, parent._op, parent._name(axis))

    def compute_inline(self):
        self._apply(self._state.compute_inline)

    def compute_root(self):
        self._apply(self._state.compute_root)

    def parallel(self, axis):
        self._apply(self._state.parallel, self._name(axis))

    def vectorize(self, axis):
        self._apply(self._state.vectorize, self._name(axis))

    def unroll(self, axis):
        self._apply(self._state.unroll, self._name(axis))

    def bind(self, axis, thread_axis):
        """Bind a loop to a GPU thread index made by te.thread_axis("threadIdx.x")."""
        tag = getattr(thread_axis, "tag", thread_axis)
        if not isinstance(tag, str):
            raise ScheduleError(f"bind of {self._op.name}: expected te.thread_axis(...), got "
                                f"{thread_axis!r}")
        self._apply(self._state.bind, self._name(axis), tag)

    def set_scope(self, scope: str):
        """Memory scope of this temporary on a GPU: "shared", "local" or "global"."""
        self._apply(self._state.set_scope, scope)

    def double_buffer(self):
        """Two copies of this shared-memory stage: the loop that fetches it fills one while
        it reads the other (one barrier per step instead of two)."""
        self._apply(self._state.double_buffer)

    def set_store_predicate(self, predicate):
        """Only threads for which `predicate` holds store this stage; kiln takes conditions
        `thread_axis.var.equal(k)` joined with & (TVM's use after a cross-thread
        reduction: every thread holds the result, one writes it)."""
        self._apply(self._state.store_predicate, _thread_conditions(predicate, self._op.name))

    def storage_align(self, axis, factor: int, offset: int):
        """Pad this stage's buffer so the stride of `axis` is factor * k + offset."""
        name = self._name(axis)
        st = self._state.stage(self._op)
        dims = [a.name for a in st.compute.axis] if st.compute is not None else []
        if name not in dims:
            raise ScheduleError(f"storage_align of {self._op.name}: {name} is not one of its "
                                f"original axes {dims}")
        self.sch.state = self._state.storage_align(self._op, dims.index(name), factor, offset)

    def pragma(self, axis, name: str, value=1):
        self._apply(self._state.pragma, self._name(axis), name, value)

    def tensorize(self, axis, intrin):
        """The loops from `axis` inward become `intrin`'s code (te.decl_tensor_intrin):
        lowering checks that they compute what the intrinsic's compute does."""
        self._apply(self._state.tensorize, self._name(axis), intrin)

    def __repr__(self):
        return f"stage({self._op.name})"


def _pos_int(x, where: str) -> int:
    if isinstance(x, E.IntImm):
        x = x.value
    if isinstance(x, bool) or not isinstance(x, int) or x < 1:
        raise ScheduleError(f"{where}: factor must be a positive int, got {x!r}")
    return x


class Schedule:
    """A schedule under construction; `state` is the State it has built so far."""

    def __init__(self, outputs):
        self.dag = ComputeDAG(outputs)
        self.state = self.dag.init_state()

    @classmethod
    def from_state(cls, dag: ComputeDAG, state) -> Schedule:
        sch = cls.__new__(cls)
        sch.dag, sch.state = dag, state
        return sch

    @property
    def outputs(self) -> list:
        return list(self.dag.outputs)

    @property
    def stages(self) -> list:
        return [ScheduleStage(self, s.op) for s in self.state.stages]

    def __getitem__(self, key) -> ScheduleStage:
        op = key.op if isinstance(key, Tensor) else getattr(key, "_orig", key)
        self.state.stage_index(op)
        return ScheduleStage(self, op)

    def cache_write(self, tensor, scope: str = "local"):
        """A stage computing `tensor` into `scope`, copied out by the original stage. For a
        multi-output compute every output is cached together: give one of its tensors (its
        cache is returned) or all of them as a list (a list of caches, as TVM returns)."""
        many = isinstance(tensor, (list, tuple))
        ts = list(tensor) if many else [tensor]
        if not ts or not all(isinstance(t, Tensor) for t in ts) or \
                any(t.op is not ts[0].op for t in ts):
            raise ScheduleError("cache_write takes a te Tensor, or a list of the outputs of "
                                "one compute")
        self.state = self.state.cache_write(ts[0].op, scope)
        cache = self.state.stages[self.state.stage_index(ts[0].op) - 1].op
        out = [cache.output(t.value_index) for t in ts]
        return out if many else out[0]

    def cache_read(self, tensor: Tensor, scope: str, readers) -> Tensor:
        tensor = _single(tensor, "cache_read")
        readers = [r.op if isinstance(r, Tensor) else r for r in readers]
        self.state = self.state.cache_read(tensor.op, scope, readers)
        return self.state.stages[self.state.stage_index(tensor.op) + 1].op.output(0)

    def rfactor(self, tensor: Tensor, axis, factor_axis: int = 0):
        tensor = _single(tensor, "rfactor")
        name = self[tensor]._name(axis)
        self.state = self.state.rfactor(tensor.op, name, factor_axis)
        rf = self.state.stages[self.state.stage_index(tensor.op) - 1].op
        # a tuple reduction's partials: one tensor per output, as TVM returns them
        return rf.output(0) if rf.num_outputs == 1 else [rf.output(k)
                                                          for k in range(rf.num_outputs)]

    def __str__(self) -> str:
        return str(self.state)


class _RfactoredOp:
    """s[T].op after rfactor: T's op with the reduction axes the rfactor left it."""

    def __init__(self, op, compute):
        self._orig, self.axis, self.reduce_axis = op, list(compute.axis), \
            list(compute.reduce_axis)

    def __getattr__(self, name: str):
        return getattr(self._orig, name)


def _thread_conditions(pred, name: str) -> list:
    """[(thread tag, value)] of `tx.var.equal(k) & ...`, or a ScheduleError."""
    from ..te.tensor import ThreadIndexVar
    if isinstance(pred, E.BinOp) and pred.op == "and":
        return _thread_conditions(pred.a, name) + _thread_conditions(pred.b, name)
    if isinstance(pred, E.Cmp) and pred.op == "eq":
        for v, k in ((pred.a, pred.b), (pred.b, pred.a)):
            if isinstance(v, ThreadIndexVar) and isinstance(k, E.IntImm):
                return [(v.tag, k.value)]
    raise ScheduleError(f"set_store_predicate of {name}: {pred!r} is not a condition kiln "
                        "takes; use te.thread_axis(...).var.equal(k), joined with &")


def _single(t, what: str) -> Tensor:
    if isinstance(t, (list, tuple)):
        if len(t) != 1:
            raise ScheduleError(f"{what} takes one tensor")
        t = t[0]
    if not isinstance(t, Tensor):
        raise ScheduleError(f"{what} expects a te Tensor, got {type(t).__name__}")
    return t


def create_schedule(ops) -> Schedule:
    items = ops if isinstance(ops, (list, tuple)) else [ops]
    return Schedule(items)
