"""TaskScheduler: warm-up, budget, shared model, and gradient allocation toward heavy tasks."""

import math

import workloads

from kiln import auto_scheduler
from kiln.auto_scheduler.task_scheduler import TaskScheduler


def _task(n):
    ins, outs, _ = workloads.matmul(n, n, n)
    return auto_scheduler.SearchTask(compute_dag=auto_scheduler.ComputeDAG(ins + outs),
                                     target="cpu", desc=f"mm{n}")


def test_budget_warmup_and_log(tmp_path):
    log = str(tmp_path / "net.json")
    tasks = [_task(16), _task(32)]
    ts = TaskScheduler(tasks, [1, 3], verbose=0)
    opts = auto_scheduler.TuningOptions(num_measure_trials=8, num_measures_per_round=2,
                                        measure_callbacks=[auto_scheduler.RecordToFile(log)],
                                        verbose=0)
    lat = ts.tune(opts)
    assert sum(ts.trials) == 8 and ts.allocation[:2] == [0, 1]
    assert math.isfinite(lat) and lat > 0
    assert sum(1 for _ in open(log)) == 8
    assert all(p.model is ts.model for p in ts.policies)


def test_gradient_prefers_the_task_that_dominates_latency():
    tasks = [_task(16), _task(32)]
    ts = TaskScheduler(tasks, [1, 10], verbose=0, eps=0.0)
    for i, (b, t) in enumerate([(1e-3, 8), (1e-3, 8)]):
        ts.policies[i].best_cost = b
        ts.trials[i] = t
        ts.history[i] = [2e-3, b]
    assert ts._pick() == 1
    ts.weights = [10, 1]
    assert ts._pick() == 0


class _ShortRounds:
    """A policy stand-in whose rounds measure one candidate fewer than asked (duplicates in a
    population), and nothing at all once `left` runs out."""

    def __init__(self, left: int):
        self.measured, self.left = set(), left
        self.best_cost, self.interrupted, self.exhausted = 1.0, False, False

    def search(self, n, early_stopping, per_round, measurer):
        take = min(n - 1, self.left)
        self.measured |= {len(self.measured) + k for k in range(take)}
        self.left -= take
        self.exhausted = take == 0


def test_a_short_round_does_not_end_a_task_only_an_empty_one_does():
    ts = TaskScheduler([_task(16)], [1], verbose=0)
    ts.policies[0] = _ShortRounds(left=10)
    assert ts._round(0, 8, None, None) == 7 and not ts.dead[0]
    assert ts._round(0, 8, None, None) == 3 and not ts.dead[0]
    assert ts._round(0, 8, None, None) == 0 and ts.dead[0]
