"""Tensorize: TVM's tutorial (a GEMV intrinsic in C), reductions split around the nest, bound
strides and offsets, intrinsics written in the loop IR, and the errors of a bad match."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import kiln as tvm
from kiln import te
from kiln.errors import CodegenError, KilnError, LoweringError, ScheduleError

GEMV_C = """
int gemv_update(float *cc, float *aa, float *bb, int m, int l, int stride) {
  for (int i = 0; i < m; ++i) {
    for (int j = 0; j < l; ++j) cc[i] += aa[j] * bb[i * stride + j];
  }
  return 0;
}
int gemv_reset(float *cc, int m) {
  for (int i = 0; i < m; ++i) cc[i] = 0.0f;
  return 0;
}
"""


def intrin_gemv(m, l, reset_update=True):  # noqa: E741 - the tutorial's names
    a = te.placeholder((l,), name="a")
    b = te.placeholder((m, l), name="b")
    k = te.reduce_axis((0, l), name="k")
    c = te.compute((m,), lambda i: te.sum(a[k] * b[i, k], axis=k), name="c")
    Ab = tvm.tir.decl_buffer(a.shape, a.dtype, name="A", offset_factor=1, strides=[1])
    Bb = tvm.tir.decl_buffer(b.shape, b.dtype, name="B", offset_factor=1,
                             strides=[te.var("s1"), 1])
    Cb = tvm.tir.decl_buffer(c.shape, c.dtype, name="C", offset_factor=1, strides=[1])

    def intrin_func(ins, outs):
        aa, bb = ins
        cc = outs[0]

        def body(with_reset):
            ib = tvm.tir.ir_builder.create()
            if with_reset:
                ib.emit(tvm.tir.call_extern("int32", "gemv_reset", cc.access_ptr("w"), m))
            ib.emit(tvm.tir.call_extern("int32", "gemv_update", cc.access_ptr("w"),
                                        aa.access_ptr("r"), bb.access_ptr("r"), m, l,
                                        bb.strides[0]))
            return ib.get()
        if not reset_update:
            return body(True)
        reset = tvm.tir.call_extern("int32", "gemv_reset", cc.access_ptr("w"), m)
        return body(True), reset, body(False)

    return te.decl_tensor_intrin(c.op, intrin_func, binds={a: Ab, b: Bb, c: Cb})


def gemm(N=64, M=32, L=48):
    A = te.placeholder((N, L), name="A")
    B = te.placeholder((M, L), name="B")
    k = te.reduce_axis((0, L), name="k")
    C = te.compute((N, M), lambda i, j: te.sum(A[i, k] * B[j, k], axis=k), name="C")
    return A, B, C


def run(s, args, shapes, out_shape, rng=np.random.default_rng(0)):
    f = tvm.build(s, args)
    ins = [rng.standard_normal(sh).astype("float32") for sh in shapes]
    out = np.zeros(out_shape, "float32")
    f(*ins, out)
    return f, ins, out


def _tutorial_schedule(intrin):
    """The tutorial's schedule: 16 columns and 16 of k per intrinsic call, k outside it."""
    A, B, C = gemm()
    s = te.create_schedule(C.op)
    x, y = C.op.axis
    (z,) = C.op.reduce_axis
    yo, yi = s[C].split(y, factor=16)
    ko, ki = s[C].split(z, factor=16)
    s[C].reorder(x, yo, ko, yi, ki)
    s[C].tensorize(yi, intrin)
    s[C].pragma(yo, "import_c", GEMV_C)
    return s, (A, B, C)


def test_tvm_tutorial_gemv_split_reduction():
    """TVM's tensorize tutorial: the k loop split by 16 outside the intrinsic (reset, then
    update per slice), B's rows bound with their real stride."""
    s, (A, B, C) = _tutorial_schedule(intrin_gemv(16, 16))
    text = str(tvm.lower(s, [A, B, C], simple_mode=True))
    assert "gemv_update(&C[" in text and "gemv_reset" in text
    f, (a, b), c = run(s, [A, B, C], [(64, 48), (32, 48)], (64, 32))
    np.testing.assert_allclose(c, a @ b.T, rtol=1e-5, atol=1e-5)
    assert "gemv_update(" in f.source and "int gemv_reset(float *cc" in f.source
    assert "j.1(16 tensorize tensor_intrin)" in str(s)


def test_whole_reduction_uses_body():
    A, B, C = gemm(N=8, M=32, L=48)
    s = te.create_schedule(C.op)
    x, y = C.op.axis
    yo, yi = s[C].split(y, factor=16)
    s[C].parallel(x)
    s[C].tensorize(yi, intrin_gemv(16, 48, reset_update=False))
    s[C].pragma(x, "import_c", GEMV_C)
    _, (a, b), c = run(s, [A, B, C], [(8, 48), (32, 48)], (8, 32))
    np.testing.assert_allclose(c, a @ b.T, rtol=1e-5, atol=1e-5)


def test_missing_update_is_an_error():
    s, (A, B, C) = _tutorial_schedule(intrin_gemv(16, 16, reset_update=False))
    with pytest.raises(LoweringError, match=r"\(body, reset, update\)"):
        tvm.lower(s, [A, B, C])


def _scale_intrin(n, strides=None, rows=None):
    """y = x * 2 over n elements (or rows x n), written in the loop IR (no external code)."""
    shape = (n,) if rows is None else (rows, n)
    x = te.placeholder(shape, name="x")
    y = te.compute(shape, lambda *i: x[i] * 2.0, name="y")

    def fcompute(ins, outs):
        ib = tvm.tir.ir_builder.create()
        with ib.for_range(0, rows or 1, name="r") as r:
            with ib.for_range(0, n, name="i") as i:
                idx = [i] if rows is None else [r, i]
                ib.emit(outs[0].vstore(idx, ins[0].vload(idx) * 2.0))
        return ib.get()
    binds = None
    if strides is not None:
        binds = {x: tvm.tir.decl_buffer(shape, "float32", "X", strides=strides,
                                        elem_offset=te.var("off"))}
    return te.decl_tensor_intrin(y.op, fcompute, binds=binds)


def test_loop_ir_intrinsic_on_an_attached_inner_region():
    X = te.placeholder((12, 40), name="X")
    Y = te.compute((12, 40), lambda i, j: X[i, j] * 2.0, name="Y")
    Z = te.compute((12, 40), lambda i, j: Y[i, j] + 1.0, name="Z")
    s = te.create_schedule(Z.op)
    zo, zi = s[Z].split(Z.op.axis[1], factor=8)
    s[Y].compute_at(s[Z], zo)
    s[Y].tensorize(s[Y].op.axis[1], _scale_intrin(8))
    _, (x,), z = run(s, [X, Z], [(12, 40)], (12, 40))
    np.testing.assert_allclose(z, x * 2 + 1, rtol=1e-6)


def test_block_region_needs_declared_strides():
    """A 4 x 8 block of a 16 x 40 matrix is not compact: the default buffer is refused; a
    declared stride variable takes the real row stride, and the output's compact buffer
    is the block of a 4 x 8 temporary."""
    X = te.placeholder((16, 40), name="X")
    Y = te.compute((16, 40), lambda i, j: X[i, j] * 2.0, name="Y")

    def sched(strides):
        s = te.create_schedule(Y.op)
        io, jo, ii, ji = s[Y].tile(Y.op.axis[0], Y.op.axis[1], 4, 8)
        s[Y].tensorize(ii, _scale_intrin(8, strides, rows=4))
        return s
    with pytest.raises(LoweringError, match="compact"):
        tvm.lower(sched(None), [X, Y])
    with pytest.raises(LoweringError, match="stride 1 but the region's is 40"):
        tvm.lower(sched([1, 1]), [X, Y])
    s = sched([te.var("sx"), 1])
    with pytest.raises(LoweringError, match="compact"):   # the output Y is a block too
        tvm.lower(s, [X, Y])
    Z = te.compute((16, 40), lambda i, j: Y[i, j] + 1.0, name="Z")
    s = te.create_schedule(Z.op)
    io, jo, ii, ji = s[Z].tile(Z.op.axis[0], Z.op.axis[1], 4, 8)
    s[Y].compute_at(s[Z], jo)       # Y's buffer is one compact 4 x 8 block
    s[Y].tensorize(s[Y].op.axis[0], _scale_intrin(8, [te.var("sx"), 1], rows=4))
    _, (x,), z = run(s, [X, Z], [(16, 40)], (16, 40))
    np.testing.assert_allclose(z, x * 2 + 1, rtol=1e-6)


def test_mismatches_are_clear_errors():
    A, B, C = gemm()
    s = te.create_schedule(C.op)
    yo, yi = s[C].split(C.op.axis[1], factor=8)   # the intrinsic covers 16 columns
    s[C].tensorize(yi, intrin_gemv(16, 48, reset_update=False))
    with pytest.raises(LoweringError, match="covers 8 points"):
        tvm.lower(s, [A, B, C])
    X = te.placeholder((32,), name="X")
    Y = te.compute((32,), lambda i: X[i] + 2.0, name="Y")  # adds, the intrinsic multiplies
    s = te.create_schedule(Y.op)
    yo, yi = s[Y].split(Y.op.axis[0], factor=8)
    s[Y].tensorize(yi, _scale_intrin(8))
    with pytest.raises(LoweringError, match="the intrinsic computes"):
        tvm.lower(s, [X, Y])
    Y2 = te.compute((30,), lambda i: X[i] * 2.0, name="Y2")   # 30 = 3 * 8 + 6: overhangs
    s2 = te.create_schedule(Y2.op)
    s2[Y2].tensorize(s2[Y2].split(Y2.op.axis[0], factor=8)[1], _scale_intrin(8))
    with pytest.raises(LoweringError, match="overhangs"):
        tvm.lower(s2, [X, Y2])


def test_a_failing_intrinsic_function_is_a_lowering_error():
    def boom(ins, outs):
        raise ValueError("user bug")
    x = te.placeholder((8,), name="x")
    y = te.compute((8,), lambda i: x[i] * 2.0, name="y")
    X = te.placeholder((32,), name="X")
    Y = te.compute((32,), lambda i: X[i] * 2.0, name="Y")
    s = te.create_schedule(Y.op)
    s[Y].tensorize(s[Y].split(Y.op.axis[0], factor=8)[1], te.decl_tensor_intrin(y.op, boom))
    with pytest.raises(LoweringError, match="raised ValueError: user bug"):
        tvm.lower(s, [X, Y])


def test_pragmas_and_missing_code():
    A, B, C = gemm(N=4, M=16, L=48)
    s = te.create_schedule(C.op)
    with pytest.raises(ScheduleError, match="import_c"):
        s[C].pragma(C.op.axis[0], "import_llvm", "define i32 @f()")
    with pytest.raises(ScheduleError, match="C source"):
        s[C].pragma(C.op.axis[0], "import_c", 3)
    s[C].tensorize(C.op.axis[1], intrin_gemv(16, 48, reset_update=False))
    with pytest.raises(CodegenError, match="no pragma import_c defines it"):
        tvm.build(s, [A, B, C])
    with pytest.raises(ScheduleError, match="decl_tensor_intrin"):
        s[C].tensorize(C.op.axis[1], "gemv")


def test_intrinsic_declaration_checks():
    x = te.placeholder((8,), name="x")
    y = te.compute((8,), lambda i: x[i] * 2.0, name="y")
    z = te.compute((8,), lambda i: y[i] + 1.0, name="z")
    with pytest.raises(ScheduleError, match="placeholder"):
        te.decl_tensor_intrin(z.op, lambda ins, outs: None)
    with pytest.raises(ScheduleError, match=r"float32\[4\]"):
        te.decl_tensor_intrin(y.op, lambda ins, outs: None,
                              binds={x: tvm.tir.decl_buffer((4,), "float32", "X")})
    with pytest.raises(KilnError, match="not a C function name"):
        tvm.tir.call_extern("int32", "bad name()", 1)
    assert isinstance(tvm.tir.call_extern("float32", "expf", x[0]), te.Expr)


def test_tensorize_step_replays_in_process():
    from kiln.schedule.steps import replay
    A, B, C = gemm(N=4, M=16, L=48)
    s = te.create_schedule(C.op)
    s[C].tensorize(C.op.axis[1], intrin_gemv(16, 48, reset_update=False))
    s[C].pragma(C.op.axis[0], "import_c", GEMV_C)
    records = [st.to_record() for st in s.state.steps]
    assert records[0][0] == "TZ" and records[1][4] == GEMV_C
    again = replay(s.dag, records)
    assert again.record_key() == s.state.record_key()
    with pytest.raises(ScheduleError, match="not declared in this process"):
        replay(s.dag, [["TZ", 2, 1, "nothing#0"]])


@settings(max_examples=8, deadline=None)
@given(yf=st.sampled_from([4, 8, 16, 32]), kf=st.sampled_from([8, 16, 48]),
       k_inside=st.booleans(), par=st.booleans())
def test_random_gemv_tensorizations_match_numpy(yf, kf, k_inside, par):
    """Property: any column tile the intrinsic covers, with the reduction split around it
    or wholly inside (reset / update or body), computes A @ B^T."""
    A, B, C = gemm(N=6, M=32, L=48)
    s = te.create_schedule(C.op)
    x, y = C.op.axis
    (z,) = C.op.reduce_axis
    yo, yi = s[C].split(y, factor=yf)
    if k_inside:
        s[C].tensorize(yi, intrin_gemv(yf, 48, reset_update=False))
    else:
        ko, ki = s[C].split(z, factor=kf)
        s[C].reorder(x, yo, ko, yi, ki)
        s[C].tensorize(yi, intrin_gemv(yf, kf))
    if par:
        s[C].parallel(x)
    s[C].pragma(x, "import_c", GEMV_C)
    _, (a, b), c = run(s, [A, B, C], [(6, 48), (32, 48)], (6, 32))
    np.testing.assert_allclose(c, a @ b.T, rtol=1e-5, atol=1e-5)


def test_intrinsic_with_an_allocated_accumulator():
    """ir_builder.allocate: a local accumulator row inside the intrinsic's code (zeroed,
    summed into over k, stored), the usual shape of a hand-written micro-kernel."""
    n, kk = 8, 48
    x, w = te.placeholder((kk,), name="x"), te.placeholder((n, kk), name="w")
    r = te.reduce_axis((0, kk), name="r")
    o = te.compute((n,), lambda j: te.sum(x[r] * w[j, r], axis=r), name="o")

    def fcompute(ins, outs):
        ib = tvm.tir.ir_builder.create()
        acc = ib.allocate("float32", (n,), name="acc")
        with ib.for_range(0, n, name="j") as j:
            acc[j] = 0.0
        with ib.for_range(0, kk, name="q") as q:
            with ib.for_range(0, n, name="j") as j:
                acc[j] = acc[j] + ins[0].vload([q]) * ins[1].vload([j, q])
        with ib.for_range(0, n, name="j") as j:
            ib.emit(outs[0].vstore([j], acc[j]))
        return ib.get()
    Wb = tvm.tir.decl_buffer((n, kk), "float32", "W", strides=[te.var("ws"), 1])
    intrin = te.decl_tensor_intrin(o.op, fcompute, binds={w: Wb})
    A, B, C = gemm(N=5, M=32, L=48)
    s = te.create_schedule(C.op)
    yo, yi = s[C].split(C.op.axis[1], factor=n)
    s[C].tensorize(yi, intrin)
    text = str(tvm.lower(s, [A, B, C]))
    assert "allocate acc" in text
    _, (a, b), c = run(s, [A, B, C], [(5, 48), (32, 48)], (5, 32))
    np.testing.assert_allclose(c, a @ b.T, rtol=1e-5, atol=1e-5)
