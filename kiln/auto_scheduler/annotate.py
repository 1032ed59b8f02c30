"""Random annotation: turn a sketch into complete States (Ansor's Init* rules).

A candidate is kept as a Genome: the sketch it grew from plus every choice annotation made
(tile sizes of each sketch split, how many outer loops each root stage fuses and parallelises,
whether the innermost loop is vectorised, the auto-unroll budget, compute locations of free
stages). materialize(genome) replays the sketch with those choices into a State. Mutation and
crossover (evolve.py) edit genomes, never step lists, so indices in steps stay consistent.

  InitFillTileSize        random factorisation of each tiled extent (innermost part <= 64)
  InitChangeComputeLocation  free producers: root, or at a loop of their single consumer
  InitParallel            fuse 1..n outer spatial loops of root stages, annotate parallel
  InitVectorization       vectorise the innermost spatial loop (extent <= 64)
  InitUnroll              auto_unroll_max_step pragma from {0, 16, 64, 512}
"""

from __future__ import annotations

import functools
import math
import os
import random
from dataclasses import dataclass, field, replace

from ..schedule.steps import SplitStep
from . import analysis as A

UNROLL_CHOICES = (0, 16, 64, 512)
MAX_INNERMOST = 64
MAX_VECTORIZE = 256  # longer vectorized loops print as a loop over vector blocks


@dataclass(frozen=True)
class Genome:
    sketch_id: int
    tiles: tuple  # per sketch SplitStep (in step order): inner lengths
    # per stage index (stage names need not be unique; indices are fixed within a sketch):
    parallel: tuple  # (stage, number of outer loops to fuse + parallelise (0 = none))
    vectorize: tuple  # (stage, bool)
    unroll: tuple  # (stage, auto_unroll_max_step)
    location: tuple = field(default=())  # (free stage, -1 root, else consumer iter index)


@functools.lru_cache(maxsize=4096)
def divisors(n: int) -> tuple:
    return tuple(d for d in range(1, n + 1) if n % d == 0)


class SketchInfo:
    """What annotation needs to know about one sketch."""

    def __init__(self, dag, sketch, sketch_id: int, layout_free: tuple = ()):
        self.dag, self.sketch, self.sketch_id = dag, sketch, sketch_id
        self.layout_free = tuple(layout_free)  # placeholder names whose layout may be rewritten
        self.split_ids = [i for i, s in enumerate(sketch.steps) if isinstance(s, SplitStep)]
        self.extents = [self._split_extent(i) for i in self.split_ids]

    def _split_extent(self, step_id: int) -> int:
        state = self.dag.init_state()
        for s in self.sketch.steps[:step_id]:
            state = state.apply(s)
        step = self.sketch.steps[step_id]
        return state.stages[step.stage_id].iters[step.iter_id].extent


def sample_tiles(extent: int, n: int, rng: random.Random) -> tuple:
    """n inner lengths whose product divides extent (innermost <= MAX_INNERMOST)."""
    out = [1] * n
    rem = extent
    for k in reversed(range(n)):
        cands = [d for d in divisors(rem) if k != n - 1 or d <= MAX_INNERMOST]
        out[k] = rng.choice(cands)
        rem //= out[k]
    return tuple(out)


def random_genome(info: SketchInfo, rng: random.Random) -> Genome:
    tiles = tuple(sample_tiles(e, len(info.sketch.steps[i].lengths), rng)
                  for i, e in zip(info.split_ids, info.extents))
    base = replay_tiles(info, tiles)
    par, vec, unr, loc = [], [], [], []
    for si, st in enumerate(base.stages):
        if st.is_placeholder or st.attach[0] == "inline":
            continue
        if st.attach[0] == "root":
            n_sp = _parallel_span(base, st)
            par.append((si, rng.randint(1, n_sp) if n_sp else 0))
            unr.append((si, rng.choice(UNROLL_CHOICES)))
        vec.append((si, rng.random() < 0.9))
        if _is_free(base, si):
            cons = base.effective_consumers(si)
            n_it = len(base.stages[cons[0]].iters) if len(cons) == 1 else 0
            loc.append((si, rng.randint(-1, n_it - 1) if n_it and rng.random() < 0.5
                        else -1))
    return Genome(info.sketch_id, tiles, tuple(par), tuple(vec), tuple(unr), tuple(loc))


def _outer_spatial(st) -> int:
    n = 0
    for it in st.iters:
        if it.kind != "spatial":
            break
        n += 1
    return n


def _parallel_span(state, st) -> int:
    """How many outer loops InitParallel may fuse: the outer spatial ones, leaving the
    innermost loop for vectorization when every loop is spatial, and none below a loop that
    another stage is computed at (fusing through it would shrink that stage's tile to one
    point per parallel iteration: a space of slow duplicates the search kept falling into)."""
    n = _outer_spatial(st)
    n = n - 1 if n == len(st.iters) and n > 1 else n
    names = [it.name for it in st.iters]
    for other in state.stages:
        if other.attach[0] == "at" and other.attach[1] is st.op and other.attach[2] in names:
            n = min(n, names.index(other.attach[2]) + 1)
    return n


def _is_free(state, si: int) -> bool:
    st = state.stages[si]
    return st.attach[0] == "root" and not st.is_output and not st.relations \
        and not A.is_strict_inlinable(state, si) and len(state.effective_consumers(si)) == 1


def replay_tiles(info: SketchInfo, tiles: tuple):
    state = info.dag.init_state()
    lengths = dict(zip(info.split_ids, tiles))
    for i, s in enumerate(info.sketch.steps):
        state = state.apply(replace(s, lengths=lengths[i]) if i in lengths else s)
    return state


def materialize(info: SketchInfo, g: Genome):
    """The State a genome describes (raises KilnError if a choice is illegal here)."""
    state = replay_tiles(info, g.tiles)
    for si, where in g.location:
        if where >= 0:
            op = state.stages[si].op
            cons = state.stages[state.effective_consumers(state.stage_index(op))[0]]
            state = state.compute_at(op, cons.op, min(where, len(cons.iters) - 1))
    for si, n in g.parallel:
        state = _parallelize(state, state.stages[si].op, n)
    for si, on in g.vectorize:
        if on:
            state = _vectorize(state, state.stages[si].op)
    for si, budget in g.unroll:
        st = state.stages[si]
        if budget and st.attach[0] == "root" and st.iters:
            state = state.pragma(st.op, 0, "auto_unroll_max_step", budget)
    for name in info.layout_free:
        state = rewrite_layout(state, name)
    return state


def rewrite_layout(state, name: str):
    """Pack a constant input so the innermost spatial tile of its tiled reader is contiguous."""
    from ..te import expr as E
    pi = state.stage_index(name)
    readers = [j for j in state.consumers(pi) if state.stages[j].relations]
    if not readers:
        return state
    st = state.stages[readers[0]]
    shape = [int(d.value) for d in state.stages[pi].op.shape]
    inner = {r.parent: r.lengths[-1] for r in st.relations if hasattr(r, "lengths")}
    pairs = []
    for n in E.walk(st.compute.body):
        if isinstance(n, E.TensorLoad) and n.tensor.op is state.stages[pi].op:
            for d, idx in enumerate(n.indices):
                is_axis = any(idx is a for a in st.compute.axis)
                f = inner.get(getattr(idx, "name", None)) if is_axis else None
                if f and f > 1 and shape[d] % f == 0 and d not in dict(pairs):
                    pairs.append((d, f))
            pairs += _dot_group_dims(n, pairs)
            break
    return state.layout_rewrite(state.stages[pi].op, pairs) if pairs else state


def _dot_group_dims(load, pairs: list) -> list:
    """[(d, g)] for the dim a grouped dot product (te/dot_groups.py: bfloat16 pairs, int8
    quads) reads as g*kk: packed innermost, each lane's group is adjacent and a tile row is
    one contiguous load (vdpbf16ps / vpdpbusd take it as is, no shuffle)."""
    from ..te import expr as E
    from ..te.dot_groups import GROUP
    g = GROUP.get(load.dtype)
    if g is None or not pairs:
        return []
    for d, idx in enumerate(load.indices):
        if isinstance(idx, E.BinOp) and idx.op == "mul" and d not in dict(pairs) and \
                any(isinstance(x, E.IntImm) and x.value == g for x in (idx.a, idx.b)):
            return [(d, g)]
    return []


def _parallelize(state, op, n: int):
    st = state.stage(op)
    if st.attach[0] != "root" or n <= 0:
        return state
    span = _parallel_span(state, st)
    n = min(n, span)
    if n <= 0:
        return state
    # fuse further outer loops while there is too little parallelism for the cores
    ext = math.prod(it.extent for it in st.iters[:n])
    while n < span and ext < 2 * _cores():
        ext *= st.iters[n].extent
        n += 1
    if n > 1:
        state = state.fuse(op, list(range(n)))
    if state.stage(op).iters[0].extent > 1:
        state = state.parallel(op, 0)
    return state


def _cores() -> int:
    return len(os.sched_getaffinity(0))


def _vectorize(state, op):
    st = state.stage(op)
    if not st.iters:
        return state
    last = st.iters[-1]
    if last.kind == "spatial" and 1 < last.extent <= MAX_VECTORIZE and last.annotation == "none":
        state = state.vectorize(op, len(st.iters) - 1)
    return state
