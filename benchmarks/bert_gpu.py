"""BERT-base on an NVIDIA GPU (random weights, batch 1, seq 128, float32, TF32 off): kiln with
its default GPU schedules, imported through both frontends (ONNX and PyTorch), vs PyTorch eager,
torch.compile and torch.compile(mode="reduce-overhead"), all in the same process.

Each kiln build is checked against PyTorch's fp32 output on the GPU (max abs error <= 1e-4).
Every row is then timed round by round, rows interleaved, with CUDA events around `--number`
inferences (inputs already on the device): kiln replays its CUDA graph, PyTorch runs its
module. Medians with min-max over `--repeat` rounds; ratios to eager and to the fastest
PyTorch row. kiln's per-kernel breakdown (`CudaGraphModule.profile`) shows where its time
goes. With --log, the tuned records of that log (ApplyHistoryBest) are used, and a row of the
default schedules (first frontend) is timed beside them. On sm_90 the first kiln build is also
timed replaying a graph of plain launches (no programmatic dependent launch), which says what
overlapping each kernel's launch with the end of the one before is worth. On sm_80 and newer
a row of the default schedules with their matmuls on the tensor cores (tensor_cores=True:
3xTF32, float32 accuracy) is timed too (--no-tensor-cores leaves it out).

    python benchmarks/bert_gpu.py [--repeat 20] [--number 20] [--modes eager,compile,...]

Writes benchmarks/results/bert_gpu.{json,md,png} (or --out). `--smoke` runs the whole script
on bert-tiny at seq 16 with few inferences, to check it on the emulated GPU of the tests
(tests/gpu_stub.py); a PyTorch without CUDA gives the reference on the CPU and no torch rows.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).parent))

import kiln  # noqa: E402
from kiln.models import builtin  # noqa: E402

MODES = {"eager": None, "compile": "default", "reduce-overhead": "reduce-overhead",
         "max-autotune": "max-autotune"}


def build_kiln(frontend: str, model, proto, ids: np.ndarray, log: str | None,
               tensor_cores: bool = False):
    """(module, its output, seconds to import + build + first run)."""
    import torch
    t0 = time.perf_counter()
    if frontend == "onnx":
        graph, params = kiln.frontend.from_onnx(proto)
    else:
        graph, params = kiln.frontend.from_pytorch(model, (torch.from_numpy(ids),))
    if log:
        with kiln.auto_scheduler.ApplyHistoryBest(log):
            lib = kiln.graph.build(graph, params, target="cuda")
    else:
        lib = kiln.graph.build(graph, params, target="cuda", tensor_cores=tensor_cores)
    name = lib.input_names[0]
    (out,) = lib.run(**{name: ids}).values()
    return lib, out, time.perf_counter() - t0


def kiln_sampler(lib, number: int):
    ev = lib.time_evaluator(number=number, repeat=1)
    return lambda: ev().results[0]


def plain_sampler(lib, number: int):
    """The same module replaying the graph captured without overlapped launches (each
    kernel starts only after the one before it has finished)."""
    ev = lib.time_evaluator(number=number, repeat=1)

    def sample() -> float:
        lib.overlap_launches = False
        try:
            return ev().results[0]
        finally:
            lib.overlap_launches = True
    return sample


def torch_sampler(torch, fn, ids, number: int):
    def sample() -> float:
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        for _ in range(number):
            fn(ids)
        end.record()
        end.synchronize()
        return start.elapsed_time(end) / 1e3 / number
    return sample


def torch_rows(torch, model, ids_t, modes: list, number: int) -> tuple:
    samplers, info = {}, {}
    for mode in modes:
        t0 = time.perf_counter()
        fn = model if MODES[mode] is None else torch.compile(model, mode=MODES[mode])
        with torch.inference_mode():
            for _ in range(3):
                out = fn(ids_t)
            torch.cuda.synchronize()
        info[mode] = {"warmup_s": time.perf_counter() - t0, "out": out.float().cpu().numpy()}
        label = "PyTorch eager" if mode == "eager" else f"torch.compile(mode={MODES[mode]!r})"
        samplers[label] = torch_sampler(torch, fn, ids_t, number)
    return samplers, info


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--seq", type=int, default=128)
    p.add_argument("--repeat", type=int, default=20)
    p.add_argument("--number", type=int, default=20)
    p.add_argument("--modes", default="eager,compile,reduce-overhead")
    p.add_argument("--frontends", default="onnx,pytorch")
    p.add_argument("--log", default=None, help="tuning records to apply (ApplyHistoryBest)")
    p.add_argument("--out", default=str(Path(__file__).parent / "results" / "bert_gpu"))
    p.add_argument("--model", default="bert-base", help="a builtin: bert-base or bert-tiny")
    p.add_argument("--no-tensor-cores", action="store_true",
                   help="leave out the row of default schedules with tensor-core matmuls")
    p.add_argument("--smoke", action="store_true",
                   help="bert-tiny, seq 16, few inferences: checks the script")
    args = p.parse_args()
    if args.smoke:
        args.model, args.seq, args.repeat, args.number = "bert-tiny", 16, 2, 1
    import torch
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    model, proto, inputs = builtin(args.model, seq_len=args.seq)
    ids = inputs["input_ids"]
    samplers, notes, libs, outs = {}, {}, {}, {}
    frontends = args.frontends.split(",")
    # with a log: the default schedules too (one frontend), so one run answers both questions
    builds = [(fe, args.log, False) for fe in frontends]
    if args.log:
        builds.insert(0, (frontends[0], None, False))
    if not args.no_tensor_cores and kiln.target.Target("cuda").tf32_tensor_cores:
        builds.append((frontends[0], None, True))  # matmuls on the tensor cores (3xTF32)
    for fe, log, tcores in builds:  # the PyTorch frontend exports the CPU module
        lib, out, secs = build_kiln(fe, model, proto, ids, log, tcores)
        tuned, groups = getattr(lib, "tuned_groups", (0, 0))
        # how much of the log applies: the two frontends' graphs fuse differently
        how = f"tuned: {tuned} of {groups} groups" if log else "default schedules"
        label = f"kiln ({fe} frontend, {how}{', tensor cores' if tcores else ''})"
        outs[label] = out
        samplers[label] = kiln_sampler(lib, args.number)
        notes[label] = {"build_s": secs, "tuned_groups": tuned, "groups": groups}
        libs[label] = lib
    peers = torch.cuda.is_available()
    if not peers:
        print("this PyTorch has no CUDA: the reference runs on the CPU, no torch rows",
              flush=True)
    model_gpu = model.cuda() if peers else model
    ids_t = torch.from_numpy(ids).cuda() if peers else torch.from_numpy(ids)
    with torch.inference_mode():
        ref = model_gpu(ids_t).cpu().numpy()
    wrong = []
    for (label, note), out in zip(notes.items(), outs.values()):
        note["max_abs_err"] = err = float(np.abs(out - ref).max())
        lib = libs[label]
        if not err <= 1e-4 and lib.overlap_launches:  # a safety net on untried hardware
            print(f"{label}: overlapped launches give max abs error {err:.2e}; plain launches "
                  "from here on", flush=True)
            lib.overlap_launches = False
            (out,) = lib.run(**{lib.input_names[0]: ids}).values()
            note["overlapped_max_abs_err"] = err
            note["max_abs_err"] = err = float(np.abs(out - ref).max())
        print(f"{label}: built and ran in {note['build_s']:.1f} s, max abs error vs PyTorch "
              f"{err:.2e}", flush=True)
        if not err <= 1e-4:  # not timed; the other rows still are (a sitting is short)
            print(f"{label} does not match PyTorch: max abs error {err}; left out of the "
                  "timing", flush=True)
            wrong.append(label)
            del samplers[label]
    first = next(iter(libs))
    if libs[first].overlap_launches and first not in wrong:  # what overlapping is worth
        label = first[:-1] + ", plain launches)"
        samplers[label] = plain_sampler(libs[first], args.number)
        notes[label] = dict(notes[first])
    meta = {"date": time.strftime("%Y-%m-%d %H:%M"), "target": str(kiln.target.Target("cuda")),
            "device": kiln.runtime.cuda.device_properties()["name"], "model": args.model,
            "torch": torch.__version__, "loadavg": os.getloadavg()[0], "seq": args.seq,
            "repeat": args.repeat,
            "number": args.number, "log": args.log,
            "mismatched": {k: notes[k]["max_abs_err"] for k in wrong}}
    prof = libs[[k for k in libs if "tensor cores" not in k][-1]].profile()  # tuned if any
    modes = args.modes.split(",") if peers else []
    # first eager alone (seconds), then the compiled modes (minutes of compilation): a run
    # cut short still leaves a result file
    phases = [[m for m in modes if m == "eager"], [m for m in modes if m != "eager"]]
    for phase in [ph for ph in phases if ph] or [[]]:
        tsamp, tinfo = torch_rows(torch, model_gpu, ids_t, phase, args.number)
        for label, info in zip(tsamp, tinfo.values()):
            notes[label] = {"warmup_s": info["warmup_s"],
                            "max_abs_err": float(np.abs(info["out"] - ref).max())}
        samplers.update(tsamp)
        rounds = {k: [] for k in samplers}
        for _ in range(args.repeat):
            for k, fn in samplers.items():
                rounds[k].append(fn())
        write(Path(args.out), meta, report(rounds, notes), prof)
    if wrong:
        raise SystemExit(f"kiln builds that do not match PyTorch (not timed): {wrong}")


def report(rounds: dict, notes: dict) -> list:
    med = {k: statistics.median(v) for k, v in rounds.items()}
    eager = med.get("PyTorch eager", float("nan"))
    best_torch = min((v for k, v in med.items() if not k.startswith("kiln")),
                     default=float("nan"))
    rows = []
    for k, v in rounds.items():
        m = med[k]
        rows.append({"name": k, "median_ms": m * 1e3, "min_ms": min(v) * 1e3,
                     "max_ms": max(v) * 1e3, "vs_eager": eager / m,
                     "vs_best_torch": best_torch / m, **notes.get(k, {})})
        print(f"{k:55s} {m * 1e3:8.3f} ms [{min(v) * 1e3:.3f}-{max(v) * 1e3:.3f}]  "
              f"{eager / m:5.2f}x eager  {best_torch / m:5.2f}x best PyTorch", flush=True)
    return rows


def write(out: Path, meta: dict, rows: list, prof: list) -> None:
    out.parent.mkdir(parents=True, exist_ok=True)
    total = sum(n * t for _, n, t in prof)
    out.with_suffix(".json").write_text(json.dumps(
        {"meta": meta, "rows": rows, "profile": prof}, indent=2))
    lines = [f"# {meta['model']} on {meta['device']} (batch 1, seq {meta['seq']}, float32, "
             "TF32 off)",
             "", f"{meta['date']}, target `{meta['target']}`, torch {meta['torch']}, load "
             f"average {meta['loadavg']:.2f}; medians of {meta['repeat']} interleaved rounds x "
             f"{meta['number']} inferences (CUDA events, inputs on the device).", "",
             "| implementation | median ms | min-max ms | vs eager | vs best PyTorch | "
             "max abs err | build / warm-up s |", "|---|---:|---:|---:|---:|---:|---:|"]
    for r in rows:
        secs = r.get("build_s", r.get("warmup_s", float("nan")))
        lines.append(f"| {r['name']} | {r['median_ms']:.3f} | {r['min_ms']:.3f}-"
                     f"{r['max_ms']:.3f} | {r['vs_eager']:.2f}x | {r['vs_best_torch']:.2f}x | "
                     f"{r.get('max_abs_err', float('nan')):.1e} | {secs:.1f} |")
    lines += [f"| {k} | not timed: does not match PyTorch | | | | {e:.1e} | |"
              for k, e in meta.get("mismatched", {}).items()]
    lines += ["", f"kiln per kernel (each timed alone; sum {total * 1e3:.3f} ms per inference):",
              "", "| kernel | launches | us per launch | ms per inference | share |",
              "|---|---:|---:|---:|---:|"]
    for name, n, t in prof:
        lines.append(f"| {name} | {n} | {t * 1e6:.2f} | {n * t * 1e3:.3f} | "
                     f"{n * t / total:.1%} |")
    out.with_suffix(".md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    plot(out, rows)


def plot(out: Path, rows: list) -> None:
    from peers import pyplot
    plt = pyplot()
    if plt is None:
        return
    fig, ax = plt.subplots(figsize=(8, 3.2))
    ax.barh([r["name"] for r in rows], [r["median_ms"] for r in rows],
            xerr=[[r["median_ms"] - r["min_ms"] for r in rows],
                  [r["max_ms"] - r["median_ms"] for r in rows]], color="#47a")
    ax.set_xlabel("milliseconds per inference (median, min-max)")
    ax.invert_yaxis()
    ax.set_title("BERT-base, batch 1, seq 128, fp32")
    fig.tight_layout()
    fig.savefig(out.with_suffix(".png"), dpi=110)


if __name__ == "__main__":
    main()
