"""8-bit integer dot products in generated C: four products per int32 lane (vpdpbusd).

In: one vector-block expression of the C printer. Out: `split_dot4`, which recognizes
    acc + i32(a0) * i32(b0) + i32(a1) * i32(b1) + i32(a2) * i32(b2) + i32(a3) * i32(b3)
(the shape te/dot_groups.py writes for a uint8 x int8 product accumulated in int32, in
whatever nesting the integer simplifier leaves), and
`dot4_operands`, which accepts it when one side is four adjacent bytes that do not vary
across lanes (read once and repeated over the lanes) and the other varies with lane stride 4
and its four bytes adjacent (a packed [.., 16, 4] weight: one contiguous load); the block
then prints as one `_mm512_dpbusd_epi32` (ymm / xmm forms for 8 / 4 lanes) when the compiler
flags enable AVX512-VNNI, else as the same sums lane by lane.
Why: VNNI multiplies 64 byte pairs and adds them into 16 int32 lanes in one instruction, four
times the multiply-adds of a float32 FMA; the instruction is chosen by the preprocessor from
the target's flags, so one C text serves every target (as codegen/c_bf16 does for
vdpbf16ps) and the Target stays the one source of machine facts. The instruction's first
byte operand is unsigned and the second signed, whichever of them varies across lanes.
"""

from __future__ import annotations

from ..te import expr as E
from ..tir import stmt as S
from ..tir.simplify import var_stride
from .c_lib import vtype_name

_BYTES = ("uint8", "int8")
_INTRIN = {16: ("_mm512_dpbusd_epi32", "__m512i", "defined(__AVX512VNNI__)"),
           8: ("_mm256_dpbusd_epi32", "__m256i",
               "defined(__AVX512VNNI__) && defined(__AVX512VL__)"),
           4: ("_mm_dpbusd_epi32", "__m128i",
               "defined(__AVX512VNNI__) && defined(__AVX512VL__)")}


# ---------------------------------------------------------------- the pattern

def _byte_factor(e: E.Expr):
    """The 8-bit load under int32(load), else None."""
    if isinstance(e, E.Cast) and e.dtype == "int32" and isinstance(e.value, S.BufferLoad) \
            and e.value.dtype in _BYTES:
        return e.value
    return None


def _product(e: E.Expr):
    if not (isinstance(e, E.BinOp) and e.op == "mul" and e.dtype == "int32"):
        return None
    a, b = _byte_factor(e.a), _byte_factor(e.b)
    if a is None or b is None or a.dtype == b.dtype:
        return None
    return (a, b) if a.dtype == "uint8" else (b, a)  # (unsigned, signed)


def _addends(e: E.Expr, out: list) -> list:
    """The terms of an int32 sum, however it is nested (the TIR simplifier re-associates
    integer sums: acc + (p0 + p1 + p2 + p3) arrives as (((acc + p0) + p1) + p2) + p3)."""
    if isinstance(e, E.BinOp) and e.op == "add" and e.dtype == "int32":
        _addends(e.a, out)
        _addends(e.b, out)
    else:
        out.append(e)
    return out


def split_dot4(e: E.Expr):
    """(acc, four (unsigned, signed) load pairs) when e is acc plus four u8 x s8 products."""
    if not (isinstance(e, E.BinOp) and e.op == "add" and e.dtype == "int32"):
        return None
    terms = [(t, _product(t)) for t in _addends(e, [])]
    prods = [p for _, p in terms if p is not None]
    rest = [t for t, p in terms if p is None]
    if len(prods) != 4 or len(rest) != 1:
        return None
    return rest[0], prods


def _offset(sim, x: S.BufferLoad, y: S.BufferLoad):
    """y's index minus x's, when both read one buffer and the difference is a constant."""
    if x.buffer is not y.buffer:
        return None
    d = sim.to_lin(E.binop("sub", y.index, x.index))
    return d.const if not d.terms else None


def _adjacent(sim, loads: list) -> bool:
    return all(_offset(sim, loads[0], ld) == j for j, ld in enumerate(loads))


def dot4_operands(vp, quad):
    """(unsigned text, signed text) for kiln_dot4 from a VectorPrinter `vp`, or None when no
    layout fits (the block then prints as plain int32 vector arithmetic)."""
    us, ss = [p[0] for p in quad], [p[1] for p in quad]
    if any(vp.varies(x) for x in us) and not any(vp.varies(y) for y in ss):
        fixed, moving = ss, us
    elif any(vp.varies(y) for y in ss) and not any(vp.varies(x) for x in us):
        fixed, moving = us, ss
    else:
        return None
    sim = vp.simplifier()
    offs = [_offset(sim, fixed[0], x) for x in fixed]
    if any(o is None for o in offs):
        return None
    order = sorted(range(4), key=lambda j: offs[j])
    fixed, moving = [fixed[j] for j in order], [moving[j] for j in order]
    if not _adjacent(sim, fixed) or not _adjacent(sim, moving):
        return None
    if moving[0].buffer.uid in vp.vregs or \
            var_stride(sim.to_lin(moving[0].index), vp.lane, vp.varies)[0] != 4:
        return None
    dt_f, dt_m = fixed[0].dtype, moving[0].dtype
    bcast = vp.scope.lib.need("bcast_word", dt_f, vp.w)
    f_text = f"{bcast}(&{vp.scope.name(fixed[0].buffer)}[{vp.scalar.expr(fixed[0].index)}])"
    load = vp.scope.lib.need("load", dt_m, 4 * vp.w)
    base = vp.scalar.expr(vp.at_lane(moving[0].index, 0))
    m_text = vp.tmp(f"{load}(&{vp.scope.name(moving[0].buffer)}[{base}])",
                    vtype_name(dt_m, 4 * vp.w))
    return (f_text, m_text) if dt_f == "uint8" else (m_text, f_text)


# ---------------------------------------------------------------- helpers (CLib builders)

def _dot4(lanes: int):
    """acc[i] + sum_j u[4i+j] * s[4i+j]: vpdpbusd where the flags allow it."""
    i32, u8, s8 = (vtype_name(d, n) for d, n in
                   (("int32", lanes), ("uint8", 4 * lanes), ("int8", 4 * lanes)))
    name = f"kiln_dot4_u8i8_i32x{lanes}"
    generic = (f"  {i32} r;\n  for (int i = 0; i < {lanes}; ++i) {{\n"
               "    int32_t t = acc[i];\n"
               "    for (int j = 0; j < 4; ++j) t += (int32_t)u[4 * i + j] * "
               "(int32_t)s[4 * i + j];\n"
               "    r[i] = t;\n  }\n  return r;\n")
    head = f"static inline {i32} {name}({i32} acc, {u8} u, {s8} s) {{\n"
    deps = [("vtype", "int32", lanes), ("vtype", "uint8", 4 * lanes),
            ("vtype", "int8", 4 * lanes)]
    if lanes not in _INTRIN:
        return name, deps, head + generic + "}\n"
    fn, t, cond = _INTRIN[lanes]
    code = (f"#if {cond}\n#include <immintrin.h>\n{head}"
            f"  return ({i32}){fn}(({t})acc, ({t})u, ({t})s);\n}}\n#else\n"
            f"{head}{generic}}}\n#endif\n")
    return name, deps, code


BUILDERS = {
    "dot4_u8i8": _dot4,
}

__all__ = ["BUILDERS", "split_dot4", "dot4_operands"]
