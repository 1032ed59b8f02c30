"""The cost-model interface the search talks to: update with measurements, predict scores.

In: per-program feature arrays (rows = stores, from features.py) and measured throughputs.
Out: one score per program, higher = predicted faster. Why: the search policy ranks thousands
of candidates with whichever model it holds (learned or random) through this one protocol.
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np

# Score of a program that has no features (it failed to lower): below every real prediction.
INVALID_SCORE = -1e9


class CostModel:
    """Base class: `update` learns from measured programs, `predict` scores new ones."""

    def update(self, features: list[np.ndarray], throughputs: list[float],
               task_ids: list[str] | None = None) -> None:
        raise NotImplementedError

    def predict(self, features: list[np.ndarray]) -> np.ndarray:
        raise NotImplementedError

    def update_from_records(self, records: Iterable[tuple[np.ndarray, float, str]]) -> None:
        """Hook for the measurement layer: (features, throughput, task id) triples."""
        feats, tps, tasks = [], [], []
        for f, tp, task in records:
            feats.append(f)
            tps.append(float(tp))
            tasks.append(str(task))
        if feats:
            self.update(feats, tps, tasks)


def check_update_args(features: list, throughputs: list, task_ids: list | None) -> list[str]:
    """Validate update() arguments; returns the task ids (one shared task when None)."""
    if len(features) != len(throughputs):
        raise ValueError(f"{len(features)} feature arrays but {len(throughputs)} throughputs")
    if task_ids is None:
        return ["default"] * len(features)
    if len(task_ids) != len(features):
        raise ValueError(f"{len(features)} feature arrays but {len(task_ids)} task ids")
    return [str(t) for t in task_ids]
