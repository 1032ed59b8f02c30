"""The live progress line of a tuning run (quiet with verbose=0)."""

from __future__ import annotations

import math
import sys
import time


class Progress:
    def __init__(self, task, n_trials: int, verbose: int):
        self.task, self.n_trials, self.verbose = task, n_trials, verbose
        self.t0 = time.time()
        self.errors: dict = {}

    def update(self, trials: int, best_cost: float, results, search_s: float,
               measure_s: float) -> None:
        for r in results:
            if r.error_no != "ok":
                self.errors[r.error_no] = self.errors.get(r.error_no, 0) + 1
        if not self.verbose:
            return
        el = time.time() - self.t0
        eta = el / max(trials, 1) * (self.n_trials - trials)
        gf = self.task.flop_ct / best_cost / 1e9 if math.isfinite(best_cost) else 0.0
        errs = ", ".join(f"{k} {v}" for k, v in sorted(self.errors.items())) or "none"
        print(f"[kiln] {self.task.desc}: {trials}/{self.n_trials} trials | best {gf:.2f} GFLOPS "
              f"({best_cost * 1e3:.4f} ms) | errors: {errs} | search {search_s:.0f}s measure "
              f"{measure_s:.0f}s | elapsed {el:.0f}s, left ~{eta:.0f}s", file=sys.stderr,
              flush=True)

    def note(self, msg: str) -> None:
        if self.verbose:
            print(f"[kiln] {self.task.desc}: {msg}", file=sys.stderr, flush=True)

    def done(self, best_cost: float) -> None:
        if self.verbose and math.isfinite(best_cost):
            gf = self.task.flop_ct / best_cost / 1e9
            self.note(f"done: best {best_cost * 1e3:.4f} ms, {gf:.2f} GFLOPS")
