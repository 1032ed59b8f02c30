"""Math intrinsics as Call nodes. Float-only ones check the dtype at construction."""

from __future__ import annotations

from ..errors import DTypeError
from .expr import Call, Expr, FloatImm, IntImm, binop, cast, convert, is_float

_FLOAT_ONLY = ("exp", "log", "sqrt", "rsqrt", "tanh", "erf", "sigmoid", "floor", "ceil",
               "round", "sin", "cos", "log2", "exp2", "trunc")


def _unary(name: str):
    def f(x) -> Expr:
        x = convert(x)
        if name in _FLOAT_ONLY and not is_float(x.dtype):
            raise DTypeError(f"te.{name} needs a float operand, got {x.dtype} in {x}")
        return Call(name, [x], x.dtype)
    f.__name__ = name
    f.__doc__ = f"Elementwise {name} of a float expression."
    return f


exp = _unary("exp")
log = _unary("log")
sqrt = _unary("sqrt")
rsqrt = _unary("rsqrt")
tanh = _unary("tanh")
erf = _unary("erf")
sigmoid = _unary("sigmoid")
floor = _unary("floor")
ceil = _unary("ceil")
round = _unary("round")  # noqa: A001 - TVM name
trunc = _unary("trunc")
sin = _unary("sin")
cos = _unary("cos")
log2 = _unary("log2")
exp2 = _unary("exp2")


def abs(x) -> Expr:  # noqa: A001 - TVM name
    x = convert(x)
    return Call("abs", [x], x.dtype)


def power(x, y) -> Expr:
    x = convert(x)
    y = convert(y, x.dtype)
    if not is_float(x.dtype):
        raise DTypeError(f"te.power needs float operands, got {x.dtype}")
    e = y.value if isinstance(y, (IntImm, FloatImm)) else None
    if e in (1, 2, 3, 4):  # GPT-2's x ** 3 outside its GELU pattern: products, not libm powf
        out = x
        for _ in range(int(e) - 1):
            out = out * x
        return out
    if e == 0.5:
        return Call("sqrt", [x], x.dtype)
    return Call("pow", [x, cast(x.dtype, y)], x.dtype)


pow = power  # noqa: A001 - TVM name


def fmod(x, y) -> Expr:
    """C's fmod (TVM's tir.fmod): the remainder of truncated division, with the sign of x."""
    from .expr import Select, cmp, convert
    x = convert(x)
    y = convert(y, x.dtype)
    r = binop("floormod", x, y)  # the sign of y; differs from fmod where the signs differ
    zero = convert(0, r.dtype)
    differ = binop("and", cmp("ne", r, zero), cmp("ne", cmp("lt", x, zero), cmp("lt", y, zero)))
    return Select(differ, r - y, r)


INTRINSICS = _FLOAT_ONLY + ("abs", "pow")

# C / CUDA math library names that TVM programs call through call_pure_extern, as kiln's own
# intrinsics (so they vectorize and get kiln's polynomial exp): libm's float ("expf") and
# double ("exp") names and CUDA's fast forms ("__expf")
_EXTERN_ALIASES = {"fabs": "abs", "pow": "pow", "fmod": "fmod"}


def call_pure_extern(dtype: str, func_name: str, *args) -> Expr:
    """TVM's tir.call_pure_extern for math library functions ("expf", "sqrtf", "tanh",
    "__expf", "powf", ...): the matching kiln intrinsic in `dtype`. Other external functions
    are an ExprError: kiln's generated code links nothing but its own kernels."""
    from ..errors import ExprError
    name = extern_intrinsic(func_name)
    if name is None:
        known = sorted(set(INTRINSICS) | set(_EXTERN_ALIASES))
        raise ExprError(f"call_pure_extern({func_name!r}): kiln calls no external functions; "
                        f"it maps the math library's {', '.join(known)} (and their 'f' / "
                        "'__' forms) to its intrinsics")
    vals = []
    for a in args:
        v = convert(a, dtype)
        vals.append(v if v.dtype == dtype else cast(dtype, v))
    fn = {"abs": abs, "pow": power, "fmod": fmod}.get(name) or globals()[name]
    return fn(*vals)


call_extern = call_pure_extern


def extern_intrinsic(func_name: str) -> str | None:
    base = str(func_name).lstrip("_")
    for cand in (base, base[:-1] if base.endswith("f") else None):
        if cand in _EXTERN_ALIASES:
            return _EXTERN_ALIASES[cand]
        if cand in INTRINSICS and cand != "pow":
            return cand
    return None
