"""Stage analysis the sketch rules need: inlinable, data reuse, fusible consumer, spatial size.

In: a State and a stage index. Out: booleans / indices. Works on State stages (not the
original ops), because cache_write and rfactor add stages during sketch generation.
"""

from __future__ import annotations

import math

from ..te import expr as E


def effective_body(state, si: int) -> E.Expr:
    """The stage's body with inlined producers substituted."""
    st = state.stages[si]
    index = {id(s.op): i for i, s in enumerate(state.stages)}

    def fn(n):
        if isinstance(n, E.TensorLoad):
            j = index.get(id(n.tensor.op))
            if j is not None and state.stages[j].attach[0] == "inline":
                sj = state.stages[j]
                return E.substitute(effective_body(state, j), dict(zip(sj.compute.axis, n.indices)))
        return None
    return E.transform(st.compute.body, fn)


def is_compute(state, si: int) -> bool:
    return not state.stages[si].is_placeholder


def is_strict_inlinable(state, si: int) -> bool:
    """A non-output, reduction-free stage: computing it inside its consumers costs nothing."""
    st = state.stages[si]
    return is_compute(state, si) and not st.is_output and not st.compute.reduce_axis \
        and st.attach[0] == "root" and bool(state.effective_consumers(si))


def has_reduce(state, si: int) -> bool:
    st = state.stages[si]
    return is_compute(state, si) and bool(st.compute.reduce_axis)


def needs_multi_level_tiling(state, si: int) -> bool:
    """A reduction where some input is read independently of some spatial axis (data reuse)."""
    if not has_reduce(state, si):
        return False
    st = state.stages[si]
    body = effective_body(state, si)
    spatial = set(st.compute.axis)
    for n in E.walk(body):
        if isinstance(n, E.TensorLoad):
            used = set().union(*[E.free_vars(i) for i in n.indices]) if n.indices else set()
            if spatial - used:
                return True
    return False


def spatial_size(state, si: int) -> int:
    st = state.stages[si]
    return math.prod(int(a.extent.value) for a in st.compute.axis)


def reduce_size(state, si: int) -> int:
    st = state.stages[si]
    return math.prod(int(a.extent.value) for a in st.compute.reduce_axis)


def fusible_consumer(state, si: int):
    """Index of the single elementwise consumer reading this stage at its own index, or None."""
    cons = state.effective_consumers(si)
    if len(cons) != 1:
        return None
    ci = cons[0]
    c, p = state.stages[ci], state.stages[si]
    if c.compute.reduce_axis or c.attach[0] != "root":
        return None
    if [int(a.extent.value) for a in c.compute.axis] != \
            [int(a.extent.value) for a in p.compute.axis]:
        return None
    for n in E.walk(effective_body(state, ci)):
        if isinstance(n, E.TensorLoad) and n.tensor.op is p.op:
            if len(n.indices) != len(c.compute.axis) or \
                    any(i is not a for i, a in zip(n.indices, c.compute.axis)):
                return None
    if c.iters != tuple(x for x in c.iters if x.annotation == "none") or c.relations:
        return None
    return ci
