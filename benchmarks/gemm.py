"""Auto-scheduled GEMMs (the seed's mm and swish_mm, 128x3072x768) against the vendor stack.

Tunes, with no hand-written schedule:
  mm           b an input on every call           vs ORT Gemm(transB=1), b an input
  mm_w         b a constant weight, layout rewritten once ahead of time (kiln says so)
                                                  vs ORT MatMul, weight as an initializer
  swish_mm_w   the same + hard_swish epilogue     vs ORT MatMul+HardSwish, torch linear+hardswish
plus a random-search run of mm_w for the tuning curve. Everything is measured in one run
(medians); writes benchmarks/results/gemm.{json,md,png}. Logs go to benchmarks/results/logs/
and are resumed, so a second run continues tuning instead of starting over.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))

import peers  # noqa: E402

import kiln  # noqa: E402
from kiln import auto_scheduler, te  # noqa: E402

LOGS = peers.RESULTS / "logs"


@auto_scheduler.register_workload
def mm(M, N, K):
    a = te.placeholder((M, K), name="a")
    b = te.placeholder((N, K), name="b")
    k = te.reduce_axis((0, K), name="k")
    c = te.compute((M, N), lambda i, j: te.sum(a[i, k] * b[j, k], [k]))
    return [a, b, c]


@auto_scheduler.register_workload
def mm_w(M, N, K):
    a = te.placeholder((M, K), name="a")
    b = te.placeholder((N, K), name="b")
    k = te.reduce_axis((0, K), name="k")
    c = te.compute((M, N), lambda i, j: te.sum(a[i, k] * b[j, k], [k]),
                   attrs={"layout_free_placeholders": [b]})
    return [a, b, c]


@auto_scheduler.register_workload
def swish_mm_w(M, N, K):
    a = te.placeholder((M, K), name="a")
    b = te.placeholder((N, K), name="b")
    k = te.reduce_axis((0, K), name="k")
    c = te.compute((M, N), lambda i, j: te.sum(a[i, k] * b[j, k], [k]),
                   attrs={"layout_free_placeholders": [b]})
    relu6 = kiln.topi.clip(te.compute(c.shape, lambda i, j: c[i, j] + 3.0), 0., 6.)
    d = te.compute(c.shape, lambda i, j: relu6[i, j] * c[i, j] * 0.1666667)
    return [a, b, d]


TASKS = [("mm", mm, False), ("mm_w", mm_w, True), ("swish_mm_w", swish_mm_w, True)]


def tune(name, func, rewrite, shape, trials, per_round, seed, random_model=False):
    opt = auto_scheduler.LayoutRewriteOption.REWRITE_FOR_PRE_TRANSFORMED if rewrite else None
    task = auto_scheduler.SearchTask(func=func, args=shape, target="cpu",
                                     layout_rewrite_option=opt)
    tag = "x".join(str(x) for x in shape)
    log = LOGS / f"gemm_{name}_{tag}{'_random' if random_model else ''}.json"
    LOGS.mkdir(parents=True, exist_ok=True)
    done = sum(1 for _ in open(log)) if log.exists() else 0
    if trials > done:
        options = auto_scheduler.TuningOptions(
            num_measure_trials=trials - done, num_measures_per_round=per_round, seed=seed,
            measure_callbacks=[auto_scheduler.RecordToFile(str(log))], verbose=1)
        policy = None
        if random_model:
            from kiln.auto_scheduler.cost_model import RandomModel
            from kiln.auto_scheduler.policy import SketchPolicy
            policy = SketchPolicy(task, RandomModel(), seed=seed)
        task.tune(options, search_policy=policy)
    return task, str(log)


def curve(task, log: str) -> list:
    best, out = 0.0, []
    for rec in auto_scheduler.load_records(log):
        if rec.workload_key == task.workload_key and rec.error == "ok" and rec.costs:
            best = max(best, task.flop_ct / (sum(rec.costs) / len(rec.costs)) / 1e9)
        out.append(best)
    return out


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--shape", default="128,3072,768", help="M,N,K")
    p.add_argument("--trials", type=int, default=1000, help="trials per task (resumed)")
    p.add_argument("--random-trials", type=int, default=None,
                   help="trials of the random-search baseline (default: --trials)")
    p.add_argument("--per-round", type=int, default=64)
    p.add_argument("--repeat", type=int, default=30)
    p.add_argument("--number", type=int, default=10)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--tune-only", default="", help="comma list of tasks to tune (default all)")
    p.add_argument("--out", default=str(peers.RESULTS / "gemm"))
    args = p.parse_args(argv)
    shape = tuple(int(x) for x in args.shape.split(","))
    only = set(filter(None, args.tune_only.split(",")))
    tuned = {name: tune(name, f, rw, shape, args.trials if not only or name in only else 0,
                        args.per_round, args.seed) for name, f, rw in TASKS}
    rnd = args.trials if args.random_trials is None else args.random_trials
    rand_task = tune("mm_w", mm_w, True, shape, rnd, args.per_round, args.seed, True) \
        if rnd else None
    rows = measure(args, shape, tuned)
    plot(args, tuned, rand_task)
    summarize(args, shape, rows, tuned)
    return 0


def measure(args, shape, tuned) -> list:
    M, N, K = shape
    rng = np.random.default_rng(0)
    a = rng.standard_normal((M, K), dtype=np.float32)
    b = rng.standard_normal((N, K), dtype=np.float32)
    mm_ref = a @ b.T
    sw_ref = np.clip(mm_ref + 3, 0, 6) * mm_ref * np.float32(0.1666667)
    flops = 2.0 * M * N * K
    n, r, th = args.number, args.repeat, args.threads
    rows = []
    c = np.empty((M, N), np.float32)
    for name, (task, log) in tuned.items():
        sch, targs = task.apply_best(log)
        f = kiln.build(sch, targs, target="cpu")
        ins = auto_scheduler.pack_inputs(sch, targs[:2], [a, b])
        f(*ins, c)
        np.testing.assert_allclose(c, sw_ref if name.startswith("swish") else mm_ref,
                                   rtol=2e-3, atol=2e-3)
        packed = "b packed once ahead of time (layout rewrite)" if ins[1] is not b else \
            "b read as given on every call"
        rows.append(peers.row(f"kiln tuned {name}", peers.time_kiln(f, ins + [c], n, r), flops,
                              packed))
    task = tuned["mm"][0]
    f = kiln.build(te.create_schedule(task.args[-1].op), task.args, target="cpu")
    rows.append(peers.row("kiln untuned mm (default schedule)",
                          peers.time_kiln(f, [a, b, c], 1, 3), flops, "naive loop nest"))
    rows.append(peers.row("NumPy a @ b.T", peers.time_fn(lambda: a @ b.T, n, r), flops))
    for label, fn in [("ORT Gemm(transB=1), b input", peers.ort_gemm_input(a, b, th)),
                      ("ORT MatMul, weight initializer", peers.ort_matmul_weight(a, b, th)),
                      ("ORT MatMul+HardSwish, weight initializer",
                       peers.ort_matmul_weight(a, b, th, hard_swish=True))]:
        ref = sw_ref if "HardSwish" in label else mm_ref
        np.testing.assert_allclose(fn(), ref, rtol=2e-3, atol=2e-3)
        rows.append(peers.row(label, peers.time_fn(fn, n, r), flops, f"{th} threads"))
    for label, hs in [("torch linear", False), ("torch linear + hardswish", True)]:
        fn = peers.torch_linear(a, b, th, hs)
        if fn is not None:
            rows.append(peers.row(label, peers.time_fn(fn, n, r), flops, f"{th} threads"))
    return rows


def plot(args, tuned, rand_task) -> None:
    plt = peers.pyplot()
    if plt is None:
        return
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for name, (task, log) in tuned.items():
        ax.plot(curve(task, log), label=f"kiln {name} (XGBoost-guided)")
    if rand_task is not None:
        ax.plot(curve(*rand_task), "--", label="mm_w random search")
    ax.set_xlabel("measurement trials")
    ax.set_ylabel("best GFLOPS so far")
    ax.set_title("kiln tuning curves, GEMM 128x3072x768")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(Path(args.out).with_suffix(".png"), dpi=120)


def summarize(args, shape, rows, tuned) -> None:
    by = {r["name"]: r for r in rows}

    def ratio(a, b):
        return by[a]["gflops"] / by[b]["gflops"] if a in by and b in by else float("nan")
    goals = [
        ("tuned mm vs ORT Gemm (b input)", ratio("kiln tuned mm", "ORT Gemm(transB=1), b input"),
         1.0),
        ("tuned mm_w vs ORT MatMul (initializer)",
         ratio("kiln tuned mm_w", "ORT MatMul, weight initializer"), 1.0),
        ("swish_mm_w vs tuned mm_w (fusion for free)",
         ratio("kiln tuned swish_mm_w", "kiln tuned mm_w"), 0.95),
        ("swish_mm_w vs ORT MatMul+HardSwish",
         ratio("kiln tuned swish_mm_w", "ORT MatMul+HardSwish, weight initializer"), 1.0),
        ("swish_mm_w vs torch linear + hardswish",
         ratio("kiln tuned swish_mm_w", "torch linear + hardswish"), 1.2)]
    trials = {name: sum(1 for _ in open(log)) for name, (_, log) in tuned.items()}
    extra = ["## Goals (ratios of GFLOPS, measured in this run)", "",
             "| comparison | ratio | goal | met |", "|---|---:|---:|---|"]
    for label, val, goal in goals:
        extra.append(f"| {label} | {val:.2f}x | {goal:.2f}x | {'yes' if val >= goal else 'no'} |")
    extra += ["", f"Trials per task: {trials}. Tuning curves: gemm.png."]
    peers.write(Path(args.out), f"GEMM {shape[0]}x{shape[1]}x{shape[2]} float32: kiln "
                f"auto-scheduled vs peers", peers.meta(args), rows,
                ["name", "median_ms", "gflops", "note"], "\n".join(extra))


if __name__ == "__main__":
    sys.exit(main())
