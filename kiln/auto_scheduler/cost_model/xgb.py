"""XGBModel: gradient-boosted trees over per-store features, trained with a pack-sum objective.

In: per-program feature arrays (one row per store, from features.py), measured throughputs and
task ids. Out: one score per program (higher = faster): the SUM of the per-store predictions.
Why: this is Ansor's learned cost model. Every store row carries its program's label, the
throughput normalised by the best throughput seen for the same task; the "pack-sum" objective
is the squared error between a program's summed prediction and that label. Its gradient for a
row is the weighted residual of the row's program; as Hessian we use weight x (rows of the
program), a diagonal bound of the true (rank-one per program) Hessian, so Newton steps that
move every row of a program together do not overshoot. All measurements accumulate across
calls and tasks; every update retrains from scratch (early stopping on a held-out share of
programs, then the best round count is kept).
"""

from __future__ import annotations

import os
import zipfile
from pathlib import Path

import numpy as np

from ...errors import KilnError
from .base import INVALID_SCORE, CostModel, check_update_args

DEFAULT_PARAMS = {
    "max_depth": 10,
    "eta": 0.2,
    "gamma": 0.0,
    "min_child_weight": 2,
    "subsample": 1.0,
    "lambda": 1.0,
    "alpha": 0.0,
    "base_score": 0.0,
    "tree_method": "hist",
    "disable_default_eval_metric": 1,
    "verbosity": 0,
}


class _Packs:
    """Rows of many programs stacked: program id per row, rows per program."""

    def __init__(self, features: list[np.ndarray]):
        sizes = np.array([len(f) for f in features], dtype=np.int64)
        self.n = len(features)
        self.sizes = sizes
        self.ids = np.repeat(np.arange(self.n), sizes)
        width = next((f.shape[1] for f in features if f.ndim == 2), 0)
        rows = [f for f in features if len(f)]
        self.x = (np.concatenate(rows).astype(np.float32) if rows
                  else np.zeros((0, width), np.float32))

    def sums(self, row_preds: np.ndarray) -> np.ndarray:
        return np.bincount(self.ids, weights=row_preds, minlength=self.n)


def pack_sum_grad(preds: np.ndarray, packs: _Packs, labels: np.ndarray,
                  weights: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Gradient and (bounded) Hessian of 0.5 * w_p * (sum of rows of p - label_p)^2 per row."""
    resid = packs.sums(preds) - labels
    grad = (resid * weights)[packs.ids]
    hess = (weights * np.maximum(packs.sizes, 1))[packs.ids]
    return grad, hess


ROUNDS_PER_PROGRAM = 10  # boosting rounds per measured program while there is no holdout


class XGBModel(CostModel):
    """The learned cost model; needs the `xgboost` package (imported on first training)."""

    def __init__(self, nthread: int = 2, seed: int = 0, num_boost_round: int = 300,
                 early_stopping_rounds: int = 30, holdout: float = 0.15,
                 weight_floor: float = 0.3, params: dict | None = None):
        self.nthread, self.seed = nthread, seed
        self.num_boost_round, self.early_stopping_rounds = num_boost_round, early_stopping_rounds
        self.holdout, self.weight_floor = holdout, weight_floor
        self.params = {**DEFAULT_PARAMS, **(params or {})}
        self.features: list[np.ndarray] = []
        self.throughputs: list[float] = []
        self.task_ids: list[str] = []
        self.booster = None
        self.rng = np.random.default_rng(seed)

    @property
    def trained(self) -> bool:
        return self.booster is not None

    # ------------------------------------------------------------ data
    def update(self, features: list[np.ndarray], throughputs: list[float],
               task_ids: list[str] | None = None) -> None:
        """Add measured programs (throughput 0 for failures) and retrain on everything seen."""
        tasks = check_update_args(features, throughputs, task_ids)
        self.features += [np.asarray(f, np.float32) for f in features]
        self.throughputs += [max(float(t), 0.0) for t in throughputs]
        self.task_ids += tasks
        self.train()

    def labels(self) -> np.ndarray:
        """Throughput / best throughput of the same task (0 where the task has no success)."""
        tp = np.asarray(self.throughputs, np.float64)
        tasks = np.asarray(self.task_ids)
        out = np.zeros_like(tp)
        for t in np.unique(tasks):
            m = tasks == t
            best = tp[m].max()
            if best > 0:
                out[m] = tp[m] / best
        return out

    # ------------------------------------------------------------ training
    def train(self) -> None:
        """Retrain from scratch on every stored program that has features."""
        keep = [i for i, f in enumerate(self.features) if len(f)]
        labels = self.labels()[keep]
        if not keep or labels.max() <= 0:
            return
        feats = [self.features[i] for i in keep]
        order = np.random.default_rng(self.seed).permutation(len(keep))
        n_val = int(len(keep) * self.holdout) if len(keep) >= 40 else 0
        val, tr = order[:n_val], order[n_val:]
        # without a held-out share (< 40 programs) nothing stops boosting early: cap the
        # rounds by the data (300 rounds on a handful of programs only overfit, for seconds)
        rounds = None if n_val else min(self.num_boost_round, ROUNDS_PER_PROGRAM * len(keep))
        booster = self._fit([feats[i] for i in tr], labels[tr],
                            [feats[i] for i in val], labels[val], rounds=rounds)
        best = getattr(booster, "best_iteration", None)
        if n_val and best is not None:
            # Refit on all programs with the round count that generalised best.
            booster = self._fit(feats, labels, [], labels[:0], rounds=best + 1)
        self.booster = booster

    def _fit(self, feats: list, labels: np.ndarray, vfeats: list, vlabels: np.ndarray,
             rounds: int | None = None):
        import xgboost as xgb
        packs = _Packs(feats)
        weights = np.maximum(labels, self.weight_floor)
        dtrain = xgb.DMatrix(packs.x, nthread=self.nthread)
        params = {**self.params, "nthread": self.nthread, "seed": self.seed}
        obj = lambda preds, _d: pack_sum_grad(preds, packs, labels, weights)
        kw = {}
        if vfeats and rounds is None:
            vpacks = _Packs(vfeats)
            dval = xgb.DMatrix(vpacks.x, nthread=self.nthread)

            def metric(preds, _d):
                err = vpacks.sums(preds) - vlabels
                return "pack_sum_rmse", float(np.sqrt(np.mean(err * err)))
            kw = {"evals": [(dval, "val")], "custom_metric": metric,
                  "early_stopping_rounds": self.early_stopping_rounds}
        return xgb.train(params, dtrain, num_boost_round=rounds or self.num_boost_round,
                         obj=obj, verbose_eval=False, **kw)

    # ------------------------------------------------------------ inference
    def predict(self, features: list[np.ndarray]) -> np.ndarray:
        """One score per program (sum over its stores); INVALID_SCORE for empty programs."""
        packs = _Packs([np.asarray(f, np.float32) for f in features])
        if self.booster is None:
            scores = self.rng.random(packs.n) * 1e-3
        else:
            import xgboost as xgb
            preds = (self.booster.predict(xgb.DMatrix(packs.x, nthread=self.nthread))
                     if len(packs.x) else np.zeros(0))
            scores = packs.sums(preds)
        scores[packs.sizes == 0] = INVALID_SCORE
        return scores

    # ------------------------------------------------------------ persistence
    def save(self, path: str | Path) -> None:
        """The trained booster and every stored measurement, in one .npz file."""
        raw = bytes(self.booster.save_raw("ubj")) if self.booster is not None else b""
        sizes = np.array([len(f) for f in self.features], np.int64)
        width = next((f.shape[1] for f in self.features if f.ndim == 2), 0)
        rows = [f for f in self.features if len(f)]
        x = np.concatenate(rows) if rows else np.zeros((0, width), np.float32)
        from ...runtime.files import save_npz
        save_npz(os.fspath(path), dict(  # atomic: a killed save never leaves half a file
            booster=np.frombuffer(raw, np.uint8), sizes=sizes, x=x, width=np.array(width),
            throughputs=np.asarray(self.throughputs, np.float64),
            task_ids=np.asarray(self.task_ids, dtype=str)))

    def load(self, path: str | Path, max_programs: int | None = None) -> None:
        """Restore what save() wrote (booster and measurements); training can continue.
        max_programs keeps a random subset of the measurements (transfer to a new model
        needs the trend, not every point, and training time grows with the data)."""
        data = _read_model_file(path)
        sizes, x, width = data["sizes"], data["x"], int(data["width"])
        offsets = np.concatenate([[0], np.cumsum(sizes)])
        keep = np.arange(len(sizes))
        if max_programs is not None and len(keep) > max_programs:
            keep = np.sort(self.rng.choice(keep, max_programs, replace=False))
        self.features = [x[offsets[i]:offsets[i + 1]].reshape(-1, width) for i in keep]
        self.throughputs = [float(data["throughputs"][i]) for i in keep]
        self.task_ids = [str(data["task_ids"][i]) for i in keep]
        raw = data["booster"].tobytes()
        self.booster = None
        if raw:
            import xgboost as xgb
            self.booster = xgb.Booster(params={"nthread": self.nthread})
            self.booster.load_model(bytearray(raw))


_MODEL_KEYS = ("booster", "sizes", "x", "width", "throughputs", "task_ids")


def _read_model_file(path) -> dict:
    """The arrays of a saved cost model; KilnError for a missing, truncated or foreign file."""
    try:
        with np.load(Path(path), allow_pickle=False) as z:
            return {k: z[k] for k in _MODEL_KEYS}
    except FileNotFoundError:
        raise KilnError(f"no cost model file {path}") from None
    except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile) as err:
        raise KilnError(f"cost model file {path} is damaged or not a kiln cost model "
                        f"({type(err).__name__}: {err}); delete it or tune again to rewrite "
                        "it") from None
