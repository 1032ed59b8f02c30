"""A stand-in for kiln.auto_scheduler.gpu.measure.GpuRunner on machines without a GPU: each
candidate's loop IR runs in the SIMT interpreter and is checked against the reference (so the
search loop, the records and the error paths are exercised for real), and its "time" comes
from a fixed analytical model of the launch shape (so the cost model has structure to learn).
"""

from __future__ import annotations

import math

import numpy as np
import tir_interp

from kiln.auto_scheduler.measure.common import ErrorNo, MeasureResult, arg_specs
from kiln.tir import gpu


def fake_seconds(task, func, plan) -> float:
    """Launch overhead per kernel plus the work spread over the occupied SMs, penalised for
    small thread tiles (shared-memory traffic per FMA) and idle lanes."""
    kernels, _ = gpu.split_kernels(func, task.target)
    total = 0.0
    for k in kernels:
        blocks = k.grid[0] * k.grid[1] * k.grid[2]
        threads = k.threads
        waves = math.ceil(blocks / (task.target.sm_count * max(1, 2048 // threads)))
        lanes_used = min(1.0, threads / 128)
        total += 2e-6 + waves * 1e-6 / lanes_used
    return total + task.flop_ct / 2e13 * (1 + 4.0 / max(1, _reg_tile(func)))


def _reg_tile(func) -> int:
    from kiln.tir import stmt as S
    sizes = [s.buffer.size for s in S.walk_stmts(func.body)
             if isinstance(s, S.Allocate) and s.buffer.scope == "local"]
    return max(sizes, default=1)


class FakeRunner:
    def __init__(self, check: bool = True, seed: int = 0):
        self.check, self.seed = check, seed
        self.calls = 0

    def set_task(self, task, reference: tuple) -> None:
        self.task = task
        self.specs = arg_specs(task)
        rng = np.random.default_rng(self.seed)
        self.inputs = [rng.standard_normal(sp["shape"]).astype(sp["dtype"])
                       for sp in self.specs if not sp["output"]]
        # the interpreter takes minutes on a full-size task: only when outputs are checked
        self.ref = self._outputs(reference[2]) if self.check else None

    def _outputs(self, func) -> list:
        outs = [np.full(sp["shape"], np.nan, sp["dtype"]) for sp in self.specs if sp["output"]]
        tir_interp.run(func, *self.inputs, *outs)
        return outs

    def run(self, items: list) -> list:
        out = []
        for _path, plan, func in items:
            self.calls += 1
            if self.check:
                got = self._outputs(func)
                if not all(np.allclose(g, r, rtol=1e-4, atol=1e-5)
                           for g, r in zip(got, self.ref)):
                    out.append(MeasureResult([], ErrorNo.WRONG_ANSWER, "fake: wrong"))
                    continue
            out.append(MeasureResult([fake_seconds(self.task, func, plan)], checked=self.check))
        return out
