"""The seed's GEMM on an NVIDIA GPU: kiln's hand-written CUDA schedule vs cuBLAS.

C[128, 3072] = A[128, 768] B[3072, 768]^T in float32 (`mm`), and the same with the seed's
hard_swish epilogue fused (`swish_mm`), scheduled by hand with kiln.topi.cuda.schedule_matmul
(shared-memory panels, register tiles, bound threads). A short sweep of tile shapes picks the
hand schedule; then every row is timed in the same process, rows interleaved round by round,
with CUDA events around `--number` launches (medians with min-max over `--repeat` rounds):
kiln mm, kiln swish_mm, torch.matmul (cuBLAS, TF32 off) and torch.matmul + hardswish, the
torch rows both as an eager loop and replayed from a CUDA graph (the faster one is the peer).
Every kiln kernel is checked against a float64 reference first (relative error <= 1e-5).
The sweep also tries tile shapes on the tensor cores (schedule_matmul(mma=1): each float32
operand as two TF32 parts, three m16n8k8 products, float32 accuracy), timed as rows of their
own.

    python benchmarks/gemm_gpu.py [--repeat 30] [--number 200] [--quick]
    python benchmarks/gemm_gpu.py --log gemm_gpu.json --tune 500   # auto-scheduled rows too

With --log, the best records of mm and swish_mm in that log (after --tune TRIALS more trials
of each, resuming the log) are timed beside the hand schedule, and the plot shows the tuning
curves (best time after each trial).
Writes benchmarks/results/gemm_gpu.{json,md,png} (or --out). `--smoke` runs the whole script
on a narrower GEMM (128x384x96) with few launches, to check it on the emulated GPU of the
tests (tests/gpu_stub.py); a PyTorch without CUDA leaves the torch rows out.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).parent))

import kiln  # noqa: E402
from kiln import te  # noqa: E402
from kiln.topi import cuda as tc  # noqa: E402

M, N, K = 128, 3072, 768
FLOPS = 2 * M * N * K
# (tm, tn, tx, ty, bk, pad, vec, splitk, dbuf): thread tile, threads, reduction step, row pad
# of the shared panels (words; 1 = odd rows: conflict-free for 4-row thread tiles), fetch
# width, reduction slices (summed by the last slice of each tile), double-buffered panels.
# The float4-fetch rows are padded too (unpadded: 8- / 16-way bank conflicts on the B panel).
# First (what --quick sweeps): the static model's best (topi.cuda.matmul_tiles) and a close
# second, each with and without double buffering
CONFIGS = [(4, 4, 8, 16, 16, True, 4, 2, 1), (4, 4, 8, 16, 16, True, 4, 2, 0),
           (8, 4, 8, 8, 16, True, 4, 4, 1), (8, 4, 8, 8, 16, True, 4, 4, 0),
           (8, 4, 8, 16, 16, True, 1, 1, 0), (8, 8, 8, 8, 16, True, 1, 1, 0),
           (8, 4, 8, 16, 16, True, 1, 3, 0), (8, 4, 8, 8, 16, True, 1, 1, 0),
           (4, 4, 8, 8, 16, True, 1, 1, 0), (4, 4, 8, 16, 16, True, 1, 1, 0),
           (8, 8, 8, 16, 16, True, 1, 1, 0), (8, 8, 8, 8, 16, True, 1, 2, 0),
           (4, 8, 8, 8, 16, True, 1, 1, 0), (8, 8, 8, 8, 32, True, 1, 1, 0),
           (4, 4, 16, 8, 16, True, 4, 1, 0), (8, 8, 8, 8, 16, True, 4, 1, 0),
           (8, 4, 8, 16, 32, True, 1, 2, 0), (8, 8, 8, 8, 16, True, 4, 1, 1)]
# On the tensor cores (schedule_matmul(mma=1): m16n8k8 products, each operand as two TF32
# parts, float32 accuracy; tx a multiple of 4, ty of 8): the static model's best
# (topi.cuda.matmul_tiles_mma) first, with a guessed tensor-core rate until measured
MMA_CONFIGS = [(4, 8, 8, 16, 16, True, 4, 4, 1), (4, 4, 8, 16, 16, True, 4, 2, 1),
               (4, 8, 8, 16, 8, True, 4, 4, 1), (4, 8, 8, 16, 16, True, 4, 2, 1),
               (2, 4, 8, 16, 16, 2, 4, 4, 1), (8, 8, 4, 16, 16, True, 4, 2, 1),
               (4, 4, 16, 8, 32, True, 4, 4, 0)]


def workload(swish: bool):
    a = te.placeholder((M, K), name="a")
    b = te.placeholder((N, K), name="b")
    k = te.reduce_axis((0, K), name="k")
    c = te.compute((M, N), lambda i, j: te.sum(a[i, k] * b[j, k], axis=k), name="c")
    if not swish:
        return [a, b, c]
    relu6 = kiln.topi.clip(te.compute(c.shape, lambda i, j: c[i, j] + 3.0), 0.0, 6.0)
    d = te.compute(c.shape, lambda i, j: relu6[i, j] * c[i, j] * 0.1666667, name="d")
    return [a, b, d]


def build(swish: bool, cfg: tuple, mma: int = 0):
    tm, tn, tx, ty, bk, pad, vec, splitk, dbuf = cfg
    a, b, out = workload(swish)
    s = te.create_schedule(out.op)
    tc.schedule_matmul(s, out, tm=tm, tn=tn, tx=tx, ty=ty, bk=bk, pad=pad, vec=vec,
                       splitk=splitk, dbuf=dbuf, mma=mma)
    return kiln.build(s, [a, b, out], target="cuda")


def tuned(swish: bool, log: str, trials: int, target) -> tuple:
    """(row name, the best record's module or None, tuning curve) of one workload."""
    from kiln import auto_scheduler
    from kiln.auto_scheduler.measure.record import load_records
    from kiln.schedule import ComputeDAG
    label = "swish_mm" if swish else "mm"
    task = auto_scheduler.SearchTask(compute_dag=ComputeDAG(workload(swish)), target=target,
                                     desc=label)
    if trials:
        task.tune(auto_scheduler.TuningOptions(
            num_measure_trials=trials, num_measures_per_round=32,
            measure_callbacks=[auto_scheduler.RecordToFile(log)]))
    curve, best = [], float("inf")
    for rec in load_records(log) if os.path.exists(log) else []:
        if rec.workload_key == task.workload_key and rec.target == str(target):
            best = min(best, rec.mean_cost)
            curve.append(best * 1e6)
    if not curve or not np.isfinite(best):
        return f"kiln {label}, auto-scheduled (no records)", None, curve
    sch, tensors = task.apply_best(log)
    f = kiln.build(sch, tensors, target=target)
    return f"kiln {label}, auto-scheduled ({len(curve)} trials)", f, curve


def reference(a: np.ndarray, b: np.ndarray, swish: bool) -> np.ndarray:
    c = a.astype(np.float64) @ b.astype(np.float64).T
    return np.clip(c + 3, 0, 6) * c * 0.1666667 if swish else c


def check(f, swish: bool, rng) -> float:
    """Relative error on fresh random inputs, output poisoned with NaN first."""
    a = rng.standard_normal((M, K), dtype=np.float32)
    b = rng.standard_normal((N, K), dtype=np.float32)
    out = np.full((M, N), np.nan, np.float32)
    f(a, b, out)
    ref = reference(a, b, swish)
    err = float(np.linalg.norm(out - ref) / np.linalg.norm(ref))
    if not np.isfinite(err) or err > 1e-5:
        raise SystemExit(f"kiln {'swish_mm' if swish else 'mm'} is wrong: relative error {err}")
    return err


def kiln_timer(f, dev_args, number: int):
    ev = f.time_evaluator(number=number, repeat=1)
    return lambda: ev(*dev_args).results[0]


def torch_timers(torch, swish: bool, a, b, number: int) -> dict:
    import torch.nn.functional as F
    from peers import cuda_step_timers
    out = torch.empty((M, N), device="cuda")

    def step():
        torch.matmul(a, b.t(), out=out)
        if swish:
            F.hardswish(out, inplace=True)

    step()
    return cuda_step_timers(torch, step, number)


def sweep(swish: bool, dev_args, number: int, configs: list, mma: int = 0) -> list:
    rng = np.random.default_rng(1)
    found = []
    for cfg in configs:
        try:
            f = build(swish, cfg, mma)
            check(f, swish, rng)
            t = statistics.median(kiln_timer(f, dev_args, number)() for _ in range(5))
        except kiln.KilnError as err:
            print(f"  config {cfg}: {err}".splitlines()[0], flush=True)
            continue
        print(f"  {'swish_mm' if swish else 'mm':8s} {cfg}: {t * 1e6:8.2f} us "
              f"{FLOPS / t / 1e12:6.2f} TFLOPS", flush=True)
        found.append((t, cfg, f))
    found.sort(key=lambda x: x[0])
    return found


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--repeat", type=int, default=30)
    p.add_argument("--number", type=int, default=200)
    p.add_argument("--quick", action="store_true", help="sweep only 4 tile shapes")
    p.add_argument("--out", default=str(Path(__file__).parent / "results" / "gemm_gpu"))
    p.add_argument("--log", default=None, help="tuning records of mm / swish_mm (resumed)")
    p.add_argument("--tune", type=int, default=0, help="trials per workload to add to --log")
    p.add_argument("--smoke", action="store_true",
                   help="a narrower GEMM, 2 tile shapes, few launches: checks the script")
    args = p.parse_args()
    if args.smoke:
        global N, K, FLOPS
        N, K, FLOPS = 384, 96, 2 * M * 384 * 96
        args.number, args.repeat = 1, 2
    import torch
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    target = kiln.target.Target("cuda")
    rng = np.random.default_rng(0)
    a_np = rng.standard_normal((M, K), dtype=np.float32)
    b_np = rng.standard_normal((N, K), dtype=np.float32)
    peers = torch.cuda.is_available()
    if peers:  # kiln takes torch CUDA tensors as they are (no copies)
        a_t, b_t = torch.from_numpy(a_np).cuda(), torch.from_numpy(b_np).cuda()
        dev_args = (a_t, b_t, torch.empty((M, N), device="cuda"))
    else:
        print("this PyTorch has no CUDA: the torch rows are left out", flush=True)
        dev = kiln.cuda(0)
        dev_args = (kiln.nd.array(a_np, dev), kiln.nd.array(b_np, dev),
                    kiln.nd.empty((M, N), "float32", dev))
    configs = CONFIGS[:2] if args.smoke else CONFIGS[:4] if args.quick else CONFIGS
    mma_configs = MMA_CONFIGS[2:3] if args.smoke else MMA_CONFIGS[:2] if args.quick \
        else MMA_CONFIGS  # the smoke GEMM's k slices hold whole 8-steps, not 16-steps
    if not target.tf32_tensor_cores:
        mma_configs = []
    print(f"sweep of hand-schedule tile shapes ({len(configs)}, and {len(mma_configs)} on "
          f"the tensor cores), {target}:", flush=True)
    mm = sweep(False, dev_args, args.number, configs)
    sw = sweep(True, dev_args, args.number, configs)
    mm_tc = sweep(False, dev_args, args.number, mma_configs, mma=1)
    sw_tc = sweep(True, dev_args, args.number, mma_configs, mma=1)
    timers = {
        f"kiln mm, hand schedule {mm[0][1]}": kiln_timer(mm[0][2], dev_args, args.number),
        f"kiln swish_mm (fused), hand schedule {sw[0][1]}":
            kiln_timer(sw[0][2], dev_args, args.number),
    }
    for label, found in (("kiln mm", mm_tc), ("kiln swish_mm (fused)", sw_tc)):
        if found:  # float32 accuracy is checked like every row's (check(): <= 1e-5)
            timers[f"{label}, hand schedule on tensor cores (3xTF32) {found[0][1]}"] = \
                kiln_timer(found[0][2], dev_args, args.number)
    curves = {}
    if args.log:
        for swish in (False, True):
            name, f, curves[name] = tuned(swish, args.log, args.tune, target)
            if f is not None:
                check(f, swish, np.random.default_rng(3))
                timers[name] = kiln_timer(f, dev_args, args.number)
    for swish in (False, True) if peers else ():
        name = "torch.matmul + hardswish" if swish else "torch.matmul (cuBLAS, TF32 off)"
        for mode, fn in torch_timers(torch, swish, a_t, b_t, args.number).items():
            timers[f"{name}, {mode}"] = fn
    samples = {k: [] for k in timers}
    for _ in range(args.repeat):  # interleaved: every row once per round
        for k, fn in timers.items():
            samples[k].append(fn())
    rows = report(samples, mm, sw)
    meta = {"date": time.strftime("%Y-%m-%d %H:%M"), "target": str(target),
            "device": kiln.runtime.cuda.device_properties()["name"], "torch": torch.__version__,
            "loadavg": os.getloadavg()[0], "repeat": args.repeat, "number": args.number,
            "sweep_mm": [[c, t * 1e6] for t, c, _ in mm],
            "sweep_swish_mm": [[c, t * 1e6] for t, c, _ in sw],
            "sweep_mm_tensor_cores": [[c, t * 1e6] for t, c, _ in mm_tc],
            "sweep_swish_mm_tensor_cores": [[c, t * 1e6] for t, c, _ in sw_tc]}
    meta["curves"] = curves
    write(Path(args.out), meta, rows, mm[0][2].source)


def report(samples: dict, mm: list, sw: list) -> list:
    med = {k: statistics.median(v) for k, v in samples.items()}
    cublas = min((v for k, v in med.items() if k.startswith("torch.matmul (cuBLAS")),
                 default=float("nan"))
    torch_swish = min((v for k, v in med.items() if k.startswith("torch.matmul + hard")),
                      default=float("nan"))
    kiln_mm = min(v for k, v in med.items() if k.startswith("kiln mm"))  # hand or tuned
    rows = []
    for k, v in samples.items():
        m = med[k]
        base = torch_swish if "swish" in k or "hardswish" in k else cublas
        rows.append({"name": k, "median_us": m * 1e6, "min_us": min(v) * 1e6,
                     "max_us": max(v) * 1e6, "tflops": FLOPS / m / 1e12,
                     "vs_peer": base / m, "vs_kiln_mm": kiln_mm / m})
        print(f"{k:62s} {m * 1e6:8.2f} us [{min(v) * 1e6:.2f}-{max(v) * 1e6:.2f}] "
              f"{FLOPS / m / 1e12:6.2f} TFLOPS  {base / m:5.2f}x peer", flush=True)
    return rows


def write(out: Path, meta: dict, rows: list, source: str) -> None:
    import json
    out.parent.mkdir(parents=True, exist_ok=True)
    out.with_suffix(".json").write_text(json.dumps({"meta": meta, "rows": rows}, indent=2))
    lines = [f"# GEMM {M}x{N}x{K} float32 on {meta['device']} ({meta['target']})", "",
             f"{meta['date']}, torch {meta['torch']}, load average {meta['loadavg']:.2f}; "
             f"medians of {meta['repeat']} interleaved rounds x {meta['number']} launches "
             "(CUDA events); vs peer = cuBLAS for mm, torch matmul + hardswish for swish_mm "
             "(the faster of eager and CUDA graph); vs kiln mm = the fastest kiln mm row.", "",
             "| implementation | median us | min-max us | TFLOPS | vs peer | vs kiln mm |",
             "|---|---:|---:|---:|---:|---:|"]
    for r in rows:
        lines.append(f"| {r['name']} | {r['median_us']:.2f} | {r['min_us']:.2f}-"
                     f"{r['max_us']:.2f} | {r['tflops']:.2f} | {r['vs_peer']:.2f}x | "
                     f"{r['vs_kiln_mm']:.2f}x |")
    lines += ["", "Hand-schedule sweep (tm, tn, tx, ty, bk, pad, vec, splitk, dbuf): median us",
              "", "| config | mm us | swish_mm us |", "|---|---:|---:|"]
    for mm_key, sw_key, tag in (("sweep_mm", "sweep_swish_mm", ""),
                                ("sweep_mm_tensor_cores", "sweep_swish_mm_tensor_cores",
                                 " tensor cores")):
        sw = {tuple(c): t for c, t in meta.get(sw_key, [])}
        for c, t in meta.get(mm_key, []):
            lines.append(f"| {tuple(c)}{tag} | {t:.2f} | "
                         f"{sw.get(tuple(c), float('nan')):.2f} |")
    lines += ["", "The kernel of the fastest mm schedule:", "", "```cuda", source.strip(), "```"]
    out.with_suffix(".md").write_text("\n".join(lines) + "\n")
    plot(out, rows, meta.get("curves"))
    print("\n".join(lines))


def plot(out: Path, rows: list, curves: dict | None = None) -> None:
    from peers import pyplot
    plt = pyplot()
    if plt is None:
        return
    if curves and any(curves.values()):
        fig, (ax, cx) = plt.subplots(1, 2, figsize=(13, 3.8))
        for name, curve in curves.items():
            cx.plot(range(1, len(curve) + 1), curve, label=name)
        cx.set_xlabel("trials")
        cx.set_ylabel("best microseconds so far")
        cx.set_yscale("log")
        cx.legend(fontsize=7)
        cx.set_title("tuning curves")
    else:
        fig, ax = plt.subplots(figsize=(8, 3.5))
    names = [r["name"] for r in rows]
    ax.barh(names, [r["median_us"] for r in rows],
            xerr=[[r["median_us"] - r["min_us"] for r in rows],
                  [r["max_us"] - r["median_us"] for r in rows]], color="#4a7")
    ax.set_xlabel("microseconds (median, min-max)")
    ax.invert_yaxis()
    ax.set_title(f"GEMM {M}x{N}x{K} fp32")
    fig.tight_layout()
    fig.savefig(out.with_suffix(".png"), dpi=110)


if __name__ == "__main__":
    main()
