"""AutoTVM templates on kiln: TVM's "tune a simple template" tutorial with only the import
changed, the knob spaces, each tuner, logs and their history, fallbacks and failing configs.
Every tuned kernel is checked against NumPy."""

import json
import logging

import numpy as np
import pytest

import kiln as tvm
from kiln import autotvm, te
from kiln.errors import KilnError, ScheduleError

FAST = dict(number=1, repeat=1, min_repeat_ms=0, timeout=20)


@autotvm.template("test/matmul")
def matmul(N, L, M, dtype):
    A = te.placeholder((N, L), name="A", dtype=dtype)
    B = te.placeholder((L, M), name="B", dtype=dtype)
    k = te.reduce_axis((0, L), name="k")
    C = te.compute((N, M), lambda i, j: te.sum(A[i, k] * B[k, j], axis=k), name="C")
    s = te.create_schedule(C.op)
    y, x = s[C].op.axis
    k = s[C].op.reduce_axis[0]
    cfg = autotvm.get_config()
    cfg.define_split("tile_y", y, num_outputs=2)
    cfg.define_split("tile_x", x, num_outputs=2)
    yo, yi = cfg["tile_y"].apply(s, C, y)
    xo, xi = cfg["tile_x"].apply(s, C, x)
    s[C].reorder(yo, xo, k, yi, xi)
    cfg.define_knob("vec", [0, 1])
    if cfg["vec"].val:
        s[C].vectorize(xi)
    return s, [A, B, C]


@autotvm.template("test/matmul_v1")
def matmul_v1(N, L, M, dtype):
    A = te.placeholder((N, L), name="A", dtype=dtype)
    B = te.placeholder((L, M), name="B", dtype=dtype)
    k = te.reduce_axis((0, L), name="k")
    C = te.compute((N, M), lambda i, j: te.sum(A[i, k] * B[k, j], axis=k), name="C")
    s = te.create_schedule(C.op)
    y, x = s[C].op.axis
    cfg = autotvm.get_config()
    cfg.define_knob("tile_y", [1, 2, 4, 8, 16])
    cfg.define_knob("tile_x", [1, 2, 4, 8, 16])
    yo, yi = s[C].split(y, cfg["tile_y"].val)
    xo, xi = s[C].split(x, cfg["tile_x"].val)
    s[C].reorder(yo, xo, s[C].op.reduce_axis[0], yi, xi)
    return s, [A, B, C]


def _check(func, n, k, m):
    rng = np.random.default_rng(0)
    a = rng.uniform(size=(n, k)).astype("float32")
    b = rng.uniform(size=(k, m)).astype("float32")
    c = tvm.nd.empty((n, m))
    func(tvm.nd.array(a), tvm.nd.array(b), c)
    tvm.testing.assert_allclose(c.numpy(), a @ b, rtol=1e-4)


def test_simple_template_tutorial(tmp_path):
    N, L, M = 48, 32, 64
    task = autotvm.task.create("test/matmul", args=(N, L, M, "float32"), target="llvm")
    assert len(task.config_space) == 10 * 7 * 2 and task.flop == 2 * N * L * M
    assert "tile_y: Split(policy=factors, product=48, num_outputs=2) len=10" in \
        repr(task.config_space)
    log = str(tmp_path / "matmul.log")
    option = autotvm.measure_option(builder="local", runner=autotvm.LocalRunner(**FAST))
    tuner = autotvm.tuner.RandomTuner(task)
    tuner.tune(n_trial=6, measure_option=option,
               callbacks=[autotvm.callback.log_to_file(log), autotvm.callback.progress_bar(6)])
    lines = [json.loads(x) for x in open(log)]
    assert len(lines) == 6 and len({x["config"]["index"] for x in lines}) == 6
    assert all(x["result"][1] == 0 for x in lines) and tuner.best_flops > 0
    best = min(lines, key=lambda x: sum(x["result"][0]) / len(x["result"][0]))
    assert best["config"]["index"] == tuner.best_config.index
    with autotvm.apply_history_best(log):
        with tvm.target.Target("llvm"):
            s, arg_bufs = matmul(N, L, M, "float32")
            func = tvm.build(s, arg_bufs)
    _check(func, N, L, M)
    ty, tx = (best["config"]["entity"][k][2][1] for k in (0, 1))
    assert [lv.extent for lv in s[arg_bufs[2]].leaf_iter_vars] == [N // ty, M // tx, L, ty, tx]


def test_knob_template_and_fallback(caplog):
    task = autotvm.task.create("test/matmul_v1", args=(16, 16, 16, "float32"), target="llvm")
    assert len(task.config_space) == 25
    cfg = task.config_space.get(13)
    assert (cfg["tile_y"].val, cfg["tile_x"].val) == (8, 4)
    assert task.config_space.knob2point(task.config_space.point2knob(13)) == 13
    s, args = task.instantiate(cfg)
    _check(tvm.build(s, args), 16, 16, 16)
    with caplog.at_level(logging.WARNING, logger="autotvm"):
        s, args = matmul_v1(16, 16, 16, "float32")  # no history: the fallback config
    assert "fallback configuration" in caplog.text
    _check(tvm.build(s, args), 16, 16, 16)


def test_split_reorder_annotate_spaces():
    space = autotvm.ConfigSpace()
    x = te.reduce_axis((0, 16), name="x")
    space.define_split("f2", x, num_outputs=2)
    space.define_split("f3", x, num_outputs=3)
    space.define_split("p2", space.axis(12), policy="power2", num_outputs=2)
    space.define_split("cap", x, num_outputs=2, max_factor=4, filter=lambda e: e.size[-1] > 1)
    space.define_reorder("re", [1, 2, 3], policy="all")
    space.define_annotate("an", [1, 2], policy="try_unroll_vec")
    assert space.dims == [5, 15, 4, 2, 6, 9]
    assert [e.size for e in space.space_map["p2"].entities] == [[-1, 1], [-1, 2], [-1, 4],
                                                                 [-1, 8]]
    assert [e.size for e in space.space_map["cap"].entities] == [[-1, 2], [-1, 4]]
    with pytest.raises(ScheduleError, match="outside the space"):
        space.get(len(space))
    with pytest.raises(ScheduleError, match="defines knob 'f2' twice"):
        space.define_split("f2", x)
    with pytest.raises(ScheduleError, match="no candidate"):
        space.define_split("none", x, filter=lambda e: False)


def test_power2_split_with_a_tail_is_correct():
    @autotvm.template("test/tail")
    def tail(n):
        A = te.placeholder((n,), name="A")
        B = te.compute((n,), lambda i: A[i] * 2.0, name="B")
        s = te.create_schedule(B.op)
        cfg = autotvm.get_config()
        cfg.define_split("t", B.op.axis[0], policy="power2", num_outputs=3)
        cfg.define_annotate("an", [0], policy="try_vec")
        outer, mid, inner = cfg["t"].apply(s, B, B.op.axis[0])
        cfg["an"].apply(s, B, [inner])
        return s, [A, B]
    task = autotvm.task.create("test/tail", args=(37,), target="llvm")
    x = np.arange(37, dtype="float32")
    for i in range(0, len(task.config_space), 7):
        s, args = task.instantiate(task.config_space.get(i))
        out = np.zeros(37, "float32")
        tvm.build(s, args)(x, out)
        np.testing.assert_array_equal(out, 2 * x)


@pytest.mark.parametrize("make", [
    lambda t: autotvm.tuner.GridSearchTuner(t),
    lambda t: autotvm.tuner.GATuner(t, pop_size=4),
    lambda t: autotvm.tuner.XGBTuner(t, plan_size=4, feature_type="knob"),
    lambda t: autotvm.tuner.XGBTuner(t, plan_size=4, feature_type="itervar", loss_type="rank"),
])
def test_every_tuner_measures_distinct_configs(make, tmp_path):
    task = autotvm.task.create("test/matmul_v1", args=(16, 16, 32, "float32"), target="llvm")
    log = str(tmp_path / "t.log")
    tuner = make(task)
    tuner.tune(n_trial=12, measure_option=autotvm.measure_option(
        runner=autotvm.LocalRunner(**FAST)), callbacks=[autotvm.callback.log_to_file(log)])
    recs = list(autotvm.record.load_from_file(log))
    assert len(recs) == 12 and len({inp.config.index for inp, _ in recs}) == 12
    assert all(res.error_no == 0 for _, res in recs)
    if isinstance(tuner, autotvm.tuner.XGBTuner):  # the model was fitted and proposed configs
        assert tuner.model.trained and tuner.trained_at >= 8
    with autotvm.apply_history_best(log), tvm.target.Target("llvm"):
        s, args = matmul_v1(16, 16, 32, "float32")
    _check(tvm.build(s, args), 16, 16, 32)


def test_failing_configs_are_recorded_and_tuning_goes_on(tmp_path):
    @autotvm.template("test/fragile")
    def fragile(n):
        A = te.placeholder((n,), name="A")
        B = te.compute((n,), lambda i: A[i] + 1.0, name="B")
        s = te.create_schedule(B.op)
        cfg = autotvm.get_config()
        cfg.define_knob("mode", ["ok", "raise", "invalid"])
        if cfg["mode"].val == "raise":
            raise RuntimeError("this config cannot be built")
        if cfg["mode"].val == "invalid":
            cfg.raise_error("too many threads")
        return s, [A, B]
    task = autotvm.task.create("test/fragile", args=(8,), target="llvm")
    log = str(tmp_path / "f.log")
    tuner = autotvm.tuner.GridSearchTuner(task)
    tuner.tune(n_trial=3, measure_option=autotvm.measure_option(
        runner=autotvm.LocalRunner(**FAST)), callbacks=[autotvm.callback.log_to_file(log)])
    errors = [res.error_no for _, res in autotvm.record.load_from_file(log)]
    assert errors == [0, autotvm.MeasureErrorNo.INSTANTIATION_ERROR,
                      autotvm.MeasureErrorNo.INSTANTIATION_ERROR]
    assert tuner.best_config.index == 0


def test_logs_skip_damaged_lines_and_pick_best(tmp_path, caplog):
    task = autotvm.task.create("test/matmul_v1", args=(8, 8, 8, "float32"), target="llvm")
    good = []
    for i, cost in ((3, 2e-6), (7, 1e-6), (9, 5e-6)):
        good.append((autotvm.MeasureInput(task.target, task, task.config_space.get(i)),
                     autotvm.MeasureResult([cost], 0, 0.1, 0.0)))
    log, best = tmp_path / "a.log", tmp_path / "best.log"
    autotvm.record.save_to_file(str(log), good)
    with open(log, "a") as f:
        f.write('{"input": ["llvm", "test/matmul_v1"\n')  # a line cut short by a crash
    with caplog.at_level(logging.WARNING, logger="autotvm"):
        recs = list(autotvm.record.load_from_file(str(log)))
    assert len(recs) == 3 and "skipping" in caplog.text
    autotvm.record.pick_best(str(log), str(best))
    (inp, res), = autotvm.record.load_from_file(str(best))
    assert inp.config.index == 7 and res.costs == [1e-6]
    ctx = autotvm.apply_history_best(str(best))
    assert ctx.query(tvm.target.Target("llvm"), task.workload).index == 7
    assert ctx.query(tvm.target.Target("llvm"), "other") is None


def test_unknown_template_and_keyword_arguments_are_clear_errors():
    with pytest.raises(KilnError, match="no autotvm template 'nope'"):
        autotvm.task.create("nope", args=(), target="llvm")
    with pytest.raises(ScheduleError, match="by position"):
        matmul_v1(N=8, L=8, M=8, dtype="float32")
    with pytest.raises(KilnError, match="RPC"):
        autotvm.RPCRunner("key", "127.0.0.1", 9190)


@autotvm.template("test/matmul_gpu")
def matmul_gpu(N, L, M):
    """TVM's GPU template style: block and thread tiles from the knobs, bound loops."""
    A = te.placeholder((N, L), name="A")
    B = te.placeholder((L, M), name="B")
    k = te.reduce_axis((0, L), name="k")
    C = te.compute((N, M), lambda i, j: te.sum(A[i, k] * B[k, j], axis=k), name="C")
    s = te.create_schedule(C.op)
    y, x = s[C].op.axis
    cfg = autotvm.get_config()
    cfg.define_split("tile_y", y, num_outputs=3, max_factor=16)
    cfg.define_split("tile_x", x, num_outputs=3, max_factor=16)
    cfg.define_knob("auto_unroll_max_step", [0, 16])
    by, ty, yi = cfg["tile_y"].apply(s, C, y)
    bx, tx, xi = cfg["tile_x"].apply(s, C, x)
    s[C].reorder(by, bx, ty, tx, s[C].op.reduce_axis[0], yi, xi)
    s[C].bind(by, te.thread_axis("blockIdx.y"))
    s[C].bind(bx, te.thread_axis("blockIdx.x"))
    s[C].bind(ty, te.thread_axis("threadIdx.y"))
    s[C].bind(tx, te.thread_axis("threadIdx.x"))
    if cfg["auto_unroll_max_step"].val:
        s[C].unroll(xi)
    return s, [A, B, C]


def test_a_gpu_template_tunes_with_nvrtc_builds_and_a_gpu_runner(tmp_path):
    nvrtc = pytest.importorskip("kiln.codegen.nvrtc")
    if not nvrtc.available():
        pytest.skip("NVRTC is not installed")
    from gpu_fake_runner import FakeRunner  # the SIMT interpreter, checked against the reference
    task = autotvm.task.create("test/matmul_gpu", args=(32, 16, 32), target="cuda -arch=sm_90")
    log = str(tmp_path / "gpu.log")
    option = autotvm.measure_option(builder=autotvm.LocalBuilder(n_parallel=2),
                                    runner=FakeRunner())
    tuner = autotvm.tuner.XGBTuner(task, plan_size=4, feature_type="knob")
    tuner.tune(n_trial=8, measure_option=option, callbacks=[autotvm.callback.log_to_file(log)])
    recs = list(autotvm.record.load_from_file(log))
    assert len(recs) == 8 and any(res.error_no == 0 for _, res in recs)
    assert recs[0][0].target.startswith("cuda -arch=sm_90")
    with autotvm.apply_history_best(log), tvm.target.Target("cuda -arch=sm_90"):
        s, args = matmul_gpu(32, 16, 32)
        mod = tvm.build(s, args, target="cuda -arch=sm_90")
    assert "threadIdx.x" in mod.source
