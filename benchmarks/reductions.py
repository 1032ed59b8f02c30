"""Row reductions of BERT-base: softmax over the attention scores (12x128x128, last axis) and
layer norm over the hidden states (128x768), float32, kiln against the vendor stack.

Rows, all measured in one run, interleaved round by round (each round times every row once,
as the mean of a batch of calls, starting one row later each round), medians with min-max:
  kiln default schedule        what an untuned graph kernel gets (kiln.graph.default_schedule)
  kiln tuned                   with --trials N: the best of a short auto-scheduler run
  ORT Softmax / LayerNormalization, torch softmax / layer_norm (2 threads), NumPy
  memcpy of the layer norm's bytes: C memcpy on 1 and on 2 threads, numpy copyto
Softmax counts 5 ops per element (max, sub, exp, sum, div) as GFLOPS-equivalent; layer norm
is reported as a share of the best memcpy bandwidth of the same bytes. kiln rows are timed by
the module's C timing loop (no Python in the loop); peers through their Python APIs, as users
call them. Writes benchmarks/results/reductions.{json,md}.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))

import peers  # noqa: E402

import kiln  # noqa: E402
from kiln import auto_scheduler, te, topi  # noqa: E402
from kiln.graph.default_schedule import default_schedule  # noqa: E402
from kiln.schedule import ComputeDAG  # noqa: E402

LOGS = peers.RESULTS / "logs"
SOFTMAX_SHAPE = (12, 128, 128)
LN_SHAPE = (128, 768)


@auto_scheduler.register_workload
def bert_softmax(B, M, N):
    x = te.placeholder((B, M, N), name="x")
    return [x, topi.nn.softmax(x)]


@auto_scheduler.register_workload
def bert_layer_norm(M, N):
    x = te.placeholder((M, N), name="x")
    g = te.placeholder((N,), name="gamma")
    b = te.placeholder((N,), name="beta")
    return [x, g, b, topi.nn.layer_norm(x, g, b, epsilon=1e-12)]


def softmax_ref(x: np.ndarray) -> np.ndarray:
    e = np.exp(x - x.max(-1, keepdims=True))
    return e / e.sum(-1, keepdims=True)


def layer_norm_ref(x, g, b, eps=1e-12):
    m = x.mean(-1, keepdims=True)
    return (x - m) / np.sqrt(((x - m) ** 2).mean(-1, keepdims=True) + eps) * g + b


# ------------------------------------------------------------------ kiln kernels

def kiln_default(args: list):
    state = default_schedule(ComputeDAG(args), (), "cpu")
    return kiln.build(state, args, target="cpu"), state


def kiln_tuned(func, shape: tuple, trials: int, seed: int):
    """Best kernel of a short tuning run (the log is resumed), or None with no trials."""
    if trials <= 0:
        return None
    task = auto_scheduler.SearchTask(func=func, args=shape, target="cpu")
    LOGS.mkdir(parents=True, exist_ok=True)
    log = LOGS / f"reductions_{func.__name__}_{'x'.join(map(str, shape))}.json"
    done = sum(1 for _ in open(log)) if log.exists() else 0
    if trials > done:
        task.tune(auto_scheduler.TuningOptions(
            num_measure_trials=trials - done, num_measures_per_round=min(32, trials), seed=seed,
            measure_callbacks=[auto_scheduler.RecordToFile(str(log))], verbose=0))
    sch, targs = task.apply_best(str(log))
    return kiln.build(sch, targs, target="cpu")


def kiln_batch(f, args: list, number: int):
    """One sample: seconds per call over `number` calls, timed by the module's C loop."""
    ev = f.time_evaluator(number=number, repeat=1)
    return lambda: ev(*args).results[0]


def py_batch(fn, number: int):
    def run():
        t0 = time.perf_counter()
        for _ in range(number):
            fn()
        return (time.perf_counter() - t0) / number
    return run


# ------------------------------------------------------------------ peers

def ort_softmax(x: np.ndarray, threads: int):
    from onnx import helper
    node = helper.make_node("Softmax", ["x"], ["y"], axis=-1)
    sess = peers._ort_session([node], [peers._vi("x", x.shape)], [peers._vi("y", x.shape)],
                              [], threads)
    return lambda: sess.run(None, {"x": x})[0]


def ort_layer_norm(x, g, b, threads: int):
    from onnx import helper, numpy_helper
    node = helper.make_node("LayerNormalization", ["x", "g", "b"], ["y"], axis=-1,
                            epsilon=1e-12)
    inits = [numpy_helper.from_array(g, "g"), numpy_helper.from_array(b, "b")]
    sess = peers._ort_session([node], [peers._vi("x", x.shape)], [peers._vi("y", x.shape)],
                              inits, threads)
    return lambda: sess.run(None, {"x": x})[0]


def torch_fns(x, xl, g, b, threads: int) -> dict:
    try:
        import torch
    except ImportError:
        return {}
    torch.set_num_threads(threads)
    tx, txl, tg, tb = (torch.from_numpy(a) for a in (x, xl, g, b))
    F = torch.nn.functional

    def sm():
        with torch.inference_mode():
            return torch.softmax(tx, -1).numpy()

    def ln():
        with torch.inference_mode():
            return F.layer_norm(txl, (xl.shape[-1],), tg, tb, 1e-12).numpy()
    return {"softmax": sm, "layer_norm": ln}


_MEMCPY_C = r"""
#include <string.h>
#include <time.h>
#include <omp.h>
/* seconds per copy of n bytes, on `threads` threads (each copies a contiguous share) */
double kiln_bench_memcpy(char* dst, const char* src, long n, int threads, int number) {
  struct timespec t0, t1;
  clock_gettime(CLOCK_MONOTONIC, &t0);
  for (int i = 0; i < number; ++i) {
    if (threads == 1) {
      memcpy(dst, src, n);
      continue;
    }
#pragma omp parallel num_threads(threads)
    {
      long t = omp_get_thread_num(), share = (n / threads + 63) / 64 * 64;
      long lo = t * share, hi = lo + share < n ? lo + share : n;
      if (lo < hi) memcpy(dst + lo, src + lo, hi - lo);
    }
  }
  clock_gettime(CLOCK_MONOTONIC, &t1);
  return ((double)(t1.tv_sec - t0.tv_sec) + 1e-9 * (double)(t1.tv_nsec - t0.tv_nsec)) / number;
}
"""


def memcpy_batch(dst: np.ndarray, src: np.ndarray, threads: int, number: int):
    """C memcpy of src's bytes timed in C (the bandwidth a plain copy reaches)."""
    import ctypes

    from kiln.codegen import toolchain
    lib = ctypes.CDLL(toolchain.compile(_MEMCPY_C, "cpu"))
    fn = lib.kiln_bench_memcpy
    fn.restype = ctypes.c_double
    fn.argtypes = [ctypes.c_void_p, ctypes.c_void_p, ctypes.c_long, ctypes.c_int, ctypes.c_int]
    return lambda: fn(dst.ctypes.data, src.ctypes.data, src.nbytes, threads, number)


# ------------------------------------------------------------------ the run

def build_rows(args) -> tuple:
    """{row name: (sampler, kind, note)} with every output checked against NumPy."""
    rng = np.random.default_rng(0)
    x = rng.standard_normal(SOFTMAX_SHAPE, dtype=np.float32) * 3
    xl = rng.standard_normal(LN_SHAPE, dtype=np.float32)
    g = rng.standard_normal(LN_SHAPE[-1:], dtype=np.float32)
    b = rng.standard_normal(LN_SHAPE[-1:], dtype=np.float32)
    sm_ref, ln_ref = softmax_ref(x), layer_norm_ref(xl, g, b)
    y, yl = np.empty_like(x), np.empty_like(xl)
    n, th = args.number, args.threads
    rows = {}

    def kiln_rows(kind, fn_default, fn_tuned, ins, out, ref):
        for label, f in (("default schedule", fn_default), ("tuned", fn_tuned)):
            if f is None:
                continue
            f(*ins, out)
            np.testing.assert_allclose(out, ref, rtol=1e-4, atol=1e-5)
            rows[f"kiln {kind}, {label}"] = (kiln_batch(f, ins + [out], n), kind, "2 threads")

    sm_args, ln_args = bert_softmax(*SOFTMAX_SHAPE), bert_layer_norm(*LN_SHAPE)
    kiln_rows("softmax", kiln_default(sm_args)[0],
              kiln_tuned(bert_softmax, SOFTMAX_SHAPE, args.trials, args.seed), [x], y, sm_ref)
    kiln_rows("layer_norm", kiln_default(ln_args)[0],
              kiln_tuned(bert_layer_norm, LN_SHAPE, args.trials, args.seed), [xl, g, b], yl,
              ln_ref)
    tfn = torch_fns(x, xl, g, b, th)
    peer_fns = [("ORT Softmax", "softmax", ort_softmax(x, th), sm_ref),
                ("torch softmax", "softmax", tfn.get("softmax"), sm_ref),
                ("NumPy softmax", "softmax", lambda: softmax_ref(x), sm_ref),
                ("ORT LayerNormalization", "layer_norm", ort_layer_norm(xl, g, b, th), ln_ref),
                ("torch layer_norm", "layer_norm", tfn.get("layer_norm"), ln_ref)]
    for name, kind, fn, ref in peer_fns:
        if fn is None:
            continue
        np.testing.assert_allclose(fn(), ref, rtol=1e-4, atol=1e-5)
        note = "1 thread" if name.startswith("NumPy") else f"{th} threads"
        rows[name] = (py_batch(fn, n), kind, note)
    dst = np.empty_like(xl)
    for t in (1, 2):
        rows[f"C memcpy of the layer norm's bytes, {t} thread{'s' * (t > 1)}"] = (
            memcpy_batch(dst, xl, t, n), "memcpy", f"{xl.nbytes} bytes")
    rows["numpy copyto (same bytes)"] = (py_batch(lambda: np.copyto(dst, xl), n), "memcpy",
                                         "1 thread")
    return rows


def interleave(rows: dict, rounds: int, gap_s: float = 0.02) -> dict:
    """{name: seconds per call, one per round}; round r starts at row r (mod rows)."""
    names = list(rows)
    out = {k: [] for k in names}
    for k in names:
        rows[k][0]()  # warm-up
    for r in range(rounds):
        k = r % len(names)
        for name in names[k:] + names[:k]:
            time.sleep(gap_s)  # the last row's thread pool (ORT, torch) stops spinning
            out[name].append(rows[name][0]())
    return out


def table(rows: dict, samples: dict) -> list:
    copy_best = min(statistics.median(samples[k]) for k, v in rows.items() if v[1] == "memcpy")
    elems = float(np.prod(SOFTMAX_SHAPE))
    out = []
    for name, (_, kind, note) in rows.items():
        s = samples[name]
        med = statistics.median(s)
        r = {"name": name, "op": kind, "median_us": med * 1e6, "min_us": min(s) * 1e6,
             "max_us": max(s) * 1e6, "note": note}
        if kind == "softmax":
            r["gflops_eq"] = 5 * elems / med / 1e9
        if kind in ("layer_norm", "memcpy"):
            r["pct_memcpy_bw"] = 100.0 * copy_best / med
        out.append(r)
        extra = f"{r.get('gflops_eq', 0):7.2f} GFLOPS-eq" if kind == "softmax" else \
            f"{r['pct_memcpy_bw']:6.1f}% memcpy BW"
        print(f"{name:52s} {med * 1e6:9.1f} us ({min(s) * 1e6:.1f}-{max(s) * 1e6:.1f}) {extra}")
    return out


def goals(out: list) -> str:
    """The issue's two goals from the medians, and from the best samples (a busy machine, see
    the load averages above, inflates medians of 2-thread kernels far more than minima)."""
    by = {r["name"]: r for r in out}
    sm = by.get("kiln softmax, default schedule")
    ln = by.get("kiln layer_norm, default schedule")
    copies = [r for r in out if r["op"] == "memcpy"]
    if sm is None or ln is None or not copies:
        return ""
    elems = float(np.prod(SOFTMAX_SHAPE))
    best_copy = min(r["min_us"] for r in copies)
    rows = [("softmax 12x128x128, GFLOPS-eq (5 ops/element)", sm["gflops_eq"],
             5 * elems / sm["min_us"] / 1e3, 20.0, ""),
            ("layer norm 128x768, share of memcpy bandwidth", ln["pct_memcpy_bw"],
             100.0 * best_copy / ln["min_us"], 50.0, "%")]
    lines = ["## Goals (issue 15, item 2; default schedules, measured in this run)", "",
             "| goal | median | best sample | target | met (median) |", "|---|---:|---:|---:|---|"]
    for label, med, best, goal, unit in rows:
        lines.append(f"| {label} | {med:.1f}{unit} | {best:.1f}{unit} | {goal:.0f}{unit} | "
                     f"{'yes' if med >= goal else 'no'} |")
    return "\n".join(lines)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--rounds", type=int, default=41)
    p.add_argument("--number", type=int, default=50, help="calls per timed sample")
    p.add_argument("--gap-ms", type=float, default=20.0,
                   help="sleep before each sample, so the last row's thread pool stops "
                   "spinning (with 200 ms, every 2-thread row, memcpy included, read 5-20x "
                   "slower on this VM: its idle vCPUs wake slowly)")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--trials", type=int, default=0, help="tuning trials per op (0: no tuned row)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default=str(peers.RESULTS / "reductions"))
    args = p.parse_args(argv)
    load0 = os.getloadavg()[0]
    rows = build_rows(args)
    samples = interleave(rows, args.rounds, args.gap_ms / 1e3)
    out = table(rows, samples)
    meta = {**peers.meta(args), "target": str(kiln.target.Target("cpu")),
            "loadavg_1min_start": round(load0, 2),
            "loadavg_1min_end": round(os.getloadavg()[0], 2)}
    peers.write(Path(args.out), "Row reductions (BERT-base softmax and layer norm), float32: "
                "kiln vs peers", meta, out,
                ["name", "median_us", "min_us", "max_us", "gflops_eq", "pct_memcpy_bw", "note"],
                goals(out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
