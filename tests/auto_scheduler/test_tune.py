"""End-to-end tuning on tiny shapes (<= 32 trials): tune, apply_best, print_best, resume,
ApplyHistoryBest, layout rewrite, Ctrl-C. Full-size tuning belongs to benchmarks/gemm.py."""

import json

import numpy as np
import pytest

import kiln
from kiln import auto_scheduler, te


@auto_scheduler.register_workload
def tiny_mm(M, N, K):
    a = te.placeholder((M, K), name="a")
    b = te.placeholder((N, K), name="b")
    k = te.reduce_axis((0, K), name="k")
    c = te.compute((M, N), lambda i, j: te.sum(a[i, k] * b[j, k], [k]), name="c",
                   attrs={"layout_free_placeholders": [b]})
    return [a, b, c]


SHAPE = (32, 64, 48)


def _data():
    rng = np.random.default_rng(0)
    a = rng.random((SHAPE[0], SHAPE[2]), dtype=np.float32)
    b = rng.random((SHAPE[1], SHAPE[2]), dtype=np.float32)
    return a, b, a @ b.T


def _opts(log, n, **kw):
    return auto_scheduler.TuningOptions(num_measure_trials=n, num_measures_per_round=8,
                                        measure_callbacks=[auto_scheduler.RecordToFile(log)],
                                        verbose=0, seed=0, **kw)


def _keys(log):
    return [json.dumps(json.loads(line)["steps"]) for line in open(log)]


@pytest.fixture(scope="module")
def tuned(tmp_path_factory):
    log = str(tmp_path_factory.mktemp("tune") / "mm.json")
    task = auto_scheduler.SearchTask(func=tiny_mm, args=SHAPE, target="cpu")
    task.tune(_opts(log, 16))
    return task, log


def test_tune_apply_best_matches_numpy(tuned):
    task, log = tuned
    assert len(_keys(log)) == 16
    sch, args = task.apply_best(log)
    f = kiln.build(sch, args, target="cpu")
    a, b, ref = _data()
    c = np.empty_like(ref)
    f(a, b, c)
    np.testing.assert_allclose(c, ref, rtol=1e-4)
    text = task.print_best(log)
    assert "GFLOPS" in text and "s = s." in text


def test_resume_continues_without_repeats(tuned):
    task, log = tuned
    task.tune(_opts(log, 8))
    keys = _keys(log)
    assert len(keys) == 24 and len(set(keys)) == 24


def test_apply_history_best_builds_the_record(tuned):
    task, log = tuned
    a_t, b_t, c_t = tiny_mm(*SHAPE)
    with auto_scheduler.ApplyHistoryBest(log):
        f = kiln.build(te.create_schedule(c_t.op), [a_t, b_t, c_t], target="cpu")
    assert "#pragma omp" in f.source or "kiln_f32x" in f.source
    a, b, ref = _data()
    c = np.empty_like(ref)
    f(a, b, c)
    np.testing.assert_allclose(c, ref, rtol=1e-4)


def test_layout_rewrite_for_constant_weight(tmp_path):
    log = str(tmp_path / "lr.json")
    task = auto_scheduler.SearchTask(
        func=tiny_mm, args=SHAPE, target="cpu",
        layout_rewrite_option=auto_scheduler.LayoutRewriteOption.REWRITE_FOR_PRE_TRANSFORMED)
    task.tune(_opts(log, 8))
    sch, args = task.apply_best(log)
    layouts = auto_scheduler.input_layouts(sch, args)
    assert layouts[0] == () and layouts[1], "the weight b should be packed"
    a, b, ref = _data()
    a2, b2 = auto_scheduler.pack_inputs(sch, args[:2], [a, b])
    assert b2.ndim == 3
    c = np.empty_like(ref)
    kiln.build(sch, args, target="cpu")(a2, b2, c)
    np.testing.assert_allclose(c, ref, rtol=1e-4)


def test_random_model_and_ctrl_c(tmp_path):
    log = str(tmp_path / "rand.json")
    task = auto_scheduler.SearchTask(func=tiny_mm, args=SHAPE, target="cpu")
    seen = []

    def interrupt(task_, inputs, results):
        seen.append(1)
        if len(seen) == 5:
            raise KeyboardInterrupt

    from kiln.auto_scheduler.cost_model import RandomModel
    from kiln.auto_scheduler.policy import SketchPolicy
    opts = _opts(log, 24)
    opts.measure_callbacks.append(interrupt)
    best = task.tune(opts, search_policy=SketchPolicy(task, RandomModel(), seed=1, verbose=0))
    assert len(_keys(log)) == 5
    assert best is not None


def test_guided_batch_mixes_model_picks_of_fresh_samples_and_evolution():
    """A trained round: n unique unmeasured states, not all grown from the measured sketch."""
    from kiln.auto_scheduler.annotate import random_genome
    from kiln.auto_scheduler.cost_model.base import CostModel
    from kiln.auto_scheduler.policy import SketchPolicy

    class RowCounter(CostModel):  # scores a program by its number of store rows
        def update(self, *a, **k):
            pass

        def predict(self, feats):
            return np.array([float(len(f)) for f in feats])

    task = auto_scheduler.SearchTask(func=tiny_mm, args=SHAPE, target="cpu")
    pol = SketchPolicy(task, RowCounter(), seed=0, verbose=0)
    rng = __import__("random").Random(0)
    for k in range(6):
        g = random_genome(pol.infos[0], rng)
        if pol.cands.state(g) is not None:
            pol.measured.add(pol.cands.state(g).record_key())
            pol.measured_genomes.append((1.0 + k, g))
    batch = pol.next_batch(16)
    keys = [pol.cands.state(g).record_key() for g in batch]
    assert len(batch) == 16 and len(set(keys)) == 16 and not set(keys) & pol.measured
    assert len({g.sketch_id for g in batch}) > 1
