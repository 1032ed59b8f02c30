"""Operation counts of one expression, for the per-store features.

In: an expression of the loop IR (a stored value, an index, a guard condition). Out: counts
added into a fixed-size list, one slot per OP_FIELDS entry, and the BufferLoads met, in
left-to-right order. Why: the cost model needs how much arithmetic of each kind a store does
per execution; one iterative walk gives every count at once.
"""

from __future__ import annotations

from ...te import expr as E
from ...tir.stmt import BufferLoad

OP_FIELDS = [
    ("f_addsub", "log2(1+float add/sub executed)"),
    ("f_mul", "log2(1+float mul executed)"),
    ("f_div", "log2(1+float div/mod executed)"),
    ("f_minmax", "log2(1+float min/max executed)"),
    ("f_cmp", "log2(1+float comparisons executed)"),
    ("f_math", "log2(1+transcendental calls executed: exp erf tanh sqrt log pow ...)"),
    ("f_other", "log2(1+cheap float calls executed: floor ceil abs round ...)"),
    ("i_addsub", "log2(1+integer add/sub executed, mostly index arithmetic)"),
    ("i_mul", "log2(1+integer mul executed)"),
    ("i_divmod", "log2(1+integer floordiv/floormod executed)"),
    ("i_minmax", "log2(1+integer min/max executed)"),
    ("i_cmp", "log2(1+integer comparisons executed, guards included)"),
    ("bool_op", "log2(1+logical and/or/not executed)"),
    ("select", "log2(1+selects executed)"),
    ("cast", "log2(1+casts executed)"),
    ("fma", "log2(1+float mul-add pairs executed (FMA candidates))"),
    ("flops", "log2(1+all float operations executed)"),
]
OP_SLOTS = [n for n, _ in OP_FIELDS]
_I = {n: i for i, n in enumerate(OP_SLOTS)}
_FLOAT_SLOTS = [_I[n] for n in ("f_addsub", "f_mul", "f_div", "f_minmax", "f_cmp", "f_math",
                                "f_other")]
_FLOPS = _I["flops"]
_FMA = _I["fma"]
_FLOAT_DTYPES = frozenset(("float16", "bfloat16", "float32", "float64"))
_CHEAP_CALLS = frozenset(("floor", "ceil", "abs", "fabs", "round", "trunc", "nearbyint"))

_BIN = {}
for _op, _f, _i in (("add", "f_addsub", "i_addsub"), ("sub", "f_addsub", "i_addsub"),
                    ("mul", "f_mul", "i_mul"), ("div", "f_div", "i_divmod"),
                    ("floordiv", "f_div", "i_divmod"), ("floormod", "f_div", "i_divmod"),
                    ("min", "f_minmax", "i_minmax"), ("max", "f_minmax", "i_minmax"),
                    ("and", "bool_op", "bool_op"), ("or", "bool_op", "bool_op")):
    _BIN[(_op, True)], _BIN[(_op, False)] = _I[_f], _I[_i]


def _is_fmul(e) -> bool:
    return type(e) is E.BinOp and e.op == "mul" and e.dtype in _FLOAT_DTYPES


def count_ops(expr: E.Expr, counts: list, loads: list) -> None:
    """Add the operation counts of `expr` into `counts`; append its BufferLoads to `loads`."""
    stack = [expr]
    pop, push = stack.pop, stack.append
    while stack:
        n = pop()
        t = type(n)
        if t is E.BinOp:
            fl = n.dtype in _FLOAT_DTYPES
            counts[_BIN[(n.op, fl)]] += 1
            if fl and n.op in ("add", "sub") and (_is_fmul(n.a) or _is_fmul(n.b)):
                counts[_FMA] += 1
            push(n.b)
            push(n.a)
        elif t is BufferLoad:
            loads.append(n)
            push(n.index)
        elif t is E.Cmp:
            counts[_I["f_cmp"] if n.a.dtype in _FLOAT_DTYPES else _I["i_cmp"]] += 1
            push(n.b)
            push(n.a)
        elif t is E.Select:
            counts[_I["select"]] += 1
            stack.extend((n.f, n.t, n.cond))
        elif t is E.Call:
            cheap = n.name in _CHEAP_CALLS
            counts[_I["f_other"] if cheap else _I["f_math"]] += 1
            stack.extend(reversed(n.args))
        elif t is E.Cast:
            counts[_I["cast"]] += 1
            push(n.value)
        elif t is E.Not:
            counts[_I["bool_op"]] += 1
            push(n.a)
        elif t not in (E.Var, E.IntImm, E.FloatImm):
            stack.extend(reversed(E.children(n)))
    counts[_FLOPS] = sum(counts[i] for i in _FLOAT_SLOTS)


def flops_of(counts: list) -> int:
    """Float operations per execution, from a filled `counts` list."""
    return counts[_FLOPS]
