"""Named passes over the loop IR, run in order at the end of lowering.

- unroll_auto: under a loop carrying the pragma auto_unroll_max_step=N, a serial loop whose
  nest runs at most N steps (vectorized loops count as one step) becomes an unrolled loop, so
  the C printer expands it and small register tiles get constant indices.
"""

from __future__ import annotations

from ..te.expr import IntImm
from . import stmt as S


def _steps(s: S.Stmt) -> int | None:
    """Iterations of the nest under s (vectorized loops count once); None if not constant."""
    if isinstance(s, S.For):
        if not isinstance(s.extent, IntImm):
            return None
        inner = _steps(s.body)
        if inner is None:
            return None
        return inner if s.kind == "vectorized" else s.extent.value * inner
    kids = S.stmt_children(s)
    total = 0
    for k in kids:
        n = _steps(k)
        if n is None:
            return None
        total += n
    return max(total, 1)


def unroll_auto(s: S.Stmt, budget: int = 0) -> S.Stmt:
    if isinstance(s, S.For):
        b = max(budget, int(s.pragmas.get("auto_unroll_max_step", 0)))
        body = unroll_auto(s.body, b)
        kind = s.kind
        if kind == "serial" and b > 0:
            n = _steps(S.For(s.var, s.extent, kind, body))
            if n is not None and n <= b:
                kind = "unrolled"
        return S.For(s.var, s.extent, kind, body, dict(s.pragmas), s.thread_tag)
    if isinstance(s, S.SeqStmt):
        return S.SeqStmt([unroll_auto(x, budget) for x in s.stmts])
    if isinstance(s, S.Allocate):
        return S.Allocate(s.buffer, unroll_auto(s.body, budget))
    if isinstance(s, S.IfThenElse):
        return S.IfThenElse(s.cond, unroll_auto(s.then, budget),
                            None if s.else_ is None else unroll_auto(s.else_, budget))
    if isinstance(s, S.LetStmt):
        return S.LetStmt(s.var, s.value, unroll_auto(s.body, budget))
    return s


PASSES = [("unroll_auto", unroll_auto)]


def run_passes(func: S.PrimFunc) -> S.PrimFunc:
    body = func.body
    for _, p in PASSES:
        body = p(body)
    return S.PrimFunc(func.name, func.params, body, func.scalar_params, dict(func.attrs))
