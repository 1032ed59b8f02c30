"""Cost models: XGBModel learns a synthetic per-program label; RandomModel; save / load."""

from __future__ import annotations

import numpy as np
import pytest
import workloads
from schedule_fuzz import PyRandom, random_state

from kiln.auto_scheduler.cost_model import (
    FEATURE_NAMES,
    N_FEATURES,
    CostModel,
    RandomModel,
    XGBModel,
    get_per_store_features_from_states,
)
from kiln.auto_scheduler.cost_model.base import INVALID_SCORE
from kiln.schedule import ComputeDAG

pytest.importorskip("xgboost")

COL = {n: i for i, n in enumerate(FEATURE_NAMES)}


def _raw(col: np.ndarray) -> np.ndarray:
    return np.exp2(col.astype(np.float64)) - 1.0


def synthetic_throughput(f: np.ndarray) -> float:
    """A made-up speed law (nothing is timed): each store costs its executions, shared by its
    vector lanes and up to 4 parallel workers, doubled per enclosing guard."""
    execs = _raw(f[:, COL["outer_prod"]])
    lanes = 1.0 + _raw(f[:, COL["vec_len"]])
    workers = np.minimum(1.0 + _raw(f[:, COL["par_len"]]), 4.0)
    guards = 1.0 + f[:, COL["num_guards"]]
    return float(1e6 / np.sum(execs / lanes / workers * guards))


@pytest.fixture(scope="module")
def programs():
    inputs, outputs, _ = workloads.matmul(32, 32, 32)
    dag = ComputeDAG(inputs + outputs)
    states = [random_state(dag, PyRandom(seed)) for seed in range(220)]
    feats = [f for f in get_per_store_features_from_states(states, inputs + outputs) if len(f)]
    return feats, [synthetic_throughput(f) for f in feats]


def _spearman(a, b) -> float:
    ra = np.argsort(np.argsort(a)).astype(float)
    rb = np.argsort(np.argsort(b)).astype(float)
    return float(np.corrcoef(ra, rb)[0, 1])


def test_xgb_learns_synthetic_ranking(programs):
    feats, tps = programs
    n_train = 160
    model = XGBModel(seed=1)
    model.update(feats[:n_train], tps[:n_train], ["mm"] * n_train)
    pred = model.predict(feats[n_train:])
    assert pred.shape == (len(feats) - n_train,)
    assert _spearman(pred, tps[n_train:]) > 0.5


def test_predict_before_training_and_empty_programs():
    model = XGBModel()
    feats = [np.zeros((2, N_FEATURES), np.float32), np.zeros((0, N_FEATURES), np.float32)]
    scores = model.predict(feats)
    assert scores.shape == (2,) and np.isfinite(scores).all()
    assert scores[1] == INVALID_SCORE and scores[0] > INVALID_SCORE
    model.update(feats, [0.0, 0.0])  # nothing succeeded: nothing to learn, no error
    assert model.booster is None


def test_labels_are_normalised_per_task():
    model = XGBModel()
    f = np.ones((1, N_FEATURES), np.float32)
    model.features, model.throughputs = [f] * 4, [1.0, 2.0, 10.0, 5.0]
    model.task_ids = ["a", "a", "b", "b"]
    np.testing.assert_allclose(model.labels(), [0.5, 1.0, 1.0, 0.5])


def test_update_from_records_and_save_load(programs, tmp_path):
    feats, tps = programs
    model = XGBModel(num_boost_round=20)
    model.update_from_records(zip(feats[:30], tps[:30], ["t1"] * 30, strict=True))
    model.update(feats[30:50], tps[30:50], ["t2"] * 20)  # accumulates across calls and tasks
    assert len(model.features) == 50 and set(model.task_ids) == {"t1", "t2"}
    path = tmp_path / "model.npz"
    model.save(path)
    other = XGBModel()
    other.load(path)
    np.testing.assert_allclose(other.predict(feats[50:70]), model.predict(feats[50:70]),
                               rtol=1e-6)
    assert other.throughputs == model.throughputs and other.task_ids == model.task_ids
    other.update(feats[50:55], tps[50:55], ["t1"] * 5)
    assert len(other.features) == 55


def test_update_argument_checks():
    with pytest.raises(ValueError):
        XGBModel().update([np.zeros((1, N_FEATURES))], [1.0, 2.0])


def test_random_model(tmp_path):
    model = RandomModel(seed=3)
    assert isinstance(model, CostModel)
    feats = [np.zeros((1, N_FEATURES), np.float32)] * 5 + [np.zeros((0, N_FEATURES))]
    model.update(feats, [1.0] * 6)
    scores = model.predict(feats)
    assert scores.shape == (6,) and scores[-1] == INVALID_SCORE
    assert len(set(scores[:5].tolist())) == 5
    model.save(tmp_path / "r.json")
    again = RandomModel()
    again.load(tmp_path / "r.json")
    assert again.seed == 3 and again.n_seen == 6
