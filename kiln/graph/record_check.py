"""Tuning records checked inside the network: a record is kept only where it wins there.

In: a graph and its params, a target and dtype, example inputs (default: random ones), all
under an active `auto_scheduler.ApplyHistoryBest`.
Out: `build_checked(...) -> GraphModule`, built with the records that won; its
`meta["record_check"]` says, per tuned workload, the kernel's in-network time with its record
and with the rule-based default, and whether the record was kept.
How: the model is built once with every record and once with none; both libraries' kernels
are timed inside the network (GraphModule.profile), in rounds that alternate between the two;
a record whose default is faster by more than `margin` is dropped, and if any was, the model
is built a third time without those records (builds hit the compile cache).
Why: the tuner times each kernel alone; inside the network its inputs, weights and caches are
where the previous kernels left them. bfloat16 BERT-base: every record beat its default
alone, yet the tuned network was slower than the untuned one (57.9 against 56.3 ms).
"""

from __future__ import annotations

import numpy as np

from ..auto_scheduler.measure.record import ApplyHistoryBest
from .ir import Graph

__all__ = ["build_checked", "random_inputs"]


def random_inputs(graph: Graph, seed: int = 0) -> dict:
    """Inputs for timing: standard normal floats, zeros for integers (valid token ids, masks
    and positions) and False for booleans."""
    rng = np.random.default_rng(seed)
    out = {}
    for n in graph.inputs:
        shape, dt = tuple(int(d) for d in n.shape), str(n.dtype)
        if dt.startswith(("float", "bfloat")):
            out[n.attrs["name"]] = rng.standard_normal(shape).astype(np.float32)
        else:
            out[n.attrs["name"]] = np.zeros(shape, np.bool_ if dt == "bool" else dt)
    return out


def build_checked(graph: Graph, params: dict | None = None, target="cpu",
                  dtype: str = "float32", inputs: dict | None = None, rounds: int = 3,
                  number: int = 5, margin: float = 0.03):
    """kiln.graph.build under the active ApplyHistoryBest, keeping only the records whose
    kernels are faster inside the network than the defaults (module docstring)."""
    from .build import build
    ctx = ApplyHistoryBest.current()

    def make():
        return build(graph, params, target=target, dtype=dtype)
    tuned = make()
    keys = {k["name"]: k["key"] for k in tuned.meta["kernels"] if k["tuned"]}
    if ctx is None or not keys:
        tuned.meta["record_check"] = {}
        return tuned
    with ApplyHistoryBest([]):
        default = make()
    feeds = random_inputs(graph) if inputs is None else inputs
    with_records, without = _kernel_times(tuned, default, feeds, rounds, number)
    report = {}
    for name, key in keys.items():
        t, d = with_records.get(name), without.get(name)
        kept = t is None or d is None or d >= t * (1.0 - margin)
        report[key] = {"kernel": name, "tuned_s": t, "default_s": d, "kept": kept}
    losers = {key for key, r in report.items() if not r["kept"]}
    final = tuned
    if losers:
        rest = [rec for (key, _), recs in ctx.ok.items() if key not in losers for rec in recs]
        with ApplyHistoryBest(rest):
            final = make()
    final.meta["record_check"] = report
    return final


def _kernel_times(a, b, feeds: dict, rounds: int, number: int) -> tuple[dict, dict]:
    """Per kernel name, the median in-network seconds per launch of lib a and of lib b,
    profiled in alternating rounds (a shared slow spell hits both)."""
    samples: tuple = ({}, {})
    for lib in (a, b):
        lib.run(**feeds)  # warm: weights packed, pages touched
    for _ in range(rounds):
        for lib, out in zip((a, b), samples):
            for name, _, sec in lib.profile(number=number, **feeds):
                out.setdefault(name, []).append(sec)
    return tuple({k: float(np.median(v)) for k, v in s.items()} for s in samples)
