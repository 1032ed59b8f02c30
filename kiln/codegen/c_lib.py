"""The small C library a generated translation unit carries: types, vector types, helpers.

In: requests from the printers (`lib.need("sel", "float32", 8)` -> "kiln_sel_f32x8").
Out: the C text of exactly the typedefs and static inline helpers that were requested, with
their dependencies first (`lib.text()`).
Why: generated files stay short and readable (only what is used appears), and helpers such as
floor division or a vector blend are written once, here, instead of inline at every use.
"""

from __future__ import annotations

from ..errors import CodegenError

CTYPE = {"float32": "float", "float64": "double", "int32": "int32_t", "int64": "int64_t",
         "int8": "int8_t", "uint8": "uint8_t", "bool": "uint8_t",
         "bfloat16": "uint16_t"}  # bfloat16 is stored as its bits (see c_bf16)
SUFFIX = {"float32": "f32", "float64": "f64", "int32": "i32", "int64": "i64", "int8": "i8",
          "uint8": "u8", "bool": "u8", "bfloat16": "bf16"}
BITS = {"float32": 32, "float64": 64, "int32": 32, "int64": 64, "int8": 8, "uint8": 8,
        "bool": 8, "bfloat16": 16}
MASK_DTYPE = {8: "int8", 32: "int32", 64: "int64"}
VECTOR_DTYPES = ("float32", "float64", "int32", "int64", "int8", "uint8", "bfloat16")


def ctype(dtype: str) -> str:
    """The C element type of a kiln dtype (bool is stored as uint8_t)."""
    try:
        return CTYPE[dtype]
    except KeyError:
        raise CodegenError(f"the C backend does not support dtype {dtype!r} yet "
                           f"(supported: {', '.join(CTYPE)})") from None


def vtype_name(dtype: str, lanes: int) -> str:
    return f"kiln_{SUFFIX[dtype]}x{lanes}"


def mask_dtype(dtype: str) -> str:
    """The integer dtype whose vectors hold comparison masks for `dtype` vectors."""
    return MASK_DTYPE[BITS[dtype]]


class CLib:
    """Collects requested helpers; `need` returns the C name and remembers the definition."""

    def __init__(self):
        self._defs: dict = {}
        self._names: dict = {}

    def need(self, kind: str, *args) -> str:
        key = (kind,) + args
        if key in self._names:
            return self._names[key]
        builder = _BUILDERS.get(kind)
        if builder is None:
            from . import c_bf16, c_int8, c_math
            builder = c_bf16.BUILDERS.get(kind) or c_int8.BUILDERS.get(kind) or \
                c_math.BUILDERS[kind]
        name, deps, code = builder(*args)
        for dep in deps:
            self.need(*dep)
        self._names[key] = name
        self._defs.setdefault(name, code)
        return name

    def text(self) -> str:
        return "\n".join(self._defs.values())


# ---------------------------------------------------------------- scalar helpers

def _floordiv(dtype):
    t, s = ctype(dtype), SUFFIX[dtype]
    name = f"kiln_floordiv_{s}"
    code = (f"static inline {t} {name}({t} a, {t} b) {{\n"
            f"  {t} q = a / b;\n"
            f"  return (q * b != a && ((a < 0) != (b < 0))) ? q - 1 : q;\n}}\n")
    return name, [], code


def _floormod(dtype):
    t, s = ctype(dtype), SUFFIX[dtype]
    name = f"kiln_floormod_{s}"
    if dtype in ("float32", "float64"):
        fl = "floorf" if dtype == "float32" else "floor"
        code = f"static inline {t} {name}({t} a, {t} b) {{\n  return a - {fl}(a / b) * b;\n}}\n"
        return name, [], code
    code = (f"static inline {t} {name}({t} a, {t} b) {{\n"
            f"  {t} r = a % b;\n"
            f"  return (r != 0 && ((r < 0) != (b < 0))) ? r + b : r;\n}}\n")
    return name, [], code


def _minmax(op, dtype):
    """min / max as NumPy, PyTorch and ONNX Runtime compute them: a NaN operand gives NaN
    (a plain `a > b ? a : b` turns max(NaN, 0), i.e. relu(NaN), into 0)."""
    t, s = ctype(dtype), SUFFIX[dtype]
    name = f"kiln_{op}_{s}"
    rel = "<" if op == "min" else ">"
    nan = " || a != a" if dtype in ("float32", "float64") else ""
    code = (f"static inline {t} {name}({t} a, {t} b) {{\n  return (a {rel} b{nan}) ? a : b;"
            "\n}\n")
    return name, [], code


def _iabs(dtype):
    t, s = ctype(dtype), SUFFIX[dtype]
    name = f"kiln_abs_{s}"
    return name, [], f"static inline {t} {name}({t} a) {{\n  return a < 0 ? -a : a;\n}}\n"


# ---------------------------------------------------------------- vector basics

def _vtype(dtype, lanes):
    if dtype not in VECTOR_DTYPES:
        raise CodegenError(f"no vector type for dtype {dtype!r}")
    name = vtype_name(dtype, lanes)
    size = lanes * BITS[dtype] // 8
    return name, [], f"typedef {ctype(dtype)} {name} __attribute__((vector_size({size})));\n"


def _splat(dtype, lanes):
    v = vtype_name(dtype, lanes)
    name = f"kiln_splat_{SUFFIX[dtype]}x{lanes}"
    elems = ", ".join(["x"] * lanes)
    code = f"static inline {v} {name}({ctype(dtype)} x) {{\n  return ({v}){{{elems}}};\n}}\n"
    return name, [("vtype", dtype, lanes)], code


def _load(dtype, lanes):
    v = vtype_name(dtype, lanes)
    name = f"kiln_load_{SUFFIX[dtype]}x{lanes}"
    code = (f"static inline {v} {name}(const {ctype(dtype)}* p) {{\n"
            f"  {v} x;\n  __builtin_memcpy(&x, p, sizeof x);\n  return x;\n}}\n")
    return name, [("vtype", dtype, lanes)], code


def _bcast_word(dtype, lanes):
    """The 32 bits at p (two bfloat16, four bytes) repeated over `lanes` 32-bit lanes: the
    lane-invariant operand of a pair / quad dot product (vdpbf16ps, vpdpbusd)."""
    n = 4 // (BITS[dtype] // 8) * lanes
    v = vtype_name(dtype, n)
    name = f"kiln_bcast_word_{SUFFIX[dtype]}x{n}"
    u = f"kiln_u32x{lanes}_"
    code = (f"static inline {v} {name}(const {ctype(dtype)}* p) {{\n"
            f"  uint32_t s;\n  __builtin_memcpy(&s, p, 4);\n"
            f"  {u} w = ({u}){{{', '.join(['s'] * lanes)}}};\n"
            f"  {v} r;\n  __builtin_memcpy(&r, &w, sizeof r);\n  return r;\n}}\n")
    return name, [("vtype", dtype, n), ("u32type", lanes)], code


def _store(dtype, lanes):
    v = vtype_name(dtype, lanes)
    name = f"kiln_store_{SUFFIX[dtype]}x{lanes}"
    code = (f"static inline void {name}({ctype(dtype)}* p, {v} x) {{\n"
            f"  __builtin_memcpy(p, &x, sizeof x);\n}}\n")
    return name, [("vtype", dtype, lanes)], code


def lanewise(name: str, dtype: str, lanes: int, nargs: int, body: str, deps=()) -> tuple:
    """A vector function computing `body` (C over a[i], b[i]) lane by lane.

    GCC's SLP vectorizer turns such loops into single instructions where one exists
    (vminps, vsqrtps, vroundps, vblendvps); elsewhere it stays a correct scalar loop.
    """
    v = vtype_name(dtype, lanes)
    params = ", ".join(f"{v} {p}" for p in "ab"[:nargs])
    code = (f"static inline {v} {name}({params}) {{\n  {v} r;\n"
            f"  for (int i = 0; i < {lanes}; ++i) {{\n    r[i] = {body};\n  }}\n  return r;\n}}\n")
    return name, [("vtype", dtype, lanes)] + list(deps), code


def _blend(name: str, dtype: str, lanes: int, mask_param: bool, mask: str) -> tuple:
    """A vector function returning a where `mask` (C over a, b and m: all-ones lanes) holds,
    else b, as a bitwise blend. Not a lane loop with `? :`: that needs the loop vectorizer's
    if-conversion, which toolchain turns off for GCC (lane loops measured 8-47x slower in erf,
    tanh, sigmoid, log and where; a min / max loop was one scalar vminss per lane)."""
    v, m = vtype_name(dtype, lanes), vtype_name(mask_dtype(dtype), lanes)
    params = (f"{m} m, " if mask_param else "") + f"{v} a, {v} b"
    code = (f"static inline {v} {name}({params}) {{\n  {m} k = {mask};\n"
            f"  return ({v})((({m})a & k) | (({m})b & ~k));\n}}\n")
    return name, [("vtype", dtype, lanes), ("vtype", mask_dtype(dtype), lanes)], code


def _sel(dtype, lanes):
    """Lane-wise m ? a : b (m nonzero in the lanes that take a)."""
    return _blend(f"kiln_sel_{SUFFIX[dtype]}x{lanes}", dtype, lanes, True, "m != 0")


def _vminmax(op, dtype, lanes, nan: bool = False):
    """Lane-wise min / max; with `nan`, NaN-propagating (user-level min / max, relu, clip;
    the math templates' range clamps keep the cheaper form)."""
    rel = "<" if op == "min" else ">"
    if nan and dtype in ("float32", "float64"):
        return _blend(f"kiln_{op}n_{SUFFIX[dtype]}x{lanes}", dtype, lanes, False,
                      f"(a {rel} b) | (a != a)")
    return _blend(f"kiln_{op}_{SUFFIX[dtype]}x{lanes}", dtype, lanes, False, f"a {rel} b")


def _hreduce(op, dtype, lanes):
    """The sum of `lanes` lanes by halving: log2(lanes) vector adds instead of a serial
    chain of lanes - 1 dependent scalar adds (softmax's and layer norm's row sums)."""
    if op != "add":
        raise CodegenError(f"internal: no horizontal {op}")
    name = f"kiln_hadd_{SUFFIX[dtype]}x{lanes}"
    deps, lines, w, cur = [("vtype", dtype, lanes)], [], lanes, "v"
    while w > 2:
        h = w // 2
        lo = ", ".join(str(i) for i in range(h))
        hi = ", ".join(str(i) for i in range(h, w))
        deps.append(("vtype", dtype, h))
        lines.append(f"  {vtype_name(dtype, h)} r{h} = __builtin_shufflevector({cur}, {cur}, {lo})"
                     f" + __builtin_shufflevector({cur}, {cur}, {hi});")
        cur, w = f"r{h}", h
    lines.append(f"  return {cur}[0] + {cur}[1];")
    code = (f"static inline {ctype(dtype)} {name}({vtype_name(dtype, lanes)} v) {{\n" +
            "\n".join(lines) + "\n}\n")
    return name, deps, code


def _vfloordiv(dtype, lanes):
    return lanewise(f"kiln_floordiv_{SUFFIX[dtype]}x{lanes}", dtype, lanes, 2,
                    f"kiln_floordiv_{SUFFIX[dtype]}(a[i], b[i])", [("floordiv", dtype)])


def _vfloormod(dtype, lanes):
    return lanewise(f"kiln_floormod_{SUFFIX[dtype]}x{lanes}", dtype, lanes, 2,
                    f"kiln_floormod_{SUFFIX[dtype]}(a[i], b[i])", [("floormod", dtype)])


# hardware gathers by lane count: (ISA test, intrinsic prefix, index type, AVX-512 argument
# order (index first) or AVX2's (base first))
_GATHER = {16: ("defined(__AVX512F__)", "_mm512", "__m512i", True),
           8: ("defined(__AVX2__)", "_mm256", "__m256i", False),
           4: ("defined(__AVX2__)", "_mm", "__m128i", False)}


def _gather(dtype, lanes):
    """Lanes p[idx[k]] of a 32-bit table (a lookup's: the index computed as one vector):
    one vgatherdps / vpgatherdd where the compiler targets the ISA (a preprocessor test in
    the C), element by element otherwise."""
    if BITS.get(dtype) != 32:
        raise CodegenError(f"internal: gather of {dtype}")
    v, iv = vtype_name(dtype, lanes), vtype_name("int32", lanes)
    t, name = ctype(dtype), f"kiln_gather_{SUFFIX[dtype]}x{lanes}"
    head = f"static inline {v} {name}(const {t}* p, {iv} idx) {{\n"
    portable = (f"{head}  {v} x;\n  for (int k = 0; k < {lanes}; ++k) x[k] = p[idx[k]];\n"
                "  return x;\n}\n")
    if lanes not in _GATHER:
        return name, [("vtype", dtype, lanes), ("vtype", "int32", lanes)], portable
    test, mm, it, index_first = _GATHER[lanes]
    fn = f"{mm}_i32gather_{'ps' if dtype == 'float32' else 'epi32'}"
    args = f"({it})idx, p, 4" if index_first else f"p, ({it})idx, 4"
    fast = f"{head}  return ({v}){fn}({args});\n}}\n"
    code = f"#if {test}\n#include <immintrin.h>\n{fast}#else\n{portable}#endif\n"
    return name, [("vtype", dtype, lanes), ("vtype", "int32", lanes)], code


_BUILDERS = {
    "floordiv": _floordiv,
    "floormod": _floormod,
    "min": lambda dtype: _minmax("min", dtype),
    "max": lambda dtype: _minmax("max", dtype),
    "iabs": _iabs,
    "vtype": _vtype,
    "splat": _splat,
    "load": _load,
    "gather": _gather,
    "bcast_word": _bcast_word,
    "store": _store,
    "sel": _sel,
    "vmin": lambda dtype, lanes: _vminmax("min", dtype, lanes),
    "vmax": lambda dtype, lanes: _vminmax("max", dtype, lanes),
    "vmin_nan": lambda dtype, lanes: _vminmax("min", dtype, lanes, nan=True),
    "vmax_nan": lambda dtype, lanes: _vminmax("max", dtype, lanes, nan=True),
    "vfloordiv": _vfloordiv,
    "hreduce": _hreduce,
    "vfloormod": _vfloormod,
}
