"""External tensor functions (TVM's "External Tensor Functions" tutorial): te.extern with
tir.call_packed, contrib.cblas, register_func; results against NumPy, errors are clear."""

import numpy as np
import pytest

import kiln as tvm
from kiln import auto_scheduler, te
from kiln.contrib import cblas
from kiln.errors import (
    CodegenError,
    ExprError,
    KilnError,
    LoweringError,
    RuntimeFailure,
    ScheduleError,
)
from kiln.runtime.registry import RegistryError, remove_global_func

RNG = np.random.default_rng(3)


def _uniform(*shape):
    return RNG.uniform(size=shape).astype("float32")


def test_tutorial_cblas_matmul_plus_bias():
    n, k, m = 1024, 128, 235
    bias = te.var("bias", dtype="float32")
    A = te.placeholder((n, k), name="A")
    B = te.placeholder((k, m), name="B")
    C = te.extern((n, m), [A, B], lambda ins, outs: tvm.tir.call_packed(
        "tvm.contrib.cblas.matmul", ins[0], ins[1], outs[0], False, False), name="C")
    D = te.compute(C.shape, lambda i, j: C[i, j] + bias, name="D")
    s = te.create_schedule(D.op)
    text = str(tvm.lower(s, [A, B, D, bias], simple_mode=True))
    assert "call_packed('tvm.contrib.cblas.matmul', A, B, C, False, False)" in text
    f = tvm.build(s, [A, B, D, bias], "llvm")
    dev = tvm.cpu(0)
    a = tvm.nd.array(_uniform(n, k), dev)
    b = tvm.nd.array(_uniform(k, m), dev)
    d = tvm.nd.array(np.zeros((n, m), dtype=D.dtype), dev)
    f(a, b, d, 10.0)
    tvm.testing.assert_allclose(d.numpy(), np.dot(a.numpy(), b.numpy()) + 10, rtol=1e-5)


def test_contrib_cblas_matmul_transposed_and_scheduled_epilogue():
    A = te.placeholder((64, 32), name="A")
    B = te.placeholder((48, 32), name="B")
    C = cblas.matmul(A, B, transb=True)
    D = te.compute(C.shape, lambda i, j: te.max(C[i, j], 0.0), name="D")
    s = te.create_schedule(D.op)
    io, ii = s[D].split(D.op.axis[1], factor=16)
    s[D].vectorize(ii)
    s[D].parallel(D.op.axis[0])
    f = tvm.build(s, [A, B, D])
    a, b = _uniform(64, 32) - 0.5, _uniform(48, 32) - 0.5
    d = np.zeros((64, 48), "float32")
    f(a, b, d)
    np.testing.assert_allclose(d, np.maximum(a @ b.T, 0), rtol=1e-5, atol=1e-6)
    t = f.time_evaluator(f.entry_name, tvm.cpu(0), number=3)(a, b, d)
    assert t.mean > 0


def test_tutorial_register_func_addone():
    calls = []

    @tvm.register_func("test.extern.addone", override=True)
    def addone(x, y):
        calls.append((type(x).__name__, type(y).__name__))
        tvm.nd.array(x.numpy() + 1).copyto(y)
    A = te.placeholder((100,), name="A")
    B = te.extern(A.shape, [A], lambda ins, outs: tvm.tir.call_packed(
        "test.extern.addone", ins[0], outs[0]), name="C")
    s = te.create_schedule(B.op)
    f = tvm.build(s, [A, B], "llvm")
    a, b = _uniform(100), np.zeros(100, "float32")
    f(a, b)
    np.testing.assert_allclose(b, a + 1, rtol=1e-6)
    assert calls == [("NDArray", "NDArray")]
    assert tvm.get_global_func("test.extern.addone") is addone
    remove_global_func("test.extern.addone")


def test_extern_between_computes_reads_a_temporary_and_survives_export(tmp_path):
    @tvm.register_func("test.extern.scale2", override=True)
    def scale2(x, y, k):
        y.copyfrom(x.numpy() * k)
    A = te.placeholder((8, 9), name="A")
    B = te.compute(A.shape, lambda i, j: A[i, j] + 1, name="B")
    C = te.extern(B.shape, [B], lambda ins, outs: tvm.tir.call_packed(
        "test.extern.scale2", ins[0], outs[0], 2.5), name="C")
    D = te.compute(C.shape, lambda i, j: C[i, j] - 1, name="D")
    s = te.create_schedule(D.op)
    with pytest.raises(ScheduleError, match="reads B as a whole buffer"):
        s[B].compute_inline()
    with pytest.raises(ScheduleError, match="te.extern op"):
        s[C].compute_at(s[D], D.op.axis[0])
    f = tvm.build(s, [A, D])
    path = f.export_library(str(tmp_path / "ext.so"))
    g = tvm.runtime.load_module(path)
    a, d = _uniform(8, 9), np.zeros((8, 9), "float32")
    g(a, d)
    np.testing.assert_allclose(d, (a + 1) * 2.5 - 1, rtol=1e-6)
    remove_global_func("test.extern.scale2")


def test_failures_are_clear():
    A = te.placeholder((4,), name="A")
    B = te.extern(A.shape, [A], lambda ins, outs: tvm.tir.call_packed(
        "test.extern.missing", ins[0], outs[0]), name="B")
    f = tvm.build(te.create_schedule(B.op), [A, B])
    a, b = _uniform(4), np.zeros(4, "float32")
    with pytest.raises(RegistryError, match="no packed function 'test.extern.missing'"):
        f(a, b)

    @tvm.register_func("test.extern.missing", override=True)
    def boom(x, y):
        raise ValueError("bad input")
    with pytest.raises(RuntimeFailure, match="raised ValueError: bad input"):
        f(a, b)
    remove_global_func("test.extern.missing")
    with pytest.raises(RegistryError, match="already registered"):
        tvm.register_func("tvm.contrib.cblas.matmul", lambda *a: None)
    with pytest.raises(ExprError, match="must return tvm.tir.call_packed"):
        te.extern((4,), [A], lambda ins, outs: 0, name="X")
    with pytest.raises(ExprError, match="pass fcompute's ins"):
        te.extern((4,), [A], lambda ins, outs: tvm.tir.call_packed("f", A, outs[0]))
    bias = te.var("bias", dtype="float32")
    C = te.compute((4,), lambda i: A[i] + bias, name="C")
    with pytest.raises(LoweringError, match="after the tensors"):
        tvm.build(te.create_schedule(C.op), [A, bias, C])


def test_no_tuning_and_no_gpu_for_extern_calls():
    A = te.placeholder((64, 64), name="A")
    C = cblas.matmul(A, A)
    with pytest.raises(ScheduleError, match="te.extern packed function"):
        auto_scheduler.SearchTask(compute_dag=auto_scheduler.ComputeDAG([A, C]),
                                  target="llvm")
    with pytest.raises((CodegenError, ScheduleError), match="packed functions run on the host"):
        tvm.build(te.create_schedule(C.op), [A, C], target="cuda -arch=sm_90")


def test_extern_with_loop_ir_from_the_ir_builder():
    """TVM's other te.extern style: fcompute builds the loop IR itself (ib.buffer_ptr,
    vload / vstore, for_range, if_scope), here a running sum, between two computes."""
    A = te.placeholder((6, 40), name="A")
    B = te.compute(A.shape, lambda i, j: A[i, j] * 2.0, name="B")

    def running_sum(ins, outs):
        ib = tvm.tir.ir_builder.create()
        src, dst = ib.buffer_ptr(ins[0]), ib.buffer_ptr(outs[0])
        with ib.for_range(0, 6, name="r") as r:
            dst[r * 40] = src[r * 40]
            with ib.for_range(1, 40, name="c") as c:
                with ib.if_scope(src[r * 40 + c] > 0.0):
                    ib.emit(outs[0].vstore([r, c], outs[0].vload([r, c - 1])
                                           + ins[0].vload([r, c])))
                with ib.else_scope():
                    dst[r * 40 + c] = dst[r * 40 + c - 1]
        return ib.get()
    C = te.extern(A.shape, [B], running_sum, name="C")
    D = te.compute(A.shape, lambda i, j: C[i, j] + 1.0, name="D")
    s = te.create_schedule(D.op)
    f = tvm.build(s, [A, D])
    a = RNG.standard_normal((6, 40)).astype("float32")
    d = np.zeros((6, 40), "float32")
    f(a, d)
    b = a * 2
    want = b.copy()
    for c in range(1, 40):
        want[:, c] = np.where(b[:, c] > 0, want[:, c - 1] + b[:, c], want[:, c - 1])
    np.testing.assert_allclose(d, want + 1, rtol=1e-5, atol=1e-5)
    assert "for c in range(39)" in str(tvm.lower(s, [A, D]))
    E = te.extern(A.shape, [A], lambda ins, outs: None, name="E")
    with pytest.raises(LoweringError, match="fcompute returned None"):
        tvm.build(te.create_schedule(E.op), [A, E])
    C2 = te.extern(A.shape, [A], running_sum, name="C2")
    with pytest.raises(KilnError, match="te.extern has no loops to bind"):
        tvm.build(te.create_schedule(C2.op), [A, C2], target="cuda -arch=sm_90")
