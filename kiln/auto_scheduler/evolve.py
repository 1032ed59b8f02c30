"""Evolutionary search over genomes, guided by a cost model (Ansor's fine-tuning stage).

In: sketch infos, a starting population (best measured genomes + random ones), a scoring
function over States (the cost model), the keys already measured. Out: the best-predicted
new States. Mutations (Mutate* rules):
  MutateTileSize       move a factor between two parts of one split (outer part included)
  MutateAutoUnroll     pick another auto_unroll_max_step
  MutateParallel       fuse and parallelise a different number of outer loops
  MutateVectorize      toggle vectorisation of one stage's innermost loop
  MutateComputeLocation  move a free stage to another loop of its consumer (or root)
Crossover takes each choice from one of two parents of the same sketch.
"""

from __future__ import annotations

import math
import random
from dataclasses import replace

import numpy as np

from ..errors import KilnError
from .annotate import UNROLL_CHOICES, Genome, SketchInfo, divisors, materialize


def _factor_out(n: int, rng: random.Random) -> int:
    ds = [d for d in divisors(n) if d > 1]
    return rng.choice(ds) if ds else 1


def mutate_tile_size(info: SketchInfo, g: Genome, rng: random.Random) -> Genome:
    if not g.tiles:
        return g
    k = rng.randrange(len(g.tiles))
    lengths = list(g.tiles[k])
    outer = info.extents[k] // math.prod(lengths)
    parts = [outer] + lengths  # part 0 is the implicit outer extent
    src = rng.choice([i for i, p in enumerate(parts) if p > 1] or [0])
    dst = rng.choice([i for i in range(len(parts)) if i != src])
    f = _factor_out(parts[src], rng)
    parts[src] //= f
    parts[dst] *= f
    if parts[-1] > 64:
        return g
    tiles = list(g.tiles)
    tiles[k] = tuple(parts[1:])
    return replace(g, tiles=tuple(tiles))


def _mutate_field(g: Genome, name: str, fn, rng: random.Random) -> Genome:
    items = list(getattr(g, name))
    if not items:
        return g
    k = rng.randrange(len(items))
    items[k] = (items[k][0], fn(items[k][1]))
    return replace(g, **{name: tuple(items)})


def mutate_unroll(info, g, rng):
    return _mutate_field(g, "unroll", lambda v: rng.choice(UNROLL_CHOICES), rng)


def mutate_parallel(info, g, rng):
    return _mutate_field(g, "parallel", lambda v: max(1, v + rng.choice((-1, 1))), rng)


def mutate_vectorize(info, g, rng):
    return _mutate_field(g, "vectorize", lambda v: not v, rng)


def mutate_location(info, g, rng):
    return _mutate_field(g, "location", lambda v: max(-1, v + rng.choice((-1, 1, 2))), rng)


MUTATIONS = [(mutate_tile_size, 0.55), (mutate_unroll, 0.15), (mutate_parallel, 0.1),
             (mutate_vectorize, 0.1), (mutate_location, 0.1)]


def mutate(info: SketchInfo, g: Genome, rng: random.Random) -> Genome:
    fns, weights = zip(*MUTATIONS)
    return rng.choices(fns, weights)[0](info, g, rng)


def crossover(a: Genome, b: Genome, rng: random.Random) -> Genome:
    pick = lambda x, y: tuple(p if rng.random() < 0.5 else q for p, q in zip(x, y))
    return Genome(a.sketch_id, pick(a.tiles, b.tiles), pick(a.parallel, b.parallel),
                  pick(a.vectorize, b.vectorize), pick(a.unroll, b.unroll),
                  pick(a.location, b.location))


MAX_CACHED = 20000


class Candidates:
    """Genome -> State and features, memoised. Scores are not: the model changes after every
    round (and, under a TaskScheduler, after other tasks' rounds), features never do."""

    def __init__(self, infos, feature_fn, predict_fn):
        self.infos, self.feature_fn, self.predict_fn = infos, feature_fn, predict_fn
        self.states: dict = {}
        self.features: dict = {}

    def state(self, g: Genome):
        if g not in self.states:
            try:
                self.states[g] = materialize(self.infos[g.sketch_id], g)
            except KilnError:
                self.states[g] = None
        return self.states[g]

    def features_of(self, genomes: list) -> list:
        """Features of each genome's State (extracted once; None where it has no State)."""
        if len(self.features) > MAX_CACHED:  # bound memory on long runs (~4 KB each)
            self.states.clear()
            self.features.clear()
        todo = list(dict.fromkeys(g for g in genomes if g not in self.features
                                  and self.state(g) is not None))
        if todo:
            for g, f in zip(todo, self.feature_fn([self.states[g] for g in todo])):
                self.features[g] = f
        return [self.features.get(g) for g in genomes]

    def score(self, genomes: list) -> np.ndarray:
        out = np.full(len(genomes), -math.inf)
        feats = self.features_of(genomes)
        valid = [i for i, f in enumerate(feats) if f is not None]
        if valid:
            out[valid] = self.predict_fn([feats[i] for i in valid])
        return out


def evolutionary_search(cands: Candidates, population: list, n_out: int, measured: set,
                        rng: random.Random, iterations: int = 3, pop_size: int = 128,
                        crossover_prob: float = 0.1) -> list:
    """Best-predicted unmeasured genomes (at most n_out), highest score first."""
    pop = list(dict.fromkeys(population))
    best: dict = {}
    for _ in range(iterations + 1):
        scores = cands.score(pop)
        for g, sc in zip(pop, scores):
            st = cands.state(g)
            if st is not None and np.isfinite(sc) and st.record_key() not in measured:
                best[st.record_key()] = (sc, g)
        pop = _next_generation(cands, pop, scores, rng, pop_size, crossover_prob)
    ranked = sorted(best.values(), key=lambda x: -x[0])
    return [g for _, g in ranked[:n_out]]


def _next_generation(cands, pop, scores, rng, pop_size, crossover_prob) -> list:
    finite = np.where(np.isfinite(scores), scores, np.nan)
    if np.all(np.isnan(finite)):
        weights = np.ones(len(pop))
    else:
        lo = np.nanmin(finite)
        weights = np.nan_to_num(finite - lo, nan=0.0) + 1e-3
    nxt = []
    while len(nxt) < pop_size:
        a = rng.choices(pop, weights)[0]
        if rng.random() < crossover_prob:
            b = rng.choices(pop, weights)[0]
            child = crossover(a, b, rng) if b.sketch_id == a.sketch_id else a
        else:
            child = mutate(cands.infos[a.sketch_id], a, rng)
        nxt.append(child)
    return list(dict.fromkeys(nxt))
