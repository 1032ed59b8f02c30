"""Index arithmetic: constant folding, affine canonical form, div/mod with known ranges.

In: an expression and (optionally) the ranges of its variables, {Var: (lo, hi)} inclusive.
Out: an equal expression, with integer parts in canonical affine form (sum of coef*atom +
const), div/mod removed where the ranges allow, comparisons decided where provable.
Why: lowering produces indices such as ((f // 8) * 8 + f % 8) * 64 + i; the C we print and
the features the cost model sees should see `f * 64 + i`.
"""

from __future__ import annotations

import math

from ..te import expr as E
from ..te.expr import BinOp, Call, Cast, Cmp, FloatImm, IntImm, Not, Select, Var


def skey(e: E.Expr):
    """A hashable structural key (vars by identity)."""
    if isinstance(e, Var):
        return ("v", e.uid)
    if isinstance(e, IntImm):
        return ("i", e.value, e.dtype)
    if isinstance(e, FloatImm):
        return ("f", e.value, e.dtype)
    head = (type(e).__name__, getattr(e, "op", None), getattr(e, "name", None), e.dtype)
    if hasattr(e, "buffer"):
        head += (e.buffer.uid,)
    if hasattr(e, "tensor"):
        head += (id(e.tensor),)
    return head + tuple(skey(c) for c in E.children(e))


class Lin:
    """sum(coef * atom) + const over integer atoms; atoms keyed structurally."""

    __slots__ = ("terms", "const", "dtype")

    def __init__(self, terms=None, const=0, dtype="int32"):
        self.terms = terms if terms is not None else {}  # key -> [atom, coef]
        self.const, self.dtype = const, dtype

    def copy(self) -> Lin:
        return Lin({k: [a, c] for k, (a, c) in self.terms.items()}, self.const, self.dtype)

    def add(self, other: Lin, scale: int = 1) -> Lin:
        out = self.copy()
        for k, (a, c) in other.terms.items():
            if k in out.terms:
                out.terms[k][1] += c * scale
                if out.terms[k][1] == 0:
                    del out.terms[k]
            elif c:
                out.terms[k] = [a, c * scale]
        out.const += other.const * scale
        return out

    def scale(self, s: int) -> Lin:
        if s == 0:
            return Lin(dtype=self.dtype)
        return Lin({k: [a, c * s] for k, (a, c) in self.terms.items()}, self.const * s, self.dtype)

    def is_const(self) -> bool:
        return not self.terms


def _atom(e: E.Expr) -> Lin:
    return Lin({skey(e): [e, 1]}, 0, e.dtype)


def var_stride(lin: Lin, var: E.Var, varies=None) -> tuple:
    """(coefficient of `var` in a linear index, the index without that term); the coefficient
    is None when another term still varies with var (`varies(atom)`, default: mentions it)."""
    key = ("v", var.uid)
    rest = Lin({k: v for k, v in lin.terms.items() if k != key}, lin.const, lin.dtype)
    varies = varies or (lambda a: var in E.free_vars(a))
    if any(varies(a) for a, _ in rest.terms.values()):
        return None, rest
    return (lin.terms[key][1] if key in lin.terms else 0), rest


class Simplifier:
    def __init__(self, ranges=None):
        self.ranges = dict(ranges or {})

    # ------------------------------------------------------------ ranges
    def range_of(self, e: E.Expr):
        """Inclusive integer (lo, hi) of e, or None when unknown."""
        return self.lin_range(self.to_lin(e)) if E.is_int(e.dtype) else None

    def lin_range(self, lin: Lin):
        lo = hi = lin.const
        for a, c in lin.terms.values():
            r = self.atom_range(a)
            if r is None:
                return None
            lo += min(c * r[0], c * r[1])
            hi += max(c * r[0], c * r[1])
        return lo, hi

    def atom_range(self, a: E.Expr):
        if isinstance(a, Var):
            return self.ranges.get(a)
        if isinstance(a, BinOp) and isinstance(a.b, IntImm) and a.b.value > 0:
            r = self.range_of(a.a)
            c = a.b.value
            if a.op == "floordiv":
                return None if r is None else (r[0] // c, r[1] // c)
            if a.op == "floormod":
                if r is not None and r[0] // c == r[1] // c:
                    return (r[0] % c, r[1] % c)
                return (0, c - 1)
        if isinstance(a, BinOp) and a.op in ("min", "max"):
            ra, rb = self.range_of(a.a), self.range_of(a.b)
            if ra is None or rb is None:
                return None
            f = min if a.op == "min" else max
            return (f(ra[0], rb[0]), f(ra[1], rb[1]))
        if isinstance(a, Select):
            rt, rf = self.range_of(a.t), self.range_of(a.f)
            if rt is None or rf is None:
                return None
            return (min(rt[0], rf[0]), max(rt[1], rf[1]))
        if isinstance(a, IntImm):
            return (a.value, a.value)
        if isinstance(a, Cast) and a.value.dtype == "bool":
            return (0, 1)
        return None

    # ------------------------------------------------------------ integer part
    def to_lin(self, e: E.Expr) -> Lin:
        if isinstance(e, IntImm):
            return Lin(const=e.value, dtype=e.dtype)
        if isinstance(e, BinOp) and e.op in ("add", "sub"):
            a, b = self.to_lin(e.a), self.to_lin(e.b)
            return a.add(b, 1 if e.op == "add" else -1)
        if isinstance(e, BinOp) and e.op == "mul":
            a, b = self.to_lin(e.a), self.to_lin(e.b)
            if b.is_const():
                return a.scale(b.const)
            if a.is_const():
                return b.scale(a.const)
            return _atom(BinOp("mul", self.from_lin(a), self.from_lin(b), e.dtype))
        if isinstance(e, BinOp) and e.op in ("floordiv", "floormod"):
            return self.divmod(e)
        if isinstance(e, BinOp) and e.op in ("min", "max"):
            return self.minmax(e)
        if isinstance(e, Var):
            r = self.ranges.get(e)
            return Lin(const=r[0], dtype=e.dtype) if r is not None and r[0] == r[1] else _atom(e)
        if not E.children(e):
            return _atom(e)
        return _atom(self.generic(e))

    def divmod(self, e: BinOp) -> Lin:
        num = self.to_lin(e.a)
        den = self.to_lin(e.b)
        if not den.is_const() or den.const <= 0:
            return _atom(BinOp(e.op, self.from_lin(num), self.from_lin(den), e.dtype))
        c = den.const
        if num.is_const():
            v = num.const // c if e.op == "floordiv" else num.const % c
            return Lin(const=v, dtype=e.dtype)
        if c == 1:
            return num if e.op == "floordiv" else Lin(dtype=e.dtype)
        q, r = Lin(dtype=e.dtype), Lin(dtype=e.dtype)
        for k, (a, coef) in num.terms.items():
            qc, rc = divmod(coef, c)
            if qc:
                q.terms[k] = [a, qc]
            if rc:
                r.terms[k] = [a, rc]
        qc, r.const = divmod(num.const, c)
        q.const = qc
        rr = self.lin_range(r)
        if rr is not None and rr[0] // c == rr[1] // c:
            k = rr[0] // c
            if e.op == "floordiv":
                q.const += k
                return q
            r.const -= k * c
            return r
        split = self.split_small(r, c)
        if split is not None:  # (g*x + s) // c == x // (c/g) and the mod likewise, 0 <= s < g
            g, big, small = split
            part = BinOp(e.op, self.from_lin(big), IntImm(c // g, e.dtype), e.dtype)
            if e.op == "floordiv":
                return q.add(self.to_lin(part))
            return self.to_lin(part).scale(g).add(small)
        if e.op == "floordiv":
            inner = self.nested_div(r, c, e.dtype)
            return q.add(inner)
        return _atom(BinOp("floormod", self.from_lin(r), IntImm(c, e.dtype), e.dtype))

    def split_small(self, r: Lin, c: int):
        """(g, big / g, small) with r = g * big + small, g | c and 0 <= small < g, or None."""
        coefs = sorted({coef for _, coef in r.terms.values() if 1 < coef < c and c % coef == 0},
                       reverse=True)
        for g in coefs:
            big, small = Lin(dtype=r.dtype), Lin(const=r.const, dtype=r.dtype)
            for k, (a, coef) in r.terms.items():
                (big if coef % g == 0 else small).terms[k] = [a, coef // g if coef % g == 0
                                                              else coef]
            rng = self.lin_range(small)
            if big.terms and rng is not None and rng[0] >= 0 and rng[1] < g:
                return g, big, small
        return None

    def nested_div(self, r: Lin, c: int, dtype: str) -> Lin:
        # (x // a) // b == x // (a * b) for positive a, b
        if len(r.terms) == 1 and r.const == 0:
            (a, coef), = r.terms.values()
            if coef == 1 and isinstance(a, BinOp) and a.op == "floordiv" \
                    and isinstance(a.b, IntImm) and a.b.value > 0:
                return self.to_lin(BinOp("floordiv", a.a, IntImm(a.b.value * c, dtype), dtype))
        return _atom(BinOp("floordiv", self.from_lin(r), IntImm(c, dtype), dtype))

    def minmax(self, e: BinOp) -> Lin:
        a, b = self.to_lin(e.a), self.to_lin(e.b)
        d = self.lin_range(a.add(b, -1))
        if d is not None:
            a_small = d[1] <= 0
            a_big = d[0] >= 0
            if (e.op == "min" and a_small) or (e.op == "max" and a_big):
                return a
            if (e.op == "min" and a_big) or (e.op == "max" and a_small):
                return b
        return _atom(BinOp(e.op, self.from_lin(a), self.from_lin(b), e.dtype))

    def from_lin(self, lin: Lin) -> E.Expr:
        dt = lin.dtype
        self._merge_divmod(lin)
        out = None
        for a, c in lin.terms.values():
            if c == 0:
                continue
            t = a if c in (1, -1) else BinOp("mul", a, IntImm(abs(c), dt), dt)
            if out is None:
                out = t if c > 0 else BinOp("sub", IntImm(0, dt), t, dt)
            else:
                out = BinOp("add" if c > 0 else "sub", out, t, dt)
        if out is None:
            return IntImm(lin.const, dt)
        if lin.const:
            out = BinOp("add" if lin.const > 0 else "sub", out, IntImm(abs(lin.const), dt), dt)
        return out

    def _merge_divmod(self, lin: Lin) -> None:
        """(x // c) * (c*k) + (x % c) * k  ->  x * k."""
        mods = {}
        for key, (a, _) in lin.terms.items():
            if isinstance(a, BinOp) and a.op == "floormod" and isinstance(a.b, IntImm):
                mods[(skey(a.a), a.b.value)] = key
        for key, (a, coef) in list(lin.terms.items()):
            if not (isinstance(a, BinOp) and a.op == "floordiv" and isinstance(a.b, IntImm)):
                continue
            mk = mods.get((skey(a.a), a.b.value))
            if mk is None or mk not in lin.terms or key not in lin.terms:
                continue
            k = lin.terms[mk][1]
            if coef != k * a.b.value:
                continue
            del lin.terms[key]
            del lin.terms[mk]
            x = self.to_lin(a.a).scale(k)
            merged = lin.add(x)
            lin.terms, lin.const = merged.terms, merged.const

    # ------------------------------------------------------------ everything else
    def generic(self, e: E.Expr) -> E.Expr:
        kids = E.children(e)
        new = [self.simplify(k) for k in kids]
        if E.any_changed(new, kids):
            e = E.rebuild(e, new)
        return self.fold(e)

    def fold(self, e: E.Expr) -> E.Expr:
        if isinstance(e, Cmp):
            return self.fold_cmp(e)
        if isinstance(e, Select):
            if isinstance(e.cond, IntImm):
                return e.t if e.cond.value else e.f
            return e
        if isinstance(e, Not) and isinstance(e.a, IntImm):
            return IntImm(0 if e.a.value else 1, "bool")
        if isinstance(e, BinOp) and e.op in ("and", "or"):
            return self.fold_logic(e)
        if isinstance(e, BinOp) and E.is_float(e.dtype):
            return self.fold_float(e)
        if isinstance(e, Cast):
            v = e.value
            if isinstance(v, (IntImm, FloatImm)):
                return E.const(v.value if E.is_float(e.dtype) else int(v.value), e.dtype)
        if isinstance(e, Call) and all(isinstance(a, FloatImm) for a in e.args):
            return self.fold_call(e)
        return e

    def fold_cmp(self, e: Cmp) -> E.Expr:
        if E.is_int(e.a.dtype):
            d = self.lin_range(self.to_lin(e.a).add(self.to_lin(e.b), -1))
            if d is not None:
                lo, hi = d
                res = {"lt": (hi < 0, lo >= 0), "le": (hi <= 0, lo > 0),
                       "gt": (lo > 0, hi <= 0), "ge": (lo >= 0, hi < 0),
                       "eq": (lo == hi == 0, lo > 0 or hi < 0),
                       "ne": (lo > 0 or hi < 0, lo == hi == 0)}[e.op]
                if res[0]:
                    return IntImm(1, "bool")
                if res[1]:
                    return IntImm(0, "bool")
        if isinstance(e.a, FloatImm) and isinstance(e.b, FloatImm):
            a, b = e.a.value, e.b.value
            v = {"lt": a < b, "le": a <= b, "gt": a > b, "ge": a >= b, "eq": a == b,
                 "ne": a != b}[e.op]
            return IntImm(int(v), "bool")
        return e

    def fold_logic(self, e: BinOp) -> E.Expr:
        a, b = e.a, e.b
        for x, y in ((a, b), (b, a)):
            if isinstance(x, IntImm):
                if e.op == "and":
                    return y if x.value else IntImm(0, "bool")
                return IntImm(1, "bool") if x.value else y
        return e

    def fold_float(self, e: BinOp) -> E.Expr:
        a, b = e.a, e.b
        if isinstance(a, FloatImm) and isinstance(b, FloatImm):
            f = {"add": lambda x, y: x + y, "sub": lambda x, y: x - y, "mul": lambda x, y: x * y,
                 "div": lambda x, y: x / y if y else None, "min": min, "max": max}.get(e.op)
            v = f(a.value, b.value) if f else None
            if v is not None:
                return FloatImm(v, e.dtype)
        if e.op == "mul":
            for x, y in ((a, b), (b, a)):
                if isinstance(x, FloatImm) and x.value == 1.0:
                    return y
        if e.op in ("add", "sub") and isinstance(b, FloatImm) and b.value == 0.0:
            return a
        if e.op == "add" and isinstance(a, FloatImm) and a.value == 0.0:
            return b
        return e

    def fold_call(self, e: Call) -> E.Expr:
        fns = {"exp": math.exp, "sqrt": math.sqrt, "log": math.log, "tanh": math.tanh,
               "erf": math.erf, "floor": math.floor, "ceil": math.ceil, "abs": abs}
        f = fns.get(e.name)
        if f is None or len(e.args) != 1:
            return e
        try:
            return FloatImm(float(f(e.args[0].value)), e.dtype)
        except (ValueError, OverflowError):
            return e

    def simplify(self, e: E.Expr) -> E.Expr:
        if E.is_int(e.dtype) and not isinstance(e, (Cmp, Not)) and \
                not (isinstance(e, BinOp) and e.op in ("and", "or")):
            return self.from_lin(self.to_lin(e))
        return self.generic(e)


def simplify(e: E.Expr, ranges: dict | None = None) -> E.Expr:
    """Simplify `e`; `ranges` maps Vars to inclusive (lo, hi) integer bounds."""
    return Simplifier(ranges).simplify(E.convert(e))


def const_value(e: E.Expr):
    """The Python value of a constant expression, else None."""
    e = simplify(e)
    return e.value if isinstance(e, (IntImm, FloatImm)) else None


def assume(ranges: dict, cond: E.Expr) -> dict:
    """`ranges` narrowed by what `cond` (a conjunction of integer comparisons) says about
    each variable in it: the code under `if (j0 * 32 + 31 < 1500)` may simplify its indices
    knowing j0 <= 45. A conjunct that is not a linear comparison narrows nothing."""
    out = dict(ranges)
    for c in conjuncts(cond):
        if isinstance(c, Cmp) and E.is_int(c.a.dtype) and c.op != "ne":
            for lin in nonpositive(Simplifier(out), c):
                _narrow(out, lin)
    return out


def conjuncts(e: E.Expr) -> list:
    """The terms of a conjunction `a && b && ...` (e itself when it is not one)."""
    if isinstance(e, BinOp) and e.op == "and":
        return conjuncts(e.a) + conjuncts(e.b)
    return [e]


def nonpositive(sim: Simplifier, c: Cmp) -> list:
    """Linear forms that `c` makes <= 0."""
    d = sim.to_lin(c.a).add(sim.to_lin(c.b), -1)  # a - b
    one = Lin(const=1, dtype=d.dtype)
    return {"lt": [d.add(one)], "le": [d], "gt": [d.scale(-1).add(one)],
            "ge": [d.scale(-1)], "eq": [d, d.scale(-1)]}[c.op]


def _narrow(ranges: dict, lin: Lin) -> None:
    """Given lin <= 0, tighten the range of each plain variable in it from the others'."""
    sim = Simplifier(ranges)
    for key, (atom, coef) in lin.terms.items():
        if not isinstance(atom, Var) or atom not in ranges:
            continue
        rest = Lin({k: v for k, v in lin.terms.items() if k != key}, lin.const, lin.dtype)
        r = sim.lin_range(rest)
        if r is None:
            continue
        lo, hi = ranges[atom]
        if coef > 0:  # coef * v <= -rest <= -r[0]
            hi = min(hi, (-r[0]) // coef)
        else:  # |coef| * v >= rest >= r[0]
            lo = max(lo, -((-r[0]) // -coef))
        if lo <= hi:  # an impossible condition guards dead code: leave its ranges alone
            ranges[atom] = (lo, hi)
