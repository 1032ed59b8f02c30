"""Cache-flushed measurement: the flush evicts, time_evaluator and the runner plumb it, records
say how they were measured (and old records read as warm)."""

import json

import numpy as np
import pytest
import workloads

import kiln
from kiln import auto_scheduler, te
from kiln.auto_scheduler.measure.record import Record, load_records
from kiln.auto_scheduler.measure.runner import flush_args, measure_job
from kiln.errors import ArgumentError, KilnError
from kiln.runtime import cache_flush

ROWS, COLS = 1024, 768  # a 3 MB weight: fits a last-level cache, far beyond L1/L2 of most


def _weight_stream():
    """out[k] = sum_j w[j, k] * x[j], rows of w streamed in order: memory-bound when w is cold."""
    x = te.placeholder((ROWS,), name="x")
    w = te.placeholder((ROWS, COLS), name="w")
    j = te.reduce_axis((0, ROWS), name="j")
    out = te.compute((COLS,), lambda k: te.sum(w[j, k] * x[j], [j]), name="out")
    s = te.create_schedule(out.op)
    ko, ki = s[out].split(out.op.axis[0], factor=16)
    s[out].reorder(j, ko, ki)
    s[out].vectorize(ki)
    return kiln.build(s, [x, w, out], target="cpu")


def test_flushed_weight_stream_is_slower_than_warm():
    if not cache_flush.available():
        pytest.skip("no cache-line flush instruction on this CPU")
    f = _weight_stream()
    rng = np.random.default_rng(0)
    x = rng.random(ROWS, dtype=np.float32)
    w = rng.random((ROWS, COLS), dtype=np.float32)
    out = np.empty(COLS, np.float32)
    f(x, w, out)
    np.testing.assert_allclose(out, x @ w, rtol=1e-3)
    warm, cold = [], []
    for _ in range(4):  # interleaved, best of each: robust against a busy machine
        warm.append(f.time_evaluator(number=5, repeat=3)(x, w, out).min)
        cold.append(f.time_evaluator(number=5, repeat=3, flush_args=[1])(x, w, out).min)
    assert min(cold) > 1.3 * min(warm), (warm, cold)
    tvm_style = f.time_evaluator(number=2, repeat=2,
                                 f_preproc="cache_flush_cpu_non_first_arg")(x, w, out)
    assert len(tvm_style.results) == 2 and tvm_style.min > 1.3 * min(warm)


def test_flush_keeps_contents_and_checks_arguments():
    a = np.arange(100_000, dtype=np.float32)
    cache_flush.flush([a, np.empty(0, np.float32)])
    assert a[12345] == 12345.0
    f = _weight_stream()
    with pytest.raises(ArgumentError, match="f_preproc"):
        f.time_evaluator(f_preproc="flush_everything")
    with pytest.raises(ArgumentError, match="flush_args"):
        f.time_evaluator(flush_args=[3])


@auto_scheduler.register_workload
def flush_dense(M, N, K):
    ins, outs, _ = workloads.matmul(M, N, K)
    return ins + outs


def test_flush_mode_picks_cold_inputs():
    plain = auto_scheduler.SearchTask(func=flush_dense, args=(4, 8, 16), target="cpu")
    assert plain.cold_inputs == ()
    assert flush_args(plain, "auto") == []  # nothing known to be cold: timed warm
    assert flush_args(plain, True) == [1, 2]  # TVM's cache_flush_cpu_non_first_arg
    assert flush_args(plain, False) == []
    weights = auto_scheduler.SearchTask(compute_dag=plain.compute_dag, target="cpu",
                                        cold_inputs=("b",))
    assert flush_args(weights, "auto") == [1]
    with pytest.raises(KilnError, match="cold_inputs"):
        auto_scheduler.SearchTask(compute_dag=plain.compute_dag, cold_inputs=("nope",))
    with pytest.raises(ValueError, match="enable_cpu_cache_flush"):
        auto_scheduler.LocalRunner(enable_cpu_cache_flush="sometimes")
    runner = auto_scheduler.LocalRunner()
    assert runner.enable_cpu_cache_flush == "auto"
    assert measure_job(auto_scheduler.MeasureInput(weights, weights.compute_dag.init_state()),
                       runner)["flush_args"] == [1]
    runner.close()


def test_graph_tasks_flush_their_weights():
    from kiln.graph import Graph, Node
    w = np.ones((8, 16), np.float32)
    x = Node("input", [], {"name": "x"}, (4, 16), "float32")
    wc = Node("const", [], {"name": "w"}, (8, 16), "float32")
    y = Node("dense", [x, wc], {}, (4, 8), "float32")
    (task,), _ = auto_scheduler.extract_tasks(Graph([x], [y], {"w": w}), target="cpu",
                                              run_passes=False)
    assert task.cold_inputs == task.layout_free != ()
    assert flush_args(task, "auto") == [i for i, t in enumerate(task.args)
                                        if t.name in task.layout_free]


def test_runner_records_flushed_measurements(tmp_path):
    task = auto_scheduler.SearchTask(compute_dag=auto_scheduler.SearchTask(
        func=flush_dense, args=(4, 8, 16)).compute_dag, target="cpu", cold_inputs=("b",))
    log = tmp_path / "flush.json"
    with auto_scheduler.LocalRunner(min_repeat_ms=1) as runner:
        measurer = auto_scheduler.measure.ProgramMeasurer(
            auto_scheduler.LocalBuilder(n_parallel=1), runner,
            [auto_scheduler.RecordToFile(str(log))], verbose=0)
        res = measurer.measure(task, [task.compute_dag.init_state()])
    assert res[0].error_no == "ok" and res[0].cache == "flushed"
    (rec,) = load_records(str(log))
    assert rec.cache == "flushed"
    assert Record.from_json(rec.to_json()).cache == "flushed"
    old = rec.to_json()
    del old["cache"]  # a record written before the field existed was measured warm
    assert Record.from_json(json.loads(json.dumps(old))).cache == "warm"
