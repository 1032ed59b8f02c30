"""Multi-output computes and tuple reducers (TVM's "Compute and Reduce with Tuple Inputs"
tutorial): one loop nest stores every output; a tuple reducer (argmax) combines its components
together. Checked against NumPy on the CPU, on the loop-IR interpreter for GPU schedules, and
compiled with NVRTC."""

import numpy as np
import pytest
import tir_interp

import kiln as tvm
from kiln import auto_scheduler, te
from kiln.codegen import cuda as cuda_codegen
from kiln.errors import ExprError, LoweringError, ScheduleError

RNG = np.random.default_rng(7)


def _argmax():
    def fcombine(x, y):
        lhs = tvm.tir.Select((x[1] >= y[1]), x[0], y[0])
        rhs = tvm.tir.Select((x[1] >= y[1]), x[1], y[1])
        return lhs, rhs

    def fidentity(t0, t1):
        return tvm.tir.const(-1, t0), tvm.te.min_value(t1)
    return te.comm_reducer(fcombine, fidentity, name="argmax")


def _rand(*shape, dtype="float32"):
    return RNG.standard_normal(shape).astype(dtype)


def test_tutorial_multiple_outputs_of_one_compute():
    n = te.var("n")
    m = te.var("m")
    A0 = te.placeholder((m, n), name="A0")
    A1 = te.placeholder((m, n), name="A1")
    B0, B1 = te.compute((m, n), lambda i, j: (A0[i, j] + 2, A1[i, j] * 3), name="B")
    assert B0.op is B1.op and (B0.value_index, B1.value_index) == (0, 1)
    s = te.create_schedule(B0.op)
    text = str(tvm.lower(s, [A0, A1, B0, B1], simple_mode=True))
    assert "B" in text
    f = tvm.build(s, [A0, A1, B0, B1])
    a0, a1 = _rand(5, 9), _rand(5, 9)
    b0, b1 = np.zeros((5, 9), "float32"), np.zeros((5, 9), "float32")
    f(a0, a1, b0, b1)
    np.testing.assert_allclose(b0, a0 + 2)
    np.testing.assert_allclose(b1, a1 * 3)


def test_one_loop_nest_stores_both_outputs():
    A0 = te.placeholder((6, 7), name="A0")
    B0, B1 = te.compute((6, 7), lambda i, j: (A0[i, j] + 2, A0[i, j] * 3), name="B")
    text = str(tvm.lower(te.create_schedule(B0.op), [A0, B0, B1]))
    assert text.count("for ") == 2  # one nest, two stores
    assert "B[" in text and "B_v1[" in text


def test_tutorial_argmax_with_symbolic_sizes():
    argmax = _argmax()
    m = te.var("m")
    n = te.var("n")
    idx = te.placeholder((m, n), name="idx", dtype="int32")
    val = te.placeholder((m, n), name="val", dtype="int32")
    k = te.reduce_axis((0, n), "k")
    T0, T1 = te.compute((m,), lambda i: argmax((idx[i, k], val[i, k]), axis=k), name="T")
    s = te.create_schedule(T0.op)
    f = tvm.build(s, [idx, val, T0, T1])
    iv = np.tile(np.arange(11, dtype="int32"), (4, 1))
    vv = RNG.integers(-50, 50, (4, 11)).astype("int32")
    t0, t1 = np.zeros(4, "int32"), np.zeros(4, "int32")
    f(iv, vv, t0, t1)
    np.testing.assert_array_equal(t0, vv.argmax(1))  # ties: the first index (x[1] >= y[1])
    np.testing.assert_array_equal(t1, vv.max(1))


def test_argmax_vectorized_and_parallel_reads_old_values_before_storing():
    argmax = _argmax()
    val = te.placeholder((64, 100), name="val")
    k = te.reduce_axis((0, 100), "k")
    T0, T1 = te.compute((64,), lambda i: argmax((k, val[i, k]), axis=k), name="T")
    s = te.create_schedule(T0.op)
    io, ii = s[T0].split(T0.op.axis[0], factor=16)
    s[T0].reorder(io, k, ii)
    s[T0].vectorize(ii)
    s[T0].parallel(io)
    f = tvm.build(s, [val, T0, T1])
    v = _rand(64, 100)
    t0, t1 = np.zeros(64, "int32"), np.zeros(64, "float32")
    f(v, t0, t1)
    np.testing.assert_array_equal(t0, v.argmax(1))
    np.testing.assert_array_equal(t1, v.max(1))


def test_independent_reductions_in_one_compute_and_where():
    A = te.placeholder((8, 30), name="A")
    k = te.reduce_axis((0, 30), "k")
    S0, S1 = te.compute((8,), lambda i: (te.sum(A[i, k], axis=k, where=k < 20),
                                         te.max(A[i, k], axis=k, where=k < 20)), name="S")
    s = te.create_schedule(S0.op)
    f = tvm.build(s, [A, S0, S1])
    a = _rand(8, 30)
    s0, s1 = np.zeros(8, "float32"), np.zeros(8, "float32")
    f(a, s0, s1)
    np.testing.assert_allclose(s0, a[:, :20].sum(1), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(s1, a[:, :20].max(1))


def test_tutorial_schedule_multiple_outputs_compute_at():
    n = te.var("n")
    m = te.var("m")
    A0 = te.placeholder((m, n), name="A0")
    B0, B1 = te.compute((m, n), lambda i, j: (A0[i, j] + 2, A0[i, j] * 3), name="B")
    A1 = te.placeholder((m, n), name="A1")
    C = te.compute((m, n), lambda i, j: A1[i, j] + B0[i, j], name="C")
    s = te.create_schedule(C.op)
    s[B0].compute_at(s[C], C.op.axis[0])
    f = tvm.build(s, [A0, A1, C])
    a0, a1 = _rand(6, 5), _rand(6, 5)
    c = np.zeros((6, 5), "float32")
    f(a0, a1, c)
    np.testing.assert_allclose(c, a1 + (a0 + 2), rtol=1e-6, atol=1e-6)


def test_both_outputs_read_downstream_computed_at_and_inlined():
    A = te.placeholder((12, 10), name="A")
    B0, B1 = te.compute((12, 10), lambda i, j: (A[i, j] * 2, A[i, j] - 1), name="B")
    C = te.compute((12, 10), lambda i, j: B0[i, j] * B1[i, j], name="C")
    want = (A_np := _rand(12, 10)) * 2 * (A_np - 1)
    for how in ("at", "inline"):
        s = te.create_schedule(C.op)
        if how == "at":
            s[B0].compute_at(s[C], C.op.axis[0])
        else:
            s[B0].compute_inline()
        f = tvm.build(s, [A, C])
        c = np.zeros((12, 10), "float32")
        f(A_np, c)
        np.testing.assert_allclose(c, want, rtol=1e-6)


def test_gpu_schedules_on_the_interpreter_and_nvrtc():
    argmax = _argmax()
    val = te.placeholder((40, 33), name="val")
    k = te.reduce_axis((0, 33), "k")
    T0, T1 = te.compute((40,), lambda i: argmax((k, val[i, k]), axis=k), name="T")
    B0, B1 = te.compute((40, 33), lambda i, j: (val[i, j] + 1, val[i, j] * val[i, j]), name="B")
    s = te.create_schedule([T0.op, B0.op])
    bx, tx = s[T0].split(T0.op.axis[0], factor=16)
    s[T0].bind(bx, te.thread_axis("blockIdx.x"))
    s[T0].bind(tx, te.thread_axis("threadIdx.x"))
    fused = s[B0].fuse(*B0.op.axis)
    bx, tx = s[B0].split(fused, factor=64)
    s[B0].bind(bx, te.thread_axis("blockIdx.x"))
    s[B0].bind(tx, te.thread_axis("threadIdx.x"))
    args = [val, T0, T1, B0, B1]
    f = tvm.lower(s, args)
    v = _rand(40, 33)
    outs = [np.zeros(40, "int32"), np.zeros(40, "float32"),
            np.zeros((40, 33), "float32"), np.zeros((40, 33), "float32")]
    tir_interp.run(f, v, *outs)
    np.testing.assert_array_equal(outs[0], v.argmax(1))
    np.testing.assert_array_equal(outs[1], v.max(1))
    np.testing.assert_allclose(outs[2], v + 1, rtol=1e-6)
    np.testing.assert_allclose(outs[3], v * v, rtol=1e-6)
    src = cuda_codegen.render(f, "cuda -arch=sm_90")
    nvrtc = pytest.importorskip("kiln.codegen.nvrtc")
    if nvrtc.available():
        nvrtc.compile_cuda(src, "sm_90")
    tvm.build(s, args, target="cuda -arch=sm_90")  # builds without a GPU


def test_tuning_a_multi_output_reduction(tmp_path):
    @auto_scheduler.register_workload
    def sum_and_sumsq(M, N):
        A = te.placeholder((M, N), name="A")
        k = te.reduce_axis((0, N), "k")
        S0, S1 = te.compute((M,), lambda i: (te.sum(A[i, k], axis=k),
                                             te.sum(A[i, k] * A[i, k], axis=k)), name="S")
        return [A, S0, S1]
    task = auto_scheduler.SearchTask(func=sum_and_sumsq, args=(32, 128), target="llvm")
    log = str(tmp_path / "t.json")
    task.tune(auto_scheduler.TuningOptions(
        num_measure_trials=4, measure_callbacks=[auto_scheduler.RecordToFile(log)]))
    sch, args = task.apply_best(log)
    f = tvm.build(sch, args)
    a = _rand(32, 128)
    s0, s1 = np.zeros(32, "float32"), np.zeros(32, "float32")
    f(a, s0, s1)
    np.testing.assert_allclose(s0, a.sum(1), rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(s1, (a * a).sum(1), rtol=1e-4)


def test_cache_write_of_an_argmax_caches_both_outputs():
    """s.cache_write([B0, B1], "local") (TVM's list form) gives one local stage computing
    both; it is attached, tiled and vectorized like any cache, on the CPU and the IR."""
    argmax = _argmax()
    A = te.placeholder((64, 40), name="A")
    k = te.reduce_axis((0, 40), "k")
    B0, B1 = te.compute((64,), lambda i: argmax((k, A[i, k]), axis=k), name="B")
    s = te.create_schedule(B0.op)
    L0, L1 = s.cache_write([B0, B1], "local")
    assert L0.op is L1.op and (L0.value_index, L1.value_index) == (0, 1)
    io, ii = s[B0].split(B0.op.axis[0], factor=16)
    s[L0].compute_at(s[B0], io)
    (kk,) = s[L0].op.reduce_axis
    s[L0].reorder(kk, s[L0].op.axis[0])
    s[L0].vectorize(s[L0].op.axis[0])
    s[B0].vectorize(ii)
    s[B0].parallel(io)
    a = _rand(64, 40)
    for f in (tvm.build(s, [A, B0, B1]), None):
        idx, val = np.zeros(64, "int32"), np.zeros(64, "float32")
        if f is None:
            tir_interp.run(tvm.lower(s, [A, B0, B1]), a, idx, val)
        else:
            f(a, idx, val)
        np.testing.assert_array_equal(idx, a.argmax(1))
        np.testing.assert_allclose(val, a.max(1))
    C0, C1 = te.compute((8, 9), lambda i, j: (A[i, j] + 1, A[i, j] * 2), name="C")
    s = te.create_schedule(C0.op)
    CL1 = s.cache_write(C1, "local")          # one tensor: both are cached, C1's returned
    assert CL1.value_index == 1
    s[CL1].compute_at(s[C0], C0.op.axis[0])
    c0, c1 = np.zeros((8, 9), "float32"), np.zeros((8, 9), "float32")
    tvm.build(s, [A, C0, C1])(a, c0, c1)
    np.testing.assert_allclose(c0, a[:8, :9] + 1)
    np.testing.assert_allclose(c1, a[:8, :9] * 2)


@pytest.mark.parametrize("split", [True, False])
def test_rfactor_of_an_argmax_reduces_pairs_in_two_steps(split):
    """rfactor of a tuple reduction: the .rf stage keeps (index, value) pairs per slice of
    k, the final stage combines them; parallel over the slices."""
    argmax = _argmax()
    A = te.placeholder((12, 96), name="A")
    k = te.reduce_axis((0, 96), "k")
    B0, B1 = te.compute((12,), lambda i: argmax((k, A[i, k]), axis=k), name="B")
    s = te.create_schedule(B0.op)
    if split:
        ko, ki = s[B0].split(k, factor=8)
        R0, R1 = s.rfactor(B0, ko)
    else:
        R0, R1 = s.rfactor(B0, k)
    assert R0.op is R1.op and R1.value_index == 1
    s[R0].parallel(s[R0].op.axis[0])
    a = _rand(12, 96)
    idx, val = np.zeros(12, "int32"), np.zeros(12, "float32")
    tvm.build(s, [A, B0, B1])(a, idx, val)
    np.testing.assert_array_equal(idx, a.argmax(1))
    np.testing.assert_allclose(val, a.max(1))
    idx2 = np.zeros(12, "int32")
    tir_interp.run(tvm.lower(s, [A, B0, B1]), a, idx2, np.zeros(12, "float32"))
    np.testing.assert_array_equal(idx2, a.argmax(1))


def test_rfactor_of_independent_reductions_in_one_compute():
    """A sum and a sum of squares in one compute are two reductions, not a tuple: each
    output's partials are reduced on their own."""
    A = te.placeholder((8, 100), name="A")
    k = te.reduce_axis((0, 100), "k")
    S0, S1 = te.compute((8,), lambda i: (te.sum(A[i, k], axis=k),
                                         te.sum(A[i, k] * A[i, k], axis=k)), name="S")
    s = te.create_schedule(S0.op)
    ko, ki = s[S0].split(k, factor=16)            # 100 = 6 * 16 + 4: the last slice guarded
    R0, R1 = s.rfactor(S0, ki)
    s[R0].vectorize(s[R0].op.axis[0])
    a = _rand(8, 100)
    s0, s1 = np.zeros(8, "float32"), np.zeros(8, "float32")
    tvm.build(s, [A, S0, S1])(a, s0, s1)
    np.testing.assert_allclose(s0, a.sum(1), rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(s1, (a * a).sum(1), rtol=1e-4)


def test_sketches_of_an_argmax_include_rfactor():
    """The auto-scheduler's rfactor and cache-write rules apply to multi-output stages:
    an argmax over a long row gets a sketch that reduces slices in parallel."""
    from kiln.auto_scheduler.sketch import generate_sketches
    argmax = _argmax()
    A = te.placeholder((8, 4096), name="A")
    k = te.reduce_axis((0, 4096), "k")
    B0, B1 = te.compute((8,), lambda i: argmax((k, A[i, k]), axis=k), name="B")
    sketches = generate_sketches(auto_scheduler.ComputeDAG([A, B0, B1]))
    assert any(st.origin == "rfactor" for sk in sketches for st in sk.stages)


def test_misuse_is_a_clear_error():
    argmax = _argmax()
    A = te.placeholder((4, 6), name="A")
    k = te.reduce_axis((0, 6), "k")
    with pytest.raises(ExprError, match="cannot mix reductions and plain outputs"):
        te.compute((4,), lambda i: (te.sum(A[i, k], axis=k), A[i, 0]), name="X")
    with pytest.raises(ExprError, match="all of its 2 components"):
        te.compute((4,), lambda i: argmax((k, A[i, k]), axis=k)[1], name="X")
    bad = te.comm_reducer(lambda x, y: x[0], lambda t0, t1: (0, 0), name="bad")
    T0, T1 = te.compute((4,), lambda i: bad((k, A[i, k]), axis=k), name="T")
    with pytest.raises(ExprError, match="fcombine must return a tuple of 2"):
        tvm.lower(te.create_schedule(T0.op), [A, T0, T1])
    B0, B1 = te.compute((4,), lambda i: argmax((k, A[i, k]), axis=k), name="B")
    s = te.create_schedule(B0.op)
    with pytest.raises(ScheduleError, match="outputs of one compute"):
        s.cache_write([B0, A], "local")
    with pytest.raises(LoweringError, match=r"output tensor B\.v1 is used but missing"):
        tvm.build(s, [A, B0])
    s2 = te.create_schedule(B0.op)
    s2[B0].bind(k, te.thread_axis("threadIdx.x"))
    with pytest.raises(LoweringError, match="multi-output reduction cannot be bound across"):
        tvm.lower(s2, [A, B0, B1])
