"""Expression nodes of the tensor-expression language, shared by te and the loop IR.

In: Python numbers and other nodes through operator overloading. Out: immutable trees of
Var / IntImm / FloatImm / BinOp / Cmp / Not / Select / Cast / Call / TensorLoad / Reduce.
Nodes hash by identity; `==` builds a comparison node whose truth value is identity, so
nodes can still be dict keys (as in TVM).
"""

from __future__ import annotations

import itertools

from ..errors import DTypeError, ExprError

DTYPES = ("float32", "float64", "float16", "bfloat16", "int8", "int32", "int64", "uint8", "bool")
_ids = itertools.count()


def check_dtype(dtype: str) -> str:
    dtype = str(dtype)
    if dtype not in DTYPES:
        raise DTypeError(f"unknown dtype {dtype!r}; kiln knows {', '.join(DTYPES)}")
    return dtype


def is_float(dtype: str) -> bool:
    return dtype.startswith("float") or dtype == "bfloat16"


def is_int(dtype: str) -> bool:
    return dtype.startswith("int") or dtype.startswith("uint")


def _bits(dtype: str) -> int:
    return {"bool": 1, "int8": 8, "uint8": 8, "float16": 16, "bfloat16": 16, "int32": 32,
            "float32": 32, "int64": 64, "float64": 64}[dtype]


class Expr:
    """Base of all expression nodes."""

    __slots__ = ("dtype", "__weakref__")

    def _bin(self, op, other, rev=False):
        a, b = (other, self) if rev else (self, other)
        return binop(op, a, b)

    def __add__(self, o): return self._bin("add", o)
    def __radd__(self, o): return self._bin("add", o, True)
    def __sub__(self, o): return self._bin("sub", o)
    def __rsub__(self, o): return self._bin("sub", o, True)
    def __mul__(self, o): return self._bin("mul", o)
    def __rmul__(self, o): return self._bin("mul", o, True)
    def __truediv__(self, o): return self._bin("div", o)
    def __rtruediv__(self, o): return self._bin("div", o, True)
    def __floordiv__(self, o): return self._bin("floordiv", o)
    def __rfloordiv__(self, o): return self._bin("floordiv", o, True)
    def __mod__(self, o): return self._bin("floormod", o)
    def __rmod__(self, o): return self._bin("floormod", o, True)
    def __pow__(self, o): return Call("pow", [self, convert(o, self.dtype)], self.dtype)
    def __neg__(self): return binop("sub", zero_like(self), self)
    def __lt__(self, o): return cmp("lt", self, o)
    def __le__(self, o): return cmp("le", self, o)
    def __gt__(self, o): return cmp("gt", self, o)
    def __ge__(self, o): return cmp("ge", self, o)
    def __eq__(self, o): return cmp("eq", self, o)
    def __ne__(self, o): return cmp("ne", self, o)
    def __and__(self, o): return binop("and", self, o)
    def __rand__(self, o): return binop("and", o, self)
    def __or__(self, o): return binop("or", self, o)
    def __ror__(self, o): return binop("or", o, self)
    def __invert__(self): return Not(self)
    __hash__ = object.__hash__

    def __bool__(self):
        raise ExprError(f"cannot use the symbolic expression {self} as a Python bool; "
                        "use te.if_then_else / te.all / te.any instead")

    def astype(self, dtype: str) -> Expr:
        return cast(dtype, self)

    def equal(self, o) -> Expr:
        """self == o as an expression (TVM's PrimExpr.equal)."""
        return cmp("eq", self, o)

    def __repr__(self) -> str:
        from .printer import expr_str
        return expr_str(self)


class Var(Expr):
    """A scalar variable: a loop index, an axis or a symbolic size (te.var)."""

    __slots__ = ("name", "uid")

    def __init__(self, name: str = "v", dtype: str = "int32"):
        self.name, self.dtype, self.uid = name, check_dtype(dtype), next(_ids)


class IterVar(Var):
    """An axis of a compute: a Var with a domain [0, extent) and a kind (spatial / reduce)."""

    __slots__ = ("extent", "kind")

    def __init__(self, extent, name: str, kind: str = "spatial"):
        super().__init__(name, "int32")
        self.extent = convert(extent, "int32")
        self.kind = kind

    @property
    def var(self) -> IterVar:  # TVM code reads `axis.var`
        return self

    @property
    def dom(self):
        return (0, self.extent)


class IntImm(Expr):
    __slots__ = ("value",)

    def __init__(self, value: int, dtype: str = "int32"):
        self.value, self.dtype = int(value), dtype

    def __int__(self):
        return self.value

    def __index__(self):
        return self.value


class FloatImm(Expr):
    __slots__ = ("value",)

    def __init__(self, value: float, dtype: str = "float32"):
        self.value, self.dtype = float(value), dtype

    def __float__(self):
        return self.value


class BinOp(Expr):
    """Arithmetic: add sub mul div floordiv floormod min max, logical and / or."""

    __slots__ = ("op", "a", "b")
    OPS = ("add", "sub", "mul", "div", "floordiv", "floormod", "min", "max", "and", "or")

    def __init__(self, op: str, a: Expr, b: Expr, dtype: str):
        self.op, self.a, self.b, self.dtype = op, a, b, dtype


class Cmp(Expr):
    __slots__ = ("op", "a", "b")

    def __init__(self, op: str, a: Expr, b: Expr):
        self.op, self.a, self.b, self.dtype = op, a, b, "bool"

    def __bool__(self):
        # Lets nodes be dict keys and `x in list` work, as TVM's EqualOp does.
        if self.op == "eq":
            return self.a is self.b
        if self.op == "ne":
            return self.a is not self.b
        return Expr.__bool__(self)


class Not(Expr):
    __slots__ = ("a",)

    def __init__(self, a):
        self.a, self.dtype = as_bool(convert(a)), "bool"


class Select(Expr):
    """cond ? t : f. Only the chosen branch is evaluated (reads may be out of range otherwise)."""

    __slots__ = ("cond", "t", "f")

    def __init__(self, cond, t, f):
        t, f = _unify(t, f)
        self.cond, self.t, self.f, self.dtype = as_bool(convert(cond)), t, f, t.dtype


class Cast(Expr):
    __slots__ = ("value",)

    def __init__(self, dtype: str, value: Expr):
        self.dtype, self.value = check_dtype(dtype), value


class Call(Expr):
    """A pure intrinsic (exp, sqrt, pow, ...) by name."""

    __slots__ = ("name", "args")

    def __init__(self, name: str, args, dtype: str):
        self.name, self.args, self.dtype = name, tuple(args), dtype


class TensorLoad(Expr):
    """Read of a te Tensor at an index tuple (TVM's ProducerLoad)."""

    __slots__ = ("tensor", "indices")

    def __init__(self, tensor, indices):
        self.tensor, self.indices, self.dtype = tensor, tuple(indices), tensor.dtype


class Reduce(Expr):
    """combiner over `axis` of `source`, only where `condition` holds; `init` is the start value.

    A tuple reduction (argmax over (index, value) pairs) has several `sources`, reduced
    together; its node for output k has value_index k (TVM's Reduce.value_index) and
    `source` is sources[k]."""

    __slots__ = ("combiner", "source", "axis", "condition", "init", "sources", "value_index")

    def __init__(self, combiner, source, axis, condition=None, init=None,
                 value_index: int = 0):
        srcs = tuple(source) if isinstance(source, (tuple, list)) else (source,)
        self.combiner, self.sources, self.value_index = combiner, srcs, value_index
        self.source, self.axis = srcs[value_index], tuple(axis)
        self.condition = None if condition is None else as_bool(convert(condition))
        self.init = None if init is None else convert(init, self.source.dtype)
        self.dtype = self.source.dtype

    def identity(self) -> Expr:
        if self.init is not None:
            return self.init
        return self.combiner.identities([s.dtype for s in self.sources])[self.value_index]

    def rebuilt(self, sources, axis, condition, init=None) -> Reduce:
        """The same reduction (same combiner and component) over new parts."""
        src = tuple(sources) if len(self.sources) > 1 else sources[0]
        return Reduce(self.combiner, src, axis, condition,
                      self.init if init is None else init, self.value_index)


# ---------------------------------------------------------------- construction helpers

def convert(x, dtype: str | None = None) -> Expr:
    """Python value -> Expr; `dtype` picks the type of a bare Python number."""
    if isinstance(x, Expr):
        return x
    if isinstance(x, bool):
        return IntImm(int(x), "bool")
    if isinstance(x, int):
        if dtype is not None and is_float(dtype):
            return FloatImm(float(x), dtype)
        return IntImm(x, dtype if dtype is not None and is_int(dtype) else "int32")
    if isinstance(x, float):
        return FloatImm(x, dtype if dtype is not None and is_float(dtype) else "float32")
    if hasattr(x, "dtype") and hasattr(x, "item"):  # numpy scalar
        return convert(x.item(), dtype or str(x.dtype))
    raise ExprError(f"cannot use {type(x).__name__} {x!r} in a tensor expression")


def const(value, dtype: str = "int32") -> Expr:
    check_dtype(dtype)
    return FloatImm(value, dtype) if is_float(dtype) else IntImm(value, dtype)


def zero_like(e: Expr) -> Expr:
    return const(0, e.dtype)


def cast(dtype: str, value) -> Expr:
    value = convert(value)
    check_dtype(dtype)
    return value if value.dtype == dtype else Cast(dtype, value)


def as_bool(e: Expr) -> Expr:
    return e if e.dtype == "bool" else cmp("ne", e, 0)


def _unify(a, b):
    """Bring two operands to one dtype (TVM-like promotion: float wins, then wider wins)."""
    if not isinstance(a, Expr) and not isinstance(b, Expr):
        a = convert(a)
    if not isinstance(a, Expr):
        a = convert(a, b.dtype)
    if not isinstance(b, Expr):
        b = convert(b, a.dtype)
    if a.dtype == b.dtype:
        return a, b
    fa, fb = is_float(a.dtype), is_float(b.dtype)
    if fa != fb:
        target = a.dtype if fa else b.dtype
    elif a.dtype == "bool" or b.dtype == "bool":
        target = b.dtype if a.dtype == "bool" else a.dtype
    else:
        target = a.dtype if _bits(a.dtype) >= _bits(b.dtype) else b.dtype
    return cast(target, a), cast(target, b)


def binop(op: str, a, b) -> Expr:
    a, b = _unify(a, b)
    if op in ("and", "or"):
        return BinOp(op, as_bool(a), as_bool(b), "bool")
    if op == "floordiv" and is_float(a.dtype):
        return Call("floor", [BinOp("div", a, b, a.dtype)], a.dtype)
    if op == "div" and is_int(a.dtype):
        op = "floordiv"  # integer `/` is floor division, as for indices
    return BinOp(op, a, b, a.dtype)


def floordiv(a, b) -> Expr:
    """a // b rounded toward minus infinity (TVM's floordiv / indexdiv)."""
    return binop("floordiv", a, b)


def floormod(a, b) -> Expr:
    """a - floordiv(a, b) * b (TVM's floormod / indexmod)."""
    return binop("floormod", a, b)


indexdiv, indexmod = floordiv, floormod


def cmp(op: str, a, b) -> Expr:
    a, b = _unify(a, b)
    return Cmp(op, a, b)


def var(name: str = "v", dtype: str = "int32") -> Var:
    """A symbolic scalar (TVM's te.var)."""
    return Var(name, dtype)


size_var = var


def if_then_else(cond, t, f) -> Expr:
    return Select(cond, t, f)


def select(cond, t, f) -> Expr:
    return Select(cond, t, f)


def all(*conds) -> Expr:  # noqa: A001 - TVM name
    conds = [as_bool(convert(c)) for c in conds]
    out = conds[0]
    for c in conds[1:]:
        out = BinOp("and", out, c, "bool")
    return out


def any(*conds) -> Expr:  # noqa: A001 - TVM name
    conds = [as_bool(convert(c)) for c in conds]
    out = conds[0]
    for c in conds[1:]:
        out = BinOp("or", out, c, "bool")
    return out


def min_value(dtype: str) -> Expr:
    import numpy as np
    check_dtype(dtype)
    if is_float(dtype):
        return FloatImm(-float("inf"), dtype)
    return IntImm(0 if dtype == "bool" else int(np.iinfo(dtype).min), dtype)


def max_value(dtype: str) -> Expr:
    import numpy as np
    check_dtype(dtype)
    if is_float(dtype):
        return FloatImm(float("inf"), dtype)
    return IntImm(1 if dtype == "bool" else int(np.iinfo(dtype).max), dtype)


def min(a, b) -> Expr:  # noqa: A001 - TVM name
    return binop("min", a, b)


def max(a, b) -> Expr:  # noqa: A001 - TVM name
    return binop("max", a, b)


# ---------------------------------------------------------------- traversal

def children(e: Expr) -> tuple:
    if isinstance(e, (BinOp, Cmp)):
        return (e.a, e.b)
    if isinstance(e, Not):
        return (e.a,)
    if isinstance(e, Select):
        return (e.cond, e.t, e.f)
    if isinstance(e, Cast):
        return (e.value,)
    if isinstance(e, Call):
        return e.args
    if isinstance(e, TensorLoad):
        return e.indices
    if isinstance(e, Reduce):
        extra = () if e.condition is None else (e.condition,)
        return e.sources + extra
    if hasattr(e, "expr_children"):
        return e.expr_children()
    return ()


def walk(e: Expr):
    """Yield every node of `e` (pre-order)."""
    stack = [e]
    while stack:
        n = stack.pop()
        yield n
        stack.extend(reversed(children(n)))


def rebuild(e: Expr, new_children) -> Expr:
    """A copy of `e` with its children replaced (same order as children())."""
    c = list(new_children)
    if isinstance(e, BinOp):
        if c[0].dtype == c[1].dtype:
            return BinOp(e.op, c[0], c[1], "bool" if e.op in ("and", "or") else c[0].dtype)
        return binop(e.op, c[0], c[1])
    if isinstance(e, Cmp):
        return Cmp(e.op, c[0], c[1])
    if isinstance(e, Not):
        return Not(c[0])
    if isinstance(e, Select):
        return Select(c[0], c[1], c[2])
    if isinstance(e, Cast):
        return Cast(e.dtype, c[0])
    if isinstance(e, Call):
        return Call(e.name, c, e.dtype)
    if isinstance(e, TensorLoad):
        return TensorLoad(e.tensor, c)
    if isinstance(e, Reduce):
        n = len(e.sources)
        return e.rebuilt(c[:n], e.axis, c[n] if len(c) > n else None)
    if hasattr(e, "expr_rebuild"):
        return e.expr_rebuild(c)
    return e


def transform(e: Expr, fn) -> Expr:
    """Post-order rewrite: fn(node with rewritten children) -> node or None (keep)."""
    kids = children(e)
    if kids:
        new = [transform(k, fn) for k in kids]
        if any_changed(new, kids):
            e = rebuild(e, new)
    out = fn(e)
    return e if out is None else out


def any_changed(new, old) -> bool:
    return len(new) != len(old) or not builtins_all(a is b for a, b in zip(new, old))


def builtins_all(it) -> bool:
    for x in it:
        if not x:
            return False
    return True


def substitute(e: Expr, mapping: dict) -> Expr:
    """Replace Vars (by identity) with expressions."""
    if not mapping:
        return e

    def fn(n):
        if isinstance(n, Var):
            return mapping.get(n)
        return None
    return transform(e, fn)


def free_vars(e: Expr) -> set:
    return {n for n in walk(e) if isinstance(n, Var)}
