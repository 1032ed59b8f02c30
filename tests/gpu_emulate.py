"""Runs a CUDA-built model (kiln.graph.build(..., target="cuda -arch=...")) on the CPU: every
entry of its launch list goes through the loop-IR interpreter's SIMT mode, over NumPy arrays
laid out exactly as the device buffers are (arena and scratch offsets included). Tests use it
to check the GPU schedules, the launch list and the memory plan without a GPU."""

from __future__ import annotations

import numpy as np
import tir_interp

from kiln.tir import gpu


def _kernels(lib) -> dict:
    out = {}
    for func in lib.functions.values():
        kernels, _ = gpu.split_kernels(func, None)
        for k in kernels:
            out[k.name] = k
    return out


def emulate(lib, inputs: dict) -> dict:
    meta = lib.meta
    mem = {
        "input": [np.ascontiguousarray(inputs[d["name"]], _device_dtype(d)).view(np.uint8)
                  .reshape(-1).copy() for d in meta["inputs"]],
        "output": [np.zeros(_nbytes(d), np.uint8) for d in meta["outputs"]],
        "param": [np.ascontiguousarray(p).view(np.uint8).reshape(-1) for p in lib._params],
        "arena": np.zeros(max(1, meta["workspace_bytes"]), np.uint8),
        "scratch": np.zeros(max(1, meta.get("scratch_bytes", 0)), np.uint8),
    }
    kernels = _kernels(lib)
    for item in meta["launches"]:
        if item[0] == "copy":
            _, dst, src, n = item
            _bytes(mem, dst, n)[:] = _bytes(mem, src, n)
            continue
        kern = kernels[item[1]]
        assert list(kern.grid) == item[2] and list(kern.block) == item[3]
        views = {}
        for buf, ref in zip(kern.buffers, item[4]):
            n = tir_interp.itemsize(buf.dtype) * max(buf.size, 1)
            views[buf.uid] = _bytes(mem, ref, n).view(tir_interp.np_dtype(buf.dtype))
        tir_interp.run_kernel(kern, views)
    return {d["name"]: o.view(_device_dtype(d)).reshape(d["shape"]).astype(d["dtype"])
            for d, o in zip(meta["outputs"], mem["output"])}


def _device_dtype(d) -> np.dtype:
    """An input's or output's dtype on the device (float16 models compute in float32)."""
    return np.dtype("bool" if d["dtype"] == "bool" else d.get("carried", d["dtype"]))


def _bytes(mem, ref, n):
    kind, index = ref
    if kind in ("arena", "scratch"):
        return mem[kind][int(index):int(index) + n]
    return mem[kind][int(index)][:n]


def _nbytes(d) -> int:
    n = _device_dtype(d).itemsize
    for s in d["shape"]:
        n *= int(s)
    return n
