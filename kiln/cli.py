"""`kiln` command line: tune | bench | compile | show.

  kiln tune bert.onnx --target cpu --trials 3000 --log bert.json   # per-task table, resumable
  kiln tune bert.onnx --cluster auto --log bert.json               # on a Ray cluster
  kiln bench bert.onnx --log bert.json                             # kiln vs ORT / PyTorch
  kiln compile bert.onnx --log bert.json -o bert.so                # deployable library
  kiln show bert.json                                              # tasks, best GFLOPS, errors
A model is an ONNX file or `--builtin bert-base` (built locally from transformers, random
weights). Exit codes: 0 ok, 2 an error (one line `kiln: error: ...` on stderr; the traceback
with KILN_DEBUG=1) or bad usage, 130 interrupted (Ctrl-C; `kiln tune` keeps every record and
prints the summary so far).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import re
import statistics
import sys
import time

import numpy as np

from .errors import KilnError

EXIT_ERROR = 2
EXIT_INTERRUPTED = 130


def parse_duration(text: str) -> float:
    """'90', '90s', '15m', '1.5h' -> seconds."""
    m = re.fullmatch(r"\s*([0-9.]+)\s*([smh]?)\s*", text or "")
    if not m:
        raise argparse.ArgumentTypeError(f"bad duration {text!r} (use e.g. 30s, 15m, 1h)")
    return float(m.group(1)) * {"": 1, "s": 1, "m": 60, "h": 3600}[m.group(2)]


def _shapes(items) -> dict:
    """['input_ids=1,128', ...] -> {'input_ids': (1, 128)}; KilnError naming a bad item."""
    out = {}
    for it in items or []:
        name, _, dims = it.partition("=")
        try:
            shape = tuple(int(d) for d in dims.split(","))
        except ValueError:
            shape = ()
        if not name.strip() or not shape or min(shape) < 1:
            raise KilnError(f"--shape {it!r}: expected NAME=D1,D2,... with positive integer "
                            "sizes, e.g. input_ids=1,128")
        out[name.strip()] = shape
    return out


def _seq_len(args) -> int:
    """--seq-len, or 128 capped at the builtin model's number of positions."""
    from .models import _bert_config
    positions = _bert_config(args.builtin).max_position_embeddings
    if args.seq_len is None:
        return min(128, positions)
    if not 1 <= args.seq_len <= positions:
        raise KilnError(f"--seq-len {args.seq_len}: {args.builtin} takes 1 to {positions} "
                        "tokens")
    return args.seq_len


def _load_onnx(path: str):
    """The ModelProto of an ONNX file; KilnError for a missing, empty or damaged file."""
    import onnx
    if not os.path.isfile(path):
        raise KilnError(f"no such model file: {path}")
    try:
        proto = onnx.load(path)
    except Exception as err:  # noqa: BLE001 - protobuf raises several kinds for bad bytes
        raise KilnError(f"{path} is not a readable ONNX model ({type(err).__name__}: "
                        f"{err})") from None
    if not proto.graph.node and not proto.graph.output:
        raise KilnError(f"{path} is not an ONNX model (empty or no graph)")
    return proto


class Model:
    """A graph + params, the ONNX proto, a torch module (builtins only) and example inputs."""

    def __init__(self, args):
        from .graph.frontend import from_onnx
        from .graph.record_check import random_inputs
        self.torch_module = None
        if args.builtin:
            from .models import builtin
            self.torch_module, self.proto, self.inputs = builtin(args.builtin, _seq_len(args))
            self.name = args.builtin
        elif args.model:
            self.proto = _load_onnx(args.model)
            self.name = args.model
            self.inputs = None
        else:
            raise KilnError("give a model file (model.onnx) or --builtin NAME")
        self.graph, self.params = from_onnx(self.proto, shape=_shapes(args.shape) or None)
        if self.inputs is None:
            self.inputs = random_inputs(self.graph)


def cmd_tune(args) -> int:
    from . import auto_scheduler
    from .auto_scheduler.task_scheduler import TaskScheduler
    model = Model(args)
    tasks, weights = auto_scheduler.extract_tasks(model.graph, model.params, target=args.target,
                                                  dtype=args.dtype)
    print(f"[kiln] {model.name}: {len(tasks)} tasks, {sum(weights)} kernels", file=sys.stderr)
    builder, runner = _backends(args.cluster, tasks)
    opts = auto_scheduler.TuningOptions(
        num_measure_trials=args.trials, num_measures_per_round=args.per_round,
        early_stopping=args.early_stopping, builder=builder, runner=runner,
        measure_callbacks=[auto_scheduler.RecordToFile(args.log)], seed=args.seed)
    _report_log(args.log, tasks, args.target)
    ts = TaskScheduler(tasks, weights, seed=args.seed, time_budget_s=args.time_budget,
                       load_model_file=_model_file(args.transfer_from))
    t0 = time.time()
    try:
        lat = ts.tune(opts)
    finally:
        if args.cluster:
            print(runner.summary(), file=sys.stderr)
            print(f"[kiln] cluster: {sum(ts.trials) / max(time.time() - t0, 1e-9) * 60:.0f} "
                  "trials/min overall (search, build and measurement)", file=sys.stderr)
            runner.close()
    if hasattr(ts.model, "save"):
        ts.model.save(model_file_of(args.log))
    alloc = {f"{i}:{t.desc}": n for i, (t, n) in enumerate(zip(tasks, ts.trials))}
    unmeasured = sum(not math.isfinite(ts.best(i)) for i in range(len(tasks)))
    print(json.dumps({"estimated_latency_ms": lat * 1e3 if math.isfinite(lat) else None,
                      "tasks_without_a_measurement": unmeasured,
                      "interrupted": ts.interrupted, "trials_per_task": alloc}, indent=1))
    return EXIT_INTERRUPTED if ts.interrupted else 0


def _backends(cluster: str | None, tasks: list) -> tuple:
    """("local", "local"), or a RayBuilder and RayRunner joined to the cluster at `cluster`
    ("auto": the Ray cluster this machine belongs to; or HOST:PORT)."""
    if not cluster:
        return "local", "local"
    if any(t.target.kind != "cpu" for t in tasks):
        raise KilnError("--cluster tunes CPU targets only for now; tune CUDA models without it")
    from .auto_scheduler.measure.ray_backend import RayBuilder, RayRunner, connect
    ray = connect(cluster)
    nodes = sum(1 for n in ray.nodes() if n.get("Alive"))
    print(f"[kiln] cluster {cluster}: {nodes} node(s)", file=sys.stderr)
    return RayBuilder(address=cluster), RayRunner(address=cluster)


def model_file_of(log: str) -> str:
    """Where `kiln tune` keeps the cost model (and its training data) of a log."""
    return log + ".model.npz"


def _model_file(path: str | None) -> str | None:
    """--transfer-from takes a log (its saved model beside it) or the model file itself."""
    if not path:
        return None
    for cand in (path, model_file_of(path)):
        if cand.endswith(".npz") and os.path.exists(cand):
            return cand
    raise KilnError(f"--transfer-from {path}: no cost model file ({model_file_of(path)}); "
                    f"`kiln tune --log {path}` writes one when it finishes")


def _report_log(log: str | None, tasks, target) -> None:
    """Say which records of the log apply; records of other models or targets are ignored."""
    from .auto_scheduler.measure.record import log_coverage
    if not log or not os.path.exists(log):
        return
    msg = log_coverage(log, [t.workload_key for t in tasks], target).message()
    if msg:
        print(f"[kiln] {msg}", file=sys.stderr)


def _build(model, log, target, dtype: str = "float32", check: bool = False,
           flush: bool = False):
    from . import auto_scheduler, graph
    if not log:
        return graph.build(model.graph, model.params, target=target, dtype=dtype,
                           flush_denormals=flush)
    if not os.path.exists(log):
        raise KilnError(f"no such log file: {log}")
    with auto_scheduler.ApplyHistoryBest(log) as ctx:
        if check:
            lib = graph.build_checked(model.graph, model.params, target, dtype, model.inputs,
                                      flush_denormals=flush)
            _report_check(lib.meta["record_check"])
        else:
            lib = graph.build(model.graph, model.params, target=target, dtype=dtype,
                              flush_denormals=flush)
    msg = ctx.coverage(log, target).message()  # records of kernels this model does not have
    if msg:
        print(f"[kiln] {msg}", file=sys.stderr)
    return lib


def _report_check(report: dict) -> None:
    if not report:
        print("[kiln] records checked in the network: no record applies", file=sys.stderr)
        return
    lost = [r for r in report["kernels"].values() if not r["wins"]]
    times = ", ".join(f"{k} {v * 1e3:.2f} ms" for k, v in report["network_s"].items())
    print(f"[kiln] records checked in the network: {len(lost)} of {len(report['kernels'])} "
          f"lose there" + "".join(f" ({r['kernel']} {r['tuned_s'] * 1e3:.3f} -> "
                                   f"{r['default_s'] * 1e3:.3f} ms)" for r in lost)
          + f"; networks: {times}; built with {report['choice']}", file=sys.stderr)


def _median_ms(fn, repeat: int) -> float:
    fn()
    ts = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        ts.append(time.perf_counter() - t0)
    return statistics.median(ts) * 1e3


def _peers(model, threads: int, use_torch: bool, gpu: bool = False) -> dict:
    """ONNX Runtime on the CPU (the reference output) and, unless told not to, PyTorch eager
    and torch.compile: on the GPU when the target is one and this PyTorch has CUDA."""
    import onnxruntime as ort
    opts = ort.SessionOptions()
    opts.intra_op_num_threads, opts.inter_op_num_threads = threads, 1
    sess = ort.InferenceSession(model.proto.SerializeToString(), opts,
                                providers=["CPUExecutionProvider"])
    out = {"ONNX Runtime": lambda: sess.run(None, model.inputs)[0]}
    if use_torch and model.torch_module is not None:
        out.update(_torch_peers(model, threads, gpu))
    return out


def _torch_peers(model, threads: int, gpu: bool) -> dict:
    import torch
    torch.set_num_threads(threads)
    if gpu and not torch.cuda.is_available():
        print("[kiln] this PyTorch has no CUDA: its rows run on the CPU", file=sys.stderr)
        gpu = False
    dev, where = ("cuda", " (GPU)") if gpu else ("cpu", "")
    tin = {k: torch.from_numpy(v).to(dev) for k, v in model.inputs.items()}
    m = model.torch_module.to(dev)

    def runner(fn):
        def run():  # NumPy out, as kiln's rows: the copy back also waits for the GPU
            with torch.inference_mode():
                return fn(**tin).float().cpu().numpy()
        return run
    out = {f"PyTorch eager{where}": runner(m)}
    try:
        compiled = runner(torch.compile(m))
        compiled()
        out[f"torch.compile{where}"] = compiled
    except Exception as e:  # noqa: BLE001 - a peer that cannot run is reported, not fatal
        print(f"[kiln] torch.compile unavailable: {type(e).__name__}: {e}", file=sys.stderr)
    return out


def cmd_bench(args) -> int:
    model = Model(args)
    rows = []
    from .target import as_target
    gpu = as_target(args.target).kind == "cuda"
    peers = _peers(model, args.threads, not args.no_torch, gpu)
    ref = peers["ONNX Runtime"]()
    variants = [("kiln untuned", None)] + ([("kiln tuned", args.log)] if args.log else [])
    for label, log in variants:
        t0 = time.time()
        lib = _build(model, log, args.target, args.dtype, args.check_records,
                     args.flush_denormals)
        build_s = time.time() - t0
        run = lambda lib=lib: list(lib.run(**model.inputs).values())[0]
        err = float(np.abs(run() - ref).max())
        rows.append({"name": label, "median_ms": _median_ms(run, args.repeat),
                     "max_abs_err_vs_ort": err, "note": f"build {build_s:.1f}s"})
    for label, fn in peers.items():
        err = float(np.abs(fn() - ref).max())
        rows.append({"name": label, "median_ms": _median_ms(fn, args.repeat),
                     "max_abs_err_vs_ort": err, "note": f"{args.threads} threads"})
    if args.profile:
        _print_profile(lib, variants[-1][0], model, args.profile)
    ort_ms = next(r["median_ms"] for r in rows if r["name"] == "ONNX Runtime")
    # on a GPU the peer to beat is PyTorch on that GPU (ORT runs on the CPU: the reference)
    base = "PyTorch eager (GPU)" if any(r["name"] == "PyTorch eager (GPU)" for r in rows) \
        else "ONNX Runtime"
    base_ms = next(r["median_ms"] for r in rows if r["name"] == base)
    short = "eager" if base != "ONNX Runtime" else "ORT"
    print(f"\n{model.name} ({args.target or 'cpu'}): median of {args.repeat} runs, "
          f"{args.threads} CPU threads; max|err| vs ONNX Runtime")
    print(f"{'':24s} {'ms':>10s} {'vs ' + short:>9s} {'max|err|':>10s}")
    for r in rows:
        r["speedup_vs_ort"] = ort_ms / r["median_ms"]
        r[f"speedup_vs_{short.lower()}"] = base_ms / r["median_ms"]
        print(f"{r['name']:24s} {r['median_ms']:10.2f} {base_ms / r['median_ms']:8.2f}x "
              f"{r['max_abs_err_vs_ort']:10.2e}  {r['note']}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"model": model.name, "repeat": args.repeat, "threads": args.threads,
                       "rows": rows}, f, indent=1)
    return 0


def _print_profile(lib, label: str, model, top: int) -> None:
    """The `top` most costly kernels of the last kiln build: timed inside the network on a
    CPU, each alone from a CUDA graph of 10 launches on a GPU."""
    rows = lib.profile(number=10, **model.inputs)
    total = sum(n * sec for _, n, sec in rows)
    how = ("each kernel timed alone over 10 launches" if "cuda" in type(lib).__name__.lower()
           else "kernels timed inside the network, median of 10 runs")
    print(f"\nwhere the time goes ({label}, {how}): {total * 1e3:.2f} ms")
    for name, n, sec in rows[:top]:
        print(f"  {name[:56]:56s} x{n:<4d} {sec * 1e3:9.4f} ms  {n * sec / total:6.1%}")


def cmd_compile(args) -> int:
    folder = os.path.dirname(os.path.abspath(args.output))
    if not os.path.isdir(folder):
        raise KilnError(f"-o {args.output}: the folder {folder} does not exist")
    model = Model(args)
    lib = _build(model, args.log, args.target, args.dtype, args.check_records,
                 args.flush_denormals)
    path = lib.export_library(args.output)
    print(f"[kiln] wrote {path or args.output}")
    return 0


def cmd_show(args) -> int:
    from .auto_scheduler.measure.record import best_by_key, load_records
    if not os.path.isfile(args.log):
        raise KilnError(f"no such log file: {args.log}")
    flops = {}
    for rec in load_records(args.log):
        if rec.meta and rec.meta.get("flop_ct"):
            flops[rec.workload_key] = rec.meta["flop_ct"]
    summary = best_by_key(args.log)
    print(f"{'task':48s} {'trials':>7s} {'best ms':>10s} {'GFLOPS':>8s}  errors")
    for (key, target), s in sorted(summary.items(), key=lambda kv: -kv[1].trials):
        best = s.best_cost
        ms = f"{best * 1e3:10.4f}" if math.isfinite(best) else "         -"
        gf = flops.get(key, 0) / best / 1e9 if math.isfinite(best) and key in flops else 0.0
        errs = ", ".join(f"{k} {v}" for k, v in sorted(s.errors.items())) or "none"
        print(f"{(s.desc or key)[:48]:48s} {s.trials:7d} {ms} {gf:8.2f}  {errs}  [{target}]")
    return 0


def _model_args(p) -> None:
    p.add_argument("model", nargs="?", help="an ONNX file")
    p.add_argument("--builtin", help="a model built locally: bert-base or bert-tiny")
    p.add_argument("--seq-len", type=int, default=None,
                   help="sequence length of builtins (default 128, at most the model's positions)")
    p.add_argument("--shape", action="append", help="input shape, e.g. input_ids=1,128")
    p.add_argument("--target", default="cpu")
    p.add_argument("--dtype", default="float32",
                   choices=("float32", "fp32", "bfloat16", "bf16", "int8"),
                   help="bf16: dense products in bfloat16 with float32 accumulation (weights "
                   "stored in bfloat16; CPUs with AVX512-BF16); int8: dense products "
                   "quantized dynamically (int8 weights, uint8 activations, int32 sums; CPUs "
                   "with AVX512-VNNI)")


def _check_arg(p) -> None:
    p.add_argument("--check-records", action="store_true",
                   help="keep a tuning record only where its kernel is faster inside the "
                   "network than the untuned default (builds the model two or three times)")
    p.add_argument("--flush-denormals", action="store_true",
                   help="run the model with denormal floats flushed to zero (FTZ + DAZ, CPU "
                   "targets): full speed when activations decay into denormals")


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="kiln", description="kiln: an auto-scheduling tensor "
                                "compiler. Tune, benchmark and compile models.")
    sub = p.add_subparsers(dest="cmd", required=True)
    t = sub.add_parser("tune", help="tune every kernel of a model, appending to a log")
    _model_args(t)
    t.add_argument("--trials", type=int, default=3000)
    t.add_argument("--time-budget", type=parse_duration, default=None, help="e.g. 15m")
    t.add_argument("--log", required=True)
    t.add_argument("--per-round", type=int, default=64)
    t.add_argument("--early-stopping", type=int, default=None)
    t.add_argument("--seed", type=int, default=0)
    t.add_argument("--transfer-from", metavar="LOG",
                   help="warm-start the cost model from an earlier tuning log of another "
                   "model (uses LOG.model.npz, which every `kiln tune` writes)")
    t.add_argument("--cluster", metavar="ADDRESS", default=None,
                   help="build and measure on a Ray cluster: 'auto' (the cluster this machine "
                   "joined with `ray start`) or HOST:PORT; needs pip install 'kiln[ray]'")
    b = sub.add_parser("bench", help="latency of kiln vs ONNX Runtime and PyTorch, one table")
    _model_args(b)
    b.add_argument("--log")
    _check_arg(b)
    b.add_argument("--repeat", type=int, default=30)
    b.add_argument("--threads", type=int, default=2)
    b.add_argument("--no-torch", action="store_true")
    b.add_argument("--json", help="write the table as JSON here")
    b.add_argument("--profile", type=int, metavar="N", default=0,
                   help="also list the N most costly kernels of the last kiln build, timed "
                   "inside the network (GraphModule.profile)")
    c = sub.add_parser("compile", help="build a deployable library")
    _model_args(c)
    c.add_argument("--log")
    _check_arg(c)
    c.add_argument("-o", "--output", required=True)
    s = sub.add_parser("show", help="summarise a tuning log")
    s.add_argument("log")
    return p


def main(argv=None) -> int:
    args = parser().parse_args(argv)
    try:
        if args.cmd != "show":
            from .codegen.toolchain import check_cache_dir
            check_cache_dir()  # a read-only or full cache fails here, not in every build
        return {"tune": cmd_tune, "bench": cmd_bench, "compile": cmd_compile,
                "show": cmd_show}[args.cmd](args)
    except KeyboardInterrupt:
        print("kiln: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except Exception as e:  # noqa: BLE001 - every failure is one line unless KILN_DEBUG=1
        if os.environ.get("KILN_DEBUG", "").strip() not in ("", "0"):
            raise
        text = str(e) if isinstance(e, KilnError) else f"{type(e).__name__}: {e}"
        print(f"kiln: error: {' '.join(text.split()) or type(e).__name__}", file=sys.stderr)
        return EXIT_ERROR


if __name__ == "__main__":
    sys.exit(main())
