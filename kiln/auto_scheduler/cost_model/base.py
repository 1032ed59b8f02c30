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

    def update_from_file(self, file_name: str, n_lines: int | None = None) -> None:
        """Learn from a tuning log (TVM's XGBModel.update_from_file): the records of the
        tasks made in this process (create the SearchTask first); the first n_lines only
        when given."""
        feats, tputs, ids = records_as_samples(file_name, n_lines)
        if feats:
            self.update(feats, tputs, ids)

    def update_from_records(self, records: Iterable[tuple[np.ndarray, float, str]]) -> None:
        """Hook for the measurement layer: (features, throughput, task id) triples."""
        feats, tps, tasks = [], [], []
        for f, tp, task in records:
            feats.append(f)
            tps.append(float(tp))
            tasks.append(str(task))
        if feats:
            self.update(feats, tps, tasks)


def records_as_samples(file_name: str, n_lines: int | None = None) -> tuple:
    """(features, throughputs, task ids) of a log's records whose task exists in this
    process (a task made from the workload: the records replay on it); others are skipped."""
    from ..measure.record import load_records, record_target
    from ..task import known_task
    from .features import get_per_store_features_from_states
    by_task: dict = {}
    for i, rec in enumerate(load_records(file_name)):
        if n_lines is not None and i >= n_lines:
            break
        task = known_task(rec.workload_key, record_target(rec.target))
        if task is None:
            continue
        try:
            state = task.replay(rec.steps)
        except Exception:  # noqa: BLE001 - a record this kiln cannot replay teaches nothing
            continue
        ok = rec.error == "ok" and rec.costs
        tput = task.flop_ct / (sum(rec.costs) / len(rec.costs)) if ok else 0.0
        by_task.setdefault(task, []).append((state, tput))
    feats, tputs, ids = [], [], []
    for task, items in by_task.items():
        feats += get_per_store_features_from_states([s for s, _ in items], task.args)
        tputs += [t for _, t in items]
        ids += [task.workload_key] * len(items)
    return feats, tputs, ids


def check_update_args(features: list, throughputs: list, task_ids: list | None) -> list[str]:
    """Validate update() arguments; returns the task ids (one shared task when None)."""
    if len(features) != len(throughputs):
        raise ValueError(f"{len(features)} feature arrays but {len(throughputs)} throughputs")
    if task_ids is None:
        return ["default"] * len(features)
    if len(task_ids) != len(features):
        raise ValueError(f"{len(features)} feature arrays but {len(task_ids)} task ids")
    return [str(t) for t in task_ids]
