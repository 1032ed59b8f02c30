"""Ctrl-C while tuning: the whole run stops within seconds, keeps every finished record, logs
no candidate as failed because of the interrupt, exits 130, and a second run resumes."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest
import workloads

from kiln import auto_scheduler
from kiln.auto_scheduler.task_scheduler import TaskScheduler

pytest.importorskip("torch")
pytest.importorskip("transformers")

CMD = [sys.executable, "-m", "kiln.cli", "tune", "--builtin", "bert-tiny", "--seq-len", "32",
       "--trials", "200"]


def _count(log: str) -> int:
    return sum(1 for _ in open(log)) if os.path.exists(log) else 0


def _tune_until(log: str, err_path: str, records: int, limit: float = 180) -> int:
    """Start `kiln tune` in its own process group (as a terminal runs it), wait until the log
    holds `records` records, send SIGINT to the whole group (what Ctrl-C does); exit status."""
    with open(err_path, "w") as err:
        proc = subprocess.Popen(CMD + ["--log", log], stdout=subprocess.DEVNULL, stderr=err,
                                start_new_session=True)
    t0 = time.time()
    while _count(log) < records and time.time() - t0 < limit and proc.poll() is None:
        time.sleep(0.1)
    assert proc.poll() is None, open(err_path).read()[-2000:]
    os.killpg(proc.pid, signal.SIGINT)
    t1 = time.time()
    try:
        rc = proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
        pytest.fail("kiln tune did not stop within 10 s of SIGINT")
    assert time.time() - t1 < 10
    return rc


def test_ctrl_c_stops_kiln_tune_and_a_second_run_resumes(tmp_path):
    log, err = str(tmp_path / "tiny.json"), str(tmp_path / "err.txt")
    assert _tune_until(log, err, 2) == 130
    first = _count(log)
    text = open(log).read()
    assert "SIGINT" not in text and "killed by signal" not in text
    assert "interrupted" in open(err).read()
    assert _tune_until(log, err, first + 1) == 130
    assert f"resumed {first} measured records" in open(err).read()
    assert "SIGINT" not in open(log).read()


def _mm(n):
    ins, outs, _ = workloads.matmul(n, n, n)
    return auto_scheduler.SearchTask(compute_dag=auto_scheduler.ComputeDAG(ins + outs),
                                     target="cpu", desc=f"mm{n}")


def test_ctrl_c_inside_one_task_stops_the_task_scheduler(tmp_path):
    log = str(tmp_path / "net.json")
    seen = []

    def ctrl_c_at_third(task, inputs, results):
        seen.append(1)
        if len(seen) == 3:
            raise KeyboardInterrupt

    ts = TaskScheduler([_mm(8), _mm(16)], [1, 1], verbose=0)
    opts = auto_scheduler.TuningOptions(
        num_measure_trials=12, num_measures_per_round=4, verbose=0,
        measure_callbacks=[auto_scheduler.RecordToFile(log), ctrl_c_at_third])
    ts.tune(opts)
    assert ts.interrupted and _count(log) == 3 and len(seen) == 3
    assert ts.trials == [3, 0] and not any(ts.dead)
    assert ts.best(0) < float("inf")  # the interrupted batch's results count
