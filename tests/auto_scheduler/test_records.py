"""Records: JSON lines that survive a killed tuner, skip unknown versions, and are never
applied to another workload or target (load_best_record, ApplyHistoryBest + kiln.build)."""

from __future__ import annotations

import json
import logging
import warnings

import pytest
import workloads

import kiln
from kiln.auto_scheduler import SearchTask
from kiln.auto_scheduler.measure import (
    RECORD_VERSION,
    ApplyHistoryBest,
    MeasureInput,
    MeasureResult,
    Record,
    RecordToFile,
    best_by_key,
    load_best_record,
    load_records,
)
from kiln.schedule import ComputeDAG
from kiln.target import Target

OTHER_TARGET = "cpu -num-cores=64"


@pytest.fixture()
def mm():
    ins, outs, _ = workloads.matmul(16, 16, 8)
    task = SearchTask(compute_dag=ComputeDAG(ins + outs), desc="mm")
    return task, ins + outs


def states(task) -> dict:
    s0 = task.compute_dag.init_state()
    return {"default": s0, "par": s0.split(2, 0, [4]).parallel(2, 0),
            "vec": s0.split(2, 1, [4]).vectorize(2, 2)}


def write(log, task, state, cost, error="ok", extra=None) -> None:
    res = MeasureResult([cost] if error == "ok" else [], error, "msg" if error != "ok" else "",
                        0.5)
    RecordToFile(str(log))(task, [MeasureInput(task, state, extra)], [res])


def rec_json(task, steps, cost, target=None, key=None, version=RECORD_VERSION) -> str:
    obj = Record(key or task.workload_key, target or str(task.target), steps, [cost], "ok",
                 1.0).to_json()
    obj["version"] = version
    return json.dumps(obj) + "\n"


def test_round_trip_and_best(mm, tmp_path):
    task, _ = mm
    log = tmp_path / "log.json"
    st = states(task)
    write(log, task, st["default"], 3e-6)
    write(log, task, st["par"], 1e-6, extra={"genome": [1, 2]})
    write(log, task, st["vec"], 0.0, error="timeout")
    recs = list(load_records(str(log)))
    assert [r.error for r in recs] == ["ok", "ok", "timeout"]
    assert recs[1].meta == {"genome": [1, 2]} and recs[0].meta is None
    for r, s in zip(recs, st.values(), strict=True):
        assert task.replay(r.steps).record_key() == s.record_key()
    rec, cost = load_best_record(str(log), task.workload_key, task.target)
    assert cost == 1e-6 and task.replay(rec.steps).record_key() == st["par"].record_key()
    summary = best_by_key(str(log))[(task.workload_key, str(task.target))]
    assert summary.trials == 3 and summary.errors == {"timeout": 1}
    assert summary.best_cost == 1e-6 and summary.desc == "mm"


def test_truncated_last_line_is_skipped_with_warning(mm, tmp_path):
    task, _ = mm
    log = tmp_path / "log.json"
    for i in range(4):
        write(log, task, states(task)["par"], 1e-6 * (i + 1))
    text = log.read_text()
    log.write_text(text[:len(text) - 25])  # a tuner killed in the middle of a write
    with pytest.warns(UserWarning, match=r"log.json:4: skipping a malformed record"):
        recs = list(load_records(str(log)))
    assert len(recs) == 3
    write(log, task, states(task)["vec"], 5e-7)  # a resumed tuner appends cleanly
    with pytest.warns(UserWarning, match="malformed"):
        recs = list(load_records(str(log)))
    assert len(recs) == 4 and recs[-1].costs == [5e-7]


def test_killed_mid_line_keeps_complete_records(mm, tmp_path):
    task, _ = mm
    log = tmp_path / "log.json"
    n = 5
    for i in range(n):
        write(log, task, states(task)["default"], 1e-6 * (i + 1))
    data = log.read_bytes()
    for cut in (len(data), len(data) - 1, len(data) - len(data.splitlines()[-1]) // 2):
        log.write_bytes(data[:cut])
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            got = len(list(load_records(str(log))))
        assert got in (n - 1, n)


def test_unknown_version_skipped_once(mm, tmp_path):
    task, _ = mm
    log = tmp_path / "log.json"
    steps = [s.to_record() for s in states(task)["par"].steps]
    log.write_text(rec_json(task, steps, 1e-9, version=99) + rec_json(task, steps, 2e-9,
                                                                     version=99)
                   + rec_json(task, [], 3e-6))
    with pytest.warns(UserWarning, match="version 99") as caught:
        recs = list(load_records(str(log)))
    assert len([w for w in caught if "version" in str(w.message)]) == 1
    assert [r.costs for r in recs] == [[3e-6]]


def test_other_target_or_workload_never_applied(mm, tmp_path, caplog):
    task, args = mm
    log = tmp_path / "log.json"
    par = [s.to_record() for s in states(task)["par"].steps]
    log.write_text(rec_json(task, par, 1e-9, target=OTHER_TARGET)
                   + rec_json(task, par, 1e-9, key="someotherworkload")
                   + rec_json(task, [], 3e-6))
    rec, cost = load_best_record(str(log), task.workload_key, "llvm")  # alias of cpu
    assert rec.steps == [] and cost == 3e-6
    assert load_best_record(str(log), "unknown", "cpu") is None
    other = load_best_record(str(log), task.workload_key, OTHER_TARGET)
    assert other[0].steps == par
    only_other = tmp_path / "other.json"
    only_other.write_text(rec_json(task, par, 1e-9, target=OTHER_TARGET))
    caplog.set_level(logging.WARNING, logger="kiln.auto_scheduler")
    with ApplyHistoryBest(str(only_other)) as ctx:
        assert ApplyHistoryBest.current() is ctx
        assert ctx.query(task.workload_key, "cpu") is None
        assert ctx.query(task.workload_key, "cpu") is None
        assert "#pragma omp" not in kiln.build(states(task)["default"], args).source
    assert ApplyHistoryBest.current() is None
    told = [r for r in caplog.records if "ignored" in r.getMessage()]
    assert len(told) == 1 and str(Target(OTHER_TARGET)) in told[0].getMessage()


def test_apply_history_best_drives_build(mm, tmp_path):
    task, args = mm
    log = tmp_path / "log.json"
    st = states(task)
    write(log, task, st["vec"], 2e-6)
    write(log, task, st["par"], 1e-6)
    write(log, task, st["default"], 9e-6)
    write(log, task, st["default"], 0.0, error="wrong_answer")
    default_src = kiln.build(st["default"], args).source
    assert "#pragma omp" not in default_src
    sources = []
    with ApplyHistoryBest([str(log)]):
        sources.append(kiln.build(st["default"], args).source)
        sch = kiln.te.create_schedule(args[-1].op)  # the facade: a default schedule too
        sources.append(kiln.build(sch, args).source)
        sources.append(kiln.build(st["vec"], args).source)  # tuned by hand: left alone
    assert "#pragma omp" in sources[0] and "#pragma omp" in sources[1]
    assert "#pragma omp" not in sources[2]
    with ApplyHistoryBest(list(load_records(str(log)))) as ctx:
        assert ctx.query(task.workload_key, task.target) == \
            [s.to_record() for s in st["par"].steps]
