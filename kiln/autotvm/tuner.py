"""Tuners over a template's config space (TVM's autotvm.tuner).

In: a Task; `tune(n_trial, measure_option, early_stopping, callbacks)`.
Out: measured configs (reported to the callbacks batch by batch), `best_config`,
`best_flops`.
Why: the four strategies TVM users know: RandomTuner and GridSearchTuner, GATuner (a
genetic search on the knob vectors) and XGBTuner (a boosted-tree model of the measured
configs proposes the next ones). XGBTuner's "itervar" / "curve" features are kiln's program
features of each config's lowered loop nest (the auto-scheduler's cost model, the same
XGBoost code); "knob" uses the knob values themselves.
"""

from __future__ import annotations

import logging

import numpy as np

from ..errors import KilnError
from .measure import MeasureErrorNo, MeasureInput, make_measurer

logger = logging.getLogger("autotvm")


class Tuner:
    """The tuning loop; subclasses choose the configs (next_batch) and learn (update)."""

    def __init__(self, task, seed: int = 0, **_):
        self.task, self.space = task, task.config_space
        if len(self.space) == 0:
            raise KilnError(f"task {task.name} has an empty config space")
        self.rng = np.random.default_rng(seed)
        self.visited: set = set()
        self.best_config, self.best_flops, self.best_measure_pair = None, 0.0, None
        self.best_iter = 0

    def has_next(self) -> bool:
        return len(self.visited) < len(self.space)

    def next_batch(self, batch_size: int) -> list:
        raise NotImplementedError

    def update(self, inputs: list, results: list) -> None:
        """Learn from measured configs (nothing for the model-free tuners)."""

    def _score(self, res) -> float:
        """FLOPS of a result (1 / seconds when the task's FLOPs are unknown); 0 for errors."""
        if res.error_no != MeasureErrorNo.NO_ERROR or not res.costs:
            return 0.0
        cost = sum(res.costs) / len(res.costs)
        return (self.task.flop or 1.0) / cost

    def tune(self, n_trial: int, measure_option: dict, early_stopping: int | None = None,
             callbacks=(), si_prefix: str = "G") -> None:
        """Measure up to `n_trial` configs, `callbacks(tuner, inputs, results)` per batch;
        stop early after `early_stopping` trials without a better config."""
        measurer = make_measurer(self.task, measure_option)
        batch = max(4, 2 * measurer.n_parallel)
        done = 0
        try:
            while done < n_trial and self.has_next():
                configs = self.next_batch(min(batch, n_trial - done))
                if not configs:
                    break
                self.visited.update(c.index for c in configs)
                results = measurer.measure(configs)
                inputs = [MeasureInput(self.task.target, self.task, c) for c in configs]
                self._track(inputs, results, done)
                done += len(results)
                self.update(inputs, results)
                for cb in callbacks:
                    cb(self, inputs, results)
                if early_stopping is not None and done >= self.best_iter + early_stopping:
                    logger.debug("Early stopped. Best iter: %d.", self.best_iter)
                    break
        finally:
            measurer.close()

    def _track(self, inputs, results, done: int) -> None:
        for k, (inp, res) in enumerate(zip(inputs, results, strict=True)):
            flops = self._score(res)
            if flops > self.best_flops:
                self.best_flops, self.best_config = flops, inp.config
                self.best_measure_pair, self.best_iter = (inp, res), done + k
            logger.debug("No: %d\tGFLOPS: %.2f/%.2f\tresult: %s\t%s", done + k + 1,
                         flops / 1e9, self.best_flops / 1e9, res, inp.config)

    def _random_unvisited(self, n: int, exclude: set = frozenset()) -> list:
        size, out, seen = len(self.space), [], set(exclude)
        if size - len(self.visited) <= 4 * n:  # nearly exhausted: enumerate what is left
            left = [i for i in range(size) if i not in self.visited and i not in seen]
            self.rng.shuffle(left)
            return left[:n]
        while len(out) < n:
            i = int(self.rng.integers(size))
            if i not in self.visited and i not in seen:
                seen.add(i)
                out.append(i)
        return out


class RandomTuner(Tuner):
    """Configs drawn at random, each at most once (`range_idx`: only indices in [lo, hi])."""

    def __init__(self, task, range_idx=None, seed: int = 0, **kw):
        super().__init__(task, seed, **kw)
        if range_idx is not None:
            lo, hi = range_idx
            self.visited |= set(range(0, lo)) | set(range(hi + 1, len(self.space)))

    def next_batch(self, batch_size: int) -> list:
        return [self.space.get(i) for i in self._random_unvisited(batch_size)]


class GridSearchTuner(Tuner):
    """Configs in index order."""

    def __init__(self, task, **kw):
        super().__init__(task, **kw)
        self.counter = 0

    def next_batch(self, batch_size: int) -> list:
        out = []
        while len(out) < batch_size and self.counter < len(self.space):
            out.append(self.space.get(self.counter))
            self.counter += 1
        return out


class GATuner(Tuner):
    """A genetic search on knob vectors: elites kept, parents drawn by fitness, uniform
    crossover, each gene mutated with `mutation_prob`."""

    def __init__(self, task, pop_size: int = 100, elite_num: int = 3,
                 mutation_prob: float = 0.1, seed: int = 0, **kw):
        super().__init__(task, seed, **kw)
        self.pop_size = min(pop_size, len(self.space))
        self.elite_num, self.mutation_prob = min(elite_num, self.pop_size), mutation_prob
        self.dims = self.space.dims
        self.queue = self._random_unvisited(self.pop_size)
        self.scores: dict = {}  # index -> fitness

    def next_batch(self, batch_size: int) -> list:
        out = []
        while len(out) < batch_size and self.has_next():
            if not self.queue:
                self.queue = self._next_generation()
            i = self.queue.pop(0)
            if i not in self.visited and all(c.index != i for c in out):
                out.append(self.space.get(i))
        return out

    def update(self, inputs, results) -> None:
        for inp, res in zip(inputs, results, strict=True):
            self.scores[inp.config.index] = self._score(res)

    def _next_generation(self) -> list:
        ranked = sorted(self.scores, key=self.scores.get, reverse=True)[:self.pop_size]
        if not ranked:
            return self._random_unvisited(self.pop_size)
        fit = np.array([self.scores[i] for i in ranked]) + 1e-12
        prob = fit / fit.sum()
        children, tries = [], 0
        while len(children) < self.pop_size and tries < 20 * self.pop_size:
            tries += 1
            a, b = (self.space.point2knob(ranked[k]) for k in
                    self.rng.choice(len(ranked), 2, p=prob))
            child = [x if self.rng.random() < 0.5 else y for x, y in zip(a, b, strict=True)]
            child = [int(self.rng.integers(n)) if self.rng.random() < self.mutation_prob
                     else g for g, n in zip(child, self.dims, strict=True)]
            idx = self.space.knob2point(child)
            if idx not in self.visited and idx not in children:
                children.append(idx)
        if len(children) < self.pop_size:
            children += self._random_unvisited(self.pop_size - len(children), set(children))
        return children


class XGBTuner(Tuner):
    """Model-based: the first `plan_size` configs at random, then the configs a boosted-tree
    model of all measurements ranks best (among random and mutated candidates), with a
    share `eps_greedy` still drawn at random."""

    def __init__(self, task, plan_size: int = 64, feature_type: str = "itervar",
                 loss_type: str = "reg", num_threads: int | None = None,
                 optimizer: str = "sa", diversity_filter_ratio=None, log_interval: int = 50,
                 eps_greedy: float = 0.05, seed: int = 0, **kw):
        super().__init__(task, seed, **kw)
        if feature_type not in ("itervar", "knob", "curve"):
            raise KilnError(f"XGBTuner feature_type {feature_type!r}: use 'itervar', 'knob' "
                            "or 'curve'")
        from ..auto_scheduler.cost_model import XGBModel
        self.model = XGBModel(nthread=num_threads or 2, seed=seed)
        self.plan_size, self.feature_type, self.eps = plan_size, feature_type, eps_greedy
        self.xs: list = []  # features, scores and indices of the measured configs
        self.ys: list = []
        self.measured: list = []
        self.plan: list = []
        self.trained_at = 0

    def next_batch(self, batch_size: int) -> list:
        out: list = []
        while len(out) < batch_size and self.has_next():
            taken = {c.index for c in out}
            if self.plan and self.rng.random() >= self.eps:
                i = self.plan.pop(0)
                if i in self.visited or i in taken:
                    continue
            else:
                got = self._random_unvisited(1, taken)
                if not got:
                    break
                i = got[0]
            out.append(self.space.get(i))
        return out

    def update(self, inputs, results) -> None:
        for inp, res in zip(inputs, results, strict=True):
            self.xs.append(self._features(inp.config))
            self.ys.append(self._score(res))
            self.measured.append(inp.config.index)
        if len(self.xs) >= self.plan_size and len(self.xs) >= self.trained_at + \
                max(8, self.plan_size // 4):
            self.model.update(self.xs[self.trained_at:], self.ys[self.trained_at:],
                              [self.task.workload] * (len(self.xs) - self.trained_at))
            self.trained_at = len(self.xs)
            self.plan = self._make_plan()

    def _make_plan(self) -> list:
        pool = self._random_unvisited(min(4 * self.plan_size, 512))
        best = sorted(range(len(self.ys)), key=lambda k: -self.ys[k])[:8]
        for k in best:  # neighbours of the best: one knob moved
            knob = self.space.point2knob(self.measured[k])
            for _ in range(8):
                d = int(self.rng.integers(len(knob)))
                knob2 = list(knob)
                knob2[d] = int(self.rng.integers(self.space.dims[d]))
                idx = self.space.knob2point(knob2)
                if idx not in self.visited and idx not in pool:
                    pool.append(idx)
        if not pool:
            return []
        scores = self.model.predict([self._features(self.space.get(i)) for i in pool])
        order = np.argsort(-scores)
        return [pool[j] for j in order[:self.plan_size]]

    def _features(self, cfg) -> np.ndarray:
        if self.feature_type == "knob":
            return np.asarray([cfg.get_flatten_feature()], np.float32)
        from ..auto_scheduler.cost_model.features import (
            N_FEATURES,
            get_per_store_features_from_states,
        )
        try:
            sch, tensors = self.task.instantiate(cfg)
        except Exception:  # noqa: BLE001 - a config that fails has no features
            return np.zeros((0, N_FEATURES), np.float32)
        return get_per_store_features_from_states([getattr(sch, "state", sch)], tensors)[0]
