"""An analytical prior for GPU candidates: a relative throughput estimate from their features.

In: one feature vector (features.py; read by name, so added features do not disturb it).
Out: `prior_score(x) -> float`, higher is faster, comparable between candidates of one task.
Why: a GPU sitting may last minutes. Before the XGBoost model has measurements the search would
rank candidates at random, and the first rounds of a short sitting would be spent on
configurations a model of the hardware rules out: tiles that leave most multiprocessors idle,
single-element register tiles that wait on shared memory, conflicted banks, a last wave with
one block in it. The estimate multiplies such factors; it is a prior, not a predictor of
seconds, and the trained model replaces it once the task has enough measurements.

Matmul candidates are scored by the static model of kiln.topi.cuda_model.matmul_estimate (its
cycles, carried by the feature model_log2_cycles), so there is one model of a matmul tile;
convolution candidates the same way, by topi.cuda_conv.conv_estimate. The other kernels (rows,
injective) are memory-bound: the share of multiprocessors busy (the busiest SM sets the time),
latency hiding (resident warps per SM up to 8) and coalescing decide.
"""

from __future__ import annotations

import math

import numpy as np

from .features import FEATURE_NAMES

_INDEX = {n: i for i, n in enumerate(FEATURE_NAMES)}
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


def _matmul(x) -> float:
    """1 / cycles of topi.cuda_model.matmul_estimate, the one static model of a matmul tile on the
    target (issue, shared-memory wavefronts with bank conflicts, L2, blocks on the busiest
    SM, the split-K kernel), which the features carry as model_log2_cycles."""
    log2_cycles = _get(x, "model_log2_cycles")
    return 2.0 ** -log2_cycles if log2_cycles > 0 else 0.0


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
    blocks = 2 ** _get(x, "log2_blocks")
    kernels = max(_get(x, "kernels", 1.0), 1.0)
    if _get(x, "kind_matmul") > 0 or _get(x, "kind_conv") > 0:
        score = _matmul(x)
    else:
        score = _memory_bound(x, blocks)
    return score / (1 + 0.1 * (kernels - 1))
