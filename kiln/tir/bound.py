"""Bound inference helpers: the region of a tensor that a loop nest reads.

In: index expressions over loop variables, the set of loops that still vary (those inside
an attach point) and the ranges of all loops. Out: per dimension a symbolic start (in the
loops that stay fixed) and a constant extent, so a producer computed at that point can
allocate a constant-size buffer and loop over exactly what its consumers need.
"""

from __future__ import annotations

from ..te import expr as E
from ..te.expr import BinOp, IntImm, Var
from .simplify import Simplifier, simplify


def _has(e: E.Expr, ranging: dict) -> bool:
    return any(isinstance(n, Var) and n in ranging for n in E.walk(e))


def bound(e: E.Expr, ranging: dict, ranges: dict):
    """(lo, hi) expressions of e as the `ranging` vars ({Var: (lo, hi)}) vary."""
    if not _has(e, ranging):
        return e, e
    if isinstance(e, Var):
        lo, hi = ranging[e]
        return IntImm(lo), IntImm(hi)
    if isinstance(e, BinOp):
        if e.op in ("add", "sub"):
            la, ha = bound(e.a, ranging, ranges)
            lb, hb = bound(e.b, ranging, ranges)
            if e.op == "add":
                return la + lb, ha + hb
            return la - hb, ha - lb
        if e.op == "mul":
            c = _const(e.b) if _const(e.b) is not None else _const(e.a)
            x = e.a if _const(e.b) is not None else e.b
            if c is not None:
                lo, hi = bound(x, ranging, ranges)
                return (lo * c, hi * c) if c >= 0 else (hi * c, lo * c)
        if e.op == "floordiv" and _const(e.b) and _const(e.b) > 0:
            lo, hi = bound(e.a, ranging, ranges)
            return E.binop("floordiv", lo, e.b), E.binop("floordiv", hi, e.b)
        if e.op == "floormod" and _const(e.b) and _const(e.b) > 0:
            c = _const(e.b)
            lo, hi = bound(e.a, ranging, ranges)
            d = _const(simplify(hi - lo, ranges))
            q = _const(simplify(E.binop("floordiv", hi, c) - E.binop("floordiv", lo, c), ranges))
            if d is not None and q == 0:
                return E.binop("floormod", lo, c), E.binop("floormod", hi, c)
            return IntImm(0), IntImm(c - 1)
        if e.op in ("min", "max"):
            la, ha = bound(e.a, ranging, ranges)
            lb, hb = bound(e.b, ranging, ranges)
            return E.binop(e.op, la, lb), E.binop(e.op, ha, hb)
    r = Simplifier({**ranges, **ranging}).range_of(e)
    if r is None:
        return None
    return IntImm(r[0]), IntImm(r[1])


def _const(e):
    return e.value if isinstance(e, IntImm) else None


def region_of(indices_list, shape, ranging: dict, ranges: dict):
    """Union over accesses of per-dimension (min_expr, extent), clamped to the shape."""
    out = []
    for d, dim in enumerate(shape):
        lo = hi = None
        for idx in indices_list:
            b = bound(idx[d], ranging, ranges)
            if b is None:
                lo = hi = None
                break
            blo, bhi = simplify(b[0], ranges), simplify(b[1], ranges)
            lo = blo if lo is None else _union(lo, blo, "min", ranges)
            hi = bhi if hi is None else _union(hi, bhi, "max", ranges)
        out.append(_clamp(lo, hi, dim, ranges))
    return out


def _union(a, b, op: str, ranges: dict):
    d = _const(simplify(a - b, ranges))
    if d is not None:
        return (b if d > 0 else a) if op == "min" else (a if d > 0 else b)
    return simplify(E.binop(op, a, b), ranges)


def _clamp(lo, hi, dim: int, ranges: dict):
    if lo is None:
        return IntImm(0), dim
    ext = _const(simplify(hi - lo + 1, ranges))
    if ext is None:
        r = Simplifier(ranges).range_of(hi - lo)
        ext = None if r is None else r[1] + 1
    if ext is None or ext >= dim:
        return IntImm(0), dim
    lo_c = _const(lo)
    if lo_c is not None:
        lo_c = max(lo_c, 0)
        return IntImm(lo_c), max(1, min(ext, dim - lo_c))
    return lo, max(ext, 1)
