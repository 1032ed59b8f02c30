"""bfloat16 in generated C: storage, conversions, and pair dot products (vdpbf16ps).

In: TIR whose buffers may hold bfloat16; the vector printer's view of one expression.
Out: (1) `promote(e)`, which rewrites arithmetic on bfloat16 values into float32 arithmetic
on converted operands, rounded back where the result is stored as bfloat16 (so the rest of
the C backend only ever sees bfloat16 in loads, stores and casts); (2) the C helpers for
conversions and for a pair dot product; (3) `match_dot2`, which recognizes
    acc + (f32(a0) * f32(b0) + f32(a1) * f32(b1))
in a vector block when a0/a1 are adjacent bfloat16 elements that do not vary across lanes
and b0/b1 vary (lane stride 2 with b1 right after b0, i.e. a packed [.., 16, 2] weight, or
two lane-contiguous rows), and prints it as one `_mm512_dpbf16_ps` (ymm/xmm forms for 8 / 4
lanes) when the compiler flags enable AVX512-BF16, else as the same sum lane by lane.
Why: bfloat16 is stored as uint16_t (GCC 12's __bf16 has no arithmetic and NumPy has no
bfloat16 dtype); rounding is to nearest even, NaN stays NaN, as PyTorch and ONNX do it. The
intrinsic is chosen by the preprocessor from the target's flags, so one C text serves every
target and the Target stays the one source of machine facts.
"""

from __future__ import annotations

from ..errors import CodegenError
from ..te import expr as E
from ..tir import stmt as S
from ..tir.simplify import var_stride
from .c_lib import ctype, vtype_name

BF16 = "bfloat16"
_KEEP = (S.BufferLoad, E.Var, E.Cast)


# ---------------------------------------------------------------- promotion

def promote(e: E.Expr) -> E.Expr:
    """float32 arithmetic for every bfloat16-typed operation (loads/casts stay)."""
    if not _mentions_bf16(e):
        return e
    return E.transform(e, _promote_node)


def _mentions_bf16(e: E.Expr) -> bool:
    return any(getattr(n, "dtype", None) == BF16 for n in E.walk(e))


def _f32(x: E.Expr) -> E.Expr:
    if isinstance(x, E.Cast) and x.dtype == BF16 and x.value.dtype == "float32":
        return x.value  # a value rounded only to be widened again: keep the float32
    return E.Cast("float32", x) if x.dtype == BF16 else x


def _promote_node(e: E.Expr):
    if isinstance(e, E.FloatImm) and e.dtype == BF16:
        return E.Cast(BF16, E.FloatImm(e.value, "float32"))
    if isinstance(e, E.Cmp) and BF16 in (e.a.dtype, e.b.dtype):
        return E.Cmp(e.op, _f32(e.a), _f32(e.b))
    if e.dtype != BF16 or isinstance(e, _KEEP):
        return None
    if isinstance(e, E.BinOp):
        return E.Cast(BF16, E.BinOp(e.op, _f32(e.a), _f32(e.b), "float32"))
    if isinstance(e, E.Select):
        return E.Cast(BF16, E.Select(e.cond, _f32(e.t), _f32(e.f)))
    if isinstance(e, E.Call):
        return E.Cast(BF16, E.Call(e.name, [_f32(a) for a in e.args], "float32"))
    raise CodegenError(f"the C backend cannot compute {type(e).__name__} on bfloat16")


# ---------------------------------------------------------------- scalar printing

def scalar_cast(lib, dtype: str, src_dtype: str, text: str) -> str:
    """C text converting `text` (of src_dtype) to dtype when either side is bfloat16."""
    if src_dtype == BF16:
        f = f"{lib.need('bf16_to_f32')}({text})"
        return f if dtype == "float32" else f"({ctype(dtype)})({f})"
    src = text if src_dtype == "float32" else f"(float)({text})"
    return f"{lib.need('f32_to_bf16')}({src})"


# ---------------------------------------------------------------- helpers (CLib builders)

def _bf16_to_f32():
    name = "kiln_bf16_to_f32"
    code = (f"static inline float {name}(uint16_t h) {{\n"
            "  uint32_t u = (uint32_t)h << 16;\n  float f;\n"
            "  __builtin_memcpy(&f, &u, 4);\n  return f;\n}\n")
    return name, [], code


def _f32_to_bf16():
    name = "kiln_f32_to_bf16"
    code = (f"static inline uint16_t {name}(float f) {{\n"
            "  uint32_t u;\n  __builtin_memcpy(&u, &f, 4);\n"
            "  if ((u & 0x7fffffffu) > 0x7f800000u) return (uint16_t)((u >> 16) | 0x40u);\n"
            "  u += 0x7fffu + ((u >> 16) & 1u);  /* round to nearest even */\n"
            "  return (uint16_t)(u >> 16);\n}\n")
    return name, [], code


def _u32_type(lanes: int) -> str:
    return f"typedef uint32_t kiln_u32x{lanes}_ __attribute__((vector_size({lanes * 4})));\n"


def _vcvt_from(lanes: int):
    """bfloat16 vector -> float32 vector: widen to 32 bits and shift into the high half."""
    v, f = vtype_name(BF16, lanes), vtype_name("float32", lanes)
    name = f"kiln_cvt_bf16_f32x{lanes}"
    u = f"kiln_u32x{lanes}_"
    code = (f"static inline {f} {name}({v} h) {{\n"
            f"  {u} w = __builtin_convertvector(h, {u}) << 16;\n"
            f"  {f} r;\n  __builtin_memcpy(&r, &w, sizeof r);\n  return r;\n}}\n")
    return name, [("vtype", BF16, lanes), ("vtype", "float32", lanes), ("u32type", lanes)], code


def _vcvt_to(lanes: int):
    """float32 vector -> bfloat16 vector, rounding to nearest even, NaN kept quiet."""
    v, f = vtype_name(BF16, lanes), vtype_name("float32", lanes)
    name = f"kiln_cvt_f32_bf16x{lanes}"
    u = f"kiln_u32x{lanes}_"
    code = (f"static inline {v} {name}({f} x) {{\n"
            f"  {u} w;\n  __builtin_memcpy(&w, &x, sizeof w);\n"
            f"  {u} nan = (w & 0x7fffffffu) > 0x7f800000u;\n"
            f"  {u} r = (w + 0x7fffu + ((w >> 16) & 1u)) >> 16;\n"
            f"  r = (r & ~nan) | (((w >> 16) | 0x40u) & nan);\n"
            f"  return __builtin_convertvector(r, {v});\n}}\n")
    return name, [("vtype", BF16, lanes), ("vtype", "float32", lanes), ("u32type", lanes)], code


def _zip(lanes: int):
    """Interleave two bfloat16 rows lane by lane: (lo0, hi0, lo1, hi1, ...)."""
    v, v2 = vtype_name(BF16, lanes), vtype_name(BF16, 2 * lanes)
    name = f"kiln_zip_bf16x{lanes}"
    order = ", ".join(f"{i}, {i + lanes}" for i in range(lanes))
    code = (f"static inline {v2} {name}({v} lo, {v} hi) {{\n"
            f"  return __builtin_shufflevector(lo, hi, {order});\n}}\n")
    return name, [("vtype", BF16, lanes), ("vtype", BF16, 2 * lanes)], code


_INTRIN = {16: ("_mm512_dpbf16_ps", "__m512", "__m512bh", "defined(__AVX512BF16__)"),
           8: ("_mm256_dpbf16_ps", "__m256", "__m256bh",
               "defined(__AVX512BF16__) && defined(__AVX512VL__)"),
           4: ("_mm_dpbf16_ps", "__m128", "__m128bh",
               "defined(__AVX512BF16__) && defined(__AVX512VL__)")}


def _dot2(lanes: int):
    """acc[i] + a[2i]*b[2i] + a[2i+1]*b[2i+1]: vdpbf16ps where the flags allow it."""
    f, v2 = vtype_name("float32", lanes), vtype_name(BF16, 2 * lanes)
    name = f"kiln_dot2_bf16_f32x{lanes}"
    cvt = "kiln_bf16_to_f32"
    generic = (f"  {f} r;\n  for (int i = 0; i < {lanes}; ++i) {{\n"
               f"    r[i] = acc[i] + {cvt}(a[2 * i]) * {cvt}(b[2 * i]) + "
               f"{cvt}(a[2 * i + 1]) * {cvt}(b[2 * i + 1]);\n  }}\n  return r;\n")
    head = f"static inline {f} {name}({f} acc, {v2} a, {v2} b) {{\n"
    if lanes not in _INTRIN:
        return name, [("vtype", "float32", lanes), ("vtype", BF16, 2 * lanes),
                      ("bf16_to_f32",)], head + generic + "}\n"
    fn, tf, tb, cond = _INTRIN[lanes]
    code = (f"#if {cond}\n#include <immintrin.h>\n{head}"
            f"  return ({f}){fn}(({tf})acc, ({tb})a, ({tb})b);\n}}\n#else\n"
            f"{head}{generic}}}\n#endif\n")
    return name, [("vtype", "float32", lanes), ("vtype", BF16, 2 * lanes),
                  ("bf16_to_f32",)], code


BUILDERS = {
    "bf16_to_f32": _bf16_to_f32,
    "f32_to_bf16": _f32_to_bf16,
    "u32type": lambda lanes: (f"kiln_u32x{lanes}_", [], _u32_type(lanes)),
    "vcvt_from_bf16": _vcvt_from,
    "vcvt_to_bf16": _vcvt_to,
    "zip_bf16": _zip,
    "dot2_bf16": _dot2,
}


# ---------------------------------------------------------------- the dot2 pattern

def _bf16_factor(e: E.Expr):
    """The bfloat16 load under float32(load), else None."""
    if isinstance(e, E.Cast) and e.dtype == "float32" and isinstance(e.value, S.BufferLoad) \
            and e.value.dtype == BF16:
        return e.value
    return None


def _product(e: E.Expr):
    if not (isinstance(e, E.BinOp) and e.op == "mul"):
        return None
    a, b = _bf16_factor(e.a), _bf16_factor(e.b)
    return (a, b) if a is not None and b is not None else None


def _pair(e: E.Expr):
    """((x0, y0), (x1, y1)) when e = x0*y0 + x1*y1 over bfloat16 loads."""
    if not (isinstance(e, E.BinOp) and e.op == "add"):
        return None
    p0, p1 = _product(e.a), _product(e.b)
    return (p0, p1) if p0 and p1 else None


def split_dot2(e: E.Expr):
    """(acc, pair) when e = acc + pair (either order) and pair is a bf16 pair dot."""
    if not (isinstance(e, E.BinOp) and e.op == "add" and e.dtype == "float32"):
        return None
    for acc, other in ((e.a, e.b), (e.b, e.a)):
        pair = _pair(other)
        if pair is not None:
            return acc, pair
    return None


def _offset(sim, x: S.BufferLoad, y: S.BufferLoad):
    """y's index minus x's, when both read one buffer and the difference is a constant."""
    if x.buffer is not y.buffer:
        return None
    d = sim.to_lin(E.binop("sub", y.index, x.index))
    return d.const if not d.terms else None


def dot2_operands(vp, pair):
    """(a text, b text) for kiln_dot2 from a VectorPrinter `vp`, or None if no layout fits."""
    (x0, y0), (x1, y1) = pair
    if vp.varies(x0) or vp.varies(x1):
        x0, y0, x1, y1 = y0, x0, y1, x1  # put the lane-invariant factor first
    if vp.varies(x0) or vp.varies(x1) or not (vp.varies(y0) and vp.varies(y1)):
        return None
    sim = vp.simplifier()
    if _offset(sim, x0, x1) != 1 or y0.buffer is not y1.buffer:
        return None
    b = _b_pair(vp, sim, y0, y1)
    if b is None:
        return None
    a_base = vp.scalar.expr(x0.index)
    a = f"{vp.scope.lib.need('bcast_word', BF16, vp.w)}(&{vp.scope.name(x0.buffer)}[{a_base}])"
    return a, b


def _b_pair(vp, sim, y0: S.BufferLoad, y1: S.BufferLoad):
    s0, s1 = _lane_stride(vp, sim, y0), _lane_stride(vp, sim, y1)
    name = vp.scope.name(y0.buffer)
    if s0 == 2 and s1 == 2 and _offset(sim, y0, y1) == 1:
        load = vp.scope.lib.need("load", BF16, 2 * vp.w)
        base = vp.scalar.expr(vp.at_lane(y0.index, 0))
        return vp.tmp(f"{load}(&{name}[{base}])", _vt(2 * vp.w))
    if s0 == 1 and s1 == 1:
        load = vp.scope.lib.need("load", BF16, vp.w)
        lo = f"{load}(&{name}[{vp.scalar.expr(vp.at_lane(y0.index, 0))}])"
        hi = f"{load}(&{name}[{vp.scalar.expr(vp.at_lane(y1.index, 0))}])"
        return vp.tmp(f"{vp.scope.lib.need('zip_bf16', vp.w)}({lo}, {hi})", _vt(2 * vp.w))
    return None


def _lane_stride(vp, sim, y: S.BufferLoad):
    """The lane stride of y's index when it is affine in the lane (else None)."""
    if y.buffer.uid in vp.vregs:
        return None
    return var_stride(sim.to_lin(y.index), vp.lane, vp.varies)[0]


def _vt(lanes: int) -> str:
    return vtype_name(BF16, lanes)


__all__ = ["BUILDERS", "promote", "scalar_cast", "split_dot2", "dot2_operands"]
