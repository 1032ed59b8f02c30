"""Shared benchmark plumbing: the peers (ONNX Runtime, PyTorch, NumPy) built the way users
run them, a timing loop (median of repeats), and result writers (JSON + Markdown)."""

from __future__ import annotations

import json
import os
import platform
import statistics
import sys
import time
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


def write(out: Path, title: str, meta_: dict, rows: list, columns: list, extra: str = "") -> None:
    """out.json (everything) and out.md (a table of `columns` keys)."""
    out.parent.mkdir(parents=True, exist_ok=True)
    out.with_suffix(".json").write_text(json.dumps({"meta": meta_, "rows": rows}, indent=2))
    lines = [f"# {title}", "", ", ".join(f"{k}={v}" for k, v in meta_.items()), "",
             "| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    for r in rows:
        cells = [f"{r.get(c, ''):.3f}" if isinstance(r.get(c), float) else str(r.get(c, ''))
                 for c in columns]
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
