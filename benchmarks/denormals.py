"""A model that runs on denormal floats: kiln with and without flush_denormals, ONNX Runtime
with and without session.set_denormal_as_zero, PyTorch eager; rows interleaved.

The model: EfficientNet-B0 from its transformers config as drawn (every weight, batch-norm
scales too, with std 0.02): each block's output shrinks, and from the middle of the network
on the activations are denormal (the pooled output is exactly zero in every stack). This is
what `flush_denormals` is for; a model with healthy activations runs the same either way.
How much the flush buys depends on the CPU: Intel cores take a microcode assist per denormal
(this model took 2.4 s on an Intel Xeon host in every stack), AMD Zen 5 runs them at full
speed.

    python benchmarks/denormals.py [--repeat 15]

Writes benchmarks/results/denormals.{json,md}.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import peers  # noqa: E402
import zoo  # noqa: E402

import kiln  # noqa: E402


def _sessions(path: str, threads: int) -> dict:
    import onnxruntime as ort
    out = {}
    for label, daz in (("ONNX Runtime", False), ("ONNX Runtime, denormals as zero", True)):
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = threads
        if daz:
            opts.add_session_config_entry("session.set_denormal_as_zero", "1")
        out[label] = ort.InferenceSession(path, opts, providers=["CPUExecutionProvider"])
    return out


def main() -> None:
    import onnx
    import torch
    import transformers as T
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--repeat", type=int, default=15)
    p.add_argument("--threads", type=int, default=len(os.sched_getaffinity(0)))
    p.add_argument("--out", default=str(Path(__file__).parent / "results" / "denormals"))
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    model, inputs = zoo._vision(T.EfficientNetModel, T.EfficientNetConfig(), (1, 3, 224, 224),
                                "pooler_output")
    feeds = {k: v.numpy() for k, v in inputs.items()}
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "efficientnet.onnx")
        zoo._export(model, inputs, path, False)
        sessions = _sessions(path, args.threads)
        graph, params = kiln.frontend.from_onnx(onnx.load(path))
    ref = sessions["ONNX Runtime"].run(None, feeds)[0]
    fns, outs = {}, {}
    for flush in (False, True):
        lib = kiln.graph.build(graph, params, target="cpu", flush_denormals=flush)
        fns[f"kiln, flush_denormals={flush}"] = (
            lambda lib=lib: list(lib.run(**dict(zip(lib.input_names, feeds.values())))
                                 .values())[0])
    for label, sess in sessions.items():
        fns[label] = lambda sess=sess: sess.run(None, feeds)[0]
    with torch.no_grad():
        fns["PyTorch eager"] = lambda: model(*inputs.values()).numpy()
        for name, fn in fns.items():
            outs[name] = fn()
        samples = peers.interleaved(fns, args.repeat, 1, 0.2, warm=1)
    rows = []
    for name, secs in samples.items():
        rows.append({"name": name, "median_ms": statistics.median(secs) * 1e3,
                     "min_ms": min(secs) * 1e3, "max_ms": max(secs) * 1e3,
                     "max_abs_err_vs_ort": float(np.abs(outs[name] - ref).max())})
    meta = {**peers.meta(args), "target": str(kiln.target.Target("cpu")),
            "loadavg": round(os.getloadavg()[0], 2),
            "output_abs_max": float(np.abs(ref).max())}
    peers.write(Path(args.out), "EfficientNet-B0 on denormal floats (config initialisation)",
                meta, rows, ["name", "median_ms", "min_ms", "max_ms", "max_abs_err_vs_ort"],
                fmt={"max_abs_err_vs_ort": ".1e", "median_ms": ".1f", "min_ms": ".1f",
                     "max_ms": ".1f"})


if __name__ == "__main__":
    main()
