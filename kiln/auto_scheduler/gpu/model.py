"""The cost model of GPU programs: XGBoost on the fixed-length GPU features.

In: feature vectors (features.py) and measured seconds (inf for failures).
Out: `predict(features) -> scores`, higher is faster; before it has data, or without
xgboost, scores are the analytical prior of prior.py (a model of the hardware: busy
multiprocessors, latency hiding, shared-memory traffic per FMA); `save` / `load` keep the
training data beside a tuning log so a short GPU sitting resumes with what earlier ones learnt.
Why: one model per target kind (the CPU model reads per-store loop features; GPU programs are
described by launch shape, occupancy, shared-memory and coalescing features instead). Labels
are throughputs relative to the best of the same task, so tasks of different sizes train one
model.
"""

from __future__ import annotations

import logging
import math
import os

import numpy as np

from ...errors import KilnError
from .features import FEATURE_NAMES
from .prior import prior_score

log = logging.getLogger("kiln.auto_scheduler")


class GpuCostModel:
    """Pointwise XGBoost regression on relative throughput (0 for failed candidates)."""

    def __init__(self, seed: int = 0, min_samples: int = 16):
        self.rng = np.random.default_rng(seed)
        self.min_samples = min_samples
        self.xs: list = []
        self.ys: list = []
        self.keys: list = []
        self.booster = None
        self._warned = False

    def update(self, key: str, feats: list, costs: list) -> None:
        """Add one task's measured candidates and retrain."""
        for f, c in zip(feats, costs, strict=True):
            self.xs.append(np.asarray(f, np.float32))
            self.ys.append(float(c))
            self.keys.append(key)
        self._fit()

    def _labels(self) -> np.ndarray:
        ys = np.array(self.ys)
        out = np.zeros(len(ys), np.float32)
        for key in set(self.keys):
            idx = [i for i, k in enumerate(self.keys) if k == key]
            ok = [i for i in idx if math.isfinite(ys[i]) and ys[i] > 0]
            if ok:
                best = min(ys[i] for i in ok)
                for i in ok:
                    out[i] = best / ys[i]
        return out

    def _fit(self) -> None:
        if len(self.xs) < self.min_samples:
            return
        try:
            import xgboost as xgb
        except ImportError:
            if not self._warned:
                log.warning("xgboost is not installed: the GPU search ranks candidates by "
                            "its analytical prior only (pip install xgboost-cpu)")
                self._warned = True
            return
        data = xgb.DMatrix(np.stack(self.xs), label=self._labels(),
                           feature_names=list(FEATURE_NAMES))
        params = {"max_depth": 6, "eta": 0.2, "min_child_weight": 1, "subsample": 0.9,
                  "objective": "reg:squarederror", "verbosity": 0,
                  "seed": int(self.rng.integers(1 << 30))}
        self.booster = xgb.train(params, data, num_boost_round=60)

    @property
    def trained(self) -> bool:
        return self.booster is not None

    def predict(self, feats: list) -> np.ndarray:
        if not feats:
            return np.zeros(0)
        if self.booster is None:  # the analytical prior; a little noise breaks its ties
            prior = np.array([prior_score(f) for f in feats])
            return prior * (1 + 0.01 * self.rng.random(len(feats)))
        import xgboost as xgb
        data = xgb.DMatrix(np.stack([np.asarray(f, np.float32) for f in feats]),
                           feature_names=list(FEATURE_NAMES))
        return self.booster.predict(data)

    # ------------------------------------------------------------ persistence
    def save(self, path: str) -> None:
        """Write the training data (atomically); a later sitting retrains from it."""
        tmp = f"{path}.tmp.npz"
        np.savez(tmp, xs=np.stack(self.xs) if self.xs else np.zeros((0, len(FEATURE_NAMES))),
                 ys=np.array(self.ys), keys=np.array(self.keys),
                 names=np.array(FEATURE_NAMES))
        os.replace(tmp, path)

    @property
    def throughputs(self) -> list:
        """The measured samples (for messages; the CPU model has the same attribute)."""
        return self.ys

    def load(self, path: str, max_programs: int | None = None) -> None:
        try:
            with np.load(path) as z:
                if tuple(z["names"]) != FEATURE_NAMES:
                    log.warning("%s holds features of another kiln version; not loaded", path)
                    return
                n = len(z["ys"]) if max_programs is None else min(max_programs, len(z["ys"]))
                self.xs += list(z["xs"][-n:]) if n else []
                self.ys += [float(y) for y in z["ys"][-n:]] if n else []
                self.keys += [str(k) for k in z["keys"][-n:]] if n else []
        except (OSError, KeyError, ValueError) as err:
            raise KilnError(f"cannot read the GPU cost model {path}: {err}") from err
        self._fit()
