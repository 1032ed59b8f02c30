"""te.scan (TVM's "Scan and Recurrent Kernel" tutorial, on the CPU): cumulative sums, a
multi-stage update, several states; against NumPy recurrences."""

import numpy as np
import pytest

import kiln as tvm
from kiln import auto_scheduler, te
from kiln.errors import LoweringError, ScheduleError, ShapeError

RNG = np.random.default_rng(11)


def _cumsum(m, n):
    X = te.placeholder((m, n), name="X")
    s_state = te.placeholder((m, n))
    s_init = te.compute((1, n), lambda _, i: X[0, i])
    s_update = te.compute((m, n), lambda t, i: s_state[t - 1, i] + X[t, i])
    return X, s_init, s_update, te.scan(s_init, s_update, s_state, inputs=[X])


def test_tutorial_cumulative_sum_with_symbolic_sizes():
    m = te.var("m")
    n = te.var("n")
    X, s_init, s_update, s_scan = _cumsum(m, n)
    s = te.create_schedule(s_scan.op)
    print(tvm.lower(s, [X, s_scan], simple_mode=True))
    f = tvm.build(s, [X, s_scan], "llvm", name="myscan")
    x = RNG.uniform(size=(10, 7)).astype("float32")
    out = np.zeros((10, 7), "float32")
    f(x, out)
    np.testing.assert_allclose(out, np.cumsum(x, axis=0), rtol=1e-5)


def test_scan_loop_nest_and_a_vectorized_update():
    X, s_init, s_update, s_scan = _cumsum(12, 64)
    s = te.create_schedule(s_scan.op)
    xo, xi = s[s_update].split(s_update.op.axis[1], factor=16)
    s[s_update].vectorize(xi)
    text = str(tvm.lower(s, [X, s_scan]))
    assert "range(11)" in text  # the time loop starts after the one init row
    f = tvm.build(s, [X, s_scan])
    x = RNG.standard_normal((12, 64)).astype("float32")
    out = np.zeros((12, 64), "float32")
    f(x, out)
    np.testing.assert_allclose(out, np.cumsum(x, axis=0), rtol=1e-5, atol=1e-5)


def test_tutorial_multi_stage_update_with_compute_at():
    m, n = 9, 40
    X = te.placeholder((m, n), name="X")
    s_state = te.placeholder((m, n))
    s_init = te.compute((1, n), lambda _, i: X[0, i])
    s_update_s1 = te.compute((m, n), lambda t, i: s_state[t - 1, i] * 2, name="s1")
    s_update_s2 = te.compute((m, n), lambda t, i: s_update_s1[t, i] + X[t, i], name="s2")
    s_scan = tvm.te.scan(s_init, s_update_s2, s_state, inputs=[X])
    s = te.create_schedule(s_scan.op)
    xo, xi = s[s_update_s2].split(s_update_s2.op.axis[1], factor=32)
    s[s_update_s1].compute_at(s[s_update_s2], xo)
    f = tvm.build(s, [X, s_scan])
    x = RNG.uniform(size=(m, n)).astype("float32")
    out = np.zeros((m, n), "float32")
    f(x, out)
    want = np.empty_like(x)
    want[0] = x[0]
    for t in range(1, m):
        want[t] = want[t - 1] * 2 + x[t]
    np.testing.assert_allclose(out, want, rtol=1e-5)


def test_tutorial_multiple_states():
    m, n = 8, 5
    X = te.placeholder((m, n), name="X")
    s_state1 = te.placeholder((m, n))
    s_state2 = te.placeholder((m, n))
    s_init1 = te.compute((1, n), lambda _, i: X[0, i])
    s_init2 = te.compute((1, n), lambda _, i: 0.0 + 0 * X[0, i])
    s_update1 = te.compute((m, n), lambda t, i: s_state1[t - 1, i] + X[t, i])
    s_update2 = te.compute((m, n), lambda t, i: s_state2[t - 1, i] + s_state1[t - 1, i])
    s_scan1, s_scan2 = tvm.te.scan([s_init1, s_init2], [s_update1, s_update2],
                                   [s_state1, s_state2])
    s = te.create_schedule(s_scan1.op)
    f = tvm.build(s, [X, s_scan1, s_scan2])
    x = RNG.uniform(size=(m, n)).astype("float32")
    o1, o2 = np.zeros((m, n), "float32"), np.zeros((m, n), "float32")
    f(x, o1, o2)
    w1 = np.cumsum(x, axis=0)
    w2 = np.zeros_like(x)
    for t in range(1, m):
        w2[t] = w2[t - 1] + w1[t - 1]
    np.testing.assert_allclose(o1, w1, rtol=1e-5)
    np.testing.assert_allclose(o2, w2, rtol=1e-5)


def test_scan_result_feeds_another_compute():
    X, s_init, s_update, s_scan = _cumsum(6, 4)
    Y = te.compute((6, 4), lambda t, i: s_scan[t, i] * 0.5, name="Y")
    f = tvm.build(te.create_schedule(Y.op), [X, Y])
    x = RNG.uniform(size=(6, 4)).astype("float32")
    y = np.zeros((6, 4), "float32")
    f(x, y)
    np.testing.assert_allclose(y, np.cumsum(x, axis=0) * 0.5, rtol=1e-5)


def test_misuse_is_a_clear_error():
    X, s_init, s_update, s_scan = _cumsum(6, 4)
    s = te.create_schedule(s_scan.op)
    s[s_update].compute_root()
    with pytest.raises(LoweringError, match="not computed inside its time loop"):
        tvm.lower(s, [X, s_scan])
    s = te.create_schedule(s_scan.op)
    s[s_scan].parallel(s_scan.op.axis[0])
    with pytest.raises(LoweringError, match="time loop .* must stay the outermost loop"):
        tvm.lower(s, [X, s_scan])
    bad = te.placeholder((6, 5))
    with pytest.raises(ShapeError, match="must have the state's shape"):
        te.scan(s_init, s_update, bad)
    with pytest.raises(ShapeError, match="must be a te.placeholder"):
        te.scan(s_init, s_update, s_update)
    s = te.create_schedule(s_scan.op)
    s[s_update].bind(s_update.op.axis[1], te.thread_axis("threadIdx.x"))
    with pytest.raises(LoweringError, match="CPU targets only"):
        tvm.lower(s, [X, s_scan])
    with pytest.raises(ScheduleError, match="is a te.scan recurrence"):
        auto_scheduler.SearchTask(compute_dag=auto_scheduler.ComputeDAG([X, s_scan]),
                                  target="llvm")
