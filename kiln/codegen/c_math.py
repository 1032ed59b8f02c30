"""Math functions over GCC vector types: polynomial approximations for float32 lanes.

In: a call name, a dtype and a lane count (`vcall("exp", "float32", 8)`).
Out: (C name, dependencies, C text) of a static inline function over the vector type, for
`CLib.need("vcall", ...)`.
Why: one scalar `expf` per element dominates softmax and GELU; these run entirely in SIMD
registers. float64 and the rarely hot functions (sin, cos, pow, exp2) call libm lane by lane.

Accuracy (float32; tests/test_math_approx.py measures the maximum relative error against
float64 numpy/math over ~1M dense samples; all measure about 2e-7, the documented bound is 2e-6):
  exp      on [-87, 88] (degree-7 Taylor polynomial after ln2 range reduction);
           +inf above 88.72283, 0 below -104, denormal results lose precision (with
           AVX-512 the 2^n scaling is one vscalefps, which rounds denormals once).
  log      on (0, inf), including next to 1 (atanh series on the mantissa, to s^9);
           log(0) = -inf, log(x < 0) = NaN, log(inf) = inf.
  tanh     everywhere (odd minimax polynomial below |x| = 0.625, 1 - 2/(exp(2|x|)+1) above).
  erf      everywhere: x P(x^2) below |x| = 1 keeps the error relative even next to 0 (the
           tests also bound the absolute error there by 1e-7); 1 - exp(-x^2) Q(|x| - 2.5) up
           to |x| = 3.92, then +-1.
  sigmoid  for x >= -87 (results in the normal float range), via e = exp(-|x|).
NaN inputs give NaN. The polynomial coefficients were fitted by iteratively reweighted least
squares (Lawson's algorithm) on Chebyshev nodes in double precision, minimising the relative
error.
"""

from __future__ import annotations

from string import Template

from .c_lib import SUFFIX, lanewise, vtype_name

_EXP = Template("""\
/* exp(x): x = n*ln2 + r with |r| <= ln2/2; exp(r) by its degree-7 Taylor polynomial;
   2^n applied as two exact powers of two so results stay right into the denormals. */
static inline $V kiln_exp_$S($V x) {
  $V xc = kiln_min_$S(kiln_max_$S(x, kiln_splat_$S(-104.0f)), kiln_splat_$S(88.72283f));
  $V fn = (xc * 1.44269504f + 12582912.0f) - 12582912.0f;
  $I n = __builtin_convertvector(fn, $I);
  $V r = xc - fn * 0.693359375f;
  r = r + fn * 2.12194442e-4f;
$POLY
  $I h = n >> 1;
  $V y = p * ($V)((h + 127) << 23) * ($V)((n - h + 127) << 23);
  y = kiln_sel_$S(x > 88.72283f, kiln_splat_$S(INFINITY), y);
  return kiln_sel_$S(x != x, x, y);
}
""")

# The same exp with AVX-512's vscalefps: p * 2^n in one instruction, rounded right into the
# denormals, inf past the top; the clamp's max/min pass a NaN x through (they return their
# second operand when one is NaN). A third of the instructions of the portable form.
_EXP_SCALEF = Template("""\
static inline $V kiln_exp_$S($V x) {
  $V xc = ($V)${MM}_min_ps(${MM}_set1_ps(88.8f), ${MM}_max_ps(${MM}_set1_ps(-104.0f), ($W)x));
  $V fn = (xc * 1.44269504f + 12582912.0f) - 12582912.0f;
  $V r = xc - fn * 0.693359375f;
  r = r + fn * 2.12194442e-4f;
$POLY
  return ($V)${MM}_scalef_ps(($W)p, ($W)fn);
}
""")

_EXP_POLY = """\
  $V p = 1.98412701e-4f * r + 1.38888892e-3f;
  p = p * r + 8.33333377e-3f;
  p = p * r + 4.16666679e-2f;
  p = p * r + 0.166666672f;
  p = p * r + 0.5f;
  p = p * r + 1.0f;
  p = p * r + 1.0f;"""

# AVX-512 registers by float32 lane count: (intrinsic prefix, type, ISA test). The test is
# the compiler's, so one source stays right for whatever -march compiles it.
_SCALEF = {16: ("_mm512", "__m512", "defined(__AVX512F__)"),
           8: ("_mm256", "__m256", "defined(__AVX512F__) && defined(__AVX512VL__)"),
           4: ("_mm", "__m128", "defined(__AVX512F__) && defined(__AVX512VL__)")}


def _exp_code(lanes: int, names: dict) -> str:
    """exp for `lanes` float32 lanes: the vscalefps form where the compiler targets AVX-512
    (a preprocessor test in the C), the portable form otherwise."""
    poly = Template(_EXP_POLY).substitute(names)
    portable = _EXP.substitute(names, POLY=poly)
    if lanes not in _SCALEF:
        return portable
    mm, w, test = _SCALEF[lanes]
    fast = _EXP_SCALEF.substitute(names, POLY=poly, MM=mm, W=w)
    return f"#if {test}\n#include <immintrin.h>\n{fast}#else\n{portable}#endif\n"


_LOG = Template("""\
/* log(x): x = m * 2^e with m in [sqrt(1/2), sqrt(2)); log(m) = 2 atanh(s), s = (m-1)/(m+1),
   by its series to s^9; denormal inputs are scaled by 2^23 first. */
static inline $V kiln_log_$S($V x) {
  $I tiny = x < 1.17549435e-38f;
  $V xs = kiln_sel_$S(tiny, x * 8388608.0f, x);
  $I bits = ($I)xs;
  $I e = ((bits >> 23) & 255) - 127 + (tiny & -23);
  $V m = ($V)((bits & 8388607) | 1065353216);
  $I big = m > 1.41421354f;
  m = kiln_sel_$S(big, m * 0.5f, m);
  e = e - big;
  $V f = m - 1.0f;
  $V s = f / (f + 2.0f);
  $V z = s * s;
  $V w = 0.111111112f * z + 0.142857149f;
  w = w * z + 0.200000003f;
  w = w * z + 0.333333343f;
  w = (w * z + 1.0f) * (s + s);
  $V fe = __builtin_convertvector(e, $V);
  $V y = fe * 0.693359375f + (w - fe * 2.12194442e-4f);
  y = kiln_sel_$S(x == 0.0f, kiln_splat_$S(-INFINITY), y);
  y = kiln_sel_$S(x < 0.0f, kiln_splat_$S(NAN), y);
  y = kiln_sel_$S(x == INFINITY, x, y);
  return kiln_sel_$S(x != x, x, y);
}
""")

_TANH = Template("""\
/* tanh(x): x + x^3 P(x^2) below |x| = 0.625, else 1 - 2 / (exp(2|x|) + 1) with x's sign. */
static inline $V kiln_tanh_$S($V x) {
  $V ax = ($V)(($I)x & 2147483647);
  $V t = x * x;
  $V p = -5.70498221e-3f * t + 2.06390824e-2f;
  p = p * t - 5.37397116e-2f;
  p = p * t + 0.133314416f;
  p = p * t - 0.333332807f;
  $V small = x + x * t * p;
  $V big = 1.0f - 2.0f / (kiln_exp_$S(ax + ax) + 1.0f);
  big = ($V)(($I)big | (($I)x & (-2147483647 - 1)));
  return kiln_sel_$S(ax < 0.625f, small, big);
}
""")

_ERF = Template("""\
/* erf(x): x P(x^2) below |x| = 1; 1 - exp(-x^2) Q(|x| - 2.5) up to 3.92 with x's sign;
   +-1 beyond. */
static inline $V kiln_erf_$S($V x) {
  $V ax = ($V)(($I)x & 2147483647);
  $V t = x * x;
  $V p = 7.85385928e-5f * t - 8.01019312e-4f;
  p = p * t + 5.18832775e-3f;
  p = p * t - 2.68538110e-2f;
  p = p * t + 0.112835854f;
  p = p * t - 0.376126260f;
  p = p * t + 1.12837911f;
  $V small = x * p;
  $V s = ax - 2.5f;
  $V q = 1.08195258e-4f * s + 2.32255887e-4f;
  q = q * s + 5.57309482e-4f;
  q = q * s - 6.50562462e-4f;
  q = q * s + 2.30172416e-3f;
  q = q * s - 8.13759770e-3f;
  q = q * s + 2.49122791e-2f;
  q = q * s - 7.43423253e-2f;
  q = q * s + 0.210807651f;
  $V big = 1.0f - kiln_exp_$S(-t) * q;
  big = kiln_sel_$S(ax > 3.92f, kiln_splat_$S(1.0f), big);
  big = ($V)(($I)big | (($I)x & (-2147483647 - 1)));
  return kiln_sel_$S(ax < 1.0f, small, big);
}
""")

_SIGMOID = Template("""\
/* sigmoid(x) = 1 / (1 + exp(-x)), computed from e = exp(-|x|) as 1/(1+e) or e/(1+e). */
static inline $V kiln_sigmoid_$S($V x) {
  $V ax = ($V)(($I)x & 2147483647);
  $V e = kiln_exp_$S(-ax);
  $V s = 1.0f / (1.0f + e);
  return kiln_sel_$S(x < 0.0f, e * s, s);
}
""")

_ROUND = Template("""\
/* To the nearest integer, ties to even: adding and subtracting 2^23 rounds |x| < 2^23 in the
   FPU's default mode (larger values are integers already; NaN and inf pass through). */
static inline $V kiln_round_$S($V x) {
  $V ax = ($V)(($I)x & 2147483647);
  $V r = (ax + 8388608.0f) - 8388608.0f;
  r = ($V)(($I)r | (($I)x & (-2147483647 - 1)));
  return kiln_sel_$S(ax < 8388608.0f, r, x);
}
""")

_LOG2 = Template("""\
/* log2(x) = log(x) / ln 2. */
static inline $V kiln_log2_$S($V x) {
  return kiln_log_$S(x) * 1.44269504f;
}
""")

_TEMPLATES = {"exp": (_EXP, ("vmin", "vmax", "splat", "sel")),
              "log": (_LOG, ("splat", "sel")),
              "tanh": (_TANH, ("sel", "vexp")),
              "erf": (_ERF, ("sel", "splat", "vexp")),
              "sigmoid": (_SIGMOID, ("sel", "vexp")),
              "log2": (_LOG2, ("vlog",)),
              "round": (_ROUND, ("sel",))}

# Lane-by-lane bodies (a[i] is the argument); F is "f" for float32, "" for float64.
_LANEWISE = {
    "sqrt": "__builtin_sqrt{F}(a[i])",
    "rsqrt": "1.0{f} / __builtin_sqrt{F}(a[i])",
    "floor": "__builtin_floor{F}(a[i])",
    "ceil": "__builtin_ceil{F}(a[i])",
    "trunc": "__builtin_trunc{F}(a[i])",
    "round": "__builtin_rint{F}(a[i])",
    "abs": "__builtin_fabs{F}(a[i])",
    "exp": "exp{F}(a[i])",
    "log": "log{F}(a[i])",
    "tanh": "tanh{F}(a[i])",
    "erf": "erf{F}(a[i])",
    "sigmoid": "1.0{f} / (1.0{f} + exp{F}(-a[i]))",
    "sin": "sin{F}(a[i])",
    "cos": "cos{F}(a[i])",
    "log2": "log2{F}(a[i])",
    "exp2": "exp2{F}(a[i])",
    "pow": "pow{F}(a[i], b[i])",
}
VECTOR_CALLS = tuple(_LANEWISE)


def vcall(name: str, dtype: str, lanes: int) -> tuple:
    """The vector version of intrinsic `name` for `dtype` x `lanes`."""
    s = f"{SUFFIX[dtype]}x{lanes}"
    if dtype == "float32" and name in _TEMPLATES:
        template, deps = _TEMPLATES[name]
        names = {"V": vtype_name(dtype, lanes), "I": vtype_name("int32", lanes), "S": s}
        code = _exp_code(lanes, names) if name == "exp" else template.substitute(names)
        dep_keys = [("vtype", dtype, lanes), ("vtype", "int32", lanes)]
        for d in deps:
            dep_keys.append(("vcall", d[1:], dtype, lanes) if d in ("vexp", "vlog")
                            else (d, dtype, lanes))
        return f"kiln_{name}_{s}", dep_keys, code
    if dtype in ("int32", "int64") and name == "abs":
        return lanewise(f"kiln_abs_{s}", dtype, lanes, 1, "a[i] < 0 ? -a[i] : a[i]")
    f = "f" if dtype == "float32" else ""
    body = _LANEWISE[name].format(F=f, f=f)
    return lanewise(f"kiln_{name}_{s}", dtype, lanes, 2 if name == "pow" else 1, body)


BUILDERS = {"vcall": vcall}
