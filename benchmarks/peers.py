"""Shared benchmark plumbing: the peers (ONNX Runtime, PyTorch, NumPy) built the way users
run them, timing loops (median of repeats; rows interleaved round by round), accuracy against a
reference (max abs error, cosine similarity) and result writers (JSON + Markdown)."""

from __future__ import annotations

import copy
import functools
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

RESULTS = Path(__file__).parent / "results"


def time_fn(fn, number: int, repeat: int) -> list:
    """Seconds per call, one value per repeat (after one warm-up call)."""
    fn()
    out = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        for _ in range(number):
            fn()
        out.append((time.perf_counter() - t0) / number)
    return out


def time_kiln(f, args, number: int, repeat: int) -> list:
    f(*args)
    return list(f.time_evaluator(number=number, repeat=repeat)(*args).results)


def _ort_session(nodes, inputs, outputs, inits, threads: int):
    import onnxruntime as ort
    from onnx import helper
    g = helper.make_graph(nodes, "g", inputs, outputs, inits)
    model = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    opts.inter_op_num_threads = 1
    return ort.InferenceSession(model.SerializeToString(), opts,
                                providers=["CPUExecutionProvider"])


def _vi(name, shape):
    from onnx import TensorProto, helper
    return helper.make_tensor_value_info(name, TensorProto.FLOAT, list(shape))


def ort_gemm_input(a: np.ndarray, b: np.ndarray, threads: int):
    """ORT Gemm(transB=1) with b as an input on every call (the seed's mm as written)."""
    from onnx import helper
    M, N = a.shape[0], b.shape[0]
    node = helper.make_node("Gemm", ["a", "b"], ["c"], transB=1)
    sess = _ort_session([node], [_vi("a", a.shape), _vi("b", b.shape)], [_vi("c", (M, N))], [],
                        threads)
    return lambda: sess.run(None, {"a": a, "b": b})[0]


def ort_matmul_weight(a: np.ndarray, b: np.ndarray, threads: int, hard_swish: bool = False):
    """ORT MatMul with the weight b.T as an initializer (pre-packed by ORT), + HardSwish."""
    from onnx import helper, numpy_helper
    M, N = a.shape[0], b.shape[0]
    w = numpy_helper.from_array(np.ascontiguousarray(b.T), "w")
    nodes = [helper.make_node("MatMul", ["a", "w"], ["mm" if hard_swish else "c"])]
    if hard_swish:
        nodes.append(helper.make_node("HardSwish", ["mm"], ["c"]))
    sess = _ort_session(nodes, [_vi("a", a.shape)], [_vi("c", (M, N))], [w], threads)
    return lambda: sess.run(None, {"a": a})[0]


def torch_linear(a: np.ndarray, b: np.ndarray, threads: int, hard_swish: bool = False):
    """torch.nn.functional.linear (and hard_swish), or None when torch is missing."""
    try:
        import torch
    except ImportError:
        return None
    torch.set_num_threads(threads)
    ta, tb = torch.from_numpy(a), torch.from_numpy(b)
    F = torch.nn.functional

    def run():
        with torch.inference_mode():
            y = F.linear(ta, tb)
            return (F.hardswish(y) if hard_swish else y).numpy()
    return run


def interleaved(fns: dict[str, Callable], rounds: int, sittings: int,
                gap_s: float = 0.0, warm: int = 0) -> dict[str, list]:
    """Seconds per call of every function, {name: samples}. Each sitting warms every row up
    once, then runs `rounds` rounds; a round calls every row once, in turn, starting one row
    later each round. Interleaving spreads a busy neighbour, thermal drift or a frequency
    change over all rows instead of charging it to whichever row ran at that moment. `gap_s`
    of sleep before each call lets the previous row's thread pool (OpenMP, ORT) stop
    spinning, so it does not steal the cores of the next row; `warm` untimed calls after
    the sleep wake the row's own pool first (waking a sleeping pool here cost up to a few
    ms, which only matters for models of a few ms)."""
    names = list(fns)
    out: dict = {n: [] for n in names}
    for s in range(sittings):
        for n in names:
            fns[n]()
        for r in range(rounds):
            k = (r + s) % len(names)
            for n in names[k:] + names[:k]:
                if gap_s > 0:
                    time.sleep(gap_s)
                for _ in range(warm):
                    fns[n]()
                t0 = time.perf_counter()
                fns[n]()
                out[n].append(time.perf_counter() - t0)
        print(f"sitting {s + 1}/{sittings}: " + ", ".join(
            f"{n} {statistics.median(out[n][-rounds:]) * 1e3:.1f}" for n in names) + " ms",
            flush=True)
    return out


def accuracy(out: np.ndarray, ref: np.ndarray) -> dict:
    """Max abs error and cosine similarity of an output against the reference output."""
    a = np.asarray(out, np.float64).ravel()
    b = np.asarray(ref, np.float64).ravel()
    denom = float(np.linalg.norm(a) * np.linalg.norm(b))
    cos = float(a @ b / denom) if denom > 0 else float("nan")
    return {"max_abs_err": float(np.abs(a - b).max()), "cosine": cos}


@functools.lru_cache(maxsize=4)
def _quantized(data: bytes) -> bytes:
    import onnx
    from onnxruntime.quantization import QuantType, quantize_dynamic
    with tempfile.TemporaryDirectory() as d:
        src, dst = os.path.join(d, "fp32.onnx"), os.path.join(d, "int8.onnx")
        onnx.save(onnx.load_from_string(data), src)
        src = _quant_preprocess(src, os.path.join(d, "pre.onnx"))
        quantize_dynamic(src, dst, weight_type=QuantType.QInt8)
        return Path(dst).read_bytes()


def quantized_bytes(proto) -> bytes:
    """The model after ORT's int8 recipe (quant_pre_process, then quantize_dynamic with QInt8
    weights: activations quantized per call), serialized; the ORT int8 peer and kiln's int8
    row run these same bytes."""
    return _quantized(proto.SerializeToString())


def static_quantized_bytes(proto, feeds: list, activations: str = "QInt8") -> bytes:
    """The model after ORT's static int8 recipe (quant_pre_process, then quantize_static in
    its default QDQ format: int8 activations (or `activations` = "QUInt8") with scales
    calibrated on `feeds`, a list of input dicts; int8 weights per channel), serialized."""
    import onnx
    from onnxruntime.quantization import (
        CalibrationDataReader,
        QuantFormat,
        QuantType,
        quantize_static,
    )

    class Reader(CalibrationDataReader):
        def __init__(self):
            self.it = iter(feeds)

        def get_next(self):
            return next(self.it, None)
    with tempfile.TemporaryDirectory() as d:
        src, dst = os.path.join(d, "fp32.onnx"), os.path.join(d, "int8.onnx")
        onnx.save(proto, src)
        src = _quant_preprocess(src, os.path.join(d, "pre.onnx"))
        quantize_static(src, dst, Reader(), quant_format=QuantFormat.QDQ, per_channel=True,
                        activation_type=getattr(QuantType, activations),
                        weight_type=QuantType.QInt8)
        return Path(dst).read_bytes()


def ort_int8(proto, inputs: dict, threads: int) -> Callable:
    """ONNX Runtime on the model after onnxruntime.quantization.quantize_dynamic (QInt8
    weights, activations quantized per call): what a user gets from ORT's int8 recipe."""
    import onnxruntime as ort
    data = quantized_bytes(proto)
    opts = ort.SessionOptions()
    opts.intra_op_num_threads, opts.inter_op_num_threads = threads, 1
    sess = ort.InferenceSession(data, opts, providers=["CPUExecutionProvider"])
    return lambda: sess.run(None, inputs)[0]


def _quant_preprocess(src: str, dst: str) -> str:
    """ORT's recommended step before quantizing (shape inference, graph optimisation): dst,
    or src when this onnxruntime cannot run it."""
    try:
        from onnxruntime.quantization.shape_inference import quant_pre_process
        quant_pre_process(src, dst)
    except Exception as e:  # noqa: BLE001 - quantize the plain model then
        print(f"[bench] quantization pre-processing skipped: {type(e).__name__}: {e}",
              file=sys.stderr)
        return src
    return dst


def torch_bf16(module, inputs: dict, threads: int) -> Callable:
    """The PyTorch module converted with .to(torch.bfloat16) (inputs unchanged: token ids),
    eager, its output cast back to float32."""
    import torch
    torch.set_num_threads(threads)
    m = copy.deepcopy(module).to(torch.bfloat16).eval()
    tin = {k: torch.from_numpy(v) for k, v in inputs.items()}

    def run() -> np.ndarray:
        with torch.inference_mode():
            return m(**tin).float().numpy()
    return run


def bert_peers(model, threads: int, use_torch: bool) -> dict[str, tuple[str, Callable]]:
    """{row name: (precision, fn)}: kiln.cli's peers (ONNX Runtime, PyTorch eager,
    torch.compile; fp32) plus ONNX Runtime int8 (dynamic quantization) and PyTorch bf16.
    A peer that cannot be built is reported and left out."""
    from kiln.cli import _peers
    out = {name: ("fp32", fn) for name, fn in _peers(model, threads, use_torch).items()}
    extra = [("ONNX Runtime int8 (dynamic quantization)", "int8",
              lambda: ort_int8(model.proto, model.inputs, threads))]
    if use_torch and model.torch_module is not None:
        extra.append(("PyTorch bf16", "bf16",
                      lambda: torch_bf16(model.torch_module, model.inputs, threads)))
    for name, prec, make in extra:
        try:
            out[name] = (prec, make())
        except Exception as e:  # noqa: BLE001 - a peer that cannot run is reported, not fatal
            print(f"[bench] {name} unavailable: {type(e).__name__}: {e}", file=sys.stderr)
    return out


def meta(args) -> dict:
    return {"date": time.strftime("%Y-%m-%d %H:%M"), "cores": len(os.sched_getaffinity(0)),
            "machine": platform.processor() or platform.machine(),
            "python": sys.version.split()[0], "numpy": np.__version__,
            **{k: v for k, v in vars(args).items() if isinstance(v, (int, float, str))}}


def row(name: str, secs: list, flops: float, note: str = "") -> dict:
    med = statistics.median(secs)
    r = {"name": name, "median_ms": med * 1e3, "min_ms": min(secs) * 1e3,
         "gflops": flops / med / 1e9, "note": note}
    print(f"{name:58s} {med * 1e3:9.4f} ms {r['gflops']:8.1f} GFLOPS", flush=True)
    return r


def write(out: Path, title: str, meta_: dict, rows: list, columns: list, extra: str = "",
          fmt: dict | None = None) -> None:
    """out.json (everything) and out.md (a table of `columns` keys; floats as `fmt[column]`,
    default ".3f")."""
    fmt = fmt or {}
    out.parent.mkdir(parents=True, exist_ok=True)
    out.with_suffix(".json").write_text(json.dumps({"meta": meta_, "rows": rows}, indent=2))
    lines = [f"# {title}", "", ", ".join(f"{k}={v}" for k, v in meta_.items()), "",
             "| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    for r in rows:
        cells = [format(r[c], fmt.get(c, ".3f")) if isinstance(r.get(c), float)
                 else str(r.get(c, '')) for c in columns]
        lines.append("| " + " | ".join(cells) + " |")
    text = "\n".join(lines) + "\n" + (("\n" + extra + "\n") if extra else "")
    out.with_suffix(".md").write_text(text)
    print(text)


def pyplot():
    """matplotlib.pyplot with the file-only backend, or None when matplotlib is missing."""
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return None
    return plt


def cuda_step_timers(torch, step: Callable, number: int) -> dict:
    """{"eager": fn, "graph": fn}: seconds per `step()` on the GPU, from CUDA events around
    `number` steps launched one by one, or replayed from a CUDA graph captured once (the
    faster of the two is PyTorch's best). `step` has run (warm-up) before."""
    def timed(run) -> float:
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        run()
        end.record()
        end.synchronize()
        return start.elapsed_time(end) / 1e3 / number

    def eager() -> None:
        for _ in range(number):
            step()

    torch.cuda.synchronize()
    stream = torch.cuda.Stream()  # capture needs a side stream that has run the step once
    stream.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(stream):
        step()
    torch.cuda.current_stream().wait_stream(stream)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        eager()
    return {"eager": lambda: timed(eager), "graph": lambda: timed(graph.replay)}
