"""Tuning throughput on Ray: trials per minute with 1 and 2 measurement workers, head cost.

In: one matmul task (default 128x128x128) on a local Ray instance of this machine.
Out: benchmarks/results/distributed.{json,md}: for 1 and 2 runner actors (each pinned to its
own core with sched_setaffinity in the actor): measurement-only trials/min (a fixed set of
prebuilt candidates), end-to-end tuning trials/min (RayBuilder + RayRunner + search), and the
head node's cost per trial (CPU seconds of the tuner process while measuring, search seconds,
bytes sent to runners per trial), with an estimate of throughput and head load at 10 and 100
nodes derived from those numbers.
Why: a cluster is worth it only if trials scale with workers and the head keeps up.
Usage: python benchmarks/distributed.py [--size 128] [--candidates 32] [--trials 32]
"""

from __future__ import annotations

import argparse
import json
import pickle
import time
from pathlib import Path

import ray

from kiln import auto_scheduler, te
from kiln.auto_scheduler.measure import LocalBuilder, MeasureInput, RayBuilder, RayRunner
from kiln.auto_scheduler.measure.runner import measure_job

RESULTS = Path(__file__).parent / "results"


@auto_scheduler.register_workload
def dist_mm(M, N, K):
    a = te.placeholder((M, K), name="a")
    b = te.placeholder((N, K), name="b")
    k = te.reduce_axis((0, K), name="k")
    c = te.compute((M, N), lambda i, j: te.sum(a[i, k] * b[j, k], [k]), name="c")
    return [a, b, c]


def _runner(workers: int) -> RayRunner:
    return RayRunner(timeout=10, number=3, min_repeat_ms=50, workers_per_node=workers,
                     cpus_per_worker=0.5, pin_cores=True)


def candidates(task, n: int) -> list:
    """n distinct candidates of the task (heuristic seeds and random genomes)."""
    policy = auto_scheduler.SketchPolicy(task, seed=0, verbose=0)
    states = [policy.cands.state(g) for g in policy.next_batch(n)]
    return [MeasureInput(task, s) for s in states]


def measure_only(task, inputs: list, builds: list, workers: int) -> dict:
    """Trials/min of the runner alone and the head's CPU seconds per trial."""
    with _runner(workers) as runner:
        runner.run(inputs[:workers], builds[:workers])  # start actors, reference, warm caches
        wall0, cpu0 = time.perf_counter(), time.process_time()
        runner.run(inputs, builds)
        wall, cpu = time.perf_counter() - wall0, time.process_time() - cpu0
        util = {n: round(d["utilisation"], 3) for n, d in runner.stats().items()}
    return {"workers": workers, "trials": len(inputs), "wall_s": round(wall, 2),
            "trials_per_min": round(len(inputs) / wall * 60, 1),
            "head_cpu_ms_per_trial": round(cpu / len(inputs) * 1e3, 2), "utilisation": util}


def tune(task, trials: int, workers: int) -> dict:
    """End to end: search on the head, RayBuilder, RayRunner with `workers` actors."""
    with _runner(workers) as runner:
        policy = auto_scheduler.SketchPolicy(task, seed=0, verbose=0)
        opts = auto_scheduler.TuningOptions(num_measure_trials=trials,
                                            num_measures_per_round=16, verbose=0,
                                            builder=RayBuilder(), runner=runner)
        t0 = time.perf_counter()
        policy.tune(opts)
        wall = time.perf_counter() - t0
    return {"workers": workers, "trials": trials, "wall_s": round(wall, 2),
            "trials_per_min": round(trials / wall * 60, 1),
            "search_s_per_trial": round(policy.search_time / trials, 4)}


def estimate(rows: list, tuned: list, sent: int) -> list:
    """Markdown lines: throughput and head load at 10 and 100 nodes (one runner each)."""
    one = next(r for r in rows if r["workers"] == 1)
    per_node = one["trials_per_min"]
    head_ms = one["head_cpu_ms_per_trial"]
    search_s = tuned[0]["search_s_per_trial"]
    out = ["| nodes | trials/min (ideal) | head CPU for dispatch | head search s/min "
           "| head network |", "|---:|---:|---:|---:|---:|"]
    for n in (10, 100):
        rate = n * per_node
        out.append(f"| {n} | {rate:.0f} | {rate * head_ms / 60e3:.0%} of a core | "
                   f"{rate * search_s:.0f} | {rate * sent / 60 / 1e6:.2f} MB/s |")
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size", type=int, default=128)
    ap.add_argument("--candidates", type=int, default=32)
    ap.add_argument("--trials", type=int, default=32)
    args = ap.parse_args()
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    task = auto_scheduler.SearchTask(func=dist_mm, args=(args.size,) * 3, target="cpu")
    inputs = candidates(task, args.candidates)
    builds = [b.packed() for b in LocalBuilder().build(inputs)]
    ok = [(i, b) for i, b in zip(inputs, builds) if b.ok]
    inputs, builds = [i for i, _ in ok], [b for _, b in ok]
    settings = _runner(1)  # not started: only its measurement settings are read
    sent = int(sum(len(pickle.dumps((measure_job(i, settings), b)))
                   for i, b in zip(inputs, builds)) / len(inputs))
    rows = [measure_only(task, inputs, builds, w) for w in (1, 2)]
    tune(task, 8, 1)  # warm-up: imports, the cost model's first training, compile caches
    tuned = [tune(task, args.trials, w) for w in (1, 2)]
    ray.shutdown()
    out = {"task": task.desc, "bytes_per_trial": sent, "measure_only": rows, "tuning": tuned}
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "distributed.json").write_text(json.dumps(out, indent=1) + "\n")
    print(json.dumps(out, indent=1))
    print("\n".join(estimate(rows, tuned, sent)))


if __name__ == "__main__":
    main()
