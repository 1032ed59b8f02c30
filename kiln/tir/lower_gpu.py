"""The GPU-only statements of lowering (a mixin of tir.lower.Lowerer).

In: the Lowerer's planned stages (scopes, leaves, guards) of a schedule with loops bound to
thread indices.
Out: a cross-thread reduction's per-thread share, its `AllReduce` and guarded store
(`_cross_thread`); a stage's `set_store_predicate` conditions (`_predicate`); the barriers
around runs of shared-memory stages (`_with_barriers`).
Why apart: tir/lower.py replays any schedule into loop nests; what only GPU schedules need
reads better on its own, and keeps both files short.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..errors import LoweringError
from ..te import expr as E
from ..te.tensor import THREAD_TAGS
from . import stmt as S
from .lower_helpers import c_name

if TYPE_CHECKING:
    from .lower import LStage


class GpuLowering:
    """Methods of Lowerer (it provides info, stages, var_names, effective_body, _loop,
    _out_index, _guarded and _partials)."""

    def _scope_of(self, si: int) -> str:
        """GPU memory scope of a temporary: as named by cache_read/cache_write; else per
        thread (local) when computed inside a kernel, else a global workspace."""
        st = self.stages[si]
        if st.scope in ("shared", "local"):
            return st.scope
        if st.scope == "global" or st.attach[0] != "at":
            return "global"
        return "local"

    def _cross_thread(self, si: int, info: LStage, r0: int, inner) -> S.Stmt:
        """A reduction whose outermost reduction loop is bound to threadIdx.x (TVM's
        cross-thread reduction): each thread reduces its share (the loops inside) into a
        register, an AllReduce combines the threads' values, and the result is stored by
        every thread when the stage is per-thread (local), else by thread 0 of the lanes."""
        st, lane = info.stage, info.leaves[r0]
        body = st.compute.body
        where = f"cross-thread reduction {st.name}.{lane.name}"
        if st.compute.more:
            raise LoweringError(f"{where}: a multi-output reduction cannot be bound across "
                                "threads; bind a spatial loop instead")
        if lane.annotation != "threadIdx.x":
            raise LoweringError(f"{where}: a reduction loop can be bound to threadIdx.x only "
                                f"(not {lane.annotation})")
        if lane.extent & (lane.extent - 1):
            raise LoweringError(f"{where}: {lane.extent} threads; bind a power of two "
                                "(split the reduction by 32, 64, 128 ...)")
        inside = [lf.name for lf in info.leaves[r0:] if lf.kind == "spatial"]
        if inside:
            raise LoweringError(f"{where}: spatial loops {inside} are inside the loop bound to "
                                "threadIdx.x; reorder them outside it")
        dtype = st.op.output(0).dtype
        part = S.Buffer(c_name(f"{st.name}_part", self.var_names), (1,), dtype, "local")
        red = S.Buffer(c_name(f"{st.name}_red", self.var_names), (1,), dtype, "local")
        self._partials[si] = part
        reduce_share = inner(r0)
        spatial = {lf.var for lf in info.outer} | {lf.var for lf in info.leaves[:r0]}
        conds = [g for g in info.guards if E.free_vars(g) <= spatial]
        if self._scope_of(si) != "local":  # one thread writes what all of them hold
            conds.append(E.cmp("eq", lane.var, E.IntImm(0)))
        conds += self._predicate(info)
        store = self._guarded(S.Store(info.buffer, self._out_index(info),
                                      S.BufferLoad(red, E.IntImm(0))), conds)
        nest = S.Allocate(part, S.seq([
            S.Store(part, E.IntImm(0), body.identity()), reduce_share,
            S.Allocate(red, S.seq([S.AllReduce.of(part, red, body.combiner, lane.extent),
                                   store]))]))
        return self._loop(lane, nest, False)

    def _predicate(self, info: LStage) -> list:
        """The stage's store predicate (set_store_predicate) on its thread loops."""
        bound = {lf.annotation: lf.var for lf in info.outer + info.leaves
                 if lf.annotation in THREAD_TAGS}
        conds = []
        for tag, value in info.stage.store_predicate:
            if tag not in bound:
                raise LoweringError(f"set_store_predicate of {info.stage.name}: no loop it is "
                                    f"computed in is bound to {tag}")
            conds.append(E.cmp("eq", bound[tag], E.IntImm(value)))
        return conds

    def _with_barriers(self, parts: list) -> list:
        """A barrier before and after each run of shared stages: before, so that no thread
        still reads the previous fetch; after, so that the whole fetch is visible. A shared
        stage that reads one before it in the run starts a new run (e.g. a row prologue's
        sum of exp(x - max) after the max)."""
        out: list = []
        in_run, run = False, set()
        for j, stmt in parts:
            shared = self._scope_of(j) == "shared"
            reads = {id(n.tensor.op) for b in self.effective_bodies(j) for n in E.walk(b)
                     if isinstance(n, E.TensorLoad)}
            if shared != in_run or (shared and reads & run):
                out.append((None, S.Barrier()))
                run = set()
            out.append((j, stmt))
            in_run = shared
            if shared:
                run.add(id(self.stages[j].op))
        if in_run:
            out.append((None, S.Barrier()))
        return out
