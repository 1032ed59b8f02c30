"""Loop-IR rewrites the C printer needs before printing: unroll expansion and vector plans.

In: the body of a PrimFunc.
Out: an equivalent body where (1) `unrolled` loops with constant extents (and small serial
loops under an `auto_unroll_max_step` pragma) are expanded into copies with the loop variable
replaced by a constant and every index re-simplified, (2) a serial tile loop with edge guards
is split into its guard-free full tiles and its edge tile (`c_edges.partition_edges`), (3) every
`vectorized` loop is replaced by `VecBlock`s (straight-line code run once for a power-of-two
number of lanes) or by a `ScalarLoop` when it cannot be vectorized (the reason is printed as a
comment), and (4) a guard that does not change inside a serial loop is hoisted out of it
(`c_edges.unswitch`). Code under a guard is simplified knowing the guard holds
(`simplify.assume`).
Why: register tiles need constant indices (so a local tile becomes named vector registers),
the vector printer only ever sees straight-line code over one lane variable, and a tile
that does not divide its axis must cost only at its edge. (2) and (4) copy loop bodies, at
most twice each along one loop nest.
"""

from __future__ import annotations

from contextvars import ContextVar
from dataclasses import dataclass

from ..te import expr as E
from ..tir import stmt as S
from ..tir.simplify import Simplifier, assume, conjuncts, nonpositive, simplify, var_stride
from .c_bf16 import promote

MAX_UNROLL = 64          # an `unrolled` loop longer than this stays a loop (#pragma GCC unroll)
MAX_EXPANDED = 128       # never expand into more statements than this (C compile time)
MAX_LANES = 16           # widest vector block (AVX-512: 16 x 32 bits); longer vectorized
# loops become loops of blocks. prepare(max_lanes=) narrows it to the target's register: GCC
# lowers a generic vector wider than the machine's registers through the stack (a 4 x 16
# GEMM tile on AVX2: 69 GFLOPS as 16-lane blocks, 174 as 8-lane ones)
MAX_STATIC_CHUNKS = 4    # up to this many blocks are written out; more become a chunk loop
BIG = 2 ** 31 - 1
_LANES: ContextVar[int] = ContextVar("kiln_c_prep_lanes", default=MAX_LANES)


@dataclass(eq=False, repr=False)
class VecBlock(S.Stmt):
    """Straight-line `body` for lanes lane = 0..width-1 of the vectorized loop `source`."""

    lane: E.Var
    width: int
    body: S.Stmt
    source: E.Var


@dataclass(eq=False, repr=False)
class ScalarLoop(S.Stmt):
    """A vectorized loop printed as a plain loop; `reason` says why."""

    loop: S.For
    reason: str
    ivdep: bool


def const_int(e) -> int | None:
    e = simplify(e) if not isinstance(e, E.IntImm) else e
    return e.value if isinstance(e, E.IntImm) else None


def loop_range(extent) -> tuple:
    n = const_int(extent)
    return (0, n - 1) if n is not None else (0, BIG)


def prepare(body: S.Stmt, max_lanes: int = MAX_LANES) -> S.Stmt:
    """Expand unrolls, split edge tiles off their loops, then plan the vectorized loops in
    blocks of at most `max_lanes` (the target's 32-bit lanes per register; plain Python
    numbers become nodes)."""
    from .c_edges import partition_edges, unswitch  # they build on this module's rewrites
    body = S.map_exprs(body, lambda e: promote(_normalize(e)))
    token = _LANES.set(max(1, min(int(max_lanes), MAX_LANES)))
    try:
        return unswitch(plan_vectors(partition_edges(expand_unrolls(body, {}, 0), {}), {}))
    finally:
        _LANES.reset(token)


def _normalize(e) -> E.Expr:
    e = E.convert(e)
    kids = E.children(e)
    if kids:
        new = [_normalize(k) for k in kids]
        if E.any_changed(new, kids):
            e = E.rebuild(e, new)
    return e


# ---------------------------------------------------------------- unroll expansion

def expand_unrolls(s: S.Stmt, ranges: dict, limit: int) -> S.Stmt:
    if isinstance(s, S.For):
        step = s.pragmas.get("auto_unroll_max_step", 0)
        limit = max(limit, int(step) if isinstance(step, (int, E.IntImm)) else 0)
        n = const_int(s.extent)
        body = expand_unrolls(s.body, {**ranges, s.var: loop_range(s.extent)}, limit)
        if n is not None and _should_expand(s, body, n, limit):
            return S.seq([instantiate(body, {s.var: E.IntImm(i, s.var.dtype)}, ranges)
                          for i in range(n)]) if n > 0 else S.SeqStmt([])
        return S.For(s.var, s.extent, s.kind, body, dict(s.pragmas))
    return descend(s, lambda x, r: expand_unrolls(x, r, limit), ranges)


def descend(s: S.Stmt, fn, ranges: dict) -> S.Stmt:
    """s with fn(child, ranges at the child) applied to the children of a LetStmt, Allocate,
    IfThenElse or SeqStmt (the walk every rewrite here shares); any other s unchanged."""
    if isinstance(s, S.LetStmt):
        return S.LetStmt(s.var, s.value, fn(s.body, let_ranges(ranges, s.var, s.value)))
    if isinstance(s, S.Allocate):
        return S.Allocate(s.buffer, fn(s.body, ranges))
    if isinstance(s, S.IfThenElse):
        els = None if s.else_ is None else fn(s.else_, ranges)
        return S.IfThenElse(s.cond, fn(s.then, ranges), els)
    if isinstance(s, S.SeqStmt):
        return S.seq([fn(x, ranges) for x in s.stmts])
    return s


def _should_expand(loop: S.For, body: S.Stmt, n: int, limit: int) -> bool:
    total = n * steps(body)
    if loop.kind == "unrolled":
        return n <= MAX_UNROLL and total <= MAX_EXPANDED
    return loop.kind == "serial" and limit > 0 and total <= min(limit, MAX_EXPANDED)


def steps(s: S.Stmt) -> int:
    """Statements executed by s, counting a vectorized loop as one (for unroll budgets)."""
    if isinstance(s, (S.Store, S.Evaluate)):
        return 1
    if isinstance(s, S.For):
        n = const_int(s.extent)
        if s.kind == "vectorized":  # one statement per vector block printed
            return 1 if n is None else max(1, -(-n // 16)) * steps(s.body)
        return BIG if n is None else n * steps(s.body)
    if isinstance(s, S.SeqStmt):
        return sum(steps(x) for x in s.stmts)
    return sum(steps(x) for x in S.stmt_children(s))


def let_ranges(ranges: dict, var: E.Var, value: E.Expr) -> dict:
    if not E.is_int(var.dtype):
        return ranges
    r = Simplifier(ranges).range_of(value)
    return {**ranges, var: r} if r is not None else ranges


def instantiate(s: S.Stmt, mapping: dict, ranges: dict) -> S.Stmt:
    """A copy of s with Vars replaced per `mapping`, every expression re-simplified, and
    let-bound variables renamed (each copy binds its own)."""
    def fix(e):
        return simplify(specialize(e, mapping, ranges), ranges)

    if isinstance(s, S.For):
        inner = {**ranges, s.var: loop_range(fix(s.extent))}
        return S.For(s.var, fix(s.extent), s.kind, instantiate(s.body, mapping, inner),
                     dict(s.pragmas))
    if isinstance(s, S.Store):
        return S.Store(s.buffer, fix(s.index), fix(s.value))
    if isinstance(s, S.LetStmt):
        value = fix(s.value)
        new = E.Var(s.var.name, s.var.dtype)
        inner = let_ranges(ranges, new, value)
        return S.LetStmt(new, value, instantiate(s.body, {**mapping, s.var: new}, inner))
    if isinstance(s, S.Allocate):
        return S.Allocate(s.buffer, instantiate(s.body, mapping, ranges))
    if isinstance(s, S.IfThenElse):
        cond = fix(s.cond)
        if isinstance(cond, E.IntImm):  # decided: only the branch that runs is kept
            taken = s.then if cond.value else s.else_
            return S.SeqStmt([]) if taken is None else instantiate(taken, mapping, ranges)
        els = None if s.else_ is None else instantiate(s.else_, mapping, ranges)
        return S.IfThenElse(cond, instantiate(s.then, mapping, assume(ranges, cond)), els)
    if isinstance(s, S.SeqStmt):
        return S.seq([instantiate(x, mapping, ranges) for x in s.stmts])
    if isinstance(s, S.Evaluate):
        return S.Evaluate(fix(s.value))
    return s


def specialize(e: E.Expr, mapping: dict, ranges: dict) -> E.Expr:
    """E.substitute(e, mapping), keeping only the taken branch of each Select whose condition
    the substitution decides: an unrolled position index picks one branch of a long Select
    chain (a Winograd transform's 36), and simplifying the dead ones was most of the time."""
    if isinstance(e, E.Var):
        return mapping.get(e, e)
    if isinstance(e, E.Select):
        cond = simplify(specialize(e.cond, mapping, ranges), ranges)
        if isinstance(cond, E.IntImm):
            return specialize(e.t if cond.value else e.f, mapping, ranges)
        return E.Select(cond, specialize(e.t, mapping, ranges), specialize(e.f, mapping, ranges))
    kids = E.children(e)
    if not kids:
        return e
    new = [specialize(k, mapping, ranges) for k in kids]
    return E.rebuild(e, new) if E.any_changed(new, kids) else e


# ---------------------------------------------------------------- vector plans

def plan_vectors(s: S.Stmt, ranges: dict) -> S.Stmt:
    if isinstance(s, S.For):
        inner = {**ranges, s.var: loop_range(s.extent)}
        if s.kind == "vectorized":
            return _plan_loop(s, ranges)
        return S.For(s.var, s.extent, s.kind, plan_vectors(s.body, inner), dict(s.pragmas))
    return descend(s, plan_vectors, ranges)


def _plan_loop(loop: S.For, ranges: dict) -> S.Stmt:
    n = const_int(loop.extent)
    inner = {**ranges, loop.var: loop_range(loop.extent)}
    reason = _why_scalar(loop, n, inner)
    if reason:
        peeled = _peeled(loop, n, ranges, inner)
        if peeled is not None:
            return peeled
        body = plan_vectors(loop.body, inner)
        scalar = S.For(loop.var, loop.extent, "serial", body, dict(loop.pragmas))
        return ScalarLoop(scalar, reason, _all_stores_stride(loop.body, loop.var, inner))
    return _chunks(loop, n, ranges)


def _peeled(loop: S.For, n, ranges: dict, inner: dict):
    """A vectorized loop whose body is `if (cond) straight-line stores`, cond a conjunction
    of comparisons linear in the loop variable (the edge guard of a tile that does not
    divide its axis): `if (cond holds at the first and the last lane) vector blocks without
    the guard, else each lane under its own guard`. Linear conditions hold on an interval of
    lanes, so the two ends decide for all; only the tiles at the edge take the scalar path.
    A guard that does not depend on the lane is tested once around the vector code; one the
    simplifier proves true is dropped. None when the loop is not of that form."""
    body = loop.body
    if n is None or n < 2 or not isinstance(body, S.IfThenElse) or body.else_ is not None:
        return None
    simp = Simplifier(inner)
    strides = []
    for c in conjuncts(simplify(body.cond, inner)):
        if isinstance(c, E.IntImm) and c.value:  # a guard the simplifier proved true
            continue
        if not isinstance(c, E.Cmp) or not E.is_int(c.a.dtype):
            return None
        stride, _ = var_stride(simp.to_lin(E.binop("sub", c.a, c.b)), loop.var)
        if stride is None:
            return None
        strides.append(stride)
    bare = S.For(loop.var, loop.extent, loop.kind, body.then, dict(loop.pragmas))
    if _why_scalar(bare, n, inner):
        return None
    if not strides:
        return _chunks(bare, n, ranges)
    if not any(strides):  # the same for every lane (a row guard): the vector code or nothing
        return S.IfThenElse(body.cond, _chunks(bare, n, assume(ranges, body.cond)))
    m = _true_prefix(loop, body.cond, n, ranges)
    if m is not None:  # the edge tile split off its loop: its first m lanes, as vectors
        part = S.For(loop.var, E.IntImm(m, loop.var.dtype), loop.kind, body.then,
                     dict(loop.pragmas))
        return _chunks(part, m, ranges) if m else S.SeqStmt([])
    if n > MAX_UNROLL:
        return None
    ends = [E.substitute(body.cond, {loop.var: E.IntImm(v, loop.var.dtype)}) for v in (0, n - 1)]
    # the edge tile: each lane guarded on its own, unrolled, so that indices stay constant and
    # a register tile stays in registers (a scalar loop would index it at run time)
    lanes = S.seq([instantiate(body, {loop.var: E.IntImm(v, loop.var.dtype)}, ranges)
                   for v in range(n)])
    whole = simplify(E.binop("and", *ends), ranges)
    if isinstance(whole, E.IntImm):  # an edge tile split off its loop (partition_edges)
        return _chunks(bare, n, ranges) if whole.value else lanes
    # the vector code knows the guard holds (the last full tile's indices need no div / mod)
    return S.IfThenElse(whole, _chunks(bare, n, assume(ranges, whole)), lanes)


def _true_prefix(loop: S.For, cond: E.Expr, n: int, ranges: dict) -> int | None:
    """m when `cond` holds for lanes below m and fails from m on, whatever the values of the
    other variables (the edge tile after partition_edges: j < 1500 - 1472); else None."""
    lin = [x for c in conjuncts(cond) if isinstance(c, E.Cmp) and E.is_int(c.a.dtype)
           and c.op in ("lt", "le", "gt", "ge")
           for x in nonpositive(Simplifier(ranges), c)]
    if len(lin) != len(conjuncts(cond)):
        return None
    m = n
    for x in lin:
        below = holds_below(x, loop.var, ranges, fixed=True)
        if below is None:
            return None  # not increasing in the lane, or not fixed for this tile
        m = min(m, below)
    return m if m < n else None


def _why_scalar(loop: S.For, n, ranges) -> str:
    if n is None:
        return "extent is not a constant"
    for st in S.walk_stmts(loop.body):
        if not isinstance(st, (S.Store, S.SeqStmt, S.LetStmt)):
            return f"body holds a {type(st).__name__}, not straight-line stores"
        if isinstance(st, S.Store) and loop.var not in E.free_vars(simplify(st.index, ranges)):
            return f"store to {st.buffer.name} does not depend on {loop.var.name}"
    return ""


def _all_stores_stride(body: S.Stmt, var: E.Var, ranges: dict) -> bool:
    """True when every store index moves with `var` (so `#pragma GCC ivdep` is safe)."""
    stores = [st for st in S.walk_stmts(body) if isinstance(st, S.Store)]
    if not stores:
        return False
    for st in stores:
        stride, _ = var_stride(Simplifier(ranges).to_lin(st.index), var)
        if not stride:
            return False
    return True


def _chunks(loop: S.For, n: int, ranges: dict) -> S.Stmt:
    width = min(_LANES.get(), 1 << (n.bit_length() - 1)) if n >= 2 else 1
    count = n // width if n >= 2 else 0
    out = []
    if count > MAX_STATIC_CHUNKS:
        vo = E.Var(loop.var.name + "_o", loop.var.dtype)
        inner = {**ranges, vo: (0, count - 1)}
        block = _block(loop, vo * width, width, inner)
        out.append(S.For(vo, E.IntImm(count, vo.dtype), "serial", block, {}))
    else:
        out.extend(_block(loop, E.IntImm(c * width, loop.var.dtype), width, ranges)
                   for c in range(count))
    offset, rest = count * width, n - count * width
    while rest > 0:
        w = 1 << (rest.bit_length() - 1)
        if w == 1:
            out.append(instantiate(loop.body, {loop.var: E.IntImm(offset, loop.var.dtype)},
                                   ranges))
        else:
            out.append(_block(loop, E.IntImm(offset, loop.var.dtype), w, ranges))
        offset, rest = offset + w, rest - w
    return S.seq(out) if out else S.SeqStmt([])


def _block(loop: S.For, offset: E.Expr, width: int, ranges: dict) -> VecBlock:
    lane = E.Var(loop.var.name + "_lane", loop.var.dtype)
    inner = {**ranges, lane: (0, width - 1)}
    body = instantiate(loop.body, {loop.var: offset + lane}, inner)
    return VecBlock(lane, width, body, loop.var)


def holds_below(lin, var: E.Var, ranges: dict, fixed: bool = False) -> int | None:
    """For `lin <= 0`: the m such that it holds for every var below m, whatever values its
    other terms take in `ranges` (with `fixed`, they must have one value). None when it
    does not fail only from some var on (decreasing in var, not linear in it, or other terms
    of unknown range)."""
    stride, rest = var_stride(lin, var)
    r = Simplifier(ranges).lin_range(rest)
    if stride is None or stride < 0 or r is None or (fixed and r[0] != r[1]):
        return None
    if stride == 0:
        return BIG if r[1] <= 0 else 0
    return max(0, (-r[1]) // stride + 1)


# ---------------------------------------------------------------- lane combines

@dataclass(eq=False, repr=False)
class LaneCombine:
    """`for v < width: dst = dst + src[base + v]` (a row's SIMD partial sums folded into one
    value): printed as one vector load and a halving tree (c_lib "hreduce")."""

    store: S.Store
    op: str
    src: S.Buffer
    base: E.Expr
    width: int


def lane_combine(loop: S.For, ranges: dict) -> LaneCombine | None:
    """The LaneCombine a serial loop is, or None. Float sums only: the tree reassociates, as
    the rfactor that made the partials already did (a max tree measured slower than GCC's
    code for the serial NaN-keeping chain, so max / min stay loops)."""
    n = const_int(loop.extent)
    st = loop.body
    if loop.kind not in ("serial", "unrolled") or n not in (4, 8, 16, 32, 64) or \
            not isinstance(st, S.Store) or st.buffer.dtype not in ("float32", "float64"):
        return None
    val = st.value
    if not (isinstance(val, E.BinOp) and val.op == "add"):
        return None
    acc, src = val.a, val.b
    if not (isinstance(acc, S.BufferLoad) and acc.buffer is st.buffer and
            isinstance(src, S.BufferLoad) and src.buffer.dtype == st.buffer.dtype):
        return None
    inner = {**ranges, loop.var: loop_range(loop.extent)}
    sim = Simplifier(inner)
    if loop.var in E.free_vars(sim.simplify(st.index)) or not _same(sim, acc.index, st.index):
        return None
    if var_stride(sim.to_lin(src.index), loop.var)[0] != 1:
        return None
    base = simplify(E.substitute(src.index, {loop.var: E.IntImm(0, loop.var.dtype)}), ranges)
    return LaneCombine(st, val.op, src.buffer, base, n)


def _same(sim, a: E.Expr, b: E.Expr) -> bool:
    d = sim.to_lin(E.binop("sub", a, b))
    return not d.terms and d.const == 0
