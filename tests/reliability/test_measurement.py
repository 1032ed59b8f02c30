"""Measurement integrity: the worker imports only the tuner's kiln, dies with the tuner, says
whether an output was checked (unchecked records never beat checked ones), and re-measures a
timeout once before storing it."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import pytest
from rel_kernels import matmul_task

from kiln.auto_scheduler.measure import (
    ApplyHistoryBest,
    LocalBuilder,
    LocalRunner,
    MeasureInput,
    ProgramMeasurer,
    RecordToFile,
    load_best_record,
    load_records,
)

HERE = os.path.dirname(os.path.abspath(__file__))


@pytest.fixture(scope="module")
def task():
    return matmul_task()


def _measure(task, runner, log=None):
    inp = MeasureInput(task, task.compute_dag.init_state())
    cbs = [RecordToFile(log)] if log else []
    return ProgramMeasurer(LocalBuilder(), runner, cbs, verbose=0).measure(task, [inp.state])[0]


def test_worker_ignores_a_kiln_folder_in_the_current_directory(task, tmp_path, monkeypatch):
    (tmp_path / "kiln").mkdir()
    (tmp_path / "kiln" / "__init__.py").write_text("raise ImportError('the wrong kiln')\n")
    monkeypatch.chdir(tmp_path)
    with LocalRunner(timeout=10, number=1, min_repeat_ms=0) as runner:
        res = _measure(task, runner)
    assert res.error_no == "ok", res.error_msg


CHILD = """
import sys; sys.path[:0] = [{here!r}, {tests!r}]
from rel_kernels import HANG, matmul_task, patched
from kiln.auto_scheduler.measure import LocalRunner, MeasureInput
from kiln.auto_scheduler.measure.runner import Worker
task = matmul_task()
inp = MeasureInput(task, task.compute_dag.init_state())
req = LocalRunner(check_correctness=False)._request(inp, patched(task, HANG))
w = Worker()
print(w.proc.pid, flush=True)
w.call(req, 600)
"""


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
def test_worker_dies_when_the_tuner_is_killed_while_a_candidate_hangs():
    code = CHILD.format(here=HERE, tests=os.path.dirname(HERE))
    tuner = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    worker = int(tuner.stdout.readline())
    time.sleep(1.0)  # the kernel spins now
    tuner.kill()
    tuner.wait()
    t0 = time.time()
    while _alive(worker) and time.time() - t0 < 5:
        time.sleep(0.1)
    still = _alive(worker)
    if still:
        os.kill(worker, signal.SIGKILL)
    assert not still, "the worker outlived the tuner"


def test_records_say_whether_the_output_was_checked(task, tmp_path):
    log = str(tmp_path / "log.json")
    for check in (True, False):
        with LocalRunner(timeout=10, number=1, min_repeat_ms=0,
                         check_correctness=check) as runner:
            assert _measure(task, runner, log).checked is check
    assert [json.loads(line)["checked"] for line in open(log)] == [True, False]
    assert [r.checked for r in load_records(log)] == [True, False]


def test_unchecked_records_never_beat_checked_ones(task, tmp_path):
    log = tmp_path / "log.json"
    with LocalRunner(timeout=10, number=1, min_repeat_ms=0) as runner:
        _measure(task, runner, str(log))
    (rec,) = (json.loads(line) for line in open(log))
    fast = dict(rec, costs=[c / 100 for c in rec["costs"]], checked=False)
    old = {k: v for k, v in rec.items() if k != "checked"}  # before the field: checked
    log.write_text(json.dumps(fast) + "\n" + json.dumps(old) + "\n")
    best, cost = load_best_record(str(log), task.workload_key, task.target)
    assert best.checked and cost == pytest.approx(sum(rec["costs"]) / len(rec["costs"]))
    best, _ = ApplyHistoryBest(str(log)).query_record(task.workload_key, task.target)
    assert best.checked


def test_a_timeout_is_measured_again_before_it_is_stored(task, monkeypatch):
    with LocalRunner(timeout=10, number=1, min_repeat_ms=0) as runner:
        real, calls = runner._call, []

        def stalls_once(request, timeout):
            calls.append(request["cmd"])
            if request["cmd"] == "measure" and calls.count("measure") == 1:
                return {"error_no": "timeout", "error_msg": "no answer within 10 s"}
            return real(request, timeout)
        monkeypatch.setattr(runner, "_call", stalls_once)
        res = _measure(task, runner)
    assert res.error_no == "ok" and calls.count("measure") == 2
