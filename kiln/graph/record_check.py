"""Tuning records checked inside the network: the build keeps what makes the network fastest.

In: a graph and its params, a target and dtype, example inputs (default: random ones), all
under an active `auto_scheduler.ApplyHistoryBest`.
Out: `build_checked(...) -> GraphModule`; its `meta["record_check"]` holds the variant chosen,
the network time of each variant, and per tuned workload its kernel's in-network time with the
record and with the rule-based default, whether the record won there and whether it was kept.
How: the model is built with every record and with none; both libraries' kernels are timed
inside the network (GraphModule.profile), one run per round, alternating; a record loses when
its default is faster by more than `margin` in the median and in 3 of 4 rounds (a kernel's
time swings by 10-15% between runs). Where some lose, a third build keeps only the winners.
The whole networks are then timed in turn, round by round, and the fastest is returned.
Why both steps: the tuner times each kernel alone, and inside the network its inputs, weights
and caches are where the previous kernels left them (bfloat16 BERT-base: each record beat its
default alone, the tuned network was slower than the untuned one, 57.9 against 56.3 ms); but
kernels also change each other's times, so per-kernel verdicts alone made fp32 BERT-base
slower (109.9 against 107.2 ms with every record): only the network's own time decides.
"""

from __future__ import annotations

import time

import numpy as np

from ..auto_scheduler.measure.record import ApplyHistoryBest
from .executable import GraphModule
from .ir import Graph

__all__ = ["build_checked", "random_inputs"]

QUORUM = 0.75  # a kernel's record loses when its default wins in at least this share of rounds


def random_inputs(graph: Graph, seed: int = 0) -> dict:
    """Inputs for timing: standard normal floats, integers in {0, 1} (valid token ids, masks
    and positions) and random booleans."""
    rng = np.random.default_rng(seed)
    out = {}
    for n in graph.inputs:
        shape, dt = tuple(int(d) for d in n.shape), str(n.dtype)
        if dt in ("float16", "float64"):
            out[n.attrs["name"]] = rng.standard_normal(shape).astype(dt)
        elif dt.startswith(("float", "bfloat")):
            out[n.attrs["name"]] = rng.standard_normal(shape).astype(np.float32)
        elif dt == "bool":
            out[n.attrs["name"]] = rng.integers(0, 2, shape).astype(np.bool_)
        else:
            out[n.attrs["name"]] = rng.integers(0, 2, shape).astype(dt)
    return out


def build_checked(graph: Graph, params: dict | None = None, target="cpu",
                  dtype: str = "float32", inputs: dict | None = None, rounds: int = 9,
                  margin: float = 0.03, **options) -> GraphModule:
    """kiln.graph.build under the active ApplyHistoryBest, with the records that make the
    network fastest among: all of them, none, and those whose kernels win inside the
    network (module docstring). `options` go to build (flush_denormals=...)."""
    from .build import build
    ctx = ApplyHistoryBest.current()

    def make():
        return build(graph, params, target=target, dtype=dtype, **options)
    tuned = make()
    keys = {k["name"]: k["key"] for k in tuned.meta["kernels"] if k["tuned"]}
    if ctx is None or not keys:
        tuned.meta["record_check"] = {}
        return tuned
    with ApplyHistoryBest([]):
        default = make()
    feeds = random_inputs(graph) if inputs is None else inputs
    kernels = _verdicts(keys, *_kernel_times(tuned, default, feeds, rounds), margin)
    libs = {"all records": tuned, "no records": default}
    losers = {key for key, r in kernels.items() if not r["wins"]}
    if losers and len(losers) < len(keys):
        rest = [rec for (key, _), recs in ctx.ok.items() if key not in losers for rec in recs]
        with ApplyHistoryBest(rest):
            libs["winning records"] = make()
    network = _network_times(libs, feeds, 2 * rounds)
    choice = min(network, key=network.get)
    for r in kernels.values():
        r["kept"] = choice == "all records" or (choice == "winning records" and r["wins"])
    final = libs[choice]
    final.meta["record_check"] = {"choice": choice, "network_s": network, "kernels": kernels}
    return final


def _verdicts(keys: dict, with_records: dict, without: dict, margin: float) -> dict:
    """Per tuned workload: its kernel's median in-network time with the record and with the
    default, and whether the record wins (its default is not faster by `margin` in the
    median and in QUORUM of the rounds)."""
    out = {}
    for name, key in keys.items():
        t, d = with_records.get(name), without.get(name)
        if not t or not d:
            out[key] = {"kernel": name, "tuned_s": None, "default_s": None, "wins": True}
            continue
        default_wins = sum(b < a * (1.0 - margin) for a, b in zip(t, d))
        loses = default_wins >= QUORUM * len(t) and \
            np.median(d) < np.median(t) * (1.0 - margin)
        out[key] = {"kernel": name, "tuned_s": float(np.median(t)),
                    "default_s": float(np.median(d)), "wins": not loses}
    return out


def _network_times(libs: dict, feeds: dict, rounds: int) -> dict:
    """Median seconds per inference of each library, run in turn round by round."""
    out: dict = {name: [] for name in libs}
    for lib in libs.values():
        lib.run(**feeds)
    for _ in range(rounds):
        for name, lib in libs.items():
            t0 = time.perf_counter()
            lib.run(**feeds)
            out[name].append(time.perf_counter() - t0)
    return {name: float(np.median(v)) for name, v in out.items()}


def _kernel_times(a, b, feeds: dict, rounds: int) -> tuple[dict, dict]:
    """Per kernel name, the in-network seconds per launch of lib a and of lib b, one sample
    per round; a round runs each library once, in turn, so a slow spell of the machine (they
    last seconds here) hits both and the pairs stay comparable."""
    samples: tuple = ({}, {})
    for lib in (a, b):
        lib.run(**feeds)  # warm: weights packed, pages touched
    for _ in range(rounds):
        for lib, out in zip((a, b), samples):
            for name, _, sec in lib.profile(number=1, **feeds):
                out.setdefault(name, []).append(sec)
    return samples
