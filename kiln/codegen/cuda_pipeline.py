"""Software pipelining of a GPU kernel's cooperative shared-memory fetches (the CUDA
printer's last IR rewrite before printing, also run by the emulated GPU).

In: a kernel body (tir) whose serial reduction loops fetch operand panels from global into
shared memory between two barriers. Out: the same computation with each step's global loads
issued a step early into registers (`pipeline_fetches`), and, when every panel of the loop is
double-buffered (Stage.double_buffer), two copies per panel and one barrier per step.
Why: a separate seam from printing: the emulator and the cost features apply the same
rewrite to IR, so what they check and count is what the printer emits.
"""

from __future__ import annotations

from ..te import expr as E
from ..tir import gpu
from ..tir import stmt as S
from ..tir.simplify import simplify
from .c_prep import const_int

PREFETCH_REGS = 64  # most values per thread held in flight by pipeline_fetches


def pipeline_fetches(body: S.Stmt, max_regs: int = PREFETCH_REGS) -> S.Stmt:
    """Register-staged software pipelining of cooperative shared-memory fetches.

    A serial loop whose body is `barrier; fetches (global -> shared copies); barrier;
    compute` waits a whole global-memory latency every iteration (the stores to shared need
    the loads' values right away). It becomes: the loads of step 0 into per-thread registers
    before the loop; per step `barrier; registers -> shared; if there is a next step, load
    its panels into registers; barrier; compute`, so the loads of step k + 1 fly while step
    k computes. The register copies are fully unrolled (they stay in registers) and keep the
    fetch's guards; vectorized loads stay vectorized (now aligned on both ends: float4 global
    loads even when padded shared rows are not 16-byte aligned). Loops whose fetches read
    memory the kernel writes, or need more than `max_regs` values per thread, are left as
    they are."""
    written = {s.buffer.uid for s in S.walk_stmts(body) if isinstance(s, S.Store)}
    return _pipe(body, written, max_regs)


def _pipe(s: S.Stmt, written: set, budget: int) -> S.Stmt:
    if isinstance(s, S.For):
        if s.kind == "serial":
            new = _pipeline_loop(s, written, budget)
            if new is not None:
                return new
        return S.For(s.var, s.extent, s.kind, _pipe(s.body, written, budget), dict(s.pragmas),
                     s.thread_tag)
    if isinstance(s, S.Allocate):
        return S.Allocate(s.buffer, _pipe(s.body, written, budget))
    if isinstance(s, S.LetStmt):
        return S.LetStmt(s.var, s.value, _pipe(s.body, written, budget))
    if isinstance(s, S.IfThenElse):
        return S.IfThenElse(s.cond, _pipe(s.then, written, budget),
                            None if s.else_ is None else _pipe(s.else_, written, budget))
    if isinstance(s, S.SeqStmt):
        return S.SeqStmt([_pipe(x, written, budget) for x in s.stmts])
    return s


def _fetch_nest(s: S.Stmt, written: set, in_loop: set):
    """(loops and guards outside the store, the store) of a global -> shared copy, or None."""
    nest = []
    while not isinstance(s, S.Store):
        if isinstance(s, S.For) and (s.kind == "thread" or const_int(s.extent) is not None):
            nest.append(s)
            s = s.body
        elif isinstance(s, S.IfThenElse) and s.else_ is None:
            nest.append(s)
            s = s.then
        else:
            return None
    exprs = [s.value] + [x.cond for x in nest if isinstance(x, S.IfThenElse)]
    loads = [n for e in exprs for n in E.walk(e) if isinstance(n, S.BufferLoad)]
    if s.buffer.scope != "shared" or not all(_stable(n.buffer, s.buffer, written, in_loop)
                                             for n in loads):
        return None
    return nest, s


def _stable(buf: S.Buffer, dst: S.Buffer, written: set, in_loop: set) -> bool:
    """Whether a fetch may read `buf` a step early: a global buffer the kernel never writes,
    or a shared one the loop does not (a row prologue's statistics, computed before it)."""
    if buf is dst:
        return False
    if buf.scope == "global":
        return buf.uid not in written
    return buf.scope == "shared" and buf.uid not in in_loop


def _fetched(value: E.Expr) -> E.Expr:
    """What a fetch's registers hold: its one global load when the rest of the value reads
    shared memory (computed when stored, so the load's latency stays hidden), else all of
    it."""
    glob = [n for n in E.walk(value) if isinstance(n, S.BufferLoad) and n.buffer.scope == "global"]
    return glob[0] if len(glob) == 1 and not _under_select(value, glob[0]) else value


def _under_select(value: E.Expr, load: E.Expr) -> bool:
    """Whether `load` is a branch of a Select in `value` (a padded read: data[...] only where
    the index lands inside data). Such a load must stay behind its condition, so the
    registers hold the whole select: loading it alone would read out of bounds."""
    return any(isinstance(n, E.Select) and any(x is load for b in (n.t, n.f) for x in E.walk(b))
               for n in E.walk(value))


def _filled(st: S.Store, fetched: E.Expr, pf: S.Buffer, lin: E.Expr) -> E.Expr:
    """The value a fetch stores, its fetched part read from the registers."""
    return E.transform(st.value, lambda n: S.BufferLoad(pf, lin) if n is fetched else None)


def _rebuild_nest(nest: list, leaf: S.Stmt, mapping: dict, unroll: bool) -> S.Stmt:
    for x in reversed(nest):
        if isinstance(x, S.IfThenElse):
            leaf = S.IfThenElse(E.substitute(x.cond, mapping), leaf)
        else:
            kind = "unrolled" if unroll and x.kind == "serial" else x.kind
            leaf = S.For(x.var, x.extent, kind, leaf, dict(x.pragmas), x.thread_tag)
    return leaf


def _pipeline_loop(loop: S.For, written: set, budget: int):
    n = const_int(loop.extent)
    body, shared = loop.body, []
    while isinstance(body, S.Allocate) and body.buffer.scope == "shared":
        shared.append(body.buffer)
        body = body.body
    if n is None or n < 2 or not isinstance(body, S.SeqStmt):
        return None
    stmts = body.stmts
    ends = [i for i, x in enumerate(stmts) if isinstance(x, S.Barrier)]
    if len(ends) < 2 or ends[0] != 0 or ends[1] < 2 or ends[1] == len(stmts) - 1:
        return None
    in_loop = {x.buffer.uid for x in S.walk_stmts(body) if isinstance(x, S.Store)}
    fetches = [_fetch_nest(x, written, in_loop) for x in stmts[1:ends[1]]]
    if any(f is None for f in fetches):
        return None
    plans = []
    for nest, store in fetches:
        loops = [x for x in nest if isinstance(x, S.For) and x.kind != "thread"]
        size, lin = 1, E.IntImm(0)
        for x in reversed(loops):
            lin = E.binop("add", lin, E.binop("mul", x.var, E.IntImm(size)))
            size *= const_int(x.extent)
        budget -= size
        pf = S.Buffer(f"{store.buffer.name}_pf", (size,), store.buffer.dtype, "local")
        pf.prefetch_loops = [x.var for x in loops]  # printed with __ldcg (KernelPrinter)
        plans.append((nest, store, pf, simplify(lin), _fetched(store.value)))
    if budget < 0:
        return None

    def loads(k):
        return [_rebuild_nest(nest, S.Store(pf, lin, E.substitute(got, {loop.var: k})),
                              {loop.var: k}, True) for nest, st, pf, lin, got in plans]
    if {b.uid for b in shared} == {p[1].buffer.uid for p in plans} and \
            all(b.double_buffer for b in shared):
        return _double_buffered(loop, n, shared, plans, stmts[ends[1] + 1:])
    stores = [_rebuild_nest(nest, S.Store(st.buffer, st.index, _filled(st, got, pf, lin)), {},
                            True) for nest, st, pf, lin, got in plans]
    # the last step loads its own panels again: no branch, so ptxas issues the loads early
    nxt = E.binop("add", loop.var, E.IntImm(1))
    new = S.seq([S.Barrier(), *stores, S.IfThenElse(E.cmp("lt", nxt, E.IntImm(n)),
                                                     S.seq(loads(nxt))),
                 S.Barrier(), *stmts[ends[1] + 1:]])
    for b in reversed(shared):
        new = S.Allocate(b, new)
    out = S.seq([*loads(E.IntImm(0)), S.For(loop.var, loop.extent, loop.kind, new,
                                            dict(loop.pragmas), loop.thread_tag)])
    for p in reversed(plans):
        out = S.Allocate(p[2], out)
    return out


def _double_buffered(loop: S.For, n: int, shared: list, plans: list, compute: list) -> S.Stmt:
    """pipeline_fetches for panels that are all double-buffered (Stage.double_buffer): two
    copies of each, step k reads copy k % 2 while its threads fill copy (k + 1) % 2 from the
    registers loaded during step k - 1, then load step k + 2's panels into the registers; one
    barrier per step. Before the loop: step 0's panels into copy 0, step 1's into registers.
    The loop runs two steps per iteration, so each step's copy is a constant offset (k % 2
    in every address cost ~4% more instructions in ptxas's output); a step that allocates
    keeps one step per iteration (two copies of its declarations would clash)."""
    k = loop.var
    twins = {b.uid: (S.Buffer(b.name, (2 * gpu.copy_stride(b),), b.dtype, "shared"),
                     gpu.copy_stride(b)) for b in shared}

    def copy_of(stmt: S.Stmt, step: E.Expr) -> S.Stmt:
        """stmt at k = step, its shared accesses moved into that step's copy."""
        parity = simplify(E.binop("floormod", step, E.IntImm(2)))

        def moved(index: E.Expr, uid: int) -> E.Expr:
            return simplify(E.binop("add", index, E.binop("mul", parity,
                                                          E.IntImm(twins[uid][1]))))

        def load(x):
            if isinstance(x, S.BufferLoad) and x.buffer.uid in twins:
                return S.BufferLoad(twins[x.buffer.uid][0], moved(x.index, x.buffer.uid))
            return None
        out = S.map_exprs(stmt, lambda e: E.transform(E.substitute(e, {k: step}), load))
        for st in S.walk_stmts(out):  # map_exprs made new Stores: safe to retarget in place
            if isinstance(st, S.Store) and st.buffer.uid in twins:
                st.buffer, st.index = twins[st.buffer.uid][0], moved(st.index, st.buffer.uid)
        return out

    def loads(step: E.Expr) -> list:
        return [_rebuild_nest(nest, S.Store(pf, lin, E.substitute(got, {k: step})),
                              {k: step}, True) for nest, st, pf, lin, got in plans]

    def stores(step: E.Expr) -> list:
        return [copy_of(_rebuild_nest(nest, S.Store(st.buffer, st.index,
                                                    _filled(st, got, pf, lin)), {}, True), step)
                for nest, st, pf, lin, got in plans]

    def step(kv: E.Expr) -> list:
        nxt, after = simplify(E.binop("add", kv, E.IntImm(1))), \
            simplify(E.binop("add", kv, E.IntImm(2)))
        return [*(copy_of(c, kv) for c in compute),
                S.IfThenElse(E.cmp("lt", nxt, E.IntImm(n)), S.seq([
                    *stores(nxt),
                    S.IfThenElse(E.cmp("lt", after, E.IntImm(n)), S.seq(loads(after)))])),
                S.Barrier()]
    head = [*loads(E.IntImm(0)), *stores(E.IntImm(0)), *loads(E.IntImm(1)), S.Barrier()]
    if any(isinstance(x, S.Allocate) for c in compute for x in S.walk_stmts(c)):
        body = [S.For(k, loop.extent, loop.kind, S.seq(step(k)), dict(loop.pragmas),
                      loop.thread_tag)]
    else:
        j = E.var(f"{k.name}_2", k.dtype)
        pair = [E.binop("add", E.binop("mul", j, E.IntImm(2)), E.IntImm(c)) for c in (0, 1)]
        body = [S.For(j, E.IntImm(n // 2), loop.kind, S.seq(step(pair[0]) + step(pair[1])),
                      dict(loop.pragmas), loop.thread_tag)]
        if n % 2:
            body += step(E.IntImm(n - 1))
    out = S.seq(head + body)
    for twin, _ in reversed(list(twins.values())):
        out = S.Allocate(twin, out)
    for p in reversed(plans):
        out = S.Allocate(p[2], out)
    return out


__all__ = ["PREFETCH_REGS", "pipeline_fetches"]
