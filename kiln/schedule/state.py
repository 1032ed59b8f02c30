"""State: the one schedule representation (a ComputeDAG plus the Steps applied to it).

Each Stage carries a light loop summary: its leaf iterators (name, extent, kind, annotation),
the split/fuse relations from its root axes to them, and where it is computed (root, inline,
or at another stage's iterator). Primitives return a new State; the State records the Step so
that lowering, records and the search all replay the same list.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field, replace

from ..errors import ScheduleError
from ..te import expr as E
from ..te.tensor import ComputeOp, PlaceholderOp

SCOPES = ("global", "shared", "local")  # memory scopes of cache_read / cache_write stages


def extent_of(e):
    """An axis extent as an int, or the symbolic expression itself (te.var sizes: such a
    State is scheduled and printed, then built once per shape by specialize.py)."""
    if isinstance(e, E.IntImm):
        return e.value
    return e if isinstance(e, E.Expr) else int(e)


def ceildiv(a, b):
    """ceil(a / b) for ints or symbolic extents."""
    a, b = extent_of(a), extent_of(b)
    if isinstance(a, int) and isinstance(b, int):
        return -(-a // b)
    return (a + (b - 1)) // b


def product(extents):
    out = 1
    for e in extents:
        e = extent_of(e)
        out = out * e if not (isinstance(out, int) and out == 1) else e
    return out


@dataclass(frozen=True)
class Iterator:
    name: str
    extent: int  # an E.Expr where the size is symbolic (te.var)
    kind: str  # "spatial" | "reduce"
    annotation: str = "none"  # none | parallel | vectorize | unroll | a GPU thread tag
    pragmas: tuple = ()  # ((name, value), ...)


@dataclass(frozen=True)
class Split:
    """parent = sum(outs[k] * prod(lengths[k:])); outs[0] is the outermost part."""

    parent: str
    outs: tuple
    lengths: tuple


@dataclass(frozen=True)
class Fuse:
    """fused = ((x0 * e1 + x1) * e2 + x2) ... over the parts `names`."""

    names: tuple
    fused: str


@dataclass(frozen=True)
class ComputeDef:
    """The computation a stage performs (may differ from its op after cache_write/read)."""

    axis: tuple  # spatial IterVars
    reduce_axis: tuple  # reduce IterVars
    body: E.Expr  # the first output's
    more: tuple = ()  # a multi-output compute's other outputs' bodies (TVM's tuple compute)

    @property
    def bodies(self) -> tuple:
        """Every output's body: one loop nest stores them all."""
        return (self.body,) + self.more


@dataclass(frozen=True)
class Stage:
    op: object  # the identity of the tensor this stage produces
    compute: ComputeDef | None  # None for placeholders
    iters: tuple = ()
    relations: tuple = ()
    attach: tuple = ("root",)  # ("root",) | ("inline",) | ("at", target_op, iter_name)
    is_output: bool = False
    origin: str = ""  # "cache_write" / "cache_read" / "rfactor" for added stages
    layout: tuple = ()  # placeholders only: ((dim, factor), ...) packed layout (layout.py)
    scope: str = ""  # memory scope named by cache_read / cache_write ("" = decided by lowering)
    align: tuple = ()  # ((dim, factor, offset), ...) from storage_align: padded strides
    double_buffer: bool = False  # a shared stage with two copies, one filled while one is read
    store_predicate: tuple = ()  # ((thread tag, value), ...): only those threads store
    tensorize: tuple = ()  # (iterator name, TensorIntrin): that loop nest is the intrinsic

    @property
    def name(self) -> str:
        return self.op.name

    @property
    def is_placeholder(self) -> bool:
        return self.compute is None and not self.is_extern

    @property
    def is_extern(self) -> bool:
        """A te.extern op: computed by one packed call at the root, no loops to schedule."""
        return getattr(self.op, "is_extern", False)

    def root_vars(self) -> tuple:
        return tuple(self.compute.axis) + tuple(self.compute.reduce_axis)

    def iter_index(self, name: str) -> int:
        for i, it in enumerate(self.iters):
            if it.name == name:
                return i
        raise ScheduleError(f"stage {self.name} has no iterator {name!r}; "
                            f"its loops are {[it.name for it in self.iters]}")


def root_iters(compute: ComputeDef) -> tuple:
    out = []
    for a in compute.axis:
        out.append(Iterator(a.name, extent_of(a.extent), "spatial"))
    for a in compute.reduce_axis:
        out.append(Iterator(a.name, extent_of(a.extent), "reduce"))
    return tuple(out)


def uniquify_axes(op: ComputeOp) -> ComputeOp:
    """Axis names must be unique inside a stage: rename clashing IterVars in place."""
    seen = set()
    for a in list(op.axis) + list(op.reduce_axis):
        if a.name in seen:
            base, k = a.name, 1
            while f"{base}_{k}" in seen:
                k += 1
            a.name = f"{base}_{k}"
        seen.add(a.name)
    return op


def stage_of_op(op, is_output: bool) -> Stage:
    if isinstance(op, PlaceholderOp) or getattr(op, "is_extern", False):
        return Stage(op, None, is_output=is_output)
    uniquify_axes(op)
    comp = ComputeDef(tuple(op.axis), tuple(op.reduce_axis), op.body[0], tuple(op.body[1:]))
    return Stage(op, comp, root_iters(comp), is_output=is_output)


def _in_scan_loops(stages: list) -> list:
    """The stages of a te.scan's update (those between its states and its update tensors)
    start attached at the scan's time loop: row t is computed once the rows before it are."""
    for scan in [s.op for s in stages if getattr(s.op, "is_scan", False)]:
        reads_state = {id(t.op) for t in scan.state}
        feeds = {id(t.op) for t in scan.update}
        for s in stages:  # topological order: producers first
            if s.compute is not None and any(id(t.op) in reads_state
                                             for t in s.op.input_tensors):
                reads_state.add(id(s.op))
        for s in reversed(stages):  # consumers first
            if id(s.op) in feeds:
                feeds.update(id(t.op) for t in s.op.input_tensors)
        for i, s in enumerate(stages):
            if s.compute is not None and s.op is not scan and id(s.op) in reads_state & feeds:
                stages[i] = replace(s, attach=("at", scan, scan.time_axis.name))
    return stages


@dataclass(frozen=True)
class State:
    dag: object
    stages: tuple
    steps: tuple = field(default=())

    @staticmethod
    def initial(dag) -> State:
        outs = {id(o) for o in dag.outputs}
        stages = [stage_of_op(op, id(op) in outs) for op in dag.ops]
        return State(dag, tuple(_in_scan_loops(stages)))

    # ------------------------------------------------------------ lookup
    def stage_index(self, key) -> int:
        """Index of a stage given an index, a stage, an op or a tensor."""
        if isinstance(key, int):
            if not 0 <= key < len(self.stages):
                raise ScheduleError(f"stage index {key} out of range (0..{len(self.stages) - 1})")
            return key
        op = getattr(key, "op", key)
        for i, s in enumerate(self.stages):
            if s.op is op or (isinstance(key, str) and s.name == key):
                return i
        raise ScheduleError(f"{getattr(op, 'name', op)!r} is not a stage of this schedule")

    def stage(self, key) -> Stage:
        return self.stages[self.stage_index(key)]

    def consumers(self, idx: int) -> list:
        """Indices of stages whose computation reads stage idx."""
        return list(self._consumer_map().get(id(self.stages[idx].op), ()))

    def _consumer_map(self) -> dict:
        """{id(op): [indices of the stages that read it]}, built once per State (one walk of
        every body instead of one per query: long inlined chains stay linear)."""
        cached = self.__dict__.get("_consumers")
        if cached is None:
            cached = {}
            for j, s in enumerate(self.stages):
                if s.compute is None:
                    read = {id(t.op) for t in s.op.input_tensors}  # a te.extern's inputs
                else:
                    read = {id(n.tensor.op) for b in s.compute.bodies for n in E.walk(b)
                            if isinstance(n, E.TensorLoad)}
                for op_id in read:
                    cached.setdefault(op_id, []).append(j)
            object.__setattr__(self, "_consumers", cached)
        return cached

    def effective_consumers(self, idx: int) -> list:
        """Consumers, looking through inlined stages."""
        out, todo, seen = [], list(self.consumers(idx)), set()
        while todo:
            j = todo.pop()
            if j in seen:
                continue
            seen.add(j)
            if self.stages[j].attach[0] == "inline":
                todo.extend(self.consumers(j))
            else:
                out.append(j)
        return sorted(out)

    # ------------------------------------------------------------ functional updates
    def with_stage(self, idx: int, stage: Stage) -> State:
        stages = list(self.stages)
        stages[idx] = stage
        return replace(self, stages=tuple(stages))

    def with_step(self, step) -> State:
        return replace(self, steps=self.steps + (step,))

    def apply(self, step) -> State:
        """Apply a Step and record it."""
        return step.apply_to(self).with_step(step)

    # ------------------------------------------------------------ primitives (record steps)
    def split(self, stage, it, lengths, inner_to_outer: bool = True) -> State:
        from .steps import SplitStep
        si = self.stage_index(stage)
        return self.apply(SplitStep(si, self._iter(si, it), tuple(extent_of(x) for x in lengths)))

    def follow_split(self, stage, it, src_step_id: int, n_split: int) -> State:
        from .steps import FollowSplitStep
        si = self.stage_index(stage)
        return self.apply(FollowSplitStep(si, self._iter(si, it), int(src_step_id), int(n_split)))

    def fuse(self, stage, iters) -> State:
        from .steps import FuseStep
        si = self.stage_index(stage)
        return self.apply(FuseStep(si, tuple(self._iter(si, i) for i in iters)))

    def reorder(self, stage, order) -> State:
        from .steps import ReorderStep
        si = self.stage_index(stage)
        return self.apply(ReorderStep(si, tuple(self._iter(si, i) for i in order)))

    def compute_at(self, stage, target, it) -> State:
        from .steps import ComputeAtStep
        si, ti = self.stage_index(stage), self.stage_index(target)
        return self.apply(ComputeAtStep(si, ti, self._iter(ti, it)))

    def compute_inline(self, stage) -> State:
        from .steps import ComputeInlineStep
        return self.apply(ComputeInlineStep(self.stage_index(stage)))

    def compute_root(self, stage) -> State:
        from .steps import ComputeRootStep
        return self.apply(ComputeRootStep(self.stage_index(stage)))

    def annotate(self, stage, it, annotation: str) -> State:
        from .steps import AnnotationStep
        si = self.stage_index(stage)
        return self.apply(AnnotationStep(si, self._iter(si, it), annotation))

    def parallel(self, stage, it) -> State:
        return self.annotate(stage, it, "parallel")

    def vectorize(self, stage, it) -> State:
        return self.annotate(stage, it, "vectorize")

    def unroll(self, stage, it) -> State:
        return self.annotate(stage, it, "unroll")

    def pragma(self, stage, it, name: str, value) -> State:
        from .steps import PragmaStep
        si = self.stage_index(stage)
        value = value if isinstance(value, str) else int(value)  # import_c takes C source
        return self.apply(PragmaStep(si, self._iter(si, it), str(name), value))

    def tensorize(self, stage, it, intrin) -> State:
        """Replace the loop nest from `it` inward by a tensor intrinsic's code."""
        from .steps import TensorizeStep
        si = self.stage_index(stage)
        return self.apply(TensorizeStep(si, self._iter(si, it), intrin))

    def cache_write(self, stage, scope: str = "local") -> State:
        from .steps import CacheWriteStep
        return self.apply(CacheWriteStep(self.stage_index(stage), scope))

    def cache_read(self, stage, scope: str, readers) -> State:
        from .steps import CacheReadStep
        rs = tuple(self.stage_index(r) for r in readers)
        return self.apply(CacheReadStep(self.stage_index(stage), scope, rs))

    def layout_rewrite(self, stage, layout) -> State:
        from .steps import LayoutRewriteStep
        pairs = tuple((int(d), int(f)) for d, f in layout)
        return self.apply(LayoutRewriteStep(self.stage_index(stage), pairs))

    def bind(self, stage, it, tag: str) -> State:
        """Bind a loop to a GPU thread index ("blockIdx.x", "threadIdx.y", "vthread", ...)."""
        return self.annotate(stage, it, tag)

    def set_scope(self, stage, scope: str) -> State:
        from .steps import SetScopeStep
        return self.apply(SetScopeStep(self.stage_index(stage), str(scope)))

    def store_predicate(self, stage, conditions) -> State:
        """Only the threads whose indices equal the given values store this stage (TVM's
        set_store_predicate(tx.var.equal(0))): ((thread tag, value), ...)."""
        from .steps import StorePredicateStep
        pairs = tuple((str(t), int(v)) for t, v in conditions)
        return self.apply(StorePredicateStep(self.stage_index(stage), pairs))

    def double_buffer(self, stage) -> State:
        """Two copies of a shared stage fetched in a loop (TVM's double_buffer): the next
        step's copy is filled while this step's is read, one barrier per step."""
        from .steps import DoubleBufferStep
        return self.apply(DoubleBufferStep(self.stage_index(stage)))

    def storage_align(self, stage, dim: int, factor: int, offset: int) -> State:
        from .steps import StorageAlignStep
        si = self.stage_index(stage)
        return self.apply(StorageAlignStep(si, int(dim), int(factor), int(offset)))

    def rfactor(self, stage, it, factor_axis: int = 0) -> State:
        from .steps import RfactorStep
        si = self.stage_index(stage)
        return self.apply(RfactorStep(si, self._iter(si, it), int(factor_axis)))

    def _iter(self, si: int, it) -> int:
        st = self.stages[si]
        if isinstance(it, int):
            if not 0 <= it < len(st.iters):
                raise ScheduleError(f"stage {st.name}: iterator index {it} out of range "
                                    f"(it has {len(st.iters)} loops)")
            return it
        name = getattr(it, "name", it)
        return st.iter_index(name)

    # ------------------------------------------------------------ identity
    def record_key(self) -> tuple:
        return tuple(json.dumps(s.to_record()) for s in self.steps)

    def __hash__(self) -> int:
        return hash(self.record_key())

    def __eq__(self, other) -> bool:
        return isinstance(other, State) and self.record_key() == other.record_key() \
            and self.dag is other.dag

    def __str__(self) -> str:
        from .printer import state_str
        return state_str(self)
