"""Measurement: builder + runner on a tiny matmul; a candidate that segfaults, hangs, computes
a wrong answer or fails to compile costs that candidate only, and the next one measures "ok"."""

from __future__ import annotations

import re
import time

import pytest
import workloads

from kiln.auto_scheduler import SearchTask
from kiln.auto_scheduler.measure import (
    BuildResult,
    ErrorNo,
    LocalBuilder,
    LocalRunner,
    MeasureInput,
    ProgramMeasurer,
    RecordToFile,
    load_records,
)
from kiln.auto_scheduler.measure import builder as builder_mod
from kiln.codegen import toolchain
from kiln.codegen.c import render
from kiln.schedule import ComputeDAG
from kiln.tir.lower import lower

M, N, K = 16, 16, 8


@pytest.fixture(scope="module")
def task():
    ins, outs, _ = workloads.matmul(M, N, K)
    return SearchTask(compute_dag=ComputeDAG(ins + outs), desc="matmul16")


@pytest.fixture(scope="module")
def runner():
    r = LocalRunner(timeout=2, number=2, repeat=1, min_repeat_ms=2)
    yield r
    r.close()


def valid_states(task) -> list:
    s0 = task.compute_dag.init_state()
    s1 = s0.split(2, 1, [4]).vectorize(2, 2)
    s2 = s0.split(2, 0, [4]).reorder(2, [1, 0, 2, 3]).unroll(2, 3)
    return [s0, s1, s2]


def patched(task, body_prefix: str = "", replace: tuple = ("", "")) -> BuildResult:
    """A real kernel of the task whose C body is edited: a prefix statement or a replacement."""
    src = render(lower(task.compute_dag.init_state(), task.args), task.target)
    head = re.search(r"int32_t default_function\([^)]*\) \{\n", src)
    assert head is not None
    src = src[:head.end()] + body_prefix + src[head.end():]
    if replace[0]:
        assert replace[0] in src
        src = src.replace(replace[0], replace[1], 1)
    return BuildResult(toolchain.compile(src, task.target), src)


def test_valid_states_measure_ok_and_records_replay(task, runner, tmp_path):
    log = tmp_path / "log.json"
    states = valid_states(task)
    measurer = ProgramMeasurer(LocalBuilder(), runner, [RecordToFile(str(log))], verbose=0)
    results = measurer.measure(task, states)
    assert [r.error_no for r in results] == ["ok"] * 3, [r.error_msg for r in results]
    for r in results:
        assert len(r.costs) == 1 and r.costs[0] > 0 and r.all_cost > 0 and r.timestamp > 0
        assert r.mean_cost == r.costs[0]
    recs = list(load_records(str(log)))
    assert len(recs) == 3
    for rec, st, res in zip(recs, states, results, strict=True):
        assert rec.workload_key == task.workload_key and rec.target == str(task.target)
        assert rec.costs == res.costs and rec.error == "ok" and rec.workload_desc == "matmul16"
        assert task.replay(rec.steps).record_key() == st.record_key()


def test_cache_flush_gives_one_cost_per_repeat(task):
    with LocalRunner(timeout=5, number=1, repeat=2, min_repeat_ms=0,
                     enable_cpu_cache_flush=True) as r:
        inp = MeasureInput(task, task.compute_dag.init_state())
        res = r.run([inp], LocalBuilder().build([inp]))[0]
    assert res.error_no == "ok", res.error_msg
    assert len(res.costs) == 2 and all(c > 0 for c in res.costs)


def test_crash_hang_and_wrong_answer_cost_one_candidate(task, runner):
    good = MeasureInput(task, task.compute_dag.init_state())
    good_build = LocalBuilder().build([good])[0]
    bad = {
        "segfault": patched(task, "  *(volatile int*)0 = 1;\n"),
        "hang": patched(task, "  for (;;) { __asm__ volatile(\"\"); }\n"),
        "wrong": patched(task, replace=("= 0.0f;", "= 1.0f;")),
        "unwritten": patched(task, "  return 0;\n"),
        "error code": patched(task, "  return 3;\n"),
    }
    inputs, builds = [], []
    for b in bad.values():
        inputs += [good, good]
        builds += [b, good_build]
    seen = []
    results = runner.run(inputs, builds, on_result=lambda i, r: seen.append(i))
    assert seen == list(range(len(inputs)))
    kinds = [r.error_no for r in results]
    assert kinds[1::2] == ["ok"] * len(bad), [r.error_msg for r in results]
    assert kinds[0::2] == ["runtime", "timeout", "wrong_answer", "wrong_answer", "runtime"]
    assert "SIGSEGV" in results[0].error_msg
    assert results[2].all_cost < 8 and results[2].costs == []  # measured twice
    assert "differ from the reference" in results[4].error_msg
    assert "code 3" in results[8].error_msg


def test_compile_and_lower_errors_become_results(task, runner, monkeypatch, tmp_path):
    states = valid_states(task)[:2]
    real_render = builder_mod.render
    calls = []

    def broken_render(func, target):
        calls.append(1)
        return "this is not C;" if len(calls) == 1 else real_render(func, target)

    monkeypatch.setattr(builder_mod, "render", broken_render)
    log = tmp_path / "log.json"
    measurer = ProgramMeasurer(LocalBuilder(n_parallel=2), runner, [RecordToFile(str(log))],
                               verbose=0)
    results = measurer.measure(task, states)
    assert [r.error_no for r in results] == ["compile", "ok"]
    assert "C compilation failed" in results[0].error_msg and results[0].costs == []

    def broken_lower(state, args):
        raise ValueError("cannot lower this")
    monkeypatch.setattr(builder_mod, "lower", broken_lower)
    res = measurer.measure(task, states[:1])[0]
    assert res.error_no == ErrorNo.LOWER and "cannot lower this" in res.error_msg
    recs = list(load_records(str(log)))
    assert [r.error for r in recs] == ["compile", "ok", "lower"]
    assert recs[0].mean_cost == float("inf")


def test_compile_timeout_is_reported(task):
    src = render(lower(task.compute_dag.init_state(), task.args), task.target)
    src += f"\n/* never cached: {time.time_ns()} */\n"
    with pytest.raises(RuntimeError, match="timed out"):
        builder_mod.compile_with_timeout(src, task.target, 0.001)


def test_measure_input_extra_goes_to_record_meta(task, runner, tmp_path):
    log = tmp_path / "log.json"
    inp = MeasureInput(task, task.compute_dag.init_state(), extra={"genome": {"tiles": [[4]]}})
    ProgramMeasurer(LocalBuilder(), runner, [RecordToFile(str(log))], verbose=0) \
        .measure(task, [inp.state], inputs=[inp])
    (rec,) = load_records(str(log))
    assert rec.meta == {"genome": {"tiles": [[4]]}}
