"""TVM's tensor-expression tutorials (intrinsics and math, schedule primitives) run on kiln
with only the import changed; outputs checked against NumPy."""

import numpy as np
import pytest

import kiln as tvm
from kiln import te
from kiln.errors import ExprError


def test_intrin_math_tutorial():
    n = te.var("n")
    A = te.placeholder((n,), name="A")
    B = te.compute(A.shape, lambda i: te.exp(A[i]), name="B")
    C = te.compute(A.shape, lambda i: tvm.tir.call_pure_extern("float32", "expf", A[i]),
                   name="C")
    D = te.compute(A.shape, lambda i: tvm.tir.call_pure_extern("float32", "__expf", A[i]),
                   name="D")
    E = te.compute(A.shape, lambda i: te.log(te.sigmoid(A[i])) + tvm.tir.sqrt(te.abs(A[i]))
                   + tvm.tir.call_extern("float32", "powf", A[i], 3.5)
                   + tvm.tir.call_pure_extern("float32", "fabsf", A[i] - 0.5), name="E")
    s = te.create_schedule([B.op, C.op, D.op, E.op])
    for t in (B, C, D, E):
        s[t].vectorize(s[t].split(t.op.axis[0], factor=8)[1])
    f = tvm.build(s, [A, B, C, D, E], "llvm")
    x = np.random.default_rng(0).uniform(0.1, 2.0, 37).astype("float32")
    outs = [np.zeros(37, "float32") for _ in range(4)]
    f(x, *outs)
    for o in outs[:3]:
        np.testing.assert_allclose(o, np.exp(x), rtol=1e-5)
    want = np.log(1 / (1 + np.exp(-x))) + np.sqrt(x) + x ** 3.5 + np.abs(x - 0.5)
    np.testing.assert_allclose(outs[3], want, rtol=1e-5)


def test_unknown_extern_functions_are_a_clear_error():
    A = te.placeholder((4,), name="A")
    with pytest.raises(ExprError, match=r"'my_func'\): kiln calls no external functions"):
        tvm.tir.call_pure_extern("float32", "my_func", A[0])


def test_tir_expression_names_build_computes():
    A = te.placeholder((6, 5), name="A", dtype="int32")
    B = te.compute((6, 5), lambda i, j: tvm.tir.Select(
        A[i, j] > 0, tvm.tir.floordiv(A[i, j], 3), tvm.tir.floormod(A[i, j], tvm.tir.const(4))),
        name="B")
    f = tvm.build(te.create_schedule(B.op), [A, B])
    a = np.arange(-15, 15, dtype="int32").reshape(6, 5)
    b = np.zeros_like(a)
    f(a, b)
    np.testing.assert_array_equal(b, np.where(a > 0, a // 3, a % 4))


def test_topi_tutorial_tensor_arithmetic_and_generic_schedules():
    a = te.placeholder((100, 10, 10), name="a")
    b = te.placeholder((10, 10), name="b")
    c = a + b  # broadcast
    d = a * b
    e = tvm.topi.elemwise_sum([c, d])
    f = e / 2.0
    g = tvm.topi.sum(f)
    with tvm.target.Target("llvm"):
        sg = tvm.topi.generic.schedule_reduce(g)
        fn = tvm.build(sg, [a, b, g])
    rng = np.random.default_rng(0)
    x = rng.standard_normal((100, 10, 10)).astype("float32")
    y = rng.standard_normal((10, 10)).astype("float32")
    out = np.zeros((), "float32")
    fn(x, y, out)
    np.testing.assert_allclose(out, ((x + y + x * y) / 2).sum(), rtol=1e-4)
    h = 1.0 - a / 4.0 - (-a) * 2  # scalars on either side
    with tvm.target.Target("llvm"):
        fh = tvm.build(tvm.topi.x86.schedule_injective(h), [a, h])
    out = np.zeros_like(x)
    fh(x, out)
    np.testing.assert_allclose(out, 1 - x / 4 + 2 * x, rtol=1e-6)


def test_lower_without_the_output_among_the_arguments_prints_it_as_one():
    a = te.placeholder((8, 8), name="a")
    s = tvm.topi.nn.softmax(a)
    with tvm.target.Target("llvm"):
        sch = tvm.topi.generic.schedule_softmax(s)
    text = str(tvm.lower(sch, [a], simple_mode=True))
    assert text.startswith("def default_function(a: float32[8, 8], softmax")


def test_topi_cuda_schedules_in_a_cuda_target_scope():
    import tir_interp
    a = te.placeholder((100, 10, 10), name="a")
    b = te.placeholder((10, 10), name="b")
    g = tvm.topi.sum(tvm.topi.elemwise_sum([a + b, a * b]) / 2.0)
    with pytest.raises(tvm.errors.ScheduleError, match="topi.cuda schedules are made inside"):
        tvm.topi.cuda.schedule_reduce(g)
    with tvm.target.Target("cuda -arch=sm_90"):
        sg = tvm.topi.cuda.schedule_reduce(g)  # a scalar: one block, a cross-thread reduction
        tarray = te.placeholder((64, 96), name="tarray")
        sm = tvm.topi.nn.softmax(tarray)
        ssm = tvm.topi.cuda.schedule_softmax(sm)
        data, kernel = te.placeholder((1, 3, 16, 16)), te.placeholder((4, 3, 5, 5))
        conv = tvm.topi.nn.relu(tvm.topi.cuda.conv2d_nchw(data, kernel, 1, 2, 1))
        sconv = tvm.topi.cuda.schedule_conv2d_nchw([conv])
    rng = np.random.default_rng(1)
    x = rng.standard_normal((100, 10, 10)).astype("float32")
    y = rng.standard_normal((10, 10)).astype("float32")
    out = np.zeros((), "float32")
    tir_interp.run(tvm.lower(sg, [a, b, g]), x, y, out)
    np.testing.assert_allclose(out, ((x + y + x * y) / 2).sum(), rtol=1e-4)
    t = rng.standard_normal((64, 96)).astype("float32")
    out = np.zeros_like(t)
    tir_interp.run(tvm.lower(ssm, [tarray, sm]), t, out)
    want = np.exp(t - t.max(1, keepdims=True))
    np.testing.assert_allclose(out, want / want.sum(1, keepdims=True), rtol=1e-5, atol=1e-6)
    from kiln.codegen import nvrtc
    if nvrtc.available():  # CUDA C through NVRTC: no GPU needed
        for sch, args in ((sg, [a, b, g]), (ssm, [tarray, sm]), (sconv, [data, kernel, conv])):
            tvm.build(sch, args, target="cuda -arch=sm_90")


def test_get_started_save_link_and_load(tmp_path):
    from kiln.contrib import cc, utils
    n = te.var("n")
    A = te.placeholder((n,), name="A")
    B = te.placeholder((n,), name="B")
    C = te.compute(A.shape, lambda i: A[i] + B[i], name="C")
    s = te.create_schedule(C.op)
    fadd = tvm.build(s, [A, B, C], "llvm", name="myadd")
    a = np.random.default_rng(0).uniform(size=1024).astype("float32")
    c = np.zeros(1024, "float32")
    fadd(a, a, c)  # compiles the n = 1024 kernel
    temp = utils.tempdir()
    fadd.save(temp.relpath("myadd.o"))
    fadd.save(temp.relpath("myadd.c"))
    cc.create_shared(temp.relpath("myadd.so"), [temp.relpath("myadd.o")])
    fadd1 = tvm.runtime.load_module(temp.relpath("myadd.so"))
    c1 = np.zeros(1024, "float32")
    fadd1(a, a, c1)
    np.testing.assert_allclose(c1, 2 * a)
    assert "myadd" in open(temp.relpath("myadd.c")).read()
    with pytest.raises(tvm.errors.ArgumentError, match="saves .o, .c or .so"):
        fadd.save(str(tmp_path / "x.ptx"))


@pytest.mark.parametrize("dtype", ["float32", "int32"])
def test_fmod_is_c_fmod_and_floormod_is_floor(dtype):
    a = te.placeholder((8,), name="a", dtype=dtype)
    b = te.placeholder((8,), name="b", dtype=dtype)
    f = te.compute((8,), lambda i: te.fmod(a[i], b[i]), name="f")
    g = te.compute((8,), lambda i: te.floormod(a[i], b[i]), name="g")
    mod = tvm.build(te.create_schedule([f.op, g.op]), [a, b, f, g])
    x = np.array([7, -7, 7, -7, 0, 5, 9, -2], dtype)
    y = np.array([3, 3, -3, -3, 2, 5, -4, 7], dtype)
    if dtype == "float32":
        x, y = x * 1.25, y * 0.75
    outs = [np.zeros(8, dtype), np.zeros(8, dtype)]
    mod(x, y, *outs)
    np.testing.assert_allclose(outs[0], np.fmod(x, y), rtol=1e-6)
    np.testing.assert_allclose(outs[1], np.mod(x, y), rtol=1e-6)
