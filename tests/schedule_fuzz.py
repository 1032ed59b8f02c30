"""Random legal schedules for property tests: structural steps (cache_write, rfactor), loop
transforms, compute locations and annotations, drawn from a `pick(lo, hi)` integer source."""

from __future__ import annotations

import random

from kiln.errors import ScheduleError


class PyRandom:
    def __init__(self, seed: int):
        self.r = random.Random(seed)

    def __call__(self, lo: int, hi: int) -> int:
        return self.r.randint(lo, hi)


class HypothesisDraw:
    def __init__(self, data):
        from hypothesis import strategies as st
        self.data, self.st = data, st

    def __call__(self, lo: int, hi: int) -> int:
        return self.data.draw(self.st.integers(lo, hi))


def _stage_ops(state):
    return [s.op for s in state.stages if not s.is_placeholder]


def _structural(state, pick):
    for op in _stage_ops(state):
        st = state.stage(op)
        if not st.compute.reduce_axis or st.origin:
            continue
        choice = pick(0, 3)
        if choice == 1:
            state = state.cache_write(op, "local")
        elif choice == 2:
            ri = [i for i, it in enumerate(st.iters) if it.kind == "reduce"]
            it = ri[pick(0, len(ri) - 1)]
            ext = st.iters[it].extent
            state = state.split(op, it, [pick(1, ext + 1)])
            part = it + pick(0, 1)
            state = state.rfactor(op, part)
    return state


def _loops(state, op, pick):
    for _ in range(pick(0, 2)):
        st = state.stage(op)
        it = pick(0, len(st.iters) - 1)
        state = state.split(op, it, [pick(1, st.iters[it].extent + 1)])
    st = state.stage(op)
    if pick(0, 1):
        order = list(range(len(st.iters)))
        for i in range(len(order) - 1, 0, -1):
            j = pick(0, i)
            order[i], order[j] = order[j], order[i]
        state = state.reorder(op, order)
    st = state.stage(op)
    if len(st.iters) > 1 and pick(0, 1):
        i = pick(0, len(st.iters) - 2)
        if st.iters[i].kind == st.iters[i + 1].kind:
            state = state.fuse(op, [i, i + 1])
    return state


def _annotate(state, op, pick):
    st = state.stage(op)
    n = len(st.iters)
    spatial = [i for i, it in enumerate(st.iters) if it.kind == "spatial"]
    if spatial and pick(0, 1):
        state = state.parallel(op, spatial[pick(0, len(spatial) - 1)])
    if spatial and pick(0, 1):
        k = len(spatial) - 1 if pick(0, 2) else pick(0, len(spatial) - 1)
        state = state.vectorize(op, spatial[k])
    if pick(0, 2) == 0:
        i = pick(0, n - 1)
        if state.stage(op).iters[i].annotation == "none":
            state = state.unroll(op, i)
    if pick(0, 3) == 0:
        state = state.pragma(op, pick(0, n - 1), "auto_unroll_max_step", pick(0, 16))
    return state


def _locate(state, op, pick):
    si = state.stage_index(op)
    st = state.stages[si]
    if st.is_output:
        return state
    cons = state.effective_consumers(si)
    choice = pick(0, 2)
    if choice == 1 and not st.compute.reduce_axis:
        attached = any(s.attach[0] == "at" and s.attach[1] is op for s in state.stages)
        if not attached:
            return state.compute_inline(op)
    if choice == 2 and len(cons) == 1:
        tgt = state.stages[cons[0]]
        try:
            return state.compute_at(op, tgt.op, pick(0, len(tgt.iters) - 1))
        except ScheduleError:
            return state
    return state


def random_state(dag, pick):
    """A random legal State of `dag`; every choice comes from pick(lo, hi)."""
    state = _structural(dag.init_state(), pick)
    for op in reversed(_stage_ops(state)):
        state = _loops(state, op, pick)
        state = _locate(state, op, pick)
        if state.stage(op).attach[0] != "inline":
            state = _annotate(state, op, pick)
    return state
