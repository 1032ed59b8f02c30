"""The analytical prior that ranks GPU candidates before the cost model has measurements: it
prefers grids that keep the multiprocessors busy, register tiles that are not starved by
shared memory, and conflict-free panels, and the untrained GpuCostModel ranks by it."""

import random

import numpy as np
import workloads

from kiln.auto_scheduler import SearchTask
from kiln.auto_scheduler.gpu.features import FEATURE_NAMES, features
from kiln.auto_scheduler.gpu.model import GpuCostModel
from kiln.auto_scheduler.gpu.prior import prior_score
from kiln.auto_scheduler.gpu.space import GpuConfig, GpuSpace
from kiln.schedule import ComputeDAG

BASE = dict(tm=8, tn=4, tx=8, ty=16, bk=16, pad=1, vec=4, splitk=1)


def _space(m=128, n=3072, k=768):
    (a, b), (c,), _ = workloads.matmul(m, n, k)
    task = SearchTask(compute_dag=ComputeDAG([a, b, c]), target="cuda -arch=sm_90", desc="mm")
    return task, GpuSpace(task.compute_dag, task.target)


def _feats(task, space, **knobs):
    cfg = GpuConfig("matmul", tuple(sorted({**BASE, **knobs}.items())))
    low = space.lowered(cfg, task.args)
    assert low is not None, knobs
    return features(space, cfg, low[1], low[2])


def test_busy_multiprocessors_rank_higher():
    task, space = _space()
    few = _feats(task, space, tn=8, tx=32)          # 128 x 256 tiles: 12 blocks on 132 SMs
    many = _feats(task, space)                      # 128 x 32 tiles: 96 blocks
    assert prior_score(many) > 2 * prior_score(few)


def test_register_tiles_that_feed_on_shared_memory_rank_lower():
    task, space = _space()
    starved = _feats(task, space, tm=1, tn=1, tx=32, ty=16)   # 2 shared words per FMA
    fed = _feats(task, space, tm=4, tn=4, tx=8, ty=8)
    assert prior_score(fed) > prior_score(starved)


def test_conflicted_banks_rank_lower():
    task, space = _space()
    padded, unpadded = _feats(task, space, tx=32, pad=1), _feats(task, space, tx=32, pad=0)
    assert dict(zip(FEATURE_NAMES, unpadded))["bank_ways_b"] > 1
    assert prior_score(padded) > prior_score(unpadded)


def test_the_untrained_model_ranks_by_the_prior():
    task, space = _space(64, 256, 128)
    rng = random.Random(0)
    feats = []
    while len(feats) < 30:
        cfg = space.sample(rng)
        low = space.lowered(cfg, task.args)
        if low is not None:
            feats.append(features(space, cfg, low[1], low[2]))
    scores = GpuCostModel(seed=1).predict(feats)
    prior = np.array([prior_score(f) for f in feats])
    assert np.all(np.isfinite(scores)) and not GpuCostModel().trained
    assert np.corrcoef(scores, prior)[0, 1] > 0.99
