"""Transform steps: one frozen dataclass per schedule primitive.

Each Step has apply_to(state) -> State (the transformation, checked for legality),
to_record() -> list (JSON-able, first element a two-letter code) and from_record(list).
Stages and iterators are referred to by index, so a record replays onto a fresh ComputeDAG.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from ..errors import ScheduleError
from ..te.tensor import THREAD_TAGS
from . import transform as T

ANNOTATIONS = ("none", "parallel", "vectorize", "unroll") + THREAD_TAGS


@dataclass(frozen=True)
class SplitStep:
    stage_id: int
    iter_id: int
    lengths: tuple  # lengths of the inner parts, outer to inner

    code = "SP"

    def apply_to(self, state):
        return T.split(state, self.stage_id, self.iter_id, self.lengths)

    def to_record(self) -> list:
        # a symbolic length (split by nparts of a te.var size) is written as text: such a
        # State is never recorded, but its identity (State.record_key) is still needed
        return [self.code, self.stage_id, self.iter_id,
                [x if isinstance(x, int) else str(x) for x in self.lengths]]

    @classmethod
    def from_record(cls, r):
        return cls(int(r[1]), int(r[2]), tuple(int(x) for x in r[3]))


@dataclass(frozen=True)
class FollowSplitStep:
    """Split like an earlier SplitStep, so tile sizes chosen there propagate here.

    With n_split inner parts: the source's first n_split - 1 lengths, then the product of the
    rest, so the outer parts line up with the source's outer parts.
    """

    stage_id: int
    iter_id: int
    src_step_id: int
    n_split: int

    code = "FSP"

    def lengths(self, state) -> tuple:
        if not 0 <= self.src_step_id < len(state.steps) or \
                not isinstance(state.steps[self.src_step_id], SplitStep):
            raise ScheduleError(f"follow_split: step {self.src_step_id} is not a split")
        src = state.steps[self.src_step_id].lengths
        if self.n_split >= len(src):
            return tuple(src)
        head = tuple(src[:self.n_split - 1])
        rest = 1
        for x in src[self.n_split - 1:]:
            rest *= x
        return head + (rest,)

    def apply_to(self, state):
        return T.split(state, self.stage_id, self.iter_id, self.lengths(state))

    def to_record(self) -> list:
        return [self.code, self.stage_id, self.iter_id, self.src_step_id, self.n_split]

    @classmethod
    def from_record(cls, r):
        return cls(int(r[1]), int(r[2]), int(r[3]), int(r[4]))


@dataclass(frozen=True)
class FuseStep:
    stage_id: int
    iter_ids: tuple

    code = "FU"

    def apply_to(self, state):
        return T.fuse(state, self.stage_id, self.iter_ids)

    def to_record(self) -> list:
        return [self.code, self.stage_id, list(self.iter_ids)]

    @classmethod
    def from_record(cls, r):
        return cls(int(r[1]), tuple(int(x) for x in r[2]))


@dataclass(frozen=True)
class ReorderStep:
    stage_id: int
    order: tuple

    code = "RE"

    def apply_to(self, state):
        return T.reorder(state, self.stage_id, self.order)

    def to_record(self) -> list:
        return [self.code, self.stage_id, list(self.order)]

    @classmethod
    def from_record(cls, r):
        return cls(int(r[1]), tuple(int(x) for x in r[2]))


@dataclass(frozen=True)
class ComputeAtStep:
    stage_id: int
    target_stage_id: int
    target_iter_id: int

    code = "CA"

    def apply_to(self, state):
        return T.compute_at(state, self.stage_id, self.target_stage_id, self.target_iter_id)

    def to_record(self) -> list:
        return [self.code, self.stage_id, self.target_stage_id, self.target_iter_id]

    @classmethod
    def from_record(cls, r):
        return cls(int(r[1]), int(r[2]), int(r[3]))


class _OneStage:
    """Record of a step that names one stage only: [code, stage_id]."""

    def to_record(self) -> list:
        return [self.code, self.stage_id]

    @classmethod
    def from_record(cls, r):
        return cls(int(r[1]))


@dataclass(frozen=True)
class ComputeInlineStep(_OneStage):
    stage_id: int

    code = "CI"

    def apply_to(self, state):
        return T.compute_inline(state, self.stage_id)



@dataclass(frozen=True)
class ComputeRootStep(_OneStage):
    stage_id: int

    code = "CR"

    def apply_to(self, state):
        st = state.stages[self.stage_id]
        if st.is_placeholder:
            raise ScheduleError(f"compute_root: {st.name} is an input placeholder")
        return state.with_stage(self.stage_id, replace(st, attach=("root",)))



@dataclass(frozen=True)
class AnnotationStep:
    stage_id: int
    iter_id: int
    annotation: str

    code = "AN"

    def apply_to(self, state):
        return T.annotate(state, self.stage_id, self.iter_id, self.annotation)

    def to_record(self) -> list:
        return [self.code, self.stage_id, self.iter_id, self.annotation]

    @classmethod
    def from_record(cls, r):
        return cls(int(r[1]), int(r[2]), str(r[3]))


@dataclass(frozen=True)
class PragmaStep:
    stage_id: int
    iter_id: int
    name: str
    value: int | str

    code = "PR"

    def apply_to(self, state):
        return T.pragma(state, self.stage_id, self.iter_id, self.name, self.value)

    def to_record(self) -> list:
        return [self.code, self.stage_id, self.iter_id, self.name, self.value]

    @classmethod
    def from_record(cls, r):
        value = r[4] if isinstance(r[4], str) else int(r[4])  # import_c: C source text
        return cls(int(r[1]), int(r[2]), str(r[3]), value)


@dataclass(frozen=True)
class CacheWriteStep:
    stage_id: int
    scope: str

    code = "CW"

    def apply_to(self, state):
        return T.cache_write(state, self.stage_id, self.scope)

    def to_record(self) -> list:
        return [self.code, self.stage_id, self.scope]

    @classmethod
    def from_record(cls, r):
        return cls(int(r[1]), str(r[2]))


@dataclass(frozen=True)
class CacheReadStep:
    stage_id: int
    scope: str
    reader_ids: tuple

    code = "CH"

    def apply_to(self, state):
        return T.cache_read(state, self.stage_id, self.scope, self.reader_ids)

    def to_record(self) -> list:
        return [self.code, self.stage_id, self.scope, list(self.reader_ids)]

    @classmethod
    def from_record(cls, r):
        return cls(int(r[1]), str(r[2]), tuple(int(x) for x in r[3]))


@dataclass(frozen=True)
class RfactorStep:
    stage_id: int
    iter_id: int
    factor_axis: int

    code = "RF"

    def apply_to(self, state):
        return T.rfactor(state, self.stage_id, self.iter_id, self.factor_axis)

    def to_record(self) -> list:
        return [self.code, self.stage_id, self.iter_id, self.factor_axis]

    @classmethod
    def from_record(cls, r):
        return cls(int(r[1]), int(r[2]), int(r[3]))


@dataclass(frozen=True)
class LayoutRewriteStep:
    """Store a placeholder (a constant weight) or a temporary in a packed layout (layout.py)."""

    stage_id: int
    layout: tuple  # ((dim, factor), ...)

    code = "LR"

    def apply_to(self, state):
        from .layout import packed_shape
        st = state.stages[self.stage_id]
        if st.is_output:
            raise ScheduleError(f"layout_rewrite: {st.name} is an output")
        if st.is_placeholder:
            packed_shape([d.value for d in st.op.shape], self.layout)
        elif any(f < 0 or not 0 <= d < len(st.compute.axis) for d, f in self.layout):
            raise ScheduleError(f"layout_rewrite of {st.name}: bad layout {self.layout}")
        return state.with_stage(self.stage_id, replace(st, layout=tuple(self.layout)))

    def to_record(self) -> list:
        return [self.code, self.stage_id, [list(p) for p in self.layout]]

    @classmethod
    def from_record(cls, r):
        return cls(int(r[1]), tuple((int(d), int(f)) for d, f in r[2]))


@dataclass(frozen=True)
class StorageAlignStep:
    """Pad the buffer of a stage so that dimension `dim`'s stride is factor * k + offset
    (TVM's storage_align): rows of a shared-memory tile then start in different banks."""

    stage_id: int
    dim: int
    factor: int
    offset: int

    code = "SA"

    def apply_to(self, state):
        st = state.stages[self.stage_id]
        if st.is_placeholder or not 0 <= self.dim < len(st.compute.axis) - 1:
            raise ScheduleError(f"storage_align of {st.name}: axis {self.dim} must be a spatial "
                                "axis of a computed stage other than its last")
        if self.factor < 1 or not 0 <= self.offset < self.factor:
            raise ScheduleError(f"storage_align of {st.name}: want factor >= 1 and "
                                f"0 <= offset < factor, got {self.factor}, {self.offset}")
        align = tuple(a for a in st.align if a[0] != self.dim) + \
            ((self.dim, self.factor, self.offset),)
        return state.with_stage(self.stage_id, replace(st, align=align))

    def to_record(self) -> list:
        return [self.code, self.stage_id, self.dim, self.factor, self.offset]

    @classmethod
    def from_record(cls, r):
        return cls(int(r[1]), int(r[2]), int(r[3]), int(r[4]))


@dataclass(frozen=True)
class SetScopeStep:
    """Put a computed temporary in a memory scope ("shared", "local", "global"), as TVM's
    set_scope: e.g. an rfactor stage shared by the threads of a block."""

    stage_id: int
    scope: str

    code = "SS"

    def apply_to(self, state):
        from .state import SCOPES
        st = state.stages[self.stage_id]
        if st.is_placeholder or st.is_output:
            raise ScheduleError(f"set_scope of {st.name}: only a computed temporary has a scope")
        if self.scope not in SCOPES:
            raise ScheduleError(f"set_scope of {st.name}: unknown scope {self.scope!r}; known: "
                                f"{', '.join(SCOPES)}")
        return state.with_stage(self.stage_id, replace(st, scope=self.scope))

    def to_record(self) -> list:
        return [self.code, self.stage_id, self.scope]

    @classmethod
    def from_record(cls, r):
        return cls(int(r[1]), str(r[2]))


@dataclass(frozen=True)
class DoubleBufferStep(_OneStage):
    """Give a shared-memory stage two copies (TVM's double_buffer): in the loop that fetches
    it, each step's copy is filled while the previous one is read (codegen.cuda's
    pipeline_fetches), so the loop needs one barrier per step instead of two."""

    stage_id: int

    code = "DB"

    def apply_to(self, state):
        st = state.stages[self.stage_id]
        if st.is_placeholder or st.scope != "shared":
            raise ScheduleError(f"double_buffer of {st.name}: only a shared-memory stage "
                                "(cache_read(..., 'shared') or set_scope('shared')) has one")
        return state.with_stage(self.stage_id, replace(st, double_buffer=True))



@dataclass(frozen=True)
class StorePredicateStep:
    """Only the threads whose indices equal the given values store the stage (TVM's
    set_store_predicate, for conditions `thread_axis.var.equal(k)` joined with &): after a
    cross-thread reduction every thread holds the result, one of them writes it."""

    stage_id: int
    conditions: tuple  # ((thread tag, value), ...)

    code = "SPR"

    def apply_to(self, state):
        st = state.stages[self.stage_id]
        if st.is_placeholder:
            raise ScheduleError(f"set_store_predicate of {st.name}: a placeholder stores nothing")
        for tag, value in self.conditions:
            if tag not in THREAD_TAGS or tag == "vthread" or value < 0:
                raise ScheduleError(f"set_store_predicate of {st.name}: {tag} == {value} is not "
                                    "a thread index equal to a value >= 0")
        return state.with_stage(self.stage_id, replace(st, store_predicate=self.conditions))

    def to_record(self) -> list:
        return [self.code, self.stage_id, [list(c) for c in self.conditions]]

    @classmethod
    def from_record(cls, r):
        return cls(int(r[1]), tuple((str(t), int(v)) for t, v in r[2]))


@dataclass(frozen=True)
class TensorizeStep:
    """The loop nest of stage_id from iter_id inward becomes a tensor intrinsic's code. The
    record names the intrinsic by its key in this process (te/tensor_intrin.py)."""

    stage_id: int
    iter_id: int
    intrin: object

    code = "TZ"

    def apply_to(self, state):
        return T.tensorize(state, self.stage_id, self.iter_id, self.intrin)

    def to_record(self) -> list:
        return [self.code, self.stage_id, self.iter_id, self.intrin.key]

    @classmethod
    def from_record(cls, r):
        from ..te.tensor_intrin import lookup
        return cls(int(r[1]), int(r[2]), lookup(str(r[3])))


STEP_TYPES = {c.code: c for c in (
    StorePredicateStep, DoubleBufferStep, SetScopeStep, StorageAlignStep, LayoutRewriteStep,
    SplitStep, FollowSplitStep, FuseStep, ReorderStep, ComputeAtStep, ComputeInlineStep,
    ComputeRootStep, AnnotationStep, PragmaStep, CacheWriteStep, CacheReadStep, RfactorStep,
    TensorizeStep)}


def step_from_record(r):
    try:
        cls = STEP_TYPES[r[0]]
    except (KeyError, IndexError, TypeError):
        raise ScheduleError(f"unknown step record {r!r}") from None
    try:
        return cls.from_record(r)
    except (IndexError, TypeError, ValueError) as e:
        raise ScheduleError(f"malformed step record {r!r}: {e}") from None


def replay(dag, records):
    """Apply step records to dag.init_state() and return the State."""
    state = dag.init_state()
    for r in records:
        state = state.apply(step_from_record(r))
    return state
