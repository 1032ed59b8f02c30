"""The GPU search loop of one task: sample knobs, rank with the cost model, measure, learn.

In: a SearchTask with a cuda target, a GpuCostModel (shared across tasks), a builder and a
runner (GpuBuilder / GpuRunner by default; tests pass a fake runner).
Out: `GpuSearchPolicy.tune(options)` measures options.num_measure_trials candidates in rounds
of num_measures_per_round and hands every result to the options' callbacks (RecordToFile
writes ordinary records: the State's steps, the target "cuda -arch=sm_XX", and the knob
values in the record's meta, so a later sitting resumes: measured candidates are not measured
again and the model starts from them). Each round: a population of random and evolved knob
settings (mutation and crossover of the best measured), every one lowered and checked against
the target's limits, ranked by the model, the best unmeasured ones plus an epsilon share of
random ones measured. `stats` says where the time went (search, compile, measure) and how
many trials per minute ran.
Inspection, as TVM users do: `generate_sketches()`, `sample_initial_population(n)`.
"""

from __future__ import annotations

import json
import logging
import math
import os
import random
import time

from ..measure.common import ErrorNo, MeasureInput, MeasureResult
from .features import features
from .model import GpuCostModel
from .space import GpuConfig, GpuSpace

log = logging.getLogger("kiln.auto_scheduler")


class GpuSearchPolicy:
    def __init__(self, task, model: GpuCostModel | None = None, builder=None, runner=None,
                 seed: int = 0, eps: float = 0.1, population: int = 256, verbose: int = 1):
        self.task, self.model = task, model or GpuCostModel(seed)
        self.space = GpuSpace(task.compute_dag, task.target)
        self.builder, self.runner = builder, runner
        self.rng = random.Random(seed)
        self.eps, self.population, self.verbose = eps, population, verbose
        self.measured: dict = {}  # GpuConfig -> mean seconds (inf: failed)
        self.stats = {"search_s": 0.0, "compile_s": 0.0, "measure_s": 0.0, "trials": 0}
        self._feat: dict = {}

    # ------------------------------------------------------------ inspection
    def generate_sketches(self) -> list:
        """The sketch of this task as a State (knobs at their default values)."""
        return [self.space.state(self.space.default())]

    def sample_initial_population(self, n: int) -> list:
        """n random complete States that fit the target."""
        out = []
        for cfg in self._sample(n * 4):
            low = self.space.lowered(cfg, self.task.args)
            if low is not None:
                out.append(low[0])
            if len(out) == n:
                break
        return out

    # ------------------------------------------------------------ the loop
    def _sample(self, n: int) -> list:
        return [self.space.sample(self.rng) for _ in range(n)]

    def _evolved(self, n: int) -> list:
        good = sorted((c for c, t in self.measured.items() if math.isfinite(t)),
                      key=lambda c: self.measured[c])[:16]
        if not good:
            return []
        out = []
        for _ in range(n):
            a = self.rng.choice(good)
            out.append(self.space.crossover(a, self.rng.choice(good), self.rng)
                       if self.rng.random() < 0.3 else self.space.mutate(a, self.rng))
        return out

    def _features(self, cfg: GpuConfig):
        if cfg not in self._feat:
            low = self.space.lowered(cfg, self.task.args)
            self._feat[cfg] = None if low is None else features(self.space, cfg, low[1],
                                                                 low[2])
        return self._feat[cfg]

    def next_batch(self, n: int) -> list:
        """Up to n unmeasured, valid configs: the model's best plus an eps share of random."""
        pool = list(dict.fromkeys([self.space.default()] + self._evolved(self.population // 2)
                                  + self._sample(self.population // 2)))
        pool = [c for c in pool if c not in self.measured and self._features(c) is not None]
        if not pool:
            return []
        scores = self.model.predict([self._features(c) for c in pool])
        ranked = [c for _, c in sorted(zip(scores, range(len(pool))), reverse=True)]
        ranked = [pool[i] for i in ranked]
        n_random = max(1, int(n * self.eps)) if len(ranked) > n else 0
        picked = ranked[:n - n_random]
        rest = ranked[n - n_random:]
        picked += self.rng.sample(rest, min(n_random, len(rest)))
        default = self.space.default()
        if default in pool and default not in picked:  # the untuned schedule is the baseline
            picked = [default] + picked[:n - 1]
        return picked

    # ------------------------------------------------------------ TaskScheduler interface
    @property
    def best_cost(self) -> float:
        return min(self.measured.values(), default=math.inf)

    interrupted = False
    exhausted = False  # the last search found no unmeasured candidate to offer
    _runner_task = None

    def search(self, n_trials: int, early_stopping, per_round: int, measurer) -> None:
        """One TaskScheduler round: measure up to n_trials candidates of this task, results
        to the measurer's callbacks (the CPU measurer's builder and runner are not used: GPU
        candidates go to this policy's GPU builder and runner, shared between tasks)."""
        if self.runner is None or getattr(self.runner, "_task_of", None) is not self.task:
            self._start_runner()
            self.runner._task_of = self.task
        done = 0
        try:
            while done < n_trials:
                t0 = time.time()
                batch = self.next_batch(min(per_round, n_trials - done))
                self.stats["search_s"] += time.time() - t0
                if not batch:
                    self.exhausted = True
                    return
                self._measure(batch, measurer.callbacks)
                done += len(batch)
        except KeyboardInterrupt:
            self.interrupted = True

    def tune(self, options) -> dict:
        """Measure options.num_measure_trials candidates; returns the best (config, seconds)."""
        self._resume(options.measure_callbacks)
        trials, per_round = int(options.num_measure_trials), int(options.num_measures_per_round)
        self._start_runner()
        try:
            while self.stats["trials"] < trials:
                t0 = time.time()
                batch = self.next_batch(min(per_round, trials - self.stats["trials"]))
                self.stats["search_s"] += time.time() - t0
                if not batch:
                    break
                self._measure(batch, options.measure_callbacks)
                if self.verbose:
                    log.info("%s: %s", self.task.desc, self.progress())
        finally:
            if self.builder is not None and hasattr(self.builder, "close"):
                self.builder.close()
        best = min(self.measured.items(), key=lambda kv: kv[1], default=(None, math.inf))
        return {"config": best[0], "seconds": best[1], **self.stats}

    def progress(self) -> str:
        s = self.stats
        best = min(self.measured.values(), default=math.inf)
        busy = s["search_s"] + s["compile_s"] + s["measure_s"]
        per_min = 60 * s["trials"] / busy if busy else 0.0
        return (f"{s['trials']} trials, best {best * 1e6:.2f} us, {per_min:.0f} trials/min "
                f"(search {s['search_s']:.1f} s, compile {s['compile_s']:.1f} s, measure "
                f"{s['measure_s']:.1f} s)")

    def _start_runner(self) -> None:
        """Builder and runner ready for this task (the runner measures the reference)."""
        if self.runner is None:
            from .measure import GpuRunner
            self.runner = GpuRunner()
        if self.builder is None:
            from .measure import GpuBuilder
            self.builder = GpuBuilder()
        from ...codegen import cuda
        ref = self.space.lowered(self.space.default(), self.task.args)
        if ref is None:
            raise RuntimeError(f"{self.task.desc}: the default GPU schedule does not lower")
        (path, kind, msg), = self.builder.build(self.task.target,
                                                [cuda.render(ref[1], self.task.target)])
        if path is None:
            raise RuntimeError(f"{self.task.desc}: the default GPU schedule does not compile: "
                               f"{msg}")
        self.runner.set_task(self.task, (path, ref[2], ref[1]))

    def _measure(self, batch: list, callbacks: list) -> None:
        from ...codegen import cuda
        lowered = [self.space.lowered(c, self.task.args) for c in batch]
        t0 = time.time()
        built = self.builder.build(self.task.target,
                                   [cuda.render(f, self.task.target) for _, f, _ in lowered],
                                   [plan for _, _, plan in lowered])
        t1 = time.time()
        todo = [(i, (p, low[2], low[1])) for i, ((p, kind, _), low)
                in enumerate(zip(built, lowered)) if kind == ErrorNo.OK]
        ran = dict(zip([i for i, _ in todo], self.runner.run([it for _, it in todo])))
        t2 = time.time()
        self.stats["compile_s"] += t1 - t0
        self.stats["measure_s"] += t2 - t1
        results = [ran.get(i) or MeasureResult([], built[i][1], built[i][2], t1 - t0)
                   for i in range(len(batch))]
        inputs = [MeasureInput(self.task, low[0], {"gpu_config": c.to_json()})
                  for c, low in zip(batch, lowered)]
        for cb in callbacks:
            cb(self.task, inputs, results)
        for c, r in zip(batch, results):
            self.measured[c] = r.mean_cost
        self.stats["trials"] += len(batch)
        self.model.update(self.task.workload_key, [self._features(c) for c in batch],
                          [r.mean_cost for r in results])

    def _resume(self, callbacks: list) -> None:
        """Configs (and costs) already in the callbacks' logs: not measured again."""
        from ..measure.record import load_records
        feats, costs = [], []
        for cb in callbacks:
            path = getattr(cb, "filename", None)
            if not path or not os.path.exists(path):
                continue
            records = list(load_records(path))
            for rec in records:
                if rec.workload_key != self.task.workload_key or \
                        rec.target != str(self.task.target):
                    continue
                cfg = _config_of(rec)
                if cfg is None or cfg.kind != self.space.kind or cfg in self.measured:
                    continue
                self.measured[cfg] = rec.mean_cost
                f = self._features(cfg)
                if f is not None:
                    feats.append(f)
                    costs.append(rec.mean_cost)
        if feats:
            self.model.update(self.task.workload_key, feats, costs)
            log.info("%s: resumed %d measured GPU candidates", self.task.desc, len(feats))


def _config_of(rec) -> GpuConfig | None:
    meta = getattr(rec, "meta", None) or {}
    raw = meta.get("gpu_config") if isinstance(meta, dict) else None
    if not raw:
        return None
    raw = dict(raw) if not isinstance(raw, str) else json.loads(raw)
    kind = raw.pop("kind", None)
    if not kind:
        return None
    as_written = GpuConfig(kind, tuple(raw.items()))  # a knob added since: its legacy value
    return GpuConfig(kind, tuple(sorted(as_written.values().items())))
