"""bfloat16 on the CPU: conversions, the pair dot product (vdpbf16ps), the compute rewrite,
the packed weight layout, graph builds in dtype='bfloat16' and their errors."""

from __future__ import annotations

import numpy as np
import pytest
from util import cosine, tiny_cli_model

import kiln
from kiln import auto_scheduler, te
from kiln.errors import DTypeError, TargetError
from kiln.runtime.bfloat16 import from_bfloat16, to_bfloat16
from kiln.target import Target

HAS_BF16 = Target("cpu").has("avx512bf16")
F32 = "float32"


def f32(x):
    return x.astype(F32)


def test_rounding_matches_reference_rules():
    x = np.array([1.0, 1.00390625, 1.01171875, -2.5, 3e38, np.inf, -np.inf, np.nan, 1e-40],
                 np.float32)
    bits = to_bfloat16(x)
    # 1 + 2^-8 is a tie between 1 and 1 + 2^-7: rounds to even (1.0); 1 + 3*2^-8 rounds up
    assert from_bfloat16(bits)[:3].tolist() == [1.0, 1.0, 1.015625]
    assert from_bfloat16(bits)[3] == -2.5
    assert np.isinf(from_bfloat16(bits)[5]) and np.isinf(from_bfloat16(bits)[6])
    assert np.isnan(from_bfloat16(bits)[7])
    ml = pytest.importorskip("ml_dtypes")
    ref = x.astype(ml.bfloat16).view(np.uint16)
    ok = ~np.isnan(x)
    assert (bits[ok] == ref[ok]).all()


def _cast_kernel(vectorize: bool):
    n = 64
    A = te.placeholder((n,), F32, name="A")
    B = te.compute((n,), lambda i: A[i].astype("bfloat16"), name="B")
    C = te.compute((n,), lambda i: B[i].astype(F32) * 2.0, name="C")
    s = te.create_schedule(C.op)
    if vectorize:
        for t in (B, C):
            o, i = s[t].split(t.op.axis[0], 16)
            s[t].vectorize(i)
    return kiln.build(s, [A, B, C], "cpu")


@pytest.mark.parametrize("vectorize", [False, True])
def test_casts_round_trip_scalar_and_vector(vectorize):
    f = _cast_kernel(vectorize)
    rng = np.random.default_rng(0)
    a = rng.standard_normal(64).astype(F32) * 100
    a[3], a[7] = np.nan, np.inf
    b, c = np.zeros(64, np.uint16), np.zeros(64, F32)
    f(a, b, c)
    assert (b == to_bfloat16(a)).all()
    np.testing.assert_array_equal(c, from_bfloat16(to_bfloat16(a)) * 2)


def test_arithmetic_on_bf16_values_computes_in_float32():
    """bf16 arithmetic runs in float32 inside a kernel and rounds once where it is stored
    (as torch.compile's fused kernels do), so the result is within half a bf16 ulp."""
    A = te.placeholder((32,), "bfloat16", name="A")
    B = te.compute((32,), lambda i: A[i] * A[i] + A[i], name="B")  # bf16 arithmetic
    s = te.create_schedule(B.op)
    f = kiln.build(s, [A, B], "cpu")
    x = to_bfloat16(np.linspace(-3, 3, 32, dtype=F32))
    out = np.zeros(32, np.uint16)
    f(x, out)
    xf = from_bfloat16(x).astype(np.float64)
    exact = xf * xf + xf
    np.testing.assert_allclose(from_bfloat16(out), exact, rtol=2.0 ** -8, atol=1e-6)
    assert (from_bfloat16(out) == from_bfloat16(to_bfloat16(exact))).mean() > 0.9


def _mm(M, N, K, b_kn: bool):
    A = te.placeholder((M, K), "bfloat16", name="A")
    B = te.placeholder((K, N) if b_kn else (N, K), "bfloat16", name="B")
    k = te.reduce_axis((0, K), name="k")
    C = te.compute((M, N), lambda i, j: te.sum(
        f32(A[i, k]) * f32(B[k, j] if b_kn else B[j, k]), axis=k), name="C")
    return A, B, C


def test_pair_rewrite_shape():
    A, B, C = _mm(8, 32, 16, True)
    dag = auto_scheduler.ComputeDAG([A, B, C])
    body = repr(dag.tensors[-1].op.body[0])
    assert "(k * 2)" in body and "((k * 2) + 1)" in body
    assert dag.tensors[-1].op.reduce_axis[0].extent.value == 8
    # odd K or float32 operands: unchanged
    A2, B2, C2 = _mm(8, 32, 15, True)
    assert auto_scheduler.ComputeDAG([A2, B2, C2]).tensors[-1] is C2


def _tiled(dag, rows=4, lanes=16):
    C = dag.tensors[-1]
    s = te.create_schedule(C.op)
    i, j = s[C].op.axis
    io, ii = s[C].split(i, rows)
    jo, ji = s[C].split(j, lanes)
    (k,) = s[C].op.reduce_axis
    s[C].reorder(io, jo, k, ii, ji)
    s[C].unroll(ii)
    s[C].vectorize(ji)
    return s


@pytest.mark.parametrize("b_kn", [True, False])
def test_pair_dot_product_matches_numpy(b_kn):
    M, N, K = 8, 48, 64
    A, B, C = _mm(M, N, K, b_kn)
    dag = auto_scheduler.ComputeDAG([A, B, C])
    s = _tiled(dag)
    f = kiln.build(s, dag.tensors, "cpu")
    src = f.get_source()
    lanes = Target("cpu").vector_lanes("float32")  # one block per register of this host
    if b_kn:  # two lane-contiguous rows: zipped into pairs, one dot2 per vector
        assert f"kiln_zip_bf16x{lanes}(" in src and f"kiln_dot2_bf16_f32x{lanes}(" in src
    rng = np.random.default_rng(1)
    a = to_bfloat16(rng.standard_normal((M, K)))
    b = to_bfloat16(rng.standard_normal((K, N) if b_kn else (N, K)))
    c = np.zeros((M, N), F32)
    f(a, b, c)
    bf = from_bfloat16(b)
    ref = from_bfloat16(a).astype(np.float64) @ (bf if b_kn else bf.T).astype(np.float64)
    np.testing.assert_allclose(c, ref, rtol=1e-5, atol=1e-4)


@pytest.mark.skipif(not HAS_BF16, reason="needs AVX512-BF16")
def test_dot2_compiles_to_vdpbf16ps(tmp_path):
    import subprocess

    from kiln.codegen import toolchain
    A, B, C = _mm(8, 32, 32, True)
    dag = auto_scheduler.ComputeDAG([A, B, C])
    f = kiln.build(_tiled(dag), dag.tensors, "cpu")
    src = tmp_path / "k.c"
    src.write_text(f.get_source())
    flags = [x for x in Target("cpu").cflags() if x not in ("-shared", "-fPIC")]
    asm = tmp_path / "k.s"
    subprocess.run([toolchain.compiler(), *flags, "-S", "-o", str(asm), str(src)], check=True)
    assert "vdpbf16ps" in asm.read_text()


def test_packed_weight_layout_has_pair_dim():
    A, B, C = _mm(16, 64, 32, False)
    C = te.compute(C.shape, lambda i, j: C[i, j] + 1.0, name="D")
    C.op.input_tensors[0].op.attrs["layout_free_placeholders"] = [B]
    task = auto_scheduler.SearchTask(
        compute_dag=auto_scheduler.ComputeDAG([A, B, C]), workload_key="bf16_layout_test",
        target="cpu",
        layout_rewrite_option=auto_scheduler.LayoutRewriteOption.REWRITE_FOR_PRE_TRANSFORMED)
    from kiln.graph.default_schedule import default_schedule
    state = default_schedule(task.compute_dag, task.layout_free, task.target)
    lay = auto_scheduler.input_layouts(state, task.compute_dag.tensors)[1]
    if lay:  # the weight is packed [N/f, K/2, f, 2]: each lane's pair adjacent
        assert lay[-1] == (1, 2)


@pytest.mark.skipif(not HAS_BF16, reason="needs AVX512-BF16")
def test_graph_bf16_matches_fp32():
    m = tiny_cli_model()
    lib32 = kiln.graph.build(m.graph, m.params, "cpu")
    lib16 = kiln.graph.build(m.graph, m.params, "cpu", dtype="bf16")
    o32 = list(lib32.run(**m.inputs).values())[0]
    o16 = list(lib16.run(**m.inputs).values())[0]
    assert o16.dtype == np.float32
    cos = cosine(o32, o16)
    assert cos > 0.999
    assert np.abs(o32 - o16).max() < 0.05
    assert "kiln_dot2_bf16" in lib16.source and "kiln_dot2_bf16" not in lib32.source
    tasks, _ = auto_scheduler.extract_tasks(m.graph, m.params, "cpu", dtype="bfloat16")
    products = [t for t in tasks if "dense" in t.desc or "batch_matmul" in t.desc]
    assert any("batch_matmul" in t.desc for t in products)
    assert any("dense" in t.desc for t in products)
    for t in products:  # weights and activations (attention's Q.K^T, P.V) read bfloat16
        assert "(k * 2)" in str(t.compute_dag) and "bfloat16" in str(t.compute_dag), t.desc


def test_graph_bf16_without_activation_products():
    from kiln.graph.passes.bf16 import to_bfloat16_graph
    from kiln.graph.tasks import prepare_graph
    m = tiny_cli_model()
    g, _ = prepare_graph(m.graph, m.params)
    g16 = to_bfloat16_graph(g, activations=False)
    mm = [n for n in g16.nodes() if n.op == "batch_matmul"]
    assert mm and all(i.dtype == "float32" for n in mm for i in n.inputs)
    dense = [n for n in g16.nodes() if n.op == "dense"]
    assert dense and all(n.inputs[1].dtype == "bfloat16" for n in dense)


def test_bf16_errors():
    m = tiny_cli_model()
    with pytest.raises(DTypeError, match="float32"):
        kiln.graph.build(m.graph, m.params, "cpu", dtype="float16")
    no_bf16 = "cpu -mattr=+avx,+avx2,+fma,+sse4.2,-avx512bf16"
    with pytest.raises(TargetError, match="AVX512-BF16"):
        kiln.graph.build(m.graph, m.params, no_bf16, dtype="bfloat16")
    with pytest.raises(DTypeError):
        kiln.graph.build(m.graph, m.params, "cuda -arch=sm_90", dtype="bfloat16")


def test_kernel_accepts_ml_dtypes_and_rejects_float():
    ml = pytest.importorskip("ml_dtypes")
    A, B, C = _mm(4, 16, 8, True)
    s = te.create_schedule(C.op)
    f = kiln.build(s, [A, B, C], "cpu")
    a = np.ones((4, 8), np.float32)
    b = np.ones((8, 16), np.float32)
    c = np.zeros((4, 16), np.float32)
    f(a.astype(ml.bfloat16), b.astype(ml.bfloat16), c)
    assert (c == 8).all()
    with pytest.raises(kiln.errors.ArgumentError, match="bfloat16"):
        f(a, b, c)


def test_merged_kernels_keep_preprocessor_groups_whole():
    """Helpers guarded by `#if ISA ... #else ... #endif` (vdpbf16ps, vscalefps) are shared
    between kernels as whole groups, never line by line."""
    from kiln.graph.csource import _EXPORT, merge_kernels

    def helper(name):
        return (f"#if defined(X)\n#include <immintrin.h>\nstatic int {name}(void) {{ return 1; }}\n"
                f"#else\nstatic int {name}(void) {{ return 2; }}\n#endif\n")
    k1 = helper("f") + helper("g") + _EXPORT + "int k1(void) { return f() + g(); }\n"
    k2 = helper("g") + helper("h") + _EXPORT + "int k2(void) { return g() + h(); }\n"
    text = merge_kernels([k1, k2])
    assert text.count("#if defined(X)") == 3 and text.count("#endif") == 3
    assert text.count("#else") == 3 and text.count("static int g(void)") == 2
