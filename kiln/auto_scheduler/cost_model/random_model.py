"""RandomModel: the no-learning baseline cost model, with XGBModel's interface.

In: feature arrays (ignored apart from their count). Out: uniform random scores, one per
program (INVALID_SCORE for a program without features). Why: the project compares the learned
model against random ranking, as the Ansor paper does.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from .base import INVALID_SCORE, CostModel, check_update_args


class RandomModel(CostModel):
    """Scores programs at random; `update` only counts what it was shown."""

    def __init__(self, seed: int = 0):
        self.seed = seed
        self.rng = np.random.default_rng(seed)
        self.n_seen = 0

    def update(self, features: list[np.ndarray], throughputs: list[float],
               task_ids: list[str] | None = None) -> None:
        check_update_args(features, throughputs, task_ids)
        self.n_seen += len(features)

    def predict(self, features: list[np.ndarray]) -> np.ndarray:
        scores = self.rng.random(len(features))
        empty = np.array([len(f) == 0 for f in features], dtype=bool)
        scores[empty] = INVALID_SCORE
        return scores

    def save(self, path: str | Path) -> None:
        Path(path).write_text(json.dumps({"model": "random", "seed": self.seed,
                                          "n_seen": self.n_seen}))

    def load(self, path: str | Path) -> None:
        data = json.loads(Path(path).read_text())
        self.seed, self.n_seen = int(data["seed"]), int(data["n_seen"])
        self.rng = np.random.default_rng(self.seed)
