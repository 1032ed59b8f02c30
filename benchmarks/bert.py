"""BERT-base (random weights, batch 1, seq 128, 2 threads): kiln vs ONNX Runtime and PyTorch.

All rows in one run, timed interleaved: each of --sittings sittings warms every row up, then
runs --repeat rounds, a round calling every row once in turn (kiln untuned, kiln tuned with
each --log, kiln bf16 with --bf16 / --bf16-log, kiln int8 with --int8 / --int8-log: the
very model ONNX Runtime's int8 row runs, imported by kiln, and the float model built with
kiln's own dynamic quantization (dtype="int8": per-channel weights, per-row activations);
ONNX Runtime fp32 and int8 (dynamic quantization), PyTorch eager, PyTorch bf16,
torch.compile). Per row: median and min-max over
all samples, the ratio to ONNX Runtime and to the fastest peer of the same precision, max abs
error and cosine similarity against ONNX Runtime fp32. The meta records the target string
and the load average before and after. With a log, also the per-task breakdown (each task's
best record x how often it runs) and the gap between that sum and the tuned network measured
as a whole; a goals table closes the report. Writes benchmarks/results/bert_cpu.{json,md,png}.
"""

from __future__ import annotations

import argparse
import copy
import json
import math
import os
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))

import peers  # noqa: E402

from kiln import auto_scheduler  # noqa: E402
from kiln.cli import Model, _build  # noqa: E402
from kiln.errors import KilnError  # noqa: E402
from kiln.target import as_target  # noqa: E402

GOALS = [  # (text, row value key, goal, higher is better)
    ("tuned >= 1.25x ORT", "tuned_vs_ort", 1.25, True),
    ("untuned >= 1.0x ORT", "untuned_vs_ort", 1.0, True),
    ("record-sum vs network gap <= 3%", "abs_gap", 0.03, False),
    ("bf16 <= 0.6x kiln fp32", "bf16_vs_fp32", 0.6, False),
    ("bf16 >= 1.3x PyTorch bf16", "bf16_vs_torch_bf16", 1.3, True),
    ("bf16 cosine >= 0.999", "bf16_cosine", 0.999, True),
    ("int8 >= 1.0x ORT int8 (same quantized model)", "int8_vs_ort_int8", 1.0, True),
]


def breakdown(model, log: str, target: str, dtype: str = "float32") -> list:
    tasks, weights = auto_scheduler.extract_tasks(model.graph, model.params, target=target,
                                                  dtype=dtype)
    trials: dict = {}
    for rec in auto_scheduler.load_records(log):
        trials[rec.workload_key] = trials.get(rec.workload_key, 0) + 1
    rows = []
    for t, w in zip(tasks, weights):
        best = auto_scheduler.load_best_record(log, t.workload_key, str(t.target))
        cost = best[1] if best else math.nan
        rows.append({"task": t.desc[:70], "key": t.workload_key, "weight": w,
                     "trials": trials.get(t.workload_key, 0),
                     "best_ms": cost * 1e3,
                     "total_ms": cost * w * 1e3, "gflops": t.flop_ct / cost / 1e9
                     if best else 0.0, "cache": best[0].cache if best else "-"})
    total = sum(r["total_ms"] for r in rows if math.isfinite(r["total_ms"]))
    for r in rows:
        r["share"] = r["total_ms"] / total if total and math.isfinite(r["total_ms"]) else 0.0
    return sorted(rows, key=lambda r: -r["share"])


def in_network(bd: list, lib, model, gap_s: float, number: int = 10) -> None:
    """Each breakdown row's time inside the network (GraphModule.profile: a clock read
    between kernels), "net_ms" per inference, the median of `number` profiled runs each
    `gap_s` after the last (as the timed rows are, so no peer's thread pool is still
    spinning); the median profile total goes in every row too."""
    runs = []
    for _ in range(number):
        time.sleep(gap_s)
        runs.append({name: n * sec for name, n, sec in lib.profile(number=1, **model.inputs)})
    by_key = {k["key"]: k["name"] for k in lib.meta["kernels"]}
    for r in bd:
        name = by_key.get(r["key"])
        r["net_ms"] = statistics.median(p.get(name, math.nan) for p in runs) * 1e3
        r["net_total_ms"] = statistics.median(sum(p.values()) for p in runs) * 1e3


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


def parse(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--builtin", default="bert-base")
    p.add_argument("--seq-len", type=int, default=128)
    p.add_argument("--log", action="append", default=[], help="LABEL=path or path")
    p.add_argument("--budgets", default="",
                   help="comma list of minutes, e.g. 5,15: also bench the first N minutes of "
                   "tuning of the last --log (cut by record timestamps)")
    p.add_argument("--bf16", action="store_true", help="also kiln bf16, untuned")
    p.add_argument("--check-records", action="store_true",
                   help="also each tuned row built with kiln.graph.build_checked (a record kept "
                   "only where its kernel beats the default inside the network)")
    p.add_argument("--bf16-log", action="append", default=[],
                   help="kiln bf16 tuned with this log (LABEL=path or path; repeatable)")
    p.add_argument("--int8", action="store_true",
                   help="also kiln on ORT's dynamically quantized model (the ORT int8 row's "
                   "model), untuned")
    p.add_argument("--int8-log", action="append", default=[],
                   help="kiln int8 tuned with this log (LABEL=path or path; repeatable; tune "
                   "with kiln tune on the quantized model file)")
    p.add_argument("--repeat", type=int, default=10, help="rounds per sitting")
    p.add_argument("--sittings", type=int, default=3)
    p.add_argument("--gap-ms", type=float, default=200.0,
                   help="sleep before each timed call, so the thread pools of the previous row "
                   "are idle (with 5 ms, PyTorch bf16 read 116 ms instead of 80 ms; ONNX "
                   "Runtime's spinning pool still slowed the next row by 13%% after 50 ms)")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--target", default="cpu")
    p.add_argument("--no-torch", action="store_true")
    p.add_argument("--out", default=str(peers.RESULTS / "bert_cpu"))
    args = p.parse_args(argv)
    args.model, args.shape = None, None
    return args


def _label(text: str, kind: str) -> tuple[str, str]:
    """(row name, log path) of a LABEL=path or path option."""
    if "=" in text:
        label, path = text.split("=", 1)
        return f"{kind} ({label})", path
    return kind, text


def kiln_specs(args) -> list[tuple[str, str, str | None]]:
    """(row name, precision, log or None) of every kiln row asked for."""
    budgets = [float(m) for m in args.budgets.split(",") if m]
    cuts = [f"{m:g} min={snapshot(args.log[-1].split('=')[-1], m)}" for m in budgets] \
        if args.log else []
    specs: list = [("kiln untuned", "fp32", None)]
    specs += [(name, "fp32", path) for name, path in
              (_label(x, "kiln tuned") for x in cuts + args.log)]
    if args.bf16:
        specs.append(("kiln bf16 untuned", "bf16", None))
    specs += [(name, "bf16", path) for name, path in
              (_label(x, "kiln bf16 tuned") for x in args.bf16_log)]
    if args.int8:
        specs.append(("kiln int8 untuned", "int8", None))
        specs.append((OWN_INT8, "int8", None))
    specs += [(name, "int8", path) for name, path in
              (_label(x, "kiln int8 tuned") for x in args.int8_log)]
    return specs


OWN_INT8 = "kiln int8 untuned (kiln's quantization)"  # the fp32 model, build(dtype="int8")


def int8_model(model):
    """`model` as ONNX Runtime's int8 recipe leaves it (peers.quantized_bytes), imported."""
    import onnx

    from kiln.graph.frontend import from_onnx
    q = copy.copy(model)
    q.proto = onnx.load_from_string(peers.quantized_bytes(model.proto))
    q.graph, q.params = from_onnx(q.proto)
    return q


def build_kiln(model, name: str, precision: str, log: str | None, target: str,
               check: bool = False):
    """(fn, note) of one kiln row, or None when this kiln cannot build it (bf16 before
    kiln.cli._build takes dtype=)."""
    t0 = time.time()
    kw = {"dtype": "bfloat16"} if precision == "bf16" else \
        {"dtype": "int8"} if name == OWN_INT8 else {}
    try:
        lib = _build(model, log, target, check=check, **kw) if check else \
            _build(model, log, target, **kw)
    except TypeError as e:
        if not kw or "dtype" not in str(e):
            raise
        print(f"[bench] {name}: skipped, this kiln cannot build bfloat16 models yet "
              f"(kiln.cli._build / kiln.graph.build take no dtype=): {e}", file=sys.stderr)
        return None
    except KilnError as e:  # e.g. a CPU without AVX512-BF16: the fp32 rows still run
        if not kw:
            raise
        print(f"[bench] {name}: skipped: {type(e).__name__}: {str(e)[:300]}", file=sys.stderr)
        return None
    key = next(iter(lib.run(**model.inputs)))  # the model's first output, by name

    def fn():
        return _as_float32(lib.run(**model.inputs)[key])
    fn.lib = lib
    return fn, f"build {time.time() - t0:.1f}s"


def _as_float32(a: np.ndarray) -> np.ndarray:
    """A model output as float32: bfloat16 outputs come as ml_dtypes arrays or uint16 bits."""
    if a.dtype == np.uint16:  # the high half of a float32
        return (a.astype(np.uint32) << 16).view(np.float32)
    return a if a.dtype == np.float32 else a.astype(np.float32)


def collect_rows(model, args) -> tuple[dict, list, list]:
    """({name: fn}, row dicts without timings, names of skipped rows)."""
    fns: dict[str, Callable] = {}
    rows, skipped = [], []
    specs = kiln_specs(args)
    q8 = int8_model(model) if any(p == "int8" for _, p, _ in specs) else None
    for name, prec, log in specs:
        src = q8 if prec == "int8" and name != OWN_INT8 else model
        built = build_kiln(src, name, prec, log, args.target)
        if built is None:
            skipped.append(name)
            continue
        fns[name] = built[0]
        rows.append({"name": name, "precision": prec, "note": built[1], "log": log or ""})
        if log and args.check_records:
            label = name + ", records checked"
            checked = build_kiln(model, label, prec, log, args.target, check=True)
            fns[label] = checked[0]
            rows.append({"name": label, "precision": prec, "note": checked[1], "log": log})
    for name, (prec, fn) in peers.bert_peers(model, args.threads, not args.no_torch).items():
        fns[name] = fn
        rows.append({"name": name, "precision": prec, "note": f"{args.threads} threads"})
    return fns, rows, skipped


def summarise(rows: list, fns: dict, samples: dict) -> None:
    """Timings, ratios and accuracy (vs ONNX Runtime fp32) into each row."""
    ref = fns["ONNX Runtime"]()
    for r in rows:
        secs = samples[r["name"]]
        r.update(median_ms=statistics.median(secs) * 1e3, min_ms=min(secs) * 1e3,
                 max_ms=max(secs) * 1e3, samples=len(secs), **peers.accuracy(fns[r["name"]](), ref))
        r["range_ms"] = f"{r['min_ms']:.1f}-{r['max_ms']:.1f}"
    ort = _ms(rows, "ONNX Runtime")
    for r in rows:
        r["vs_ort"] = ort / r["median_ms"]
        same = [p["median_ms"] for p in rows
                if not p["name"].startswith("kiln") and p["precision"] == r["precision"]]
        r["vs_fastest_peer"] = min(same) / r["median_ms"] if same else math.nan


def main(argv=None) -> int:
    args = parse(argv)
    model = Model(args)
    load_before = os.getloadavg()
    fns, rows, skipped = collect_rows(model, args)
    samples = peers.interleaved(fns, args.repeat, args.sittings, args.gap_ms / 1e3)
    summarise(rows, fns, samples)
    meta = {**peers.meta(args), "target_string": str(as_target(args.target)),
            "loadavg_before": _load(load_before), "loadavg_after": _load(os.getloadavg()),
            "logs": ", ".join(args.log) or "none", "bf16_logs": ", ".join(args.bf16_log) or "none",
            "skipped": ", ".join(skipped) or "none"}
    extra, gap = "", math.nan
    if args.log:
        bd = breakdown(model, args.log[-1].split("=")[-1], args.target)
        tuned = [r for r in rows if r["precision"] == "fp32" and r.get("log")]
        in_network(bd, fns[tuned[-1]["name"]].lib, model, args.gap_ms / 1e3)
        gap = record_gap(bd, tuned[-1]["median_ms"])
        extra = breakdown_text(bd, tuned[-1]["median_ms"])
    if args.bf16_log:
        bd16 = breakdown(model, args.bf16_log[-1].split("=")[-1], args.target, "bfloat16")
        tuned16 = [r for r in rows if r["precision"] == "bf16" and r.get("log")]
        if tuned16:
            in_network(bd16, fns[tuned16[-1]["name"]].lib, model, args.gap_ms / 1e3)
            extra += "\n\n### bf16 build\n\n" + breakdown_text(bd16, tuned16[-1]["median_ms"])
    extra = goals_text(goal_values(rows, gap)) + ("\n\n" + extra if extra else "")
    peers.write(Path(args.out), f"{args.builtin} (batch 1, seq {args.seq_len}), "
                f"{args.threads} threads", meta, rows,
                ["name", "median_ms", "range_ms", "vs_ort", "vs_fastest_peer", "max_abs_err",
                 "cosine", "note"], extra,
                fmt={"median_ms": ".2f", "vs_ort": ".3f", "max_abs_err": ".2e", "cosine": ".6f"})
    plot(args, rows)
    return 0


def _ms(rows: list, name: str) -> float:
    return next(r["median_ms"] for r in rows if r["name"] == name)


def _load(avg: tuple) -> str:
    return " ".join(f"{x:.2f}" for x in avg)


def goal_values(rows: list, gap: float) -> dict:
    """The numbers the goals compare (NaN where the rows are missing)."""
    def best(pred) -> dict | None:
        hits = [r for r in rows if pred(r)]
        return min(hits, key=lambda r: r["median_ms"]) if hits else None
    nan = {"median_ms": math.nan, "vs_ort": math.nan, "cosine": math.nan}
    tuned = best(lambda r: r["precision"] == "fp32" and r["name"].startswith("kiln tuned"))
    fp32 = best(lambda r: r["precision"] == "fp32" and r["name"].startswith("kiln"))
    bf16 = best(lambda r: r["precision"] == "bf16" and r["name"].startswith("kiln"))
    torch_bf16 = best(lambda r: r["name"] == "PyTorch bf16")
    untuned = best(lambda r: r["name"] == "kiln untuned")
    cos = [r["cosine"] for r in rows if r["precision"] == "bf16" and r["name"].startswith("kiln")]
    int8 = best(lambda r: r["precision"] == "int8" and r["name"].startswith("kiln"))
    ort_int8 = best(lambda r: r["precision"] == "int8" and r["name"].startswith("ONNX"))
    return {"tuned_vs_ort": (tuned or nan)["vs_ort"],
            "untuned_vs_ort": (untuned or nan)["vs_ort"], "abs_gap": abs(gap),
            "bf16_vs_fp32": (bf16 or nan)["median_ms"] / (fp32 or nan)["median_ms"],
            "bf16_vs_torch_bf16": (torch_bf16 or nan)["median_ms"] / (bf16 or nan)["median_ms"],
            "bf16_cosine": min(cos) if cos else math.nan,
            "int8_vs_ort_int8": (ort_int8 or nan)["median_ms"] / (int8 or nan)["median_ms"]}


def goals_text(values: dict) -> str:
    lines = ["## Goals (measured in this run)", "", "| goal | value | met |", "|---|---:|---|"]
    for text, key, goal, higher in GOALS:
        v = values[key]
        shown = f"{v:.1%}" if key == "abs_gap" else f"{v:.4f}" if "cosine" in key else f"{v:.2f}x"
        met = "n/a" if math.isnan(v) else "yes" if (v >= goal if higher else v <= goal) else "no"
        lines.append(f"| {text} | {'-' if math.isnan(v) else shown} | {met} |")
    return "\n".join(lines)


def breakdown_text(bd: list, network_ms: float) -> str:
    text = ("## Per-task breakdown (last log; best record x runs per inference; in network: "
            "the same kernels timed inside the network by lib.profile)\n\n"
            "| task | runs | trials | best ms | total ms | in network ms | share | GFLOPS | "
            "measured |\n|---|---:|---:|---:|---:|---:|---:|---:|---|\n")
    text += "\n".join(f"| {r['task']} | {r['weight']} | {r['trials']} | {r['best_ms']:.4f} | "
                      f"{r['total_ms']:.3f} | {r.get('net_ms', math.nan):.3f} | "
                      f"{r['share']:.1%} | {r['gflops']:.1f} | {r['cache']} |" for r in bd)
    return text + "\n\n" + gap_line(bd, network_ms)


def record_gap(bd: list, network_ms: float) -> float:
    """(network - sum of best records x runs) / that sum."""
    total = sum(r["total_ms"] for r in bd if math.isfinite(r["total_ms"]))
    return (network_ms - total) / total if total else math.nan


def gap_line(bd: list, network_ms: float) -> str:
    """The sum of the tuned records against the network measured as a whole. Records
    measured warm time each kernel alone with its weights in cache; flushed records evict the
    weights first, as the network (which streams them from DRAM) does."""
    total = sum(r["total_ms"] for r in bd if math.isfinite(r["total_ms"]))
    modes = sorted({r["cache"] for r in bd if r["cache"] != "-"})
    missing = sum(r["weight"] for r in bd if not math.isfinite(r["total_ms"]))
    note = f"; {missing} kernels have no record and are not in the sum" if missing else ""
    if bd and math.isfinite(bd[0].get("net_total_ms", math.nan)):
        note += (f". Inside the network (lib.profile, one clock read between kernels) the "
                 f"kernels take {bd[0]['net_total_ms']:.1f} ms, the tuned tasks "
                 f"{sum(r['net_ms'] for r in bd if math.isfinite(r['net_ms'])):.1f} ms")
    return (f"Sum of the best records x runs: {total:.1f} ms; the tuned network measured as a "
            f"whole: {network_ms:.1f} ms; gap {record_gap(bd, network_ms):+.1%} (best records "
            f"measured {' and '.join(modes) or '-'}; warm: weights in cache, flushed: weights "
            f"evicted before each call as in the network){note}.")


def plot(args, rows) -> None:
    plt = peers.pyplot()
    if plt is None:
        return
    fig, ax = plt.subplots(figsize=(8, 0.45 * len(rows) + 1.5))
    names = [r["name"] for r in rows]
    med = [r["median_ms"] for r in rows]
    err = [[m - r["min_ms"] for m, r in zip(med, rows)],
           [r["max_ms"] - m for m, r in zip(med, rows)]]
    ax.barh(names, med, xerr=err, capsize=3,
            color=["tab:orange" if n.startswith("kiln") else "tab:gray" for n in names])
    ax.invert_yaxis()
    ax.set_xlabel("latency, ms (median, min-max)")
    ax.set_title(f"{args.builtin}, batch 1, seq {args.seq_len}, {args.threads} threads")
    fig.tight_layout()
    fig.savefig(Path(args.out).with_suffix(".png"), dpi=120)


if __name__ == "__main__":
    sys.exit(main())
