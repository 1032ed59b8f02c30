"""BERT-base (random weights, batch 1, seq 128, 2 threads): kiln vs ONNX Runtime and PyTorch.

All in one run, medians of --repeat runs: kiln untuned (default schedules), kiln tuned with
each --log given (e.g. logs after 5 / 15 / 30 minutes of `kiln tune`), PyTorch eager,
torch.compile and ONNX Runtime, each as a ratio to ONNX Runtime, with max abs error vs ORT.
With a log, also the per-task breakdown (estimated time share of each fused-group task from
its best record x how often it runs). Writes benchmarks/results/bert_cpu.{json,md,png}.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))

import peers  # noqa: E402

from kiln import auto_scheduler  # noqa: E402
from kiln.cli import Model, _build, _median_ms, _peers  # noqa: E402


def breakdown(model, log: str, target: str) -> list:
    tasks, weights = auto_scheduler.extract_tasks(model.graph, model.params, target=target)
    trials: dict = {}
    for rec in auto_scheduler.load_records(log):
        trials[rec.workload_key] = trials.get(rec.workload_key, 0) + 1
    rows = []
    for t, w in zip(tasks, weights):
        best = auto_scheduler.load_best_record(log, t.workload_key, str(t.target))
        cost = best[1] if best else math.nan
        rows.append({"task": t.desc[:70], "weight": w, "trials": trials.get(t.workload_key, 0),
                     "best_ms": cost * 1e3,
                     "total_ms": cost * w * 1e3, "gflops": t.flop_ct / cost / 1e9
                     if best else 0.0})
    total = sum(r["total_ms"] for r in rows if math.isfinite(r["total_ms"]))
    for r in rows:
        r["share"] = r["total_ms"] / total if total and math.isfinite(r["total_ms"]) else 0.0
    return sorted(rows, key=lambda r: -r["share"])


def _parse(line: str):
    try:
        return auto_scheduler.measure.record.Record.from_json(json.loads(line))
    except ValueError:
        return None  # a cut last line


def snapshot(log: str, minutes: float) -> str:
    """The records of `log` from its first `minutes` of tuning, as a new log file next to it.
    Tuning time is the sum of gaps between consecutive records, a gap over a minute counted
    as a pause between sittings (so a resumed log still gives honest budget points)."""
    out = Path(log).with_name(f"{Path(log).stem}_first{minutes:g}min.json")
    elapsed, last = 0.0, None
    with open(log) as src, open(out, "w") as dst:
        for line in src:
            rec = _parse(line)
            if rec is None:
                continue
            if last is not None:
                gap = rec.timestamp - last
                elapsed += gap if 0 <= gap <= 60 else 0.0
            last = rec.timestamp
            if elapsed > minutes * 60:
                break
            dst.write(line if line.endswith("\n") else line + "\n")
    return str(out)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--builtin", default="bert-base")
    p.add_argument("--seq-len", type=int, default=128)
    p.add_argument("--log", action="append", default=[], help="LABEL=path or path")
    p.add_argument("--budgets", default="",
                   help="comma list of minutes, e.g. 5,15: also bench the first N minutes of "
                   "tuning of the last --log (cut by record timestamps)")
    p.add_argument("--repeat", type=int, default=30)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--target", default="cpu")
    p.add_argument("--no-torch", action="store_true")
    p.add_argument("--out", default=str(peers.RESULTS / "bert_cpu"))
    args = p.parse_args(argv)
    args.model, args.shape = None, None
    model = Model(args)
    fns = _peers(model, args.threads, not args.no_torch)
    ref = fns["ONNX Runtime"]()
    rows = []
    budgets = [float(m) for m in args.budgets.split(",") if m]
    cuts = [f"{m:g} min={snapshot(args.log[-1].split('=')[-1], m)}" for m in budgets] \
        if args.log else []
    logs = [("kiln untuned", None)] + [
        (f"kiln tuned ({x.split('=')[0]})" if "=" in x else "kiln tuned", x.split("=")[-1])
        for x in cuts + args.log]
    for label, log in logs:
        t0 = time.time()
        lib = _build(model, log, args.target)
        note = f"build {time.time() - t0:.1f}s"
        fn = lambda lib=lib: list(lib.run(**model.inputs).values())[0]
        rows.append(_row(label, fn, ref, args.repeat, note))
    for label, fn in fns.items():
        rows.append(_row(label, fn, ref, args.repeat, f"{args.threads} threads"))
    ort = next(r for r in rows if r["name"] == "ONNX Runtime")["median_ms"]
    fastest_peer = min(r["median_ms"] for r in rows if not r["name"].startswith("kiln"))
    for r in rows:
        r["vs_ort"] = ort / r["median_ms"]
        r["vs_fastest_peer"] = fastest_peer / r["median_ms"]
    extra = ""
    if args.log:
        bd = breakdown(model, args.log[-1].split("=")[-1], args.target)
        extra = ("## Per-task breakdown (last log; best record x runs per inference)\n\n"
                 "| task | runs | trials | best ms | total ms | share | GFLOPS |\n"
                 "|---|---:|---:|---:|---:|---:|---:|\n")
        extra += "\n".join(f"| {r['task']} | {r['weight']} | {r['trials']} | {r['best_ms']:.4f} | "
                           f"{r['total_ms']:.3f} | {r['share']:.1%} | {r['gflops']:.1f} |"
                           for r in bd)
        extra += "\n\n" + gap_line(bd, rows[len(logs) - 1]["median_ms"])
    peers.write(Path(args.out), f"{args.builtin} (batch 1, seq {args.seq_len}), "
                f"{args.threads} threads", peers.meta(args), rows,
                ["name", "median_ms", "vs_ort", "vs_fastest_peer", "max_abs_err", "note"], extra)
    plot(args, rows)
    return 0


def gap_line(bd: list, network_ms: float) -> str:
    """The sum of the tuned records against the network measured as a whole: the tuner times
    each kernel warm and alone; the network streams its weights from memory between them."""
    total = sum(r["total_ms"] for r in bd if math.isfinite(r["total_ms"]))
    gap = (network_ms - total) / total if total else math.nan
    return (f"Sum of the best records x runs: {total:.1f} ms; the tuned network measured as a "
            f"whole: {network_ms:.1f} ms; gap {gap:+.1%} (kernels timed warm and alone while "
            "tuning; weights stream from DRAM in the network).")


def _row(label, fn, ref, repeat, note) -> dict:
    err = float(np.abs(fn() - ref).max())
    ms = _median_ms(fn, repeat)
    print(f"{label:28s} {ms:9.2f} ms  max|err| {err:.2e}  {note}", flush=True)
    return {"name": label, "median_ms": ms, "max_abs_err": err, "note": note}


def plot(args, rows) -> None:
    plt = peers.pyplot()
    if plt is None:
        return
    fig, ax = plt.subplots(figsize=(7, 3.8))
    names = [r["name"] for r in rows]
    ax.barh(names, [r["median_ms"] for r in rows],
            color=["tab:orange" if n.startswith("kiln") else "tab:gray" for n in names])
    ax.invert_yaxis()
    ax.set_xlabel("latency, ms (median)")
    ax.set_title(f"{args.builtin}, batch 1, seq {args.seq_len}, {args.threads} threads")
    fig.tight_layout()
    fig.savefig(Path(args.out).with_suffix(".png"), dpi=120)


if __name__ == "__main__":
    sys.exit(main())
