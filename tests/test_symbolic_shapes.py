"""Schedules over symbolic sizes (`n = te.var("n")`), as TVM's first tutorials write them:
scheduled and printed symbolically, compiled once per shape a call brings, checked against
NumPy for shapes that the split factors divide and shapes that they do not."""

import numpy as np
import pytest

import kiln as tvm
from kiln import auto_scheduler, te
from kiln.errors import ArgumentError, BuildError, KilnError, ScheduleError


def _vector_add():
    n = te.var("n")
    A = te.placeholder((n,), name="A")
    B = te.placeholder((n,), name="B")
    C = te.compute(A.shape, lambda i: A[i] + B[i], name="C")
    s = te.create_schedule(C.op)
    outer, inner = s[C].split(C.op.axis[0], factor=64)
    s[C].parallel(outer)
    s[C].vectorize(inner)
    return n, s, [A, B, C]


def test_get_started_vector_add_runs_for_every_length(tmp_path):
    tgt = tvm.target.Target(target="llvm", host="llvm")
    n, s, args = _vector_add()
    fadd = tvm.build(s, args, tgt, name="myadd")
    dev = tvm.device(tgt.kind.name, 0)
    rng = np.random.default_rng(0)
    for size in (1024, 1000, 7):
        a = tvm.nd.array(rng.uniform(size=size).astype("float32"), dev)
        b = tvm.nd.array(rng.uniform(size=size).astype("float32"), dev)
        c = tvm.nd.array(np.zeros(size, dtype="float32"), dev)
        fadd(a, b, c)
        tvm.testing.assert_allclose(c.numpy(), a.numpy() + b.numpy())
    assert sorted(fadd.specializations) == [(7,), (1000,), (1024,)]
    assert fadd.time_evaluator(fadd.entry_name, dev, number=3)(a, b, c).mean > 0
    with pytest.raises(BuildError, match=r"3 have been compiled: use \.specialize\(n=\.\.\.\)"):
        fadd.export_library(str(tmp_path / "all.so"))
    path = fadd.specialize(n=7).export_library(str(tmp_path / "myadd.so"))
    loaded = tvm.runtime.load_module(path)
    c2 = np.zeros(7, "float32")
    loaded(a.numpy(), b.numpy(), c2)
    np.testing.assert_allclose(c2, a.numpy() + b.numpy(), rtol=1e-6)
    with pytest.raises(ArgumentError, match="shape"):  # the exported kernel is n = 7's
        loaded(np.zeros(8, "float32"), np.zeros(8, "float32"), np.zeros(8, "float32"))


def test_lower_prints_the_symbolic_loop_nest():
    n, s, args = _vector_add()
    text = str(tvm.lower(s, args, simple_mode=True))
    assert "A: float32[n]" in text and "symbolic sizes n" in text
    assert "parallel" in text and "vectorize" in text and "n + 63" in text


def test_one_compile_per_shape_and_clear_argument_errors():
    n, s, args = _vector_add()
    f = tvm.build(s, args)
    x = np.ones(10, "float32")
    out = np.zeros(10, "float32")
    f(x, x, out)
    f(x, x, out)
    assert len(f.specializations) == 1
    assert "A[" in f.source  # the one shape's C source
    with pytest.raises(ArgumentError, match="takes 3 arrays"):
        f(x, x)
    with pytest.raises(ArgumentError, match="shape"):  # B disagrees with A about n
        f(x, np.ones(11, "float32"), out)
    with pytest.raises(ArgumentError, match="'m' is not one of its sizes"):
        f.specialize(m=3)


def test_reduction_tutorial_rfactor_over_symbolic_sizes():
    n, m = te.var("n"), te.var("m")
    A = te.placeholder((n, m), name="A")
    k = te.reduce_axis((0, m), "k")
    B = te.compute((n,), lambda i: te.sum(A[i, k], axis=k), name="B")
    s = te.create_schedule(B.op)
    ko, ki = s[B].split(B.op.reduce_axis[0], factor=16)
    BF = s.rfactor(B, ki)
    xo, xi = s[B].split(s[B].op.axis[0], nparts=4)
    s[B].parallel(xo)
    s[BF].compute_at(s[B], xi)
    f = tvm.build(s, [A, B])
    rng = np.random.default_rng(1)
    for shape in ((8, 64), (5, 37), (1, 1)):
        a = rng.standard_normal(shape).astype("float32")
        b = np.zeros(shape[0], "float32")
        f(a, b)
        np.testing.assert_allclose(b, a.sum(1), rtol=1e-5, atol=1e-5)


def test_symbolic_size_inside_the_body_and_a_scalar_argument():
    n, c = te.var("n"), te.var("c")
    A = te.placeholder((n, 3), name="A")
    B = te.compute((n, 3), lambda i, j: A[i, j] * n.astype("float32") + c.astype("float32"),
                   name="B")
    f = tvm.build(te.create_schedule(B.op), [A, B])
    a = np.arange(12, dtype="float32").reshape(4, 3)
    b = np.zeros_like(a)
    f(a, b, 2)  # c is a scalar parameter after the arrays; n comes from the shapes
    np.testing.assert_allclose(b, a * 4 + 2)


def test_compute_at_with_a_symbolic_outer_loop():
    n = te.var("n")
    A = te.placeholder((n, 16), name="A")
    B = te.compute((n, 16), lambda i, j: A[i, j] * 2.0, name="B")
    C = te.compute((n, 16), lambda i, j: B[i, j] + 1.0, name="C")
    s = te.create_schedule(C.op)
    s[B].compute_at(s[C], C.op.axis[0])
    s[C].vectorize(C.op.axis[1])
    f = tvm.build(s, [A, C])
    a = np.random.default_rng(2).standard_normal((6, 16)).astype("float32")
    out = np.zeros_like(a)
    f(a, out)
    np.testing.assert_allclose(out, a * 2 + 1, rtol=1e-6)


def test_sizes_a_call_cannot_tell_are_a_clear_error():
    n = te.var("n")
    A = te.placeholder((8,), name="A")
    B = te.compute((n,), lambda i: A[i % 8], name="B")
    C = te.compute((8,), lambda i: B[i] + 1.0, name="C")
    with pytest.raises(ScheduleError, match=r"sizes \['n'\] appear in no argument's shape"):
        tvm.build(te.create_schedule(C.op), [A, C])


def test_tuning_needs_constant_shapes():
    n, s, args = _vector_add()
    with pytest.raises(KilnError, match="symbolic sizes"):
        auto_scheduler.SearchTask(func=lambda: args, args=(), target="llvm")
