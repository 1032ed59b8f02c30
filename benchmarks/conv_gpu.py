"""ResNet-50's convolutions on an NVIDIA GPU: kiln's default conv schedule vs cuDNN.

Each layer (batch 1, float32, bias and ReLU fused) is built with kiln.topi.cuda.schedule_auto
(the direct convolution of kiln.topi.cuda_conv, tiles from its static estimate), checked
against a float64 reference (relative error <= 1e-5), then timed in the same process as
torch.nn.functional.conv2d + bias + relu (cuDNN, TF32 off, cudnn.benchmark on), the torch rows
both eager and replayed from a CUDA graph (the faster one is the peer). Rows are interleaved
round by round; CUDA events around `--number` launches; medians with min-max over `--repeat`
rounds.

    python benchmarks/conv_gpu.py [--repeat 10] [--number 50]

Writes benchmarks/results/conv_gpu.{json,md} (or --out). `--smoke`: two small layers with few
launches, to check the script on the emulated GPU of the tests (tests/gpu_stub.py); a
PyTorch without CUDA leaves the torch rows out.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import statistics
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).parent))

import kiln  # noqa: E402
from kiln import te, topi  # noqa: E402
from kiln.topi import cuda as tc  # noqa: E402
from kiln.topi import cuda_conv  # noqa: E402

# (name, in channels, size, out channels, kernel, stride, padding)
LAYERS = [("stem 7x7/2", 3, 224, 64, 7, 2, 3), ("3x3 64 @56", 64, 56, 64, 3, 1, 1),
          ("1x1 64->256 @56", 64, 56, 256, 1, 1, 0), ("3x3 128 @28", 128, 28, 128, 3, 1, 1),
          ("3x3 256 @14", 256, 14, 256, 3, 1, 1), ("1x1 1024->256 @14", 1024, 14, 256, 1, 1, 0),
          ("3x3 512 @7", 512, 7, 512, 3, 1, 1)]
SMOKE = [("3x3 16 @14", 16, 14, 16, 3, 1, 1), ("1x1 32->64 @8", 32, 8, 64, 1, 1, 0)]


def layer(c: int, hw: int, o: int, k: int, stride: int, pad: int):
    data = te.placeholder((1, c, hw, hw), name="data")
    kern = te.placeholder((o, c, k, k), name="kern")
    bias = te.placeholder((o,), name="bias")
    conv = topi.conv2d_nchw(data, kern, stride, pad)
    out = te.compute(conv.shape, lambda n, f, y, x: te.max(conv[n, f, y, x] + bias[f], 0.0),
                     name="bias_relu")
    return [data, kern, bias, out], conv, out


def reference(x, w, b, stride: int, pad: int) -> np.ndarray:
    xp = np.pad(x.astype(np.float64), ((0, 0), (0, 0), (pad, pad), (pad, pad)))
    k, oh = w.shape[2], (x.shape[2] + 2 * pad - w.shape[2]) // stride + 1
    acc = sum(np.einsum("nchw,oc->nohw", xp[:, :, i:i + stride * oh:stride,
                                            j:j + stride * oh:stride], w[:, :, i, j])
              for i in range(k) for j in range(k))
    return np.maximum(acc + b[None, :, None, None], 0)


def build(spec, target: str):
    _, c, hw, o, k, stride, pad = spec
    args, conv, out = layer(c, hw, o, k, stride, pad)
    s = te.create_schedule(out.op)
    assert tc.schedule_auto(s, out, target) == "conv"
    tiles = cuda_conv.conv_tiles(conv, target)
    return kiln.build(s, args, target="cuda"), tiles, [tuple(int(d.value) for d in t.shape)
                                                       for t in args]


def check(f, shapes, spec, rng) -> float:
    x, w, b = (rng.standard_normal(sh, dtype=np.float32) for sh in shapes[:3])
    out = np.full(shapes[3], np.nan, np.float32)
    f(x, w, b, out)
    want = reference(x, w, b, spec[5], spec[6])
    err = float(np.linalg.norm(out - want) / np.linalg.norm(want))
    if not np.isfinite(err) or err > 1e-5:
        raise SystemExit(f"kiln {spec[0]} is wrong: relative error {err}")
    return err


def torch_timers(torch, spec, shapes, number: int) -> dict:
    import torch.nn.functional as F
    from peers import cuda_step_timers
    x, w, b = (torch.randn(sh, device="cuda") for sh in shapes[:3])
    out = torch.empty(shapes[3], device="cuda")

    def step():
        torch.relu(F.conv2d(x, w, b, spec[5], spec[6]), out=out)

    for _ in range(3):  # cudnn.benchmark picks its algorithm here
        step()
    return cuda_step_timers(torch, step, number)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--repeat", type=int, default=10)
    p.add_argument("--number", type=int, default=50)
    p.add_argument("--smoke", action="store_true")
    p.add_argument("--out", default=str(Path(__file__).parent / "results" / "conv_gpu"))
    a = p.parse_args()
    layers, number, repeat = (SMOKE, 2, 2) if a.smoke else (LAYERS, a.number, a.repeat)
    dev = kiln.cuda(0)
    target = str(kiln.target.Target("cuda"))
    torch = _torch()
    rng = np.random.default_rng(0)
    timers, meta_layers = {}, []
    for spec in layers:
        t0 = time.time()
        f, tiles, shapes = build(spec, target)
        err = check(f, shapes, spec, rng)
        dev_args = [kiln.nd.array(rng.standard_normal(sh, dtype=np.float32), dev)
                    for sh in shapes[:3]] + [kiln.nd.empty(shapes[3], "float32", dev)]
        ev = f.time_evaluator(number=number, repeat=1)
        timers[(spec[0], "kiln")] = lambda ev=ev, d=dev_args: ev(*d).results[0]
        if torch is not None:
            for how, fn in torch_timers(torch, spec, shapes, number).items():
                timers[(spec[0], f"cuDNN {how}")] = fn
        meta_layers.append({"layer": spec[0], "tiles": tiles, "rel_err": err,
                            "build_s": time.time() - t0})
        print(f"{spec[0]}: tiles {tiles}, relative error {err:.1e}", flush=True)
    samples = {key: [] for key in timers}
    for _ in range(repeat):  # interleaved: every row once per round
        for key, fn in timers.items():
            samples[key].append(fn())
    rows = report(samples, layers)
    write(Path(a.out), {"device": kiln.runtime.cuda.device_properties()["name"],
                        "target": target, "date": time.strftime("%Y-%m-%d %H:%M"),
                        "loadavg": os.getloadavg()[0], "repeat": repeat, "number": number,
                        "torch": getattr(torch, "__version__", None), "layers": meta_layers},
          rows)


def _torch():
    try:
        import torch
    except ImportError:
        return None
    if not torch.cuda.is_available():
        return None
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    torch.backends.cudnn.benchmark = True
    return torch


def report(samples: dict, layers: list) -> list:
    rows = []
    for spec in layers:
        name, c, hw, o, k, stride, _ = spec
        oh = -(-hw // stride)
        flops = 2 * o * oh * oh * c * k * k
        med = {how: statistics.median(v) for (n, how), v in samples.items() if n == name}
        peer = min((v for how, v in med.items() if how.startswith("cuDNN")), default=math.nan)
        for (n, how), v in samples.items():
            if n != name:
                continue
            m = med[how]
            rows.append({"layer": name, "impl": how, "median_us": m * 1e6,
                         "min_us": min(v) * 1e6, "max_us": max(v) * 1e6,
                         "tflops": flops / m / 1e12, "vs_cudnn": peer / m})
            print(f"{name:20s} {how:14s} {m * 1e6:9.2f} us [{min(v) * 1e6:.2f}-"
                  f"{max(v) * 1e6:.2f}] {flops / m / 1e12:6.2f} TFLOPS {peer / m:5.2f}x cuDNN",
                  flush=True)
    return rows


def write(out: Path, meta: dict, rows: list) -> None:
    out.parent.mkdir(parents=True, exist_ok=True)
    out.with_suffix(".json").write_text(json.dumps({"meta": meta, "rows": rows}, indent=2))
    lines = [f"# ResNet-50 convolutions (batch 1, float32, bias + ReLU) on {meta['device']} "
             f"({meta['target']})", "",
             f"{meta['date']}, torch {meta['torch']}, load average {meta['loadavg']:.2f}; "
             f"medians of {meta['repeat']} interleaved rounds x {meta['number']} launches "
             "(CUDA events). kiln: the default conv schedule (untuned); cuDNN: "
             "F.conv2d + relu, TF32 off, eager and CUDA-graph replay.", "",
             "| layer | implementation | median us | min-max us | TFLOPS | vs cuDNN |",
             "|---|---|---:|---:|---:|---:|"]
    lines += [f"| {r['layer']} | {r['impl']} | {r['median_us']:.2f} | {r['min_us']:.2f}-"
              f"{r['max_us']:.2f} | {r['tflops']:.2f} | {r['vs_cudnn']:.2f}x |" for r in rows]
    lines += ["", "Tiles chosen (topi.cuda_conv.conv_tiles):", ""]
    lines += [f"- {m['layer']}: {m['tiles']}" for m in meta["layers"]]
    out.with_suffix(".md").write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
