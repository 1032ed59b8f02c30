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


_EXPENSIVE_CALLS = frozenset({"exp", "exp2", "log", "log2", "tanh", "erf", "sigmoid", "pow",
                              "sin", "cos"})


def has_expensive_call(state, si: int) -> bool:
    """Whether the stage's body (inlined producers included) calls a transcendental."""
    return any(isinstance(n, E.Call) and n.name in _EXPENSIVE_CALLS
               for n in E.walk(effective_body(state, si)))


def row_target(state, si: int):
    """(op, loop name) of the row loop to compute stage si at, or None.

    A row-wise producer (softmax's max, exp and sum; layer norm's sums) is read one row at a
    time: its effective consumers are one root, all-spatial stage C (unsplit over its first k
    axes) or stages already computed at C's k-th loop, and every consumer reads it with its
    own first k axes as the first k indices. Computing it at that loop makes the whole
    normalisation one pass over each row (the row stays in L1, one parallel loop)."""
    st = state.stages[si]
    if st.is_placeholder or st.is_output or st.attach[0] != "root" or st.relations:
        return None
    cons = state.effective_consumers(si)
    targets, loops = set(), set()
    for ci in cons:
        ti, loop = _root_of(state, ci)
        targets.add(ti)
        if loop is not None:
            loops.add(loop)
    if len(targets) != 1 or len(loops) > 1:
        return None
    ti = targets.pop()
    tgt = state.stages[ti]
    if tgt.compute is None or tgt.compute.reduce_axis or tgt.relations:
        return None
    names = [it.name for it in tgt.iters]
    k = names.index(loops.pop()) + 1 if loops else len(st.compute.axis)
    if not 0 < k < len(tgt.compute.axis) or names[:k] != [a.name for a in
                                                           tgt.compute.axis[:k]]:
        return None
    if st.compute.reduce_axis and len(st.compute.axis) != k:
        return None
    return (tgt.op, names[k - 1]) if all(_reads_rowwise(state, ci, st.op, k) for ci in cons) \
        else None


def _reads_rowwise(state, ci: int, op, k: int) -> bool:
    axes = state.stages[ci].compute.axis
    if len(axes) < k:
        return False
    for n in E.walk(effective_body(state, ci)):
        if isinstance(n, E.TensorLoad) and n.tensor.op is op and (
                len(n.indices) < k or any(i is not a for i, a in zip(n.indices, axes[:k]))):
            return False
    return True


def _root_of(state, si: int) -> tuple:
    """(index of the root stage whose loops enclose stage si, the loop of that root it sits
    in, or None for si itself): follows compute_at chains (an rfactor stage at its sum)."""
    loop = None
    while state.stages[si].attach[0] == "at":
        st = state.stages[si]
        si, loop = state.stage_index(st.attach[1]), st.attach[2]
    return si, loop


def conv_channel_axis(state, si: int):
    """The output-channel axis name of a stage that computes an NCHW convolution
    (topi.nn.conv2d.nchw_conv_operands), else None."""
    from ..topi.nn.conv2d import nchw_conv_operands
    st = state.stages[si]
    if st.compute is None or nchw_conv_operands(st.compute) is None:
        return None
    return st.compute.axis[1].name
