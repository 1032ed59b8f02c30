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
