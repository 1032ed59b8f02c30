"""Tensor-core products of a GPU kernel: per-thread product nests become warp `MmaTile`s.

In: a kernel body (tir) whose k loop of 8 carries tir.gpu.MMA_PRAGMA, laid out by
`schedule_matmul(mma=1)`: inside the loop bound to threadIdx.x (lane = 4 g + t of each warp,
the thread at row g, column t of the warp's 8 x 4 grid), the nest
`for k in 8: for i in tm: for j in tn: acc[..] = acc[..] + A[..] * B[..]` where A's index
does not depend on j and B's not on i.
Out: `mma_tiles(body)`: each such nest replaced by one `S.MmaTile` (fm = tm / 2 by fn = tn / 2
m16n8k8 products) whose fragment expressions are the nest's own loads with the loop
variables (and, for B, the thread's column) substituted as the fragment layouts need.
Why: the schedule keeps ordinary per-thread semantics (each thread's tm x tn tile is a
permutation of the rows and columns of its fragments: rows g tm + 2 f + h are product f's
rows g + 8 h, columns t tn + f + e fn its columns 2 t + e; so the B fragment's 8 columns,
one per g, sit fn rows apart in the B panel, where a row pad can spread them over the banks
as the A fragment's rows, tm apart, are), so bound inference, the
loop-IR interpreter and the CPU-side checks need nothing new; the CUDA printer and the
emulated GPU (which runs MmaTile as a warp would) apply this rewrite after
pipeline_fetches, so what the emulator checks is what the printer emits.
"""

from __future__ import annotations

from ..errors import CodegenError
from ..te import expr as E
from ..tir import stmt as S
from ..tir.gpu import MMA_PRAGMA
from ..tir.simplify import simplify
from .c_prep import const_int


def mma_tiles(body: S.Stmt) -> S.Stmt:
    """`body` with every MMA_PRAGMA nest replaced by its MmaTile (CodegenError when a
    marked nest is not of the form the rewrite knows)."""
    return _rewrite(body, None)


def _rewrite(s: S.Stmt, lane) -> S.Stmt:
    if isinstance(s, S.For):
        if s.thread_tag == "threadIdx.x":
            lane = s.var
        if s.pragmas.get(MMA_PRAGMA):
            return _tile(s, lane)
        return S.For(s.var, s.extent, s.kind, _rewrite(s.body, lane), dict(s.pragmas),
                     s.thread_tag)
    if isinstance(s, S.Allocate):
        return S.Allocate(s.buffer, _rewrite(s.body, lane))
    if isinstance(s, S.LetStmt):
        return S.LetStmt(s.var, s.value, _rewrite(s.body, lane))
    if isinstance(s, S.IfThenElse):
        return S.IfThenElse(s.cond, _rewrite(s.then, lane),
                            None if s.else_ is None else _rewrite(s.else_, lane))
    if isinstance(s, S.SeqStmt):
        return S.SeqStmt([_rewrite(x, lane) for x in s.stmts])
    if isinstance(s, S.LastBlock):
        return S.LastBlock(s.index, s.count, s.slots, _rewrite(s.body, lane), s.l2)
    return s


def _nest(loop: S.For) -> tuple:
    """(k var, i loop, j loop, the accumulating Store, A load, B load) of a marked nest."""
    where = f"the tensor-core nest at loop {loop.var.name}"
    i_loop = loop.body
    j_loop = getattr(i_loop, "body", None)
    store = getattr(j_loop, "body", None)
    if not (isinstance(i_loop, S.For) and isinstance(j_loop, S.For) and
            isinstance(store, S.Store)) or const_int(loop.extent) != 8:
        raise CodegenError(f"{where}: expected `for k in 8: for i: for j: acc += a * b`")
    tm, tn = const_int(i_loop.extent), const_int(j_loop.extent)
    v = store.value
    ok = (isinstance(v, E.BinOp) and v.op == "add" and isinstance(v.a, S.BufferLoad) and
          v.a.buffer is store.buffer and isinstance(v.b, E.BinOp) and v.b.op == "mul")
    if not ok or not tm or not tn or tm % 2 or tn % 2 or store.buffer.scope != "local":
        raise CodegenError(f"{where}: expected acc = acc + a * b over an even tile, into a "
                           "per-thread buffer")
    i, j = i_loop.var, j_loop.var
    x, y = v.b.a, v.b.b
    if j in E.free_vars(x) or i in E.free_vars(y):
        x, y = y, x
    if j in E.free_vars(x) or i in E.free_vars(y):
        raise CodegenError(f"{where}: each operand must depend on only one of the tile's "
                           "row and column")
    return loop.var, i_loop, j_loop, store, x, y


def _tile(loop: S.For, lane) -> S.MmaTile:
    if lane is None:
        raise CodegenError(f"the tensor-core nest at loop {loop.var.name} is not inside a "
                           "loop bound to threadIdx.x")
    k, i_loop, j_loop, store, a, b = _nest(loop)
    i, j = i_loop.var, j_loop.var
    fm, fn = const_int(i_loop.extent) // 2, const_int(j_loop.extent) // 2
    t, g = lane % 4, (lane // 4) % 8
    # B's column n = g belongs to the thread at column g / 2 of the grid (its element
    # 2 f + g % 2): that thread's lane, with this lane's row and warp bits
    col_lane = lane // 4 * 4 + g // 2

    def sub(e, mapping):
        return simplify(E.substitute(e, mapping))
    a_frags = [[sub(a, {i: E.IntImm(2 * f + h, i.dtype), k: t + 4 * q})
                for q in (0, 1) for h in (0, 1)] for f in range(fm)]
    b_frags = [[sub(b, {lane: col_lane, j: f + g % 2 * fn, k: t + 4 * q}) for q in (0, 1)]
               for f in range(fn)]
    c_index = [[[sub(store.index, {i: E.IntImm(2 * fa + h, i.dtype),
                                   j: E.IntImm(fb + e * fn, j.dtype)})
                 for h in (0, 1) for e in (0, 1)] for fb in range(fn)] for fa in range(fm)]
    return S.MmaTile(store.buffer, a_frags, b_frags, c_index)


__all__ = ["mma_tiles"]
