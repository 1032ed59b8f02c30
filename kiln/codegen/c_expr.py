"""Scalar C expressions from kiln expressions, plus the naming and range context they need.

In: an expression of the loop IR (te nodes + BufferLoad) and a `Scope` (C names of variables
and buffers, integer ranges of the loop variables in scope, the helper library).
Out: a C expression string with only the parentheses C's precedence needs.
Why: shared by the statement printer and the vector printer (invariant operands, lane-by-lane
fallbacks); ranges let `x // 8` print as `x / 8` when x is provably non-negative.
"""

from __future__ import annotations

import math
import re

import numpy as np

from ..errors import CodegenError
from ..te import expr as E
from ..tir import stmt as S
from ..tir.simplify import Simplifier
from .c_bf16 import scalar_cast
from .c_lib import SUFFIX, CLib, ctype

BIG = 2 ** 31 - 1
_C_KEYWORDS = set("""auto break case char const continue default do double else enum extern float
for goto if inline int long register restrict return short signed sizeof static struct switch
typedef union unsigned void volatile while _Bool _Complex _Imaginary bool true false NULL
main args number repeat errno exp log sqrt tanh erf floor ceil round trunc sin cos log2 exp2
fabs abs pow rint nearbyint expf logf sqrtf tanhf erff floorf ceilf truncf sinf cosf powf fabsf
free malloc aligned_alloc memcpy clock_gettime timespec INFINITY NAN""".split())
_SYM = {"add": "+", "sub": "-", "mul": "*", "div": "/", "and": "&&", "or": "||", "lt": "<",
        "le": "<=", "gt": ">", "ge": ">=", "eq": "==", "ne": "!="}
# C precedence, higher binds tighter.
_PREC = {"mul": 12, "div": 12, "mod": 12, "add": 11, "sub": 11, "lt": 9, "le": 9, "gt": 9,
         "ge": 9, "eq": 8, "ne": 8, "and": 4, "or": 3}
ATOM, UNARY, TERNARY = 20, 14, 2
_LIBM = {"exp": "exp", "log": "log", "sqrt": "sqrt", "tanh": "tanh", "erf": "erf",
         "floor": "floor", "ceil": "ceil", "round": "nearbyint", "trunc": "trunc", "sin": "sin",
         "cos": "cos", "log2": "log2", "exp2": "exp2", "abs": "fabs", "pow": "pow"}


class Scope:
    """C names for Vars and Buffers, loop-variable ranges, and the helper library."""

    def __init__(self, lib: CLib):
        self.lib = lib
        self.used: set = set()
        self.names: dict = {}
        self.ranges: dict = {}
        self.on_scalar_access = None  # callback(buffer) for scalar accesses
        self.l2_loads: set = set()  # uids of buffers read with __ldcg (CUDA: L2, not L1)

    def fresh(self, hint: str) -> str:
        base = re.sub(r"\W", "_", hint) or "v"
        if base[0].isdigit():
            base = "_" + base
        if base in _C_KEYWORDS or base.startswith("kiln_"):
            base = base + "_"
        name, k = base, 1
        while name in self.used:
            name, k = f"{base}_{k}", k + 1
        self.used.add(name)
        return name

    def name(self, obj) -> str:
        """The C name of a Var or Buffer (allocated on first use, unique per function)."""
        key = obj.uid if isinstance(obj, E.Var) else ("buf", obj.uid)
        if key not in self.names:
            self.names[key] = self.fresh(obj.name)
        return self.names[key]

    def simplifier(self) -> Simplifier:
        return Simplifier(self.ranges)

    def nonneg(self, e: E.Expr) -> bool:
        r = self.simplifier().range_of(e)
        return r is not None and r[0] >= 0


def literal(value, dtype: str) -> str:
    """A C literal of `value` typed as `dtype`."""
    if dtype in ("float32", "float64"):
        f = "f" if dtype == "float32" else ""
        v = float(value)
        if math.isnan(v):
            return "NAN" if f else "(double)NAN"
        if math.isinf(v):
            base = "INFINITY" if f else "(double)INFINITY"
            return base if v > 0 else "-" + base
        text = str(np.float32(v)) if f else repr(v)  # shortest text that round-trips
        if "e" not in text and "." not in text:
            text += ".0"
        return text + f
    v = int(value)
    if dtype == "int64":
        return f"INT64_C({v})"
    if dtype == "int32" and v == -2 ** 31:
        return "(-2147483647 - 1)"
    return str(v)


class ScalarPrinter:
    """Prints expressions as scalar C; `expr(e)` -> text."""

    def __init__(self, scope: Scope):
        self.scope = scope

    def expr(self, e: E.Expr) -> str:
        return self.p(e)[0]

    def wrap(self, e: E.Expr, prec: int, right: bool = False) -> str:
        text, p = self.p(e)
        return f"({text})" if p < prec or (right and p == prec) else text

    def p(self, e: E.Expr):
        """(text, precedence) of e."""
        if isinstance(e, E.Var):
            return self.scope.name(e), ATOM
        if isinstance(e, (E.IntImm, E.FloatImm)):
            if e.dtype == "bool":
                return str(int(e.value)), ATOM
            text = literal(e.value, e.dtype)
            return text, UNARY if text.startswith("-") else ATOM
        if isinstance(e, S.BufferLoad):
            if self.scope.on_scalar_access is not None:
                self.scope.on_scalar_access(e.buffer)
            if e.buffer.uid in self.scope.l2_loads:
                return f"__ldcg({self.scope.name(e.buffer)} + ({self.expr(e.index)}))", ATOM
            return f"{self.scope.name(e.buffer)}[{self.expr(e.index)}]", ATOM
        if isinstance(e, E.BinOp):
            return self.binop(e)
        if isinstance(e, E.Cmp):
            prec = _PREC[e.op]
            return f"{self.wrap(e.a, prec)} {_SYM[e.op]} {self.wrap(e.b, prec, True)}", prec
        if isinstance(e, E.Not):
            return f"!{self.wrap(e.a, UNARY)}", UNARY
        if isinstance(e, E.Select):
            c, t, f = self.wrap(e.cond, 3), self.wrap(e.t, 3), self.wrap(e.f, TERNARY)
            return f"{c} ? {t} : {f}", TERNARY
        if isinstance(e, E.Cast):
            return self.cast(e)
        if isinstance(e, E.Call):
            return self.call(e), ATOM
        if isinstance(e, S.AccessPtr):  # a tensorize intrinsic's pointer argument
            if self.scope.on_scalar_access is not None:
                self.scope.on_scalar_access(e.buffer)
            ptr = f"({ctype(e.buffer.dtype)}*){self.scope.name(e.buffer)}"
            return f"{ptr} + {self.wrap(e.offset, 11, True)}", 11
        if isinstance(e, S.CallExtern):
            return f"{e.name}({', '.join(self.expr(a) for a in e.args)})", ATOM
        raise CodegenError(f"the C backend cannot print {type(e).__name__} node {e!r}")

    def binop(self, e: E.BinOp):
        op, dt = e.op, e.dtype
        if op in ("min", "max"):
            fn = self.scope.lib.need(op, dt)
            return f"{fn}({self.expr(e.a)}, {self.expr(e.b)})", ATOM
        if op in ("floordiv", "floormod"):
            return self.divmod(e)
        prec = _PREC[op]
        right = not (op in ("add", "mul") and dt in ("int32", "int64"))
        return f"{self.wrap(e.a, prec)} {_SYM[op]} {self.wrap(e.b, prec, right)}", prec

    def divmod(self, e: E.BinOp):
        if E.is_float(e.dtype):
            fn = self.scope.lib.need("floormod", e.dtype)  # float floordiv arrives as floor(a/b)
            return f"{fn}({self.expr(e.a)}, {self.expr(e.b)})", ATOM
        plain = isinstance(e.b, E.IntImm) and e.b.value > 0 and self.scope.nonneg(e.a)
        if plain:
            sym = "/" if e.op == "floordiv" else "%"
            return f"{self.wrap(e.a, 12)} {sym} {self.wrap(e.b, 12, True)}", 12
        fn = self.scope.lib.need(e.op, e.dtype)
        return f"{fn}({self.expr(e.a)}, {self.expr(e.b)})", ATOM

    def cast(self, e: E.Cast):
        if e.dtype == "bool":
            return f"{self.wrap(e.value, 8)} != 0", 8
        if "bfloat16" in (e.dtype, e.value.dtype):
            return scalar_cast(self.scope.lib, e.dtype, e.value.dtype, self.expr(e.value)), ATOM
        return f"({ctype(e.dtype)}){self.wrap(e.value, UNARY)}", UNARY

    def call(self, e: E.Call) -> str:
        args = [self.expr(a) for a in e.args]
        dt = e.dtype
        if e.name == "abs" and dt in ("int32", "int64", "int8"):
            return f"{self.scope.lib.need('iabs', dt)}({args[0]})"
        if dt not in ("float32", "float64"):
            raise CodegenError(f"intrinsic {e.name} on dtype {dt} is not supported by the C "
                               "backend")
        f = "f" if dt == "float32" else ""
        one = "1.0" + f
        if e.name == "sigmoid":
            return f"({one} / ({one} + exp{f}(-({args[0]}))))"
        if e.name == "rsqrt":
            return f"({one} / sqrt{f}({args[0]}))"
        if e.name not in _LIBM:
            raise CodegenError(f"unknown intrinsic {e.name!r}; the C backend knows "
                               f"{', '.join(sorted(_LIBM))}, sigmoid, rsqrt")
        return f"{_LIBM[e.name]}{f}({', '.join(args)})"


def suffix(dtype: str) -> str:
    return SUFFIX[dtype]
