"""C code generator: hand-built PrimFuncs rendered, compiled, run and compared with NumPy,
plus golden substrings of the generated C (and of the GEMM's assembly)."""

from __future__ import annotations

import math
import platform
import re
import subprocess

import numpy as np
import pytest
from util import F32, buf, ld, loop

from kiln.build_module import build
from kiln.codegen import toolchain
from kiln.codegen.c import render
from kiln.errors import CodegenError
from kiln.target import Target
from kiln.te import expr as E
from kiln.tir import stmt as S

# vector blocks are one register of the target wide at most (16 floats on AVX-512, 8 on AVX2)
L = Target("cpu").vector_lanes("float32")
AVX512 = "cpu -mattr=+avx,+avx2,+avx512bw,+avx512f,+avx512vl,+fma,+sse4.2"


def elementwise(n, kind="vectorized", fn=lambda a, b: a + b, dtype=F32, name="ew"):
    A, B, C = buf("A", n, dtype), buf("B", n, dtype), buf("C", n, dtype)
    i = E.Var("i")
    body = loop(i, n, kind, S.Store(C, i, fn(ld(A, i), ld(B, i))))
    return S.PrimFunc(name, [A, B, C], body)


def run_binary(func, a, b, out_dtype=None):
    mod = build(func)
    c = np.zeros(a.shape, out_dtype or a.dtype)
    mod(a, b, c)
    return c, mod


def gemm_func(M=128, N=3072, K=768, MR=4, NR=24, L=8):
    """The acceptance microkernel: parallel (jo, io) tiles, a 4x24 register tile, k outside."""
    A, Bp, C = buf("A", (M, K)), buf("Bp", (N // NR, K, NR)), buf("C", (M, N))
    CL = buf("C_local", MR * NR, scope="stack")
    fused, ii, jv, jl, k = (E.Var(n) for n in ("jo_io_fused", "ii", "jv", "jl", "k"))
    jo, io = fused // (M // MR), fused % (M // MR)
    at = ii * NR + jv * L + jl

    def tile(stmt):
        return loop(ii, MR, "unrolled", loop(jv, NR // L, "unrolled", loop(jl, L, "vectorized",
                                                                             stmt)))
    init = tile(S.Store(CL, at, E.FloatImm(0.0)))
    upd = tile(S.Store(CL, at, ld(CL, at) + ld(A, (io * MR + ii) * K + k)
                       * ld(Bp, (jo * K + k) * NR + jv * L + jl)))
    back = tile(S.Store(C, (io * MR + ii) * N + jo * NR + jv * L + jl, ld(CL, at)))
    body = loop(fused, (M // MR) * (N // NR), "parallel",
                S.Allocate(CL, S.seq([init, loop(k, K, "serial", upd), back])))
    return S.PrimFunc("gemm", [A, Bp, C], body)


@pytest.fixture(scope="module")
def rng():
    return np.random.default_rng(0)


# ---------------------------------------------------------------- elementwise

@pytest.mark.parametrize("n", [8, 16, 64, 67, 13, 3, 1])
def test_elementwise_add_vectorized(n, rng):
    a, b = rng.standard_normal(n).astype(F32), rng.standard_normal(n).astype(F32)
    c, mod = run_binary(elementwise(n), a, b)
    np.testing.assert_array_equal(c, a + b)
    if n >= 2:
        assert "kiln_load_f32x" in mod.source


def test_vectorized_16_lanes_inside_serial_loop(rng):
    A, B = buf("A", (5, 16)), buf("B", (5, 16))
    i, j = E.Var("i"), E.Var("j")
    body = loop(i, 5, "serial", loop(j, 16, "vectorized",
                                     S.Store(B, i * 16 + j, ld(A, i * 16 + j) * 2.0)))
    src = render(S.PrimFunc("scale", [A, B], body))
    assert f"kiln_f32x{L}" in src and f"kiln_store_f32x{L}(&B[i * 16]" in src
    a = rng.standard_normal((5, 16)).astype(F32)
    b = np.zeros_like(a)
    build(S.PrimFunc("scale", [A, B], body))(a, b)
    np.testing.assert_array_equal(b, a * 2)


def test_long_vectorized_loop_becomes_chunk_loop(rng):
    c, mod = run_binary(elementwise(16 * 9 + 5), *(rng.standard_normal(149).astype(F32)
                                                   for _ in range(2)))
    assert f"for (int32_t i_o = 0; i_o < {149 // L}; ++i_o)" in mod.source


def test_symbolic_extent_falls_back_to_scalar_loop(rng):
    n = E.Var("n")
    A, B = buf("A", 40), buf("B", 40)
    i = E.Var("i")
    f = S.PrimFunc("pref", [A, B], loop(i, n, "vectorized", S.Store(B, i, ld(A, i) + 1.0)),
                   scalar_params=[n])
    mod = build(f)
    assert "extent is not a constant" in mod.source and "#pragma GCC ivdep" in mod.source
    a, b = rng.standard_normal(40).astype(F32), np.zeros(40, F32)
    mod(a, b, 30)
    np.testing.assert_array_equal(b[:30], a[:30] + 1)
    assert not b[30:].any()


@pytest.mark.parametrize("dtype", ["int32", "int64"])
def test_integer_floordiv_floormod_negative(dtype):
    n = 16
    a = np.arange(-8, 8).astype(dtype) * 7
    b = np.array([3, -3, 5, 7] * 4, dtype)
    f = elementwise(n, fn=lambda x, y: E.BinOp("floordiv", x, y, dtype) * 100
                    + E.BinOp("floormod", x, y, dtype), dtype=dtype, name="fdm")
    c, mod = run_binary(f, a, b)
    np.testing.assert_array_equal(c, (a // b) * 100 + a % b)
    assert "kiln_floordiv" in mod.source


def test_floordiv_by_constant_on_loop_var_is_plain_division():
    A, B = buf("A", 64), buf("B", 64)
    i = E.Var("i")
    f = S.PrimFunc("idx", [A, B], loop(i, 64, "serial", S.Store(B, i, ld(A, i // 8 + i % 8))))
    src = render(f)
    assert "i / 8 + i % 8" in src and "kiln_floordiv" not in src


def test_float64_min_max_and_casts(rng):
    a, b = rng.standard_normal(24), rng.standard_normal(24)
    f = elementwise(24, fn=lambda x, y: E.max(x, y) - E.min(x, y) * 2.0, dtype="float64",
                    name="mm")
    c, mod = run_binary(f, a, b)
    np.testing.assert_allclose(c, np.maximum(a, b) - np.minimum(a, b) * 2, rtol=1e-15)
    assert "kiln_maxn_f64x" in mod.source  # NaN-propagating lanes


def test_bool_output_and_uint8_input(rng):
    A, B, C = buf("A", 32, "uint8"), buf("B", 32), buf("C", 32, "bool")
    i = E.Var("i")
    val = E.cast(F32, ld(A, i)) > ld(B, i)
    f = S.PrimFunc("cmp", [A, B, C], loop(i, 32, "vectorized", S.Store(C, i, val)))
    a = rng.integers(0, 255, 32).astype("uint8")
    b = (rng.random(32) * 255).astype(F32)
    c = np.zeros(32, bool)
    build(f)(a, b, c)
    np.testing.assert_array_equal(c, a.astype(F32) > b)


def test_gather_and_scatter(rng):
    A, B = buf("A", 64), buf("B", 64)
    i = E.Var("i")
    # B[2i] = A[2i + 1] * 3 for i < 32: stride-2 loads and stores
    f = S.PrimFunc("gs", [A, B], loop(i, 32, "vectorized",
                                      S.Store(B, i * 2, ld(A, i * 2 + 1) * 3.0)))
    a, b = rng.standard_normal(64).astype(F32), np.zeros(64, F32)
    build(f)(a, b)
    np.testing.assert_array_equal(b[0::2], a[1::2] * 3)
    assert not b[1::2].any()


def test_let_inside_vector_block(rng):
    A, B = buf("A", (4, 8)), buf("B", (4, 8))
    i, j, x, s = E.Var("i"), E.Var("j"), E.Var("x", F32), E.Var("s")
    body = loop(i, 4, "serial", loop(j, 8, "vectorized", S.LetStmt(
        s, i * 8, S.LetStmt(x, ld(A, s + j) * 2.0, S.Store(B, s + j, x + x)))))
    a, b = rng.standard_normal((4, 8)).astype(F32), np.zeros((4, 8), F32)
    build(S.PrimFunc("lets", [A, B], body))(a, b)
    np.testing.assert_array_equal(b, a * 4)


# ---------------------------------------------------------------- selects and padding

def padded_shift(n):
    """B[i] = A[i - 1] if 1 <= i <= n else 0, for i in [0, n + 2): reads would run off A."""
    A, B = buf("A", n), buf("B", n + 2)
    i = E.Var("i")
    val = E.Select(E.all(i - 1 >= 0, i - 1 < n), ld(A, i - 1), E.FloatImm(0.0))
    return S.PrimFunc("pad", [A, B], loop(i, n + 2, "vectorized", S.Store(B, i, val)))


def test_select_padding_is_lazy_per_lane(rng):
    f = padded_shift(14)
    src = render(f)
    assert "A[-1]" not in src and "A[14]" not in src  # never read out of range
    assert "0.0f" in src
    a, b = rng.standard_normal(14).astype(F32), np.ones(16, F32)
    build(f)(a, b)
    np.testing.assert_array_equal(b, np.concatenate([[0], a, [0]]))


def test_select_invariant_condition_uses_vector_ternary(rng):
    A, B = buf("A", (3, 8)), buf("B", (3, 8))
    i, j = E.Var("i"), E.Var("j")
    val = E.Select(i > 0, ld(A, (i - 1) * 8 + j), E.FloatImm(-1.0))
    f = S.PrimFunc("rowpad", [A, B], loop(i, 3, "serial", loop(j, 8, "vectorized",
                                                                  S.Store(B, i * 8 + j, val))))
    src = render(f)
    assert re.search(r"\(i > 0 \? kiln_load_f32x8\(&A\[", src)
    a, b = rng.standard_normal((3, 8)).astype(F32), np.zeros((3, 8), F32)
    build(f)(a, b)
    np.testing.assert_array_equal(b, np.concatenate([-np.ones((1, 8), F32), a[:2]]))


def test_select_mask_blend(rng):
    f = elementwise(16, fn=lambda x, y: E.Select(x > y, E.FloatImm(1.0), E.FloatImm(-1.0)) * y,
                    name="blend")
    a, b = rng.standard_normal(16).astype(F32), rng.standard_normal(16).astype(F32)
    c, mod = run_binary(f, a, b)
    np.testing.assert_array_equal(c, np.where(a > b, 1, -1).astype(F32) * b)
    assert f"kiln_sel_f32x{L}" in mod.source


def test_select_reading_in_range_blends_vectors(rng):
    """A causal mask, where(m[i], s[i] * 0.125, -inf): the branch's load stays inside s on
    every lane, so both branches load as vectors and blend (the padding case above, whose
    load would leave A, keeps its lane-by-lane reads)."""
    M, A, B = buf("M", 32, "bool"), buf("A", 32), buf("B", 32)
    i = E.Var("i")
    val = E.Select(ld(M, i), ld(A, i) * 0.125, E.FloatImm(-math.inf))
    f = S.PrimFunc("causal", [M, A, B], loop(i, 32, "vectorized", S.Store(B, i, val)))
    src = render(f)
    assert f"kiln_sel_f32x{L}" in src and "? A[" not in src
    m = rng.random(32) < 0.5
    a, b = rng.standard_normal(32).astype(F32), np.zeros(32, F32)
    build(f)(m, a, b)
    np.testing.assert_array_equal(b, np.where(m, a * np.float32(0.125), -np.inf))


@pytest.mark.parametrize("fn", ["erf", "tanh", "sigmoid", "log", "where"])
def test_vector_helpers_need_no_if_conversion(fn, rng):
    """The vector select (in erf, tanh, sigmoid, log and a where) and the range clamps' min
    and max are bitwise blends, not lane loops with `? :`: GCC only if-converts those in the
    loop vectorizer, which toolchain turns off for GCC (the loop measured 8-47x slower)."""
    A, B = buf("A", 64), buf("B", 64)
    i = E.Var("i")
    x = ld(A, i)
    val = E.Select(x > 0.0, x, x * 0.1) if fn == "where" else E.Call(fn, [x], F32)
    f = S.PrimFunc(fn, [A, B], loop(i, 64, "vectorized", S.Store(B, i, val)))
    src = render(f)
    assert "kiln_sel_f32x" in src and "? a[i] : b[i]" not in src
    a, b = rng.standard_normal(64).astype(F32), np.zeros(64, F32)
    if fn == "log":
        a = np.abs(a) + 0.1
    build(f)(a, b)
    ref = {"erf": np.vectorize(math.erf), "tanh": np.tanh, "log": np.log,
           "sigmoid": lambda v: 1 / (1 + np.exp(-v)),
           "where": lambda v: np.where(v > 0, v, v * 0.1)}
    np.testing.assert_allclose(b, ref[fn](a.astype(np.float64)), rtol=2e-6, atol=1e-7)


# ---------------------------------------------------------------- loops

def test_unrolled_constant_loop_is_expanded(rng):
    A, B = buf("A", 12), buf("B", 12)
    i, u = E.Var("i"), E.Var("u")
    body = loop(i, 3, "serial", loop(u, 4, "unrolled",
                                     S.Store(B, i * 4 + u, ld(A, i * 4 + u) + 1.0)))
    mod = build(S.PrimFunc("unr", [A, B], body))
    assert "for (int32_t u" not in mod.source and "B[i * 4 + 3] = A[i * 4 + 3] + 1.0f;" \
        in mod.source
    a, b = rng.standard_normal(12).astype(F32), np.zeros(12, F32)
    mod(a, b)
    np.testing.assert_array_equal(b, a + 1)


def test_unrolled_symbolic_loop_gets_pragma():
    n = E.Var("n")
    A, B = buf("A", 12), buf("B", 12)
    u = E.Var("u")
    f = S.PrimFunc("unr2", [A, B], loop(u, n, "unrolled", S.Store(B, u, ld(A, u))),
                   scalar_params=[n])
    assert "#pragma GCC unroll 8" in render(f)


def test_auto_unroll_pragma_expands_small_inner_loops():
    A, B = buf("A", 16), buf("B", 16)
    i, j = E.Var("i"), E.Var("j")
    body = loop(i, 4, "serial", loop(j, 4, "serial", S.Store(B, i * 4 + j, ld(A, i * 4 + j))),
                auto_unroll_max_step=16)
    src = render(S.PrimFunc("au", [A, B], body))
    assert "for (" not in src.split("int32_t au(")[1].split("return 0;")[0]


def test_parallel_loop_and_nested_parallel(rng):
    A, B = buf("A", (6, 5)), buf("B", (6, 5))
    i, j = E.Var("i"), E.Var("j")
    body = loop(i, 6, "parallel", loop(j, 5, "parallel",
                                       S.Store(B, i * 5 + j, ld(A, i * 5 + j) * ld(A, i * 5 + j))))
    mod = build(S.PrimFunc("par", [A, B], body), target="cpu -num-cores=2")
    assert mod.source.count("#pragma omp parallel for schedule(static) num_threads(2)") == 1
    assert "nested parallel loop runs serially" in mod.source
    a, b = rng.standard_normal((6, 5)).astype(F32), np.zeros((6, 5), F32)
    mod(a, b)
    np.testing.assert_array_equal(b, a * a)


def test_reductions_scalar_and_vectorized(rng):
    A, R, Cs = buf("A", (7, 24)), buf("R", 7), buf("Cs", 24)
    i, k, j = E.Var("i"), E.Var("k"), E.Var("j")
    rows = loop(i, 7, "parallel", S.seq([S.Store(R, i, E.FloatImm(0.0)), loop(
        k, 24, "serial", S.Store(R, i, ld(R, i) + ld(A, i * 24 + k)))]))
    cols = S.seq([loop(j, 24, "vectorized", S.Store(Cs, j, E.FloatImm(0.0))),
                  loop(k, 7, "serial", loop(j, 24, "vectorized",
                                            S.Store(Cs, j, ld(Cs, j) + ld(A, k * 24 + j))))])
    mod = build(S.PrimFunc("red", [A, R, Cs], S.seq([rows, cols])))
    a = rng.standard_normal((7, 24)).astype(F32)
    r, cs = np.zeros(7, F32), np.zeros(24, F32)
    mod(a, r, cs)
    np.testing.assert_allclose(r, a.sum(1), rtol=1e-5)
    np.testing.assert_allclose(cs, a.sum(0), rtol=1e-5)


def test_reduction_over_vectorized_axis_runs_scalar(rng):
    A, S1 = buf("A", 32), buf("S1", 1)
    j = E.Var("j")
    body = S.seq([S.Store(S1, 0, E.FloatImm(0.0)),
                  loop(j, 32, "vectorized", S.Store(S1, 0, ld(S1, 0) + ld(A, j)))])
    mod = build(S.PrimFunc("vsum", [A, S1], body))
    assert "does not depend on j" in mod.source and "ivdep" not in mod.source
    a, s = rng.standard_normal(32).astype(F32), np.zeros(1, F32)
    mod(a, s)
    np.testing.assert_allclose(s[0], a.sum(), rtol=1e-5)


# ---------------------------------------------------------------- allocations

def test_heap_and_stack_buffers(rng):
    A, B = buf("A", (4, 64)), buf("B", (4, 64))
    T, U = buf("T", 64, scope="heap"), buf("U", 64, scope="stack")
    i, j = E.Var("i"), E.Var("j")
    body = loop(i, 4, "parallel", S.Allocate(T, S.Allocate(U, S.seq([
        loop(j, 64, "vectorized", S.Store(T, j, ld(A, i * 64 + j) * 2.0)),
        loop(j, 64, "serial", S.Store(U, 63 - j, ld(T, j))),
        loop(j, 64, "vectorized", S.Store(B, i * 64 + j, ld(U, j) + 1.0))]))))
    mod = build(S.PrimFunc("alloc", [A, B], body))
    assert "aligned_alloc(64, 256)" in mod.source and "free(T);" in mod.source
    assert "#pragma omp atomic write" in mod.source
    assert "float U[64] __attribute__((aligned(64)));" in mod.source
    a, b = rng.standard_normal((4, 64)).astype(F32), np.zeros((4, 64), F32)
    mod(a, b)
    np.testing.assert_array_equal(b, a[:, ::-1] * 2 + 1)


def test_allocations_inside_unrolled_loop(rng):
    A, B = buf("A", 4), buf("B", 4)
    T, H = buf("T", 1, scope="stack"), buf("H", 1, scope="heap")
    u = E.Var("u")
    zero = E.IntImm(0)
    body = loop(u, 4, "unrolled", S.Allocate(T, S.Allocate(H, S.seq([
        S.Store(T, zero, ld(A, u) * 2.0), S.Store(H, zero, ld(T, zero) + 1.0),
        S.Store(B, u, ld(H, zero))]))))
    mod = build(S.PrimFunc("ualloc", [A, B], body))
    a, b = rng.standard_normal(4).astype(F32), np.zeros(4, F32)
    mod(a, b)
    np.testing.assert_array_equal(b, a * 2 + 1)


# ---------------------------------------------------------------- GEMM microkernel

@pytest.fixture(scope="module")
def gemm_module():
    return build(gemm_func())


def test_gemm_microkernel_matches_numpy(gemm_module, rng):
    M, N, K, NR = 128, 3072, 768, 24
    a = rng.standard_normal((M, K)).astype(F32)
    b = rng.standard_normal((K, N)).astype(F32)
    bp = np.ascontiguousarray(b.reshape(K, N // NR, NR).transpose(1, 0, 2))
    c = np.full((M, N), np.nan, F32)
    gemm_module(a, bp, c)
    np.testing.assert_allclose(c, a @ b, rtol=1e-4, atol=1e-3)


def test_gemm_golden_source(gemm_module):
    src = gemm_module.source
    assert "kiln_f32x8 C_local[12];" in src
    assert "#pragma omp parallel for schedule(static)" in src
    # the register tile update: accumulator + broadcast(A) * vector(Bp), contracted to an FMA
    assert re.search(r"C_local\[11\] = \(C_local\[11\] \+ \(vt_\d+ \* vt_\d+\)\);", src)
    assert "kiln_splat_f32x8(A[" in src and "kiln_load_f32x8(&Bp[" in src


@pytest.mark.skipif(platform.machine() != "x86_64", reason="assembly check is for x86-64")
def test_gemm_inner_loop_assembly(tmp_path):
    """Compiled (not run) for the AVX-512 CPU the kernel was tuned on, whatever the host:
    32 vector registers hold the 12 accumulators, 3 loads and broadcasts with no spill."""
    zen4 = Target("cpu -mattr=+avx,+avx2,+avx512bw,+avx512f,+avx512vl,+fma,+sse4.2")
    src = tmp_path / "gemm.c"
    src.write_text(render(gemm_func(), zen4))
    flags = [f for f in zen4.cflags() if f != "-shared"]
    asm = tmp_path / "gemm.s"
    subprocess.run([toolchain.compiler(), *flags, "-S", "-o", str(asm), str(src)], check=True)
    text = asm.read_text()
    loops = []
    for m in re.finditer(r"\n(\.L\d+):\n", text):
        end = re.compile(r"\n\s+j\w+\s+" + re.escape(m.group(1)) + r"\n").search(text, m.end())
        if end:
            loops.append(text[m.end():end.start()])
    inner = [body for body in loops if "vfmadd" in body and ".L" not in body]
    assert inner, "no FMA loop found"
    body = min(inner, key=len)  # the k loop: no labels inside
    assert len(re.findall(r"vfmadd\d+ps\s+%ymm\d+, %ymm\d+, %ymm\d+", body)) == 12
    assert body.count("vbroadcastss") == 4
    assert len(re.findall(r"vmov[ua]ps\s+-?\d*\(%\w+\), %ymm", body)) == 3
    assert "rsp" not in body and "rbp" not in body  # no spills


# ---------------------------------------------------------------- transcendental bodies

def gelu_func(n=64, form="erf"):
    A, B = buf("A", n), buf("B", n)
    i = E.Var("i")
    x = ld(A, i)
    if form == "erf":
        y = 0.5 * x * (1.0 + E.Call("erf", [x * 0.7071067811865476], F32))
    else:
        inner = 0.7978845608028654 * (x + 0.044715 * x * x * x)
        y = 0.5 * x * (1.0 + E.Call("tanh", [inner], F32))
    return S.PrimFunc(f"gelu_{form}", [A, B], loop(i, n, "vectorized", S.Store(B, i, y)))


@pytest.mark.parametrize("form", ["erf", "tanh"])
def test_vectorized_gelu_has_no_libm_calls(form, rng):
    mod = build(gelu_func(64, form))
    code = re.sub(r"/\*.*?\*/", "", mod.source, flags=re.S)
    assert not re.search(r"\b(exp|erf|tanh|log)f?\(", code)
    assert f"kiln_{form}_f32x{L}(" in code
    x = rng.standard_normal(64).astype(F32) * 3
    y = np.zeros(64, F32)
    mod(x, y)
    xd = x.astype(np.float64)
    if form == "erf":
        ref = 0.5 * xd * (1 + np.vectorize(math.erf)(xd / math.sqrt(2)))
    else:
        ref = 0.5 * xd * (1 + np.tanh(0.7978845608028654 * (xd + 0.044715 * xd ** 3)))
    np.testing.assert_allclose(y, ref, rtol=2e-6, atol=1e-7)


def test_scalar_code_calls_libm():
    A, B = buf("A", 4), buf("B", 4)
    i = E.Var("i")
    f = S.PrimFunc("sc", [A, B], loop(i, 4, "serial", S.Store(
        B, i, E.Call("exp", [ld(A, i)], F32) + E.Call("sigmoid", [ld(A, i)], F32))))
    src = render(f)
    assert "expf(A[i])" in src and "1.0f / (1.0f + expf(-(A[i])))" in src


# ---------------------------------------------------------------- errors and text

def test_float16_is_a_codegen_error():
    A, B = buf("A", 4, "float16"), buf("B", 4, "float16")
    i = E.Var("i")
    with pytest.raises(CodegenError, match="float16"):
        render(S.PrimFunc("h", [A, B], loop(i, 4, "serial", S.Store(B, i, ld(A, i)))))


def test_header_signature_and_exports():
    src = render(elementwise(8, name="my.add"))
    assert "int32_t my_add(const float* restrict A, const float* restrict B, " \
           "float* restrict C)" in src
    assert src.count('__attribute__((visibility("default")))') == 5
    for sym in ("my_add_packed(void** args)", "my_add_time(void** args", "my_add__kiln_meta",
                "kiln_module_entries"):
        assert sym in src
    assert " *   C: float32[8] (written)" in src


def test_name_clashes_are_renamed():
    A, B = buf("exp", 4), buf("B", 4)
    i1, i2 = E.Var("i"), E.Var("i")
    body = loop(i1, 2, "serial", loop(i2, 2, "serial", S.Store(B, i1 * 2 + i2,
                                                                ld(A, i1 * 2 + i2))))
    src = render(S.PrimFunc("clash", [A, B], body))
    assert "exp_[" in src and "int32_t i_1 = 0" in src


def test_stride_two_loads_are_two_vector_loads_and_a_shuffle():
    """y[i] = x[2i] + x[2i + 1] over 16 lanes: each stride-2 read is two vector loads that
    end at the last element the lanes read (x[15 + 15] = x[30] and x[31]: nothing past
    x's 32 elements) and one shuffle, not 16 scalar loads; the values match."""
    import kiln
    from kiln import te
    x = te.placeholder((32,), name="x")
    y = te.compute((16,), lambda i: x[2 * i] + x[2 * i + 1], name="y")
    s = te.create_schedule(y.op)
    s[y].vectorize(y.op.axis[0])
    wide = render(kiln.lower(s, [x, y]), AVX512)  # 16-lane registers: printed, not run
    assert wide.count("__builtin_shuffle") == 2
    assert "&x[15]" in wide and "&x[16]" in wide and "&x[17]" not in wide
    f = kiln.build(s, [x, y], target="cpu")  # this host: 16 // L blocks, two shuffles each
    assert f.source.count("__builtin_shuffle") == 2 * (16 // L)
    xn = np.arange(32, dtype=np.float32)
    out = np.empty(16, np.float32)
    f(xn, out)
    np.testing.assert_array_equal(out, xn[0::2] + xn[1::2])

