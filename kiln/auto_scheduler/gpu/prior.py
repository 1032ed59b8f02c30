"""An analytical prior for GPU candidates: a relative throughput estimate from their features.

In: one feature vector (features.py; read by name, so added features do not disturb it).
Out: `prior_score(x) -> float`, higher is faster, comparable between candidates of one task.
Why: a GPU sitting may last minutes. Before the XGBoost model has measurements the search would
rank candidates at random, and the first rounds of a short sitting would be spent on
configurations a model of the hardware rules out: tiles that leave most multiprocessors idle,
single-element register tiles that wait on shared memory, conflicted banks, a last wave with
one block in it. The estimate multiplies such factors; it is a prior, not a predictor of
seconds, and the trained model replaces it once the task has enough measurements.

The model, for a matmul tile (tm x tn per thread, tx x ty threads, bk per shared panel):
- per warp and k-step, tm*tn FFMA plus (tm + tn) / 4 shared loads (LDS.128 along k) and loop
  overhead are issued, one instruction per scheduler clock, against (tm + tn) shared-memory
  wavefronts times the bank-conflict ways (one per multiprocessor clock for four schedulers);
- multiprocessors busy: blocks per SM below one, else blocks per SM over its ceiling (the
  busiest SM sets the time);
- latency hiding: resident warps per SM up to 8 (registers estimated from the tile: spills and
  register-limited occupancy are caught for real by the builder);
- idle lanes of partial tiles (tile_waste) and the extra traffic of split-K.
Other kernels (rows, injective) are memory-bound: multiprocessors busy, latency hiding and
coalescing decide.
"""

from __future__ import annotations

import math

import numpy as np

from .features import FEATURE_NAMES

_INDEX = {n: i for i, n in enumerate(FEATURE_NAMES)}
REGS_PER_SM = 65536
WARPS_TO_HIDE = 8        # resident warps per SM that keep the pipes busy


def _get(x, name: str, default: float = 0.0) -> float:
    i = _INDEX.get(name)
    return float(x[i]) if i is not None else default


def _sm_count(x, blocks: float) -> float:
    """The target's multiprocessors, recovered from waves = blocks / (SMs x blocks per SM)."""
    waves, per_sm = _get(x, "waves"), max(_get(x, "blocks_per_sm", 1.0), 1.0)
    return blocks / waves / per_sm if waves > 0 else 1.0


def _sm_busy(blocks: float, sms: float) -> float:
    """The share of multiprocessor time doing work: the busiest SM sets the time, so a grid of
    1.4 blocks per SM runs as long as one of 2."""
    per = blocks / max(sms, 1.0)
    return per if per <= 1 else per / math.ceil(per)


def _latency(per_sm: float, warps: float, blocks: float, sms: float) -> float:
    resident = min(per_sm, max(1.0, blocks / max(sms, 1.0))) * warps
    return min(1.0, resident / WARPS_TO_HIDE) ** 0.5


def _matmul(x, threads: float, blocks: float) -> float:
    reg_tile = max(_get(x, "reg_tile", 1.0), 1.0)
    words = _get(x, "smem_loads_per_fma", 2.0) * reg_tile    # tm + tn shared words per k-step
    ways = max((_get(x, "bank_ways_a", 1.0) + _get(x, "bank_ways_b", 1.0)) / 2, 1.0)
    # per warp and k-step: FFMA issue (one per scheduler clock) plus loads and loop overhead,
    # against shared-memory wavefronts (one per SM clock, four schedulers): LDS.128 along k
    # carries four steps, a conflicted load costs `ways` wavefronts
    # each shared panel of bk steps also pays two barriers and the fetch (~24 issue slots)
    issue = max(reg_tile + words / 4 + 2 + 24 / max(_get(x, "bk", 16.0), 1.0), words * ways)
    compute = reg_tile / issue
    regs = reg_tile + words + 40
    per_sm = min(_get(x, "blocks_per_sm", 1.0), max(1.0, REGS_PER_SM // (regs * threads)))
    sms = _sm_count(x, blocks)
    busy = _sm_busy(blocks, sms)
    hide = _latency(per_sm, _get(x, "warps_per_block", 1.0), blocks, sms)
    waste = max(_get(x, "tile_waste", 1.0), 1.0)
    splitk = max(_get(x, "splitk", 1.0), 1.0)
    return compute * busy * hide / waste / (1 + 0.04 * (splitk - 1))


def _memory_bound(x, blocks: float) -> float:
    sms = _sm_count(x, blocks)
    busy = _sm_busy(blocks, sms)
    hide = _latency(_get(x, "blocks_per_sm", 1.0), _get(x, "warps_per_block", 1.0), blocks, sms)
    coalesced = _get(x, "coalesced_loads") + _get(x, "broadcast_loads")
    stride = _get(x, "mean_load_stride", 1.0)
    return busy * hide * (0.5 + 0.5 * coalesced) / (1 + 0.02 * max(stride - 1, 0))


def prior_score(x) -> float:
    """Relative throughput estimate of one candidate (higher is faster)."""
    x = np.asarray(x, np.float64)
    threads, blocks = 2 ** _get(x, "log2_threads"), 2 ** _get(x, "log2_blocks")
    kernels = max(_get(x, "kernels", 1.0), 1.0)
    if _get(x, "kind_matmul") > 0:
        score = _matmul(x, threads, blocks)
    else:
        score = _memory_bound(x, blocks)
    return score / (1 + 0.1 * (kernels - 1))
