"""Edge tiles in the C printer's loop IR: split a tile loop's edge off it, hoist guards out of
loops (c_prep.prepare runs partition_edges before the vector plans and unswitch after them).

In: a kernel body (tir) whose tile loops carry edge guards (`if (j0 * 32 + j3 < 1500)`, a tile
that does not divide its axis).
Out: the same computation with the guard-free full tiles apart from the edge tile
(`partition_edges`) and each guard that does not change inside a serial loop tested once
outside it (`unswitch`). Both copy loop bodies, at most twice each along one loop nest.
Why: a guard per statement in a reduction loop costs a branch per FMA group and keeps a
register tile's accumulators in memory; guarded vector code can not use constant offsets.
"""

from __future__ import annotations

from ..te import expr as E
from ..tir import stmt as S
from ..tir.simplify import Simplifier, conjuncts, nonpositive, simplify, skey
from .c_prep import VecBlock, const_int, descend, holds_below, instantiate, let_ranges, loop_range

# ---------------------------------------------------------------- edge partitions

MAX_PARTITIONS = 2  # loops split along one nest (the row and the column edge: 4 copies)


def partition_edges(s: S.Stmt, ranges: dict, budget: int = MAX_PARTITIONS) -> S.Stmt:
    """Split a serial tile loop whose body holds edge guards (`if (j0 * 32 + j3 < 1500)`, a
    tile that does not divide its axis) into the iterations where every such guard holds
    for all inner values, printed without the guards, and the edge iterations after them,
    which keep theirs. Why: a guard per statement in the reduction loop costs a branch per
    FMA group, and the guarded vector code can not use the tile's constant offsets. Each
    split copies the loop body, so at most `budget` loops of one nest are split."""
    if isinstance(s, S.For):
        inner = {**ranges, s.var: loop_range(s.extent)}
        n = const_int(s.extent)
        if s.kind == "serial" and n is not None and n >= 2 and budget > 0:
            m = _guarded_prefix(s, n, inner)
            if 0 < m < n:
                return _split_loop(s, m, n, ranges, budget - 1)
        return S.For(s.var, s.extent, s.kind, partition_edges(s.body, inner, budget),
                     dict(s.pragmas))
    return descend(s, lambda x, r: partition_edges(x, r, budget), ranges)


def _guarded_prefix(loop: S.For, n: int, ranges: dict) -> int:
    """m such that every guard inside `loop` that depends on its variable holds for all
    inner values when the variable is below m (n when there is no such guard; 0 when a
    guard is not a linear comparison of the variable and inner loop variables)."""
    if any(not isinstance(x, _PLAIN) for x in S.walk_stmts(loop.body)):
        return 0
    m = n
    for cond, inner in _guards(loop.body, ranges):
        if loop.var not in E.free_vars(cond):
            continue
        for c in conjuncts(cond):
            if loop.var not in E.free_vars(c):
                continue  # another axis's guard (the row edge): left to its own loop
            if not isinstance(c, E.Cmp) or not E.is_int(c.a.dtype) or c.op in ("eq", "ne"):
                return 0
            for lin in nonpositive(Simplifier(inner), c):
                below = holds_below(lin, loop.var, inner)
                if below is None:
                    return 0  # a guard that fails first (or is not linear) stays inside
                m = min(m, below)
    return m


_PLAIN = (S.For, S.Store, S.Allocate, S.IfThenElse, S.SeqStmt, S.LetStmt)


def _guards(s: S.Stmt, ranges: dict):
    """(condition, ranges of the loops around it) of every IfThenElse in s."""
    if isinstance(s, S.For):
        yield from _guards(s.body, {**ranges, s.var: loop_range(s.extent)})
    elif isinstance(s, S.LetStmt):
        yield from _guards(s.body, let_ranges(ranges, s.var, s.value))
    elif isinstance(s, S.IfThenElse):
        yield simplify(s.cond, ranges), ranges
        for b in (s.then, s.else_):
            if b is not None:
                yield from _guards(b, ranges)
    else:
        for x in S.stmt_children(s):
            yield from _guards(x, ranges)


def _split_loop(loop: S.For, m: int, n: int, ranges: dict, budget: int) -> S.Stmt:
    v = loop.var
    main = {**ranges, v: (0, m - 1)}
    head = S.For(v, E.IntImm(m, v.dtype), loop.kind,
                 partition_edges(instantiate(loop.body, {}, main), main, budget),
                 dict(loop.pragmas))
    if n - m == 1:
        edge = {v: E.IntImm(m, v.dtype)}
        body = _own_buffers(instantiate(loop.body, edge, ranges))
        return S.seq([head, partition_edges(body, ranges, budget)])
    t = E.Var(v.name + "_edge", v.dtype)
    tail = {**ranges, t: (0, n - m - 1)}
    body = _own_buffers(instantiate(loop.body, {v: t + m}, tail))
    return S.seq([head, S.For(t, E.IntImm(n - m, v.dtype), loop.kind,
                              partition_edges(body, tail, budget), dict(loop.pragmas))])


def _own_buffers(s: S.Stmt) -> S.Stmt:
    """s with the temporaries it allocates replaced by fresh buffers. Why: the edge tile runs
    its lanes in narrower vectors, and a local tile read with several vector widths can not
    be held in vector registers (codegen.c._vreg_candidates): sharing the buffer with the
    edge copy would keep the full tiles' accumulators in memory."""
    fresh = {}
    for x in S.walk_stmts(s):
        if isinstance(x, S.Allocate):
            b = x.buffer
            fresh[b] = S.Buffer(b.name, b.shape, b.dtype, b.scope, b.strides)
            fresh[b].double_buffer = b.double_buffer
    if not fresh:
        return s

    def load(e):
        if isinstance(e, S.BufferLoad) and e.buffer in fresh:
            return S.BufferLoad(fresh[e.buffer], e.index)
        return None
    return _rebuffer(S.map_exprs(s, lambda e: E.transform(e, load)), fresh)


def _rebuffer(s: S.Stmt, fresh: dict) -> S.Stmt:
    if isinstance(s, S.Store):
        return S.Store(fresh.get(s.buffer, s.buffer), s.index, s.value)
    if isinstance(s, S.For):
        return S.For(s.var, s.extent, s.kind, _rebuffer(s.body, fresh), dict(s.pragmas),
                     s.thread_tag)
    if isinstance(s, S.Allocate):
        return S.Allocate(fresh.get(s.buffer, s.buffer), _rebuffer(s.body, fresh))
    return descend(s, lambda x, _: _rebuffer(x, fresh), {})


# ---------------------------------------------------------------- unswitching

MAX_UNSWITCH = 2          # conditions hoisted out of one loop (at most 4 copies of it)
MAX_UNSWITCH_STEPS = 4096  # a loop body longer than this is not copied


def unswitch(s: S.Stmt, budget: int = MAX_UNSWITCH) -> S.Stmt:
    """Hoist a guard that does not change inside a serial loop out of it: `for k: if (c) A
    else B` becomes `if (c) for k: A else for k: B`. Why: the edge guard of a tile whose
    loop is fused into the parallel loop (partition_edges cannot split it) sits in the
    reduction loop around each vector statement; with both paths in the loop, the register
    tile's accumulators go through memory on every iteration."""
    if isinstance(s, S.For):
        if s.kind == "serial" and budget > 0 and _size(s.body) <= MAX_UNSWITCH_STEPS:
            cond = _invariant_guard(s)
            if cond is not None:
                key = skey(cond)
                then = S.For(s.var, s.extent, s.kind, _take(s.body, key, True), dict(s.pragmas))
                other = S.For(s.var, s.extent, s.kind, _take(s.body, key, False),
                              dict(s.pragmas))
                return S.IfThenElse(cond, unswitch(then, budget - 1),
                                    unswitch(other, budget - 1))
        return S.For(s.var, s.extent, s.kind, unswitch(s.body, budget), dict(s.pragmas))
    return descend(s, lambda x, _: unswitch(x, budget), {})


def _size(s: S.Stmt) -> int:
    """Statements in s, vector blocks' bodies included (the code a copy of s adds)."""
    n = 0
    for x in S.walk_stmts(s):
        n += 1 + (_size(x.body) if isinstance(x, VecBlock) else 0)
    return n


def _invariant_guard(loop: S.For):
    """The first IfThenElse condition in the loop's body that mentions no variable bound by
    the loop or inside it, or None."""
    bound = {loop.var}
    todo = [loop.body]
    while todo:
        x = todo.pop()
        if isinstance(x, S.For):
            bound.add(x.var)
        elif isinstance(x, S.LetStmt):
            bound.add(x.var)
        elif not isinstance(x, (S.IfThenElse, S.SeqStmt, S.Allocate)):
            continue  # vector blocks, stores: no guard around a whole statement inside
        todo.extend(S.stmt_children(x))
    for x in S.walk_stmts(loop.body):
        if isinstance(x, S.IfThenElse) and not isinstance(x.cond, E.IntImm) and \
                not (E.free_vars(x.cond) & bound):
            return x.cond
    return None


def _take(s: S.Stmt, key, branch: bool) -> S.Stmt:
    """s with every IfThenElse on the condition `key` replaced by its `branch` side."""
    if isinstance(s, S.IfThenElse):
        if skey(s.cond) == key:
            taken = s.then if branch else s.else_
            return S.SeqStmt([]) if taken is None else _take(taken, key, branch)
    if isinstance(s, S.For):
        return S.For(s.var, s.extent, s.kind, _take(s.body, key, branch), dict(s.pragmas))
    return descend(s, lambda x, _: _take(x, key, branch), {})
