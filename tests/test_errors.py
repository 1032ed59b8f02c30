"""Bad input raises a KilnError subclass whose message names what was wrong and where."""

import numpy as np
import pytest

import kiln
from kiln import te
from kiln.errors import (
    ArgumentError,
    BuildError,
    DTypeError,
    ExprError,
    KilnError,
    LoweringError,
    ScheduleError,
    ShapeError,
    TargetError,
)
from kiln.schedule import ComputeDAG, step_from_record


def _mm(M=4, N=6, K=5):
    a = te.placeholder((M, K), name="a")
    b = te.placeholder((N, K), name="b")
    k = te.reduce_axis((0, K), name="k")
    c = te.compute((M, N), lambda i, j: te.sum(a[i, k] * b[j, k], axis=k), name="c")
    d = te.compute((M, N), lambda i, j: c[i, j] + 1.0, name="d")
    return a, b, c, d


def _raises(exc, match, fn):
    with pytest.raises(exc, match=match) as info:
        fn()
    assert isinstance(info.value, KilnError)


# ------------------------------------------------------------------ te construction

def test_negative_shape():
    _raises(ShapeError, r"placeholder 'x'.*positive", lambda: te.placeholder((3, -1), name="x"))


def test_unknown_dtype():
    _raises(DTypeError, "float33", lambda: te.placeholder((3,), "float33"))


def test_wrong_index_count():
    a = te.placeholder((3, 4), name="a")
    _raises(ShapeError, "a has 2 dimensions", lambda: a[1])


def test_float_index():
    a = te.placeholder((3,), name="a")
    _raises(ExprError, "index .* of tensor a must be an integer", lambda: a[a[0]])


def test_lambda_arity():
    a = te.placeholder((3, 4), name="a")
    _raises(ShapeError, "takes 1 indices but the shape has 2",
            lambda: te.compute((3, 4), lambda i: a[i, 0]))


def test_exp_of_int():
    a = te.placeholder((3,), "int32", name="a")
    _raises(DTypeError, "te.exp needs a float", lambda: te.compute((3,), lambda i: te.exp(a[i])))


def test_reduce_over_spatial_axis():
    a = te.placeholder((3, 4), name="a")
    _raises(ExprError, "not a te.reduce_axis",
            lambda: te.compute((3, 4), lambda i, j: te.sum(a[i, j], axis=j)))


def test_symbolic_bool():
    a = te.placeholder((3,), name="a")

    def f(i):
        return a[i] if a[i] > 0 else 0.0
    _raises(ExprError, "Python bool", lambda: te.compute((3,), f))


def test_bad_reduce_axis_extent():
    _raises(ShapeError, "reduce_axis 'k'", lambda: te.reduce_axis((0, 0), name="k"))


def test_nested_reduction():
    a = te.placeholder((3, 4), name="a")
    k = te.reduce_axis((0, 4), name="k")
    _raises(ExprError, "must be the whole body",
            lambda: te.compute((3,), lambda i: te.sum(a[i, k], axis=k) + 1.0, name="bad"))


# ------------------------------------------------------------------ schedule primitives

def test_split_zero_factor():
    *_, d = _mm()
    s = te.create_schedule(d.op)
    _raises(ScheduleError, "positive", lambda: s[d].split(d.op.axis[0], factor=0))


def test_split_factor_and_nparts():
    *_, d = _mm()
    s = te.create_schedule(d.op)
    _raises(ScheduleError, "exactly one of factor, nparts",
            lambda: s[d].split(d.op.axis[0], factor=2, nparts=2))


def test_vectorize_reduction_axis():
    a, b, c, d = _mm()
    s = te.create_schedule(d.op)
    _raises(ScheduleError, r"cannot vectorize the reduction loop c\.k.*rfactor",
            lambda: s[c].vectorize(c.op.reduce_axis[0]))


def test_parallel_reduction_axis():
    a, b, c, d = _mm()
    s = te.create_schedule(d.op)
    _raises(ScheduleError, "cannot parallel the reduction loop c.k",
            lambda: s[c].parallel(c.op.reduce_axis[0]))


def test_compute_at_not_enclosing_consumer():
    a, b, c, d = _mm()
    e = te.compute(c.shape, lambda i, j: c[i, j] * 2.0, name="e")
    s = te.create_schedule([d.op, e.op])
    _raises(ScheduleError, r"d\.i does not enclose the consumers of c",
            lambda: s[c].compute_at(s[d], d.op.axis[0]))


def test_compute_inline_reduction():
    a, b, c, d = _mm()
    s = te.create_schedule(d.op)
    _raises(ScheduleError, "c is a reduction", lambda: s[c].compute_inline())


def test_compute_inline_output():
    *_, d = _mm()
    s = te.create_schedule(d.op)
    _raises(ScheduleError, "d is an output", lambda: s[d].compute_inline())


def test_fuse_not_adjacent():
    a, b, c, d = _mm()
    s = te.create_schedule(d.op)
    i, j = d.op.axis
    io, ii = s[d].split(i, factor=2)
    _raises(ScheduleError, "must be adjacent", lambda: s[d].fuse(io, j))


def test_fuse_spatial_with_reduction():
    a, b, c, d = _mm()
    s = te.create_schedule(d.op)
    _raises(ScheduleError, "cannot fuse spatial and reduction",
            lambda: s[c].fuse(c.op.axis[1], c.op.reduce_axis[0]))


def test_axis_of_another_stage():
    a, b, c, d = _mm()
    s = te.create_schedule(d.op)
    _raises(ScheduleError, "not an axis of stage d", lambda: s[d].split(c.op.axis[0], 2))


def test_cache_write_after_split():
    a, b, c, d = _mm()
    s = te.create_schedule(d.op)
    s[c].split(c.op.axis[0], 2)
    _raises(ScheduleError, "before any loop transformation", lambda: s.cache_write(c, "local"))


def test_rfactor_spatial_axis():
    a, b, c, d = _mm()
    s = te.create_schedule(d.op)
    _raises(ScheduleError, "not a reduction loop", lambda: s.rfactor(c, c.op.axis[0]))


def test_unknown_pragma():
    *_, d = _mm()
    s = te.create_schedule(d.op)
    _raises(ScheduleError, "unknown pragma 'fast'", lambda: s[d].pragma(d.op.axis[0], "fast", 1))


def test_tensor_not_in_schedule():
    *_, d = _mm()
    x = te.placeholder((2,), name="x")
    y = te.compute((2,), lambda i: x[i] * 2.0, name="y")
    s = te.create_schedule(d.op)
    _raises(ScheduleError, "'y' is not a stage", lambda: s[y])


def test_iterator_index_out_of_range():
    *_, d = _mm()
    state = ComputeDAG([d]).init_state()
    _raises(ScheduleError, "iterator index 7 out of range", lambda: state.split(d.op, 7, [2]))


def test_unknown_step_record():
    _raises(ScheduleError, "unknown step record", lambda: step_from_record(["ZZ", 1]))


# ------------------------------------------------------------------ lowering, target, build, call

def test_missing_build_argument():
    a, b, c, d = _mm()
    s = te.create_schedule(d.op)
    _raises(LoweringError, "input tensor b is used but missing", lambda: kiln.lower(s, [a, d]))


def test_unknown_target():
    from kiln.target import Target
    _raises(TargetError, "foo", lambda: Target("foo"))


@pytest.fixture(scope="module")
def mm_module():
    a, b, c, d = _mm()
    s = te.create_schedule(d.op)
    return kiln.build(s, [a, b, d], target="cpu")


def _args():
    return [np.zeros((4, 5), "float32"), np.zeros((6, 5), "float32"), np.zeros((4, 6), "float32")]


def test_call_wrong_arg_count(mm_module):
    _raises(ArgumentError, "3", lambda: mm_module(*_args()[:2]))


def test_call_wrong_shape(mm_module):
    args = _args()
    args[1] = np.zeros((5, 6), "float32")
    _raises(ArgumentError, r"'b'.*\(6, 5\)", lambda: mm_module(*args))


def test_call_wrong_dtype(mm_module):
    args = _args()
    args[0] = args[0].astype("float64")
    _raises(ArgumentError, "float32", lambda: mm_module(*args))


def test_call_non_contiguous(mm_module):
    args = _args()
    args[2] = np.zeros((6, 4), "float32").T
    _raises(ArgumentError, "contiguous", lambda: mm_module(*args))


def test_bad_compiler(monkeypatch, tmp_path):
    monkeypatch.setenv("KILN_CC", "/nonexistent/cc")
    monkeypatch.setenv("KILN_CACHE_DIR", str(tmp_path))
    x = te.placeholder((3,), name="x")
    y = te.compute((3,), lambda i: x[i] * 7.0 + 0.123, name="y")
    _raises(BuildError, "KILN_CC|compiler", lambda: kiln.build(te.create_schedule(y.op), [x, y]))
