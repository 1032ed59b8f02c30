"""The runner's child process: loads candidate libraries, checks their outputs, times them.

In: one JSON request per line on stdin ({"cmd": "reference" | "measure", ...}; see
handle_reference / handle_measure). Out: one JSON reply per line on the protocol pipe (the
original stdout; fd 1 is pointed at stderr so that stray prints cannot corrupt the protocol).
Why: generated code may segfault or hang; running it here means the tuner only loses this
process, which the runner notices (EOF or timeout), kills and replaces. The worker never sees
compute graphs: only library paths, argument specs (shape, dtype, output?) and .npy files.
Started by runner.worker_command() (isolated sys.path, parent pid for the watchdog).
"""

from __future__ import annotations

import json
import os
import sys
import threading
import time
import traceback

import numpy as np

from ...runtime.bfloat16 import from_bfloat16, to_bfloat16
from ...runtime.module import Module
from ...schedule.layout import pack_array

_CACHE: dict = {}  # ref dir or seed -> (inputs, reference outputs or None)
INT_HIGH = 4       # integer inputs are drawn from [0, INT_HIGH): small, valid as indices


def random_inputs(specs: list, seed: int) -> list:
    """Deterministic arrays for the input specs (floats in [-1, 1), small ints, bools)."""
    rng = np.random.default_rng(seed)
    out = []
    for s in specs:
        if s["output"]:
            continue
        shape, dtype = tuple(s["shape"]), s["dtype"]
        if dtype == "bool":
            out.append(rng.random(shape) < 0.5)
        elif dtype == "bfloat16":  # its bits, as kernels take them (runtime/bfloat16.py)
            out.append(to_bfloat16(rng.uniform(-1.0, 1.0, size=shape)))
        elif dtype.startswith(("int", "uint")):
            out.append(rng.integers(0, INT_HIGH, size=shape).astype(dtype))
        else:
            out.append(rng.uniform(-1.0, 1.0, size=shape).astype(dtype))
    return out


def fresh_outputs(specs: list) -> list:
    """Output arrays filled with a sentinel (NaN for floats), so unwritten elements show up."""
    outs = []
    for s in specs:
        if s["output"]:
            if s["dtype"] == "bfloat16":
                outs.append(np.full(tuple(s["shape"]), 0x7FC0, dtype=np.uint16))  # NaN
                continue
            dtype = np.dtype("bool" if s["dtype"] == "bool" else s["dtype"])
            fill = np.nan if dtype.kind == "f" else (True if dtype.kind == "b" else 0x5A)
            outs.append(np.full(tuple(s["shape"]), fill, dtype=dtype))
    return outs


def merge_args(specs: list, inputs: list, outputs: list) -> list:
    """Arguments in build order, inputs and outputs interleaved as the specs say."""
    ins, outs = iter(inputs), iter(outputs)
    return [next(outs) if s["output"] else next(ins) for s in specs]


def compare(out: np.ndarray, ref: np.ndarray, rtol: float = 1e-3, atol: float = 1e-4):
    """None if `out` matches `ref`, else a short description of the mismatch.

    Floats: |out - ref| <= rtol * |ref| + atol * max|ref| (atol is relative to the output's
    magnitude); NaN where the reference is not NaN is wrong, infinities must match exactly;
    positions where the reference is NaN are not checked. Other dtypes: exact.
    """
    if out.dtype.kind != "f":
        bad = out != ref
    else:
        o, r = out.astype(np.float64), ref.astype(np.float64)
        finite = np.isfinite(r)
        scale = float(np.abs(r[finite]).max()) if finite.any() else 1.0
        tol = rtol * np.abs(r) + atol * (scale if scale > 0 else 1.0)
        with np.errstate(invalid="ignore"):
            close = np.abs(o - r) <= tol
        bad = ~(close | (np.isinf(r) & (o == r)) | np.isnan(r))
    n_bad = int(np.count_nonzero(bad))
    if n_bad == 0:
        return None
    idx = tuple(int(i) for i in np.argwhere(bad)[0])
    return (f"{n_bad} of {out.size} elements differ from the reference; first at {idx}: "
            f"got {out[idx]!r}, expected {ref[idx]!r}")


def _comparable(out: np.ndarray, ref: np.ndarray, spec: dict) -> tuple:
    """bfloat16 outputs compare as float32 values with bfloat16's precision (8 bits)."""
    if spec["dtype"] != "bfloat16":
        return out, ref, 1e-3, 1e-4
    return from_bfloat16(out), from_bfloat16(ref), 1e-2, 1e-2


def handle_reference(req: dict) -> dict:
    """Run the trusted default schedule; save in{i}.npy / out{i}.npy in req["dir"]."""
    specs = req["specs"]
    inputs = random_inputs(specs, req["seed"])
    outputs = fresh_outputs(specs)
    Module(req["lib"])(*merge_args(specs, inputs, outputs))
    os.makedirs(req["dir"], exist_ok=True)
    for i, a in enumerate(inputs):
        np.save(os.path.join(req["dir"], f"in{i}.npy"), a)
    for i, a in enumerate(outputs):
        np.save(os.path.join(req["dir"], f"out{i}.npy"), a)
    _CACHE[req["dir"]] = (inputs, outputs)
    return {"error_no": "ok", "error_msg": ""}


def _data(req: dict):
    """(inputs, reference outputs or None) for a measure request, cached."""
    key = req.get("ref_dir") or f"seed:{req['seed']}"
    if key not in _CACHE:
        if len(_CACHE) > 4:
            _CACHE.clear()
        specs, d = req["specs"], req.get("ref_dir")
        if d:
            n_in = sum(not s["output"] for s in specs)
            n_out = len(specs) - n_in
            _CACHE[key] = ([np.load(os.path.join(d, f"in{i}.npy")) for i in range(n_in)],
                           [np.load(os.path.join(d, f"out{i}.npy")) for i in range(n_out)])
        else:
            _CACHE[key] = (random_inputs(specs, req["seed"]), None)
    return _CACHE[key]


def handle_measure(req: dict) -> dict:
    """Load, run once, compare with the reference (if any), then time."""
    specs = req["specs"]
    mod = Module(req["lib"])
    inputs, refs = _data(req)
    inputs = [a.copy() for a in inputs]  # a kernel scribbling on its inputs harms only itself
    in_specs = [s for s in specs if not s["output"]]
    inputs = [pack_array(a, [tuple(p) for p in sp["layout"]]) if sp.get("layout") else a
              for a, sp in zip(inputs, in_specs)]
    outputs = fresh_outputs(specs)
    args = merge_args(specs, inputs, outputs)
    mod(*args)
    if refs is not None:
        out_specs = [s for s in specs if s["output"]]
        for spec_i, (out, ref) in enumerate(zip(outputs, refs, strict=True)):
            msg = compare(*_comparable(out, ref, out_specs[spec_i]))
            if msg is not None:
                return {"error_no": "wrong_answer", "error_msg": f"output {spec_i}: {msg}"}
    return {"error_no": "ok", "error_msg": "", "costs": _time(mod, args, req),
            "checked": refs is not None,
            "cache": "flushed" if req.get("flush_args") else "warm"}


def _time(mod: Module, args: list, req: dict) -> list:
    """Seconds per call, one per repeat; the arguments in req["flush_args"] evicted from the
    caches before every call (cold weights, as inside the network)."""
    return list(mod.time_evaluator(number=req["number"], repeat=req["repeat"],
                                   min_repeat_ms=req["min_repeat_ms"],
                                   flush_args=req.get("flush_args") or [])(*args).results)


HANDLERS = {"reference": handle_reference, "measure": handle_measure}


def serve(inp, out) -> None:
    """Answer requests until stdin closes."""
    _reply(out, {"ready": True, "pid": os.getpid()})
    for line in inp:
        if not line.strip():
            continue
        t0 = time.perf_counter()
        try:
            req = json.loads(line)
            reply = HANDLERS[req["cmd"]](req)
        except Exception as err:  # noqa: BLE001 - every failure is a candidate's error
            tb = traceback.format_exception_only(type(err), err)
            reply = {"error_no": "runtime", "error_msg": "".join(tb).strip()}
        reply["run_s"] = time.perf_counter() - t0
        _reply(out, reply)


def _reply(out, obj: dict) -> None:
    out.write(json.dumps(obj) + "\n")
    out.flush()


def watch_parent(parent_pid: int, period: float = 0.25) -> None:
    """End this process as soon as `parent_pid` is no longer our parent (the tuner died, even
    by SIGKILL), also while a generated kernel spins: ctypes calls release the GIL."""
    def loop() -> None:
        while os.getppid() == parent_pid:
            time.sleep(period)
        os._exit(3)
    if parent_pid > 0:
        threading.Thread(target=loop, name="kiln-parent-watchdog", daemon=True).start()


def main(parent_pid: int = 0) -> None:
    watch_parent(parent_pid)
    proto = os.fdopen(os.dup(1), "w")
    os.dup2(2, 1)  # anything generated code or libraries print goes to stderr
    sys.stdout = sys.stderr
    serve(sys.stdin, proto)


if __name__ == "__main__":
    main()
