"""BERT-base import check: both frontends + the pass pipeline on a full-size (random) BERT.

In: nothing (BertModel(BertConfig()) with random weights, batch 1, sequence 128; no download).
Out: printed import times, node counts and op histograms before/after the pass pipeline for
the ONNX and the PyTorch import, and the max abs error of the NumPy reference interpreter
(tests/graph/graph_interp.py) against ONNX Runtime / PyTorch. Not a test and not a timing
benchmark: it shows what the graph compiler will be handed for the model that matters.

    .venv/bin/python benchmarks/bert_import_check.py [--seq 128] [--no-interp]
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
import warnings

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path[:0] = [ROOT, os.path.join(ROOT, "tests", "graph")]

from kiln.graph.frontend import from_onnx, from_pytorch  # noqa: E402
from kiln.graph.passes import default_pipeline, op_histogram  # noqa: E402

KEY_OPS = ("dense", "batch_matmul", "matmul", "layer_norm", "gelu", "softmax", "reshape",
           "transpose", "add", "multiply", "take", "strided_slice")


def bert_base(seq: int):
    import torch

    from kiln.models import bert_module
    model, cfg = bert_module("bert-base", 0)
    ids = torch.from_numpy(np.random.RandomState(0).randint(0, cfg.vocab_size, (1, seq)))
    return model, ids


def histogram_line(g) -> str:
    h = op_histogram(g)
    compute = sum(v for k, v in h.items() if k not in ("input", "const"))
    keys = ", ".join(f"{k}={h.get(k, 0)}" for k in KEY_OPS)
    rest = ", ".join(f"{k}={v}" for k, v in sorted(h.items())
                     if k not in KEY_OPS and k not in ("input", "const"))
    return f"{compute} compute nodes, {h.get('const', 0)} consts | {keys}" + \
        (f" | other: {rest}" if rest else "")


def report(label: str, g, t_import: float, feeds: dict, ref, interp: bool) -> None:
    t0 = time.perf_counter()
    opt = default_pipeline(g)
    t_pass = time.perf_counter() - t0
    print(f"\n[{label}] import {t_import:.1f}s, passes {t_pass:.1f}s")
    print(f"  imported : {histogram_line(g)}")
    print(f"  optimised: {histogram_line(opt)}")
    print(f"  +combine : {histogram_line(default_pipeline(g, combine_dense=True))}")
    if interp:
        from graph_interp import run_graph
        out = run_graph(opt, feeds)[0]
        print(f"  interpreter vs reference: max abs err {np.abs(out - ref).max():.3g}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seq", type=int, default=128)
    ap.add_argument("--no-interp", action="store_true", help="skip the NumPy interpreter run")
    args = ap.parse_args()
    import onnx
    import onnxruntime as ort
    import torch

    model, ids = bert_base(args.seq)
    with torch.no_grad():
        torch_ref = model(ids).numpy()
    path = os.path.join(tempfile.gettempdir(), f"kiln_bert_base_{args.seq}.onnx")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(model, (ids,), path, dynamo=False, opset_version=17,
                          input_names=["input_ids"], output_names=["last_hidden_state"],
                          dynamic_axes={"input_ids": {0: "batch", 1: "seq"}})
    feeds = {"input_ids": ids.numpy()}
    ort_ref = ort.InferenceSession(path).run(None, feeds)[0]
    print(f"BERT-base, batch 1, seq {args.seq}; ORT vs torch max abs err "
          f"{np.abs(ort_ref - torch_ref).max():.3g}")

    t0 = time.perf_counter()
    g, _ = from_onnx(onnx.load(path), shape={"input_ids": (1, args.seq)})
    report("ONNX opset 17", g, time.perf_counter() - t0, feeds, ort_ref, not args.no_interp)

    t0 = time.perf_counter()
    g, _ = from_pytorch(model, (ids,))
    report("PyTorch torch.export", g, time.perf_counter() - t0, feeds, torch_ref,
           not args.no_interp)


if __name__ == "__main__":
    main()
