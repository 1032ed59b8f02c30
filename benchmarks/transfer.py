"""Records reuse: does a cost model trained while tuning one model help tune another?

Tunes BERT-base at another sequence length (default 64; its kernels have other shapes, so
other workload keys and no record of the source log applies) twice with the same budget:
cold (a fresh cost model) and warm (`kiln tune --transfer-from` the seq-128 log, whose
cost model `kiln tune` saved beside it). Writes benchmarks/results/transfer.{json,md,png}:
estimated network latency (sum over tasks of runs x best record) vs tuning time for both,
and the measured latency of both tuned builds next to ONNX Runtime, in one run.
"""

from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))

import peers  # noqa: E402

from kiln import auto_scheduler  # noqa: E402
from kiln.cli import Model, _build, _median_ms, _peers  # noqa: E402
from kiln.cli import main as kiln_main

LOGS = peers.RESULTS / "logs"


def estimated_curve(log: str, tasks, weights) -> list:
    """(seconds since the first record, estimated latency ms) once every task has a record."""
    w = {t.workload_key: n for t, n in zip(tasks, weights)}
    best: dict = {}
    out, t0 = [], None
    for rec in auto_scheduler.load_records(log):
        t0 = rec.timestamp if t0 is None else t0
        if rec.workload_key in w and rec.error == "ok" and rec.costs:
            best[rec.workload_key] = min(best.get(rec.workload_key, math.inf), rec.mean_cost)
        if len(best) == len(w):
            out.append((rec.timestamp - t0, sum(w[k] * c for k, c in best.items()) * 1e3))
    return out


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--source-log", default=str(LOGS / "bert_base.json"),
                   help="a tuning log of the first model (its .model.npz is used)")
    p.add_argument("--seq-len", type=int, default=64)
    p.add_argument("--budget", default="5m", help="tuning time of each of the two runs")
    p.add_argument("--repeat", type=int, default=30)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--out", default=str(peers.RESULTS / "transfer"))
    p.add_argument("--no-tune", action="store_true", help="reuse the two logs, measure only")
    args = p.parse_args(argv)
    logs = {"cold": LOGS / f"bert_seq{args.seq_len}_cold.json",
            "warm": LOGS / f"bert_seq{args.seq_len}_warm.json"}
    base = ["tune", "--builtin", "bert-base", "--seq-len", str(args.seq_len), "--trials",
            "1000000", "--time-budget", args.budget]
    for name, log in ([] if args.no_tune else logs.items()):
        for f in (log, Path(str(log) + ".model.npz")):
            f.unlink(missing_ok=True)  # a fair comparison starts both runs from nothing
        extra = ["--transfer-from", args.source_log] if name == "warm" else []
        if kiln_main(base + ["--log", str(log)] + extra) != 0:
            return 1
    margs = argparse.Namespace(builtin="bert-base", seq_len=args.seq_len, model=None,
                               shape=None, target="cpu")
    model = Model(margs)
    tasks, weights = auto_scheduler.extract_tasks(model.graph, model.params, target="cpu")
    curves = {n: estimated_curve(str(log), tasks, weights) for n, log in logs.items()}
    ort = _peers(model, args.threads, False)["ONNX Runtime"]
    ref = ort()
    label = {name: f"kiln tuned {args.budget} ({name})" for name in logs}
    fns = {label[name]: _runner(model, str(log)) for name, log in logs.items()}
    fns["ONNX Runtime"] = ort
    times = _interleaved(fns, args.repeat)
    rows = [_row(label[name], fns[label[name]], ref, times[label[name]], curves[name],
                 sum(1 for _ in open(log))) for name, log in logs.items()]
    rows.append(_row("ONNX Runtime", ort, ref, times["ONNX Runtime"], [], 0))
    for r in rows:
        r["vs_ort"] = rows[-1]["median_ms"] / r["median_ms"]
    per_task = task_table(logs, tasks, weights)
    peers.write(Path(args.out), f"Transfer: BERT-base seq {args.seq_len} tuned cold vs "
                f"warm-started from {Path(args.source_log).name}", peers.meta(args), rows,
                ["name", "median_ms", "vs_ort", "trials", "est_ms_at_1min", "est_ms_at_3min",
                 "est_ms_final", "max_abs_err"], "Curves: transfer.png\n\n" + per_task)
    plot(args, curves)
    return 0


def _at(curve: list, secs: float) -> float:
    vals = [ms for t, ms in curve if t <= secs]
    return vals[-1] if vals else math.nan


def _runner(model, log: str):
    lib = _build(model, log, "cpu")
    return lambda: list(lib.run(**model.inputs).values())[0]


def _interleaved(fns: dict, repeat: int, rounds: int = 5) -> dict:
    """Median ms of each fn, measured in alternating rounds so that drift of a shared
    machine's speed hits every variant alike."""
    per = max(1, repeat // rounds)
    out: dict = {k: [] for k in fns}
    for _ in range(rounds):
        for k, fn in fns.items():
            out[k].append(_median_ms(fn, per))
    return {k: float(np.median(v)) for k, v in out.items()}


def task_table(logs: dict, tasks, weights) -> str:
    """Per task: best after the first 16 and 64 trials and the median candidate, cold vs
    warm: how good the model's first proposals are."""
    stats = {}
    for name, log in logs.items():
        costs: dict = {}
        for rec in auto_scheduler.load_records(str(log)):
            ok = rec.error == "ok" and rec.costs
            costs.setdefault(rec.workload_key, []).append(rec.mean_cost if ok else math.inf)
        stats[name] = costs
    lines = ["## Per task: best of the first 16 / 64 trials and median candidate, ms "
             "(cold | warm)", "",
             "| task | runs | best@16 cold | best@16 warm | best@64 cold | best@64 warm | "
             "median cold | median warm |", "|---|---:|---:|---:|---:|---:|---:|---:|"]
    for t, w in zip(tasks, weights):
        cells = []
        for k in (16, 64):
            for name in logs:
                c = stats[name].get(t.workload_key, [])[:k]
                cells.append(f"{min(c) * 1e3:.4f}" if c and math.isfinite(min(c)) else "-")
        for name in logs:
            c = sorted(x for x in stats[name].get(t.workload_key, []) if math.isfinite(x))
            cells.append(f"{c[len(c) // 2] * 1e3:.4f}" if c else "-")
        lines.append(f"| {t.desc[:50]} | {w} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _row(label, fn, ref, ms, curve, trials) -> dict:
    err = float(np.abs(fn() - ref).max())
    print(f"{label:34s} {ms:9.2f} ms  max|err| {err:.2e}", flush=True)
    return {"name": label, "median_ms": ms, "max_abs_err": err, "trials": trials,
            "est_ms_at_1min": _at(curve, 60), "est_ms_at_3min": _at(curve, 180),
            "est_ms_final": curve[-1][1] if curve else math.nan}


def plot(args, curves) -> None:
    plt = peers.pyplot()
    if plt is None:
        return
    fig, ax = plt.subplots(figsize=(7, 4.2))
    for name, style in (("cold", "--"), ("warm", "-")):
        c = curves[name]
        if c:
            label = "fresh cost model" if name == "cold" else "cost model from seq-128 log"
            ax.plot([t / 60 for t, _ in c], [ms for _, ms in c], style, label=label)
    ax.set_xlabel("tuning time, minutes")
    ax.set_ylabel("estimated latency, ms (sum of best kernels)")
    ax.set_title(f"BERT-base seq {args.seq_len}: tuning with and without transfer")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(Path(args.out).with_suffix(".png"), dpi=120)


if __name__ == "__main__":
    sys.exit(main())
