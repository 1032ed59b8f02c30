"""SketchPolicy: the search loop (Ansor). Each round: train the cost model on everything
measured -> evolutionary search from the best measured and random candidates -> measure a
batch made of three parts: an epsilon share of random genomes, the model's best among fresh
random samples (a quarter: exploration the model filters), and the best-predicted unmeasured
results of the evolution (the rest, at most a quarter per annotation signature so that unroll
and parallel choices the model has not seen get measured) -> record. Never measures a state
twice; resumes from the records in the task's log.

Why the two extra shares: a pure top-k of the evolution polishes one region for the whole
budget (the model ranks near the measured best well and far from it poorly), and on mm and
conv2d that lost to random search on some seeds (`benchmarks/results/cost_model.md`).

In: a SearchTask and TuningOptions. Out: the best State found (records go to the options'
callbacks, e.g. RecordToFile).
"""

from __future__ import annotations

import math
import random
import time
from dataclasses import dataclass

import numpy as np

from ..errors import KilnError
from .annotate import SketchInfo, random_genome
from .evolve import Candidates, evolutionary_search
from .progress import Progress
from .sketch import generate_sketches


@dataclass
class SearchPolicyParams:
    eps_greedy: float = 0.05
    population: int = 512
    evolution_iterations: int = 4
    sample_init_min: int = 256  # random candidates in each evolution's starting population
    num_best_measured_init: int = 16
    # at most this share of a round's model picks may share one annotation signature (sketch,
    # parallel, unroll, vectorize): the model cannot rank choices it has never seen measured
    signature_share: float = 0.25
    # share of a round given to the best-predicted of fresh random samples (not mutants of
    # the best measured): keeps the search from polishing one region for the whole budget
    sampled_share: float = 0.25
    max_sketches: int = 16
    # start from each sketch's heuristic genome; off when judging the cost model alone
    heuristic_seeds: bool = True


class PreloadMeasuredStates:
    """An init_search_callbacks entry (TVM's): the policy resumes from `filename`'s records of
    its task (never measuring them again, the model warm) before searching."""

    def __init__(self, filename: str):
        self.filename = str(filename)


class SketchPolicy:
    def __init__(self, task, program_cost_model=None, params: SearchPolicyParams | None = None,
                 seed: int | None = None, verbose: int = 1, init_search_callbacks=None):
        from .cost_model import XGBModel
        self.task = task
        self.model = program_cost_model if program_cost_model is not None else XGBModel()
        self.params = params or SearchPolicyParams()
        self.rng = random.Random(seed)
        self.verbose = verbose
        # PreloadMeasuredStates(log): records resumed from besides the measure callbacks' logs
        self.init_search_callbacks = list(init_search_callbacks or [])
        for cb in self.init_search_callbacks:
            if not isinstance(cb, PreloadMeasuredStates):
                raise KilnError(f"init_search_callbacks: kiln knows PreloadMeasuredStates, got "
                                f"{type(cb).__name__}")
        sketches = generate_sketches(task.compute_dag, self.params.max_sketches, task.layout_free,
                                     task.target)
        self.infos = [SketchInfo(task.compute_dag, s, i, task.layout_free)
                      for i, s in enumerate(sketches)]
        self.cands = Candidates(self.infos, self._features, self.model.predict)
        self.measured: set = set()
        self.measured_genomes: list = []  # (cost, genome)
        self.best_cost = math.inf
        self.best_state = None
        self.search_time = 0.0
        self.measure_time = 0.0
        self.interrupted = False
        self.exhausted = False  # the last search found no unmeasured candidate to offer
        self._partial: list = []

    # ------------------------------------------------------------ cost model glue
    def _features(self, states) -> list:
        from .cost_model import get_per_store_features_from_states
        return get_per_store_features_from_states(states, self.task.args)

    # ------------------------------------------------------------ candidates
    def _random_genomes(self, n: int) -> list:
        out = []
        for _ in range(n * 4):
            info = self.rng.choice(self.infos)
            g = random_genome(info, self.rng)
            st = self.cands.state(g)
            if st is not None and st.record_key() not in self.measured:
                out.append(g)
            if len(out) >= n:
                break
        return list(dict.fromkeys(out))

    def _seed_genomes(self) -> list:
        """The heuristic genome of every sketch (register tiles, parallel, vectorized): the
        search starts from good points, so tuning never ends worse than the default."""
        from .heuristic import heuristic_genome
        out = []
        if not self.params.heuristic_seeds:
            return out
        for info in self.infos:
            try:
                g = heuristic_genome(info, self.task.target)
            except KilnError:
                continue
            st = self.cands.state(g)
            if st is not None and st.record_key() not in self.measured:
                out.append(g)
        return out

    def _explore_sketches(self, min_measured: int = 8, per_sketch: int = 2) -> list:
        """Random candidates of sketches measured too little for the model to judge them."""
        seen: dict = {}
        for _, g in self.measured_genomes:
            seen[g.sketch_id] = seen.get(g.sketch_id, 0) + 1
        out = []
        for info in self.infos:
            if seen.get(info.sketch_id, 0) >= min_measured:
                continue
            mine = []
            for _ in range(per_sketch * 3):
                g = random_genome(info, self.rng)
                st = self.cands.state(g)
                if st is not None and st.record_key() not in self.measured:
                    mine.append(g)
                if len(mine) == per_sketch:
                    break
            out += mine
        return out

    def next_batch(self, n: int) -> list:
        """Genomes to measure next."""
        t0 = time.time()
        trained = getattr(self.model, "trained", True)
        if not self.measured_genomes and trained and n > 8:
            # a model trained on other tasks (transfer) already knows what is fast: the
            # first batch is the seeds plus the model's picks instead of random genomes
            seeds = self._seed_genomes()
            picked = evolutionary_search(self.cands, seeds + self._random_genomes(
                self.params.sample_init_min), n, self.measured, self.rng,
                self.params.evolution_iterations, self.params.population)
            batch = list(dict.fromkeys(seeds + picked))[:n]
        elif not self.measured_genomes or not trained:
            batch = (self._seed_genomes() + self._random_genomes(n))[:n]
        else:
            batch = self._guided_batch(n)
        self.search_time += time.time() - t0
        return batch

    def _guided_batch(self, n: int) -> list:
        """A round once the model is trained: an eps share of random genomes, the model's
        best among fresh random samples (exploration the model filters), and the rest from
        the evolutionary search around the best measured (exploitation)."""
        p = self.params
        n_rand = max(1, int(round(n * p.eps_greedy)))
        n_sampled = int(n * p.sampled_share)
        fresh = self._random_genomes(p.sample_init_min)
        best = [g for _, g in sorted(self.measured_genomes, key=lambda x: x[0])]
        ranked = evolutionary_search(self.cands, best[:p.num_best_measured_init] + fresh,
                                     4 * n, self.measured, self.rng, p.evolution_iterations,
                                     p.population)
        scores = self.cands.score(fresh)
        sampled = [fresh[i] for i in np.argsort(-scores, kind="stable") if
                   np.isfinite(scores[i])][:n_sampled]
        taken = set(sampled)
        evolved = diversify([g for g in ranked if g not in taken],
                            n - n_rand - len(sampled), p.signature_share)
        extra = self._explore_sketches() + self._random_genomes(n_rand + n // 4 + 2)
        return self._unique(extra[:n_rand] + sampled + evolved + extra[n_rand:])[:n]

    def _unique(self, genomes: list) -> list:
        """Genomes with distinct, unmeasured States, in order."""
        seen, out = set(self.measured), []
        for g in genomes:
            st = self.cands.state(g)
            if st is not None and st.record_key() not in seen:
                seen.add(st.record_key())
                out.append(g)
        return out

    # ------------------------------------------------------------ the loop
    def tune(self, options):
        from .measure import make_measurer
        measurer = make_measurer(options)
        self._resume(list(options.measure_callbacks or []) + self.init_search_callbacks)
        return self.search(options.num_measure_trials, options.early_stopping,
                           options.num_measures_per_round, measurer)

    def search(self, n_trials: int, early_stopping, per_round: int, measurer):
        """Measure up to n_trials new candidates; the best State. A Ctrl-C ends the search
        (self.interrupted is set): what was measured, up to the interrupted batch's last
        stored result, is kept here as it is in the log."""
        progress = Progress(self.task, n_trials, self.verbose)
        trials, last_improve = 0, 0
        self.interrupted = False
        try:
            if n_trials > 0 and self._measure_baseline(measurer):
                trials = last_improve = 1
            while trials < n_trials:
                batch = self.next_batch(min(per_round, n_trials - trials))
                if not batch:
                    self.exhausted = True
                    progress.note("search space exhausted")
                    break
                results = self._measure(measurer, batch)
                trials += len(batch)
                if self._update(batch, results):
                    last_improve = trials
                progress.update(trials, self.best_cost, results, self.search_time,
                                self.measure_time)
                if early_stopping and trials - last_improve >= early_stopping:
                    progress.note(f"early stopping after {trials} trials")
                    break
        except KeyboardInterrupt:
            self.interrupted = True
            for g, res in self._partial:
                self._note(g, self.cands.state(g), res)
            progress.note("interrupted: stopping, every measured record is kept")
        self._partial = []
        progress.done(self.best_cost)
        return self.best_state

    def _measure_baseline(self, measurer) -> bool:
        """Measure the task's baseline State (SearchTask.baseline) unless a record of it is
        already in; whether it was measured now."""
        from .measure import MeasureInput
        st = getattr(self.task, "baseline", None)
        if st is None or st.record_key() in self.measured:
            return False
        t0 = time.time()
        inp = MeasureInput(self.task, st, extra={"baseline": True,
                                                  "flop_ct": self.task.flop_ct})
        (res,) = measurer.measure(self.task, [st], inputs=[inp])
        self.measure_time += time.time() - t0
        tput, _ = self._note(None, st, res)
        self.model.update(self._features([st]), [tput], [self.task.workload_key])
        return True

    def _measure(self, measurer, batch) -> list:
        from .measure import MeasureInput
        t0 = time.time()
        states = [self.cands.state(g) for g in batch]
        inputs = [MeasureInput(self.task, s, extra={"genome": _genome_json(g),
                                                    "flop_ct": self.task.flop_ct})
                  for s, g in zip(states, batch)]
        self._partial = []  # (genome, result) of this batch, as each reaches the log
        results = measurer.measure(self.task, [i.state for i in inputs], inputs=inputs,
                                   on_result=lambda i, r: self._partial.append((batch[i], r)))
        self.measure_time += time.time() - t0
        return results

    def _note(self, g, st, res) -> tuple[float, bool]:
        """Take one measured result in: (its throughput, whether it is a new best). g is
        None for a state no genome makes (the task's baseline): the evolution skips it."""
        self.measured.add(st.record_key())
        cost = _mean(res.costs) if res.error_no == "ok" else math.inf
        if not math.isfinite(cost):
            return 0.0, False
        if g is not None:
            self.measured_genomes.append((cost, g))
        if cost < self.best_cost:
            self.best_cost, self.best_state = cost, st
            return self.task.flop_ct / cost, True
        return self.task.flop_ct / cost, False

    def _update(self, batch, results) -> bool:
        improved = False
        states = [self.cands.state(g) for g in batch]
        feats, tputs = self.cands.features_of(batch), []
        for g, st, res in zip(batch, states, results):
            tput, better = self._note(g, st, res)
            tputs.append(tput)
            improved |= better
        self._partial = []
        t0 = time.time()
        self.model.update(feats, tputs, [self.task.workload_key] * len(feats))
        self.search_time += time.time() - t0
        return improved

    def _resume(self, callbacks) -> None:
        """Warm start from the records of this task already in the callbacks' log files."""
        from .resume import records_for_task
        states, costs, genomes = records_for_task(self.task, callbacks, self.infos)
        if not states:
            return
        feats = self._features(states)
        tputs = [self.task.flop_ct / c if math.isfinite(c) else 0.0 for c in costs]
        self.model.update(feats, tputs, [self.task.workload_key] * len(feats))
        for st, c, g in zip(states, costs, genomes):
            self.measured.add(st.record_key())
            if math.isfinite(c):
                if g is not None:
                    self.measured_genomes.append((c, g))
                if c < self.best_cost:
                    self.best_cost, self.best_state = c, st
        if self.verbose:
            print(f"[kiln] resumed {len(states)} records of {self.task.desc}; best "
                  f"{self.task.flop_ct / self.best_cost / 1e9:.2f} GFLOPS" if
                  math.isfinite(self.best_cost) else f"[kiln] resumed {len(states)} records")


def diversify(ranked: list, n: int, share: float) -> list:
    """The first n of ranked (best first), taking at most share * n genomes of one annotation
    signature before every signature has had its turn; the rest fill up by rank."""
    cap = max(1, int(share * n))
    counts: dict = {}
    first, rest = [], []
    for g in ranked:
        sig = (g.sketch_id, g.parallel, g.unroll, g.vectorize)
        counts[sig] = counts.get(sig, 0) + 1
        (first if counts[sig] <= cap else rest).append(g)
    return (first + rest)[:n]


def _mean(xs) -> float:
    return sum(xs) / len(xs) if xs else math.inf


def _genome_json(g) -> dict:
    return {"sketch": g.sketch_id, "tiles": [list(t) for t in g.tiles],
            "parallel": [list(p) for p in g.parallel], "vectorize": [list(v) for v in g.vectorize],
            "unroll": [list(u) for u in g.unroll], "location": [list(x) for x in g.location]}
