"""Cross-thread reductions (a reduction loop bound to threadIdx.x, TVM's "cross thread
reduction"): lowered to an AllReduce, checked without a GPU in both interpreters against NumPy,
their CUDA (warp shuffles, one value per warp through shared memory past 32 threads)
compiled by NVRTC, set_store_predicate, and the misuse errors."""

import numpy as np
import pytest
import simt_vec
import tir_interp
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import kiln
from kiln import te
from kiln.codegen import cuda as cuda_codegen
from kiln.errors import KilnError, ScheduleError
from kiln.tir import gpu
from kiln.tir import stmt as S

nvrtc = pytest.importorskip("kiln.codegen.nvrtc")


def _check(s, args, inputs, expect, rtol=1e-5):
    """Both interpreters against `expect`; NVRTC compiles it for sm_80 and sm_90."""
    f = kiln.lower(s, args)
    out = np.full(expect.shape, np.nan, "float32")
    tir_interp.run(f, *inputs, out)
    np.testing.assert_allclose(out, expect, rtol=rtol, atol=1e-5)
    mem = {b.uid: np.ascontiguousarray(a).reshape(-1).copy()
           for b, a in zip(f.params, [*inputs, np.full(expect.shape, np.nan, "float32")])}
    kernels, _ = gpu.split_kernels(f, None)
    for k in kernels:
        simt_vec.run_kernel(k, mem)
    np.testing.assert_allclose(mem[f.params[-1].uid].reshape(expect.shape), expect, rtol=rtol,
                               atol=1e-5)
    src = cuda_codegen.render(f, "cuda -arch=sm_90")
    if nvrtc.available():
        for arch in ("sm_80", "sm_90"):
            nvrtc.compile_cuda(src, arch)
    return f, src


def _row_sum(n=64, m=200):
    a = te.placeholder((n, m), name="A")
    k = te.reduce_axis((0, m), "k")
    return a, te.compute((n,), lambda i: te.sum(a[i, k], axis=k), name="B")


def test_tvm_tutorial_cross_thread_reduction():
    """TVM's reduction tutorial as written there: rfactor, bind the new reduction axis to
    threadIdx.x, compute the partial sums at it, thread 0 stores."""
    A, B = _row_sum()
    s = te.create_schedule(B.op)
    ko, ki = s[B].split(B.op.reduce_axis[0], factor=16)
    BF = s.rfactor(B, ki)
    xo, xi = s[B].split(s[B].op.axis[0], factor=32)
    s[B].bind(xo, te.thread_axis("blockIdx.x"))
    s[B].bind(xi, te.thread_axis("threadIdx.y"))
    tx = te.thread_axis("threadIdx.x")
    s[B].bind(s[B].op.reduce_axis[0], tx)
    s[BF].compute_at(s[B], s[B].op.reduce_axis[0])
    s[B].set_store_predicate(tx.var.equal(0))
    a = np.random.default_rng(0).random((64, 200), dtype=np.float32)
    f, src = _check(s, [A, B], [a], a.sum(1))
    assert sum(isinstance(x, S.AllReduce) for x in S.walk_stmts(f.body)) == 1
    assert src.count("__shfl_xor_sync(") == 4 and "__syncthreads" not in src
    assert "if (k_1_v == 0) {" in src  # the predicate (and lane 0) once


@pytest.mark.parametrize("lanes", [64, 256])
def test_lanes_across_warps_go_through_shared_memory(lanes):
    """Past one warp: shuffles in each warp, then one value per warp in shared memory."""
    A, B = _row_sum(6, 1000)
    s = te.create_schedule(B.op)
    ko, ki = s[B].split(B.op.reduce_axis[0], factor=lanes)
    s[B].bind(B.op.axis[0], te.thread_axis("blockIdx.x"))
    s[B].bind(ki, te.thread_axis("threadIdx.x"))
    s[B].reorder(ki, ko)
    a = np.random.default_rng(1).standard_normal((6, 1000), dtype=np.float32)
    f, src = _check(s, [A, B], [a], a.sum(1), rtol=1e-4)
    (k,), _ = gpu.split_kernels(f, None)
    assert k.shared_bytes == lanes // 32 * 4
    assert src.count("__syncthreads();") == 2 and f"[{lanes // 32}];" in src


def test_max_then_sum_per_thread_results_feed_the_next_reduction():
    """Softmax's denominators: a max and a sum, each across 32 threads, kept per thread
    (local: every thread stores the result it holds, no barrier) and read by the next."""
    x = te.placeholder((8, 96), name="x")
    k1, k2 = te.reduce_axis((0, 96), "k1"), te.reduce_axis((0, 96), "k2")
    mx = te.compute((8,), lambda i: te.max(x[i, k1], axis=k1), name="mx")
    den = te.compute((8,), lambda i: te.sum(te.exp(x[i, k2] - mx[i]), axis=k2), name="den")
    y = te.compute((8, 96), lambda i, j: te.exp(x[i, j] - mx[i]) / den[i], name="y")
    s = te.create_schedule(y.op)
    row, col = y.op.axis
    co, ci = s[y].split(col, factor=32)
    s[y].reorder(row, ci, co)
    s[y].bind(row, te.thread_axis("blockIdx.x"))
    s[y].bind(ci, te.thread_axis("threadIdx.x"))
    for r in (den, mx):
        ro, ri = s[r].split(r.op.reduce_axis[0], factor=32)
        s[r].reorder(ri, ro)
        s[r].bind(ri, te.thread_axis("threadIdx.x"))
        s[r].compute_at(s[y], row)
    xn = np.random.default_rng(2).standard_normal((8, 96), dtype=np.float32)
    e = np.exp(xn - xn.max(1, keepdims=True))
    f, src = _check(s, [x, y], [xn], e / e.sum(1, keepdims=True))
    assert "acc = kiln_max_f32(acc, other);" in src
    assert "__syncthreads" not in src


def test_misuse_is_a_clear_error():
    A, B = _row_sum(4, 96)
    s = te.create_schedule(B.op)
    with pytest.raises(ScheduleError, match="reduction loop B.k.*threadIdx.x"):
        s[B].bind(B.op.reduce_axis[0], te.thread_axis("threadIdx.y"))
    ko, ki = s[B].split(B.op.reduce_axis[0], factor=24)
    s[B].bind(B.op.axis[0], te.thread_axis("blockIdx.x"))
    s[B].bind(ki, te.thread_axis("threadIdx.x"))
    s[B].reorder(ki, ko)
    with pytest.raises(KilnError, match="24 threads; bind a power of two"):
        kiln.lower(s, [A, B])
    s = te.create_schedule(B.op)
    ko, ki = s[B].split(B.op.reduce_axis[0], factor=32)
    s[B].bind(B.op.axis[0], te.thread_axis("blockIdx.x"))
    s[B].bind(ki, te.thread_axis("threadIdx.x"))
    with pytest.raises(KilnError, match="must be the outermost reduction loop"):
        kiln.lower(s, [A, B])
    with pytest.raises(ScheduleError, match="is not a condition kiln takes"):
        s[B].set_store_predicate(te.thread_axis("threadIdx.x").var < 1)


@settings(max_examples=15, deadline=None, suppress_health_check=list(HealthCheck))
@given(rows=st.integers(1, 5), m=st.integers(1, 300),
       lanes=st.sampled_from([1, 2, 8, 32, 64, 128]),
       op=st.sampled_from(["sum", "max", "min"]), rfactor=st.booleans(),
       ty=st.sampled_from([1, 2]))
def test_random_cross_thread_reductions_match_numpy(rows, m, lanes, op, rfactor, ty):
    """Any row count, length, lane count and reducer; with and without rfactor, one or two
    rows per block (threadIdx.y); ragged lengths leave some lanes short."""
    a = te.placeholder((rows, m), name="A")
    k = te.reduce_axis((0, m), "k")
    b = te.compute((rows,), lambda i: getattr(te, op)(a[i, k], axis=k), name="B")
    s = te.create_schedule(b.op)
    ko, ki = s[b].split(b.op.reduce_axis[0], factor=lanes)
    xo, xi = s[b].split(b.op.axis[0], factor=ty)
    s[b].bind(xo, te.thread_axis("blockIdx.x"))
    s[b].bind(xi, te.thread_axis("threadIdx.y"))
    tx = te.thread_axis("threadIdx.x")
    if rfactor:
        bf = s.rfactor(b, ki)
        s[b].bind(s[b].op.reduce_axis[0], tx)
        s[bf].compute_at(s[b], s[b].op.reduce_axis[0])
    else:
        s[b].reorder(ki, ko)
        s[b].bind(ki, tx)
    an = np.random.default_rng(rows * 1000 + m).standard_normal((rows, m), dtype=np.float32)
    _check(s, [a, b], [an], getattr(np, op)(an, axis=1), rtol=1e-4)
