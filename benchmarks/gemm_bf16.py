"""The seed GEMM in bfloat16 (a, b bfloat16, c float32; 128x3072x768) against kiln's fp32.

Tunes (resuming logs in benchmarks/results/logs/), with no hand-written schedule:
  mm_bf16     b an input on every call ([N, K], as the seed's mm)
  mm_w_bf16   b a constant weight, packed once ahead of time (layout rewrite: [N/16, K/2, 16, 2])
and times them interleaved (one call of every row per round, --rounds rounds) against kiln's
tuned fp32 mm / mm_w (their logs from benchmarks/gemm.py), PyTorch's bf16 and fp32 linear and
ORT. The bf16 products run as AVX512-BF16 pair dot products (vdpbf16ps), accumulating in fp32.
Writes benchmarks/results/gemm_bf16.{json,md}: medians with min-max, the target string and
the load average.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))

import gemm  # noqa: E402
import peers  # noqa: E402

import kiln  # noqa: E402
from kiln import auto_scheduler, te  # noqa: E402


def _mm(M, N, K, rewrite: bool):
    a = te.placeholder((M, K), "bfloat16", name="a")
    b = te.placeholder((N, K), "bfloat16", name="b")
    k = te.reduce_axis((0, K), name="k")
    attrs = {"layout_free_placeholders": [b]} if rewrite else None
    c = te.compute((M, N), lambda i, j: te.sum(a[i, k].astype("float32") *
                                                b[j, k].astype("float32"), [k]), attrs=attrs)
    return [a, b, c]


@auto_scheduler.register_workload
def mm_bf16(M, N, K):
    return _mm(M, N, K, False)


@auto_scheduler.register_workload
def mm_w_bf16(M, N, K):
    return _mm(M, N, K, True)


TASKS = [("mm_bf16", mm_bf16, False), ("mm_w_bf16", mm_w_bf16, True)]
FP32 = [("mm", gemm.mm, False), ("mm_w", gemm.mm_w, True)]


def kiln_rows(tuned: dict, a, b, c) -> dict:
    """name -> (call, note) for every tuned task, checked against NumPy first."""
    a16, b16 = kiln.nd.to_bfloat16(a), kiln.nd.to_bfloat16(b)
    ref16 = kiln.nd.from_bfloat16(a16) @ kiln.nd.from_bfloat16(b16).T
    out = {}
    for name, (task, log) in tuned.items():
        bf16 = name.endswith("bf16")
        sch, targs = task.apply_best(log)
        f = kiln.build(sch, targs, target="cpu")
        ins = auto_scheduler.pack_inputs(sch, targs[:2], [a16, b16] if bf16 else [a, b])
        f(*ins, c)
        np.testing.assert_allclose(c, ref16 if bf16 else a @ b.T, rtol=2e-3, atol=2e-3)
        packed = "b packed ahead of time" if ins[1] is not (b16 if bf16 else b) else \
            "b read as given"
        out[f"kiln tuned {name}"] = (lambda f=f, ins=ins: f(*ins, c), packed)
    return out


def peer_rows(a, b, threads: int) -> dict:
    out = {"ORT MatMul fp32, weight initializer": (peers.ort_matmul_weight(a, b, threads),
                                                   f"{threads} threads")}
    try:
        import torch
    except ImportError:
        return out
    torch.set_num_threads(threads)
    ta, tb = torch.from_numpy(a), torch.from_numpy(b)
    a16, b16 = ta.to(torch.bfloat16), tb.to(torch.bfloat16)
    F = torch.nn.functional

    def lin(x, w):
        with torch.inference_mode():
            return F.linear(x, w)
    out["torch linear fp32"] = (lambda: lin(ta, tb), f"{threads} threads")
    out["torch linear bf16"] = (lambda: lin(a16, b16), f"{threads} threads, bf16 out")
    return out


def per_call(fn, number: int):
    """fn called `number` times: one interleaved sample is the mean of a short burst."""
    def burst():
        for _ in range(number):
            fn()
    return burst


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--shape", default="128,3072,768", help="M,N,K")
    p.add_argument("--trials", type=int, default=1000, help="trials per bf16 task (resumed)")
    p.add_argument("--per-round", type=int, default=64)
    p.add_argument("--rounds", type=int, default=30)
    p.add_argument("--number", type=int, default=10)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default=str(peers.RESULTS / "gemm_bf16"))
    args = p.parse_args(argv)
    shape = tuple(int(x) for x in args.shape.split(","))
    tuned = {name: gemm.tune(name, f, rw, shape, args.trials, args.per_round, args.seed)
             for name, f, rw in TASKS}
    tuned.update({name: gemm.tune(name, f, rw, shape, 0, args.per_round, args.seed)
                  for name, f, rw in FP32})  # fp32: the logs benchmarks/gemm.py tuned
    M, N, K = shape
    rng = np.random.default_rng(0)
    a = rng.standard_normal((M, K), dtype=np.float32)
    b = rng.standard_normal((N, K), dtype=np.float32)
    c = np.empty((M, N), np.float32)
    load0 = os.getloadavg()
    fns = {**kiln_rows(tuned, a, b, c), **peer_rows(a, b, args.threads)}
    bursts = {name: per_call(fn, args.number) for name, (fn, _) in fns.items()}
    samples = {name: [t / args.number for t in ts]
               for name, ts in peers.interleaved(bursts, args.rounds, 1).items()}
    flops = 2.0 * M * N * K
    rows = [_row(name, secs, flops, fns[name][1]) for name, secs in samples.items()]
    meta = {**peers.meta(args), "target": str(kiln.target.Target("cpu")),
            "loadavg_before": load0, "loadavg_after": os.getloadavg()}
    peers.write(Path(args.out), f"GEMM {M}x{N}x{K}: bfloat16 (fp32 accumulation) vs fp32",
                meta, rows, ["name", "median_ms", "min_ms", "max_ms", "gflops", "note"],
                goals(rows, tuned))
    return 0


def _row(name: str, secs: list, flops: float, note: str) -> dict:
    med = statistics.median(secs)
    print(f"{name:45s} {med * 1e3:8.3f} ms {flops / med / 1e9:7.1f} GFLOPS", flush=True)
    return {"name": name, "median_ms": med * 1e3, "min_ms": min(secs) * 1e3,
            "max_ms": max(secs) * 1e3, "gflops": flops / med / 1e9, "note": note}


def goals(rows: list, tuned: dict) -> str:
    by = {r["name"]: r["gflops"] for r in rows}

    def ratio(x, y):
        return by.get(x, float("nan")) / by.get(y, float("nan"))
    items = [("bf16 mm vs kiln fp32 mm (b input)", ratio("kiln tuned mm_bf16", "kiln tuned mm"),
              1.7),
             ("bf16 mm_w vs kiln fp32 mm_w (packed weight)",
              ratio("kiln tuned mm_w_bf16", "kiln tuned mm_w"), 1.7),
             ("bf16 mm_w vs torch linear bf16",
              ratio("kiln tuned mm_w_bf16", "torch linear bf16"), 1.0)]
    lines = ["## Goals (ratios of GFLOPS, measured in this run)", "",
             "| comparison | ratio | goal | met |", "|---|---:|---:|---|"]
    lines += [f"| {label} | {v:.2f}x | {g:.2f}x | {'yes' if v >= g else 'no'} |"
              for label, v, g in items]
    trials = {name: sum(1 for _ in open(log)) for name, (_, log) in tuned.items()}
    return "\n".join(lines + ["", f"Trials per task: {trials}."])


if __name__ == "__main__":
    sys.exit(main())
