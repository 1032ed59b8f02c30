"""Does the learned cost model earn its keep? XGBoost-guided search vs random search with the
same trial budget, on the seed's mm (128x3072x768) and a conv2d (ResNet 3x3 layer).

Random search = the same sketches, annotation and evolution, ranked by a RandomModel.
Neither search is seeded with the heuristic genomes (SearchPolicyParams.heuristic_seeds=False,
unlike `kiln tune`), so the curves show what the model learns, not what the heuristic knows.
Writes benchmarks/results/cost_model.{json,md,png} (best GFLOPS vs trials, both curves per
workload). Logs go to benchmarks/results/logs/ and are resumed.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))

import peers  # noqa: E402

from kiln import auto_scheduler, te, topi  # noqa: E402
from kiln.auto_scheduler.cost_model import RandomModel, XGBModel  # noqa: E402
from kiln.auto_scheduler.policy import SearchPolicyParams, SketchPolicy  # noqa: E402

LOGS = peers.RESULTS / "logs"


@auto_scheduler.register_workload
def cm_mm(M, N, K):
    a = te.placeholder((M, K), name="a")
    b = te.placeholder((N, K), name="b")
    k = te.reduce_axis((0, K), name="k")
    return [a, b, te.compute((M, N), lambda i, j: te.sum(a[i, k] * b[j, k], [k]))]


@auto_scheduler.register_workload
def cm_conv2d(N, C, H, W, F, R, pad):
    data = te.placeholder((N, C, H, W), name="data")
    kernel = te.placeholder((F, C, R, R), name="kernel")
    out = topi.nn.conv2d_nchw(data, kernel, 1, pad, 1)
    return [data, kernel, out]


WORKLOADS = {"mm": (cm_mm, (128, 3072, 768)), "conv2d": (cm_conv2d, (1, 64, 56, 56, 64, 3, 1))}


def run(name, model_name, trials, per_round, seed, logs=LOGS):
    func, args = WORKLOADS[name]
    task = auto_scheduler.SearchTask(func=func, args=args, target="cpu")
    logs = Path(logs)
    logs.mkdir(parents=True, exist_ok=True)
    tag = f"_s{seed}" if seed else ""
    log = logs / f"costmodel_{name}_{model_name}_noseed{tag}.json"
    done = sum(1 for _ in open(log)) if log.exists() else 0
    if trials > done:
        model = XGBModel() if model_name == "xgb" else RandomModel()
        policy = SketchPolicy(task, model, SearchPolicyParams(heuristic_seeds=False), seed=seed)
        opts = auto_scheduler.TuningOptions(
            num_measure_trials=trials - done, num_measures_per_round=per_round, seed=seed,
            measure_callbacks=[auto_scheduler.RecordToFile(str(log))], verbose=1)
        task.tune(opts, search_policy=policy)
    best, curve = 0.0, []
    for rec in auto_scheduler.load_records(str(log)):
        if rec.workload_key == task.workload_key and rec.error == "ok" and rec.costs:
            best = max(best, task.flop_ct / (sum(rec.costs) / len(rec.costs)) / 1e9)
        curve.append(best)
    return curve


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--trials", type=int, default=500)
    p.add_argument("--per-round", type=int, default=64)
    p.add_argument("--seeds", default="0", help="comma list: one search per seed and model")
    p.add_argument("--workloads", default="mm,conv2d")
    p.add_argument("--models", default="xgb,random")
    p.add_argument("--logs", default=str(LOGS), help="log folder (logs there are resumed)")
    p.add_argument("--out", default=str(peers.RESULTS / "cost_model"))
    args = p.parse_args(argv)
    curves, rows = {}, []
    seeds = [int(x) for x in args.seeds.split(",")]
    for name in args.workloads.split(","):
        for model in args.models.split(","):
            cs = [run(name, model, args.trials, args.per_round, sd, args.logs) for sd in seeds]
            for sd, c in zip(seeds, cs):
                curves[(name, model, sd)] = c
                rows.append(_row(name, model, str(sd), c))
            if len(cs) > 1:
                n = min(len(c) for c in cs)
                rows.append(_row(name, model, "mean", list(np.mean([c[:n] for c in cs], 0))))
    plot(args, curves)
    cols = ["workload", "search", "seed", "trials", "best_gflops"] + \
        sorted({k for r in rows for k in r if k.startswith("best@")}, key=lambda k: int(k[5:]))
    peers.write(Path(args.out), "Cost model vs random search (same trial budget)",
                peers.meta(args), rows, cols, "Curves: cost_model.png")
    return 0


def _row(name, model, seed, c) -> dict:
    marks = {n: c[n - 1] for n in (64, 128, 256, 384, 512, 1000) if len(c) >= n}
    return {"workload": name, "search": model, "seed": seed, "trials": len(c),
            "best_gflops": float(c[-1]) if c else 0.0,
            **{f"best@{n}": float(v) for n, v in marks.items()}}


def plot(args, curves) -> None:
    plt = peers.pyplot()
    if plt is None:
        return
    names = sorted({k[0] for k in curves})
    fig, axes = plt.subplots(1, len(names), figsize=(6 * len(names), 4.2), squeeze=False)
    for ax, name in zip(axes[0], names):
        for (n, model, sd), c in sorted(curves.items()):
            if n != name:
                continue
            label = ("XGBoost cost model" if model == "xgb" else "random search") + \
                f" (seed {sd})"
            ax.plot(c, "-" if model == "xgb" else "--", label=label)
        ax.set_title(f"{name} {WORKLOADS[name][1]}")
        ax.set_xlabel("measurement trials")
        ax.set_ylabel("best GFLOPS so far")
        ax.grid(alpha=0.3)
        ax.legend()
    fig.tight_layout()
    fig.savefig(Path(args.out).with_suffix(".png"), dpi=120)


if __name__ == "__main__":
    sys.exit(main())
