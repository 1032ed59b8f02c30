"""Readable text for expressions (used by repr, the loop-IR printer and error messages)."""

from __future__ import annotations

from . import expr as E

_SYM = {"add": "+", "sub": "-", "mul": "*", "div": "/", "floordiv": "//", "floormod": "%",
        "and": "&&", "or": "||", "lt": "<", "le": "<=", "gt": ">", "ge": ">=", "eq": "==",
        "ne": "!="}


def expr_str(e) -> str:
    if isinstance(e, E.Var):
        return e.name
    if isinstance(e, E.IntImm):
        return str(e.value) if e.dtype != "bool" else ("True" if e.value else "False")
    if isinstance(e, E.FloatImm):
        return f"{e.value!r}f" if e.dtype == "float32" else repr(e.value)
    if isinstance(e, (E.BinOp, E.Cmp)):
        if e.op in ("min", "max"):
            return f"{e.op}({expr_str(e.a)}, {expr_str(e.b)})"
        return f"({expr_str(e.a)} {_SYM[e.op]} {expr_str(e.b)})"
    if isinstance(e, E.Not):
        return f"!{expr_str(e.a)}"
    if isinstance(e, E.Select):
        return f"select({expr_str(e.cond)}, {expr_str(e.t)}, {expr_str(e.f)})"
    if isinstance(e, E.Cast):
        return f"{e.dtype}({expr_str(e.value)})"
    if isinstance(e, E.Call):
        return f"{e.name}({', '.join(expr_str(a) for a in e.args)})"
    if isinstance(e, E.TensorLoad):
        return f"{e.tensor.name}[{', '.join(expr_str(i) for i in e.indices)}]"
    if isinstance(e, E.Reduce):
        axes = ", ".join(a.name for a in e.axis)
        where = "" if e.condition is None else f", where={expr_str(e.condition)}"
        if len(e.sources) == 1:
            return f"{e.combiner.name}({expr_str(e.source)}, axis=[{axes}]{where})"
        srcs = ", ".join(expr_str(x) for x in e.sources)
        return f"{e.combiner.name}(({srcs}), axis=[{axes}]{where})[{e.value_index}]"
    if hasattr(e, "expr_str"):
        return e.expr_str(expr_str)
    return f"<{type(e).__name__}>"
