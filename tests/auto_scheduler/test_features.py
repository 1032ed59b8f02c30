"""Per-store features: shapes, names, loop-kind features, strides, op counts, determinism, speed."""

from __future__ import annotations

import time

import numpy as np
import pytest
import workloads
from schedule_fuzz import PyRandom, random_state

import kiln
from kiln import te
from kiln.auto_scheduler.cost_model import (
    FEATURE_NAMES,
    N_FEATURES,
    get_per_store_features,
    get_per_store_features_from_states,
)
from kiln.auto_scheduler.cost_model.features import FEATURE_DOCS
from kiln.schedule import ComputeDAG

COL = {n: i for i, n in enumerate(FEATURE_NAMES)}


def raw(x: float) -> float:
    """Undo the log2(1 + x) scaling."""
    return float(2.0 ** x - 1.0)


def _mm_schedule(M=8, N=12, K=7):
    (a, b), (c,), _ = workloads.matmul(M, N, K)
    return te.create_schedule(c.op), [a, b, c], c


def test_shapes_and_names():
    s, args, _ = _mm_schedule()
    f = get_per_store_features(kiln.lower(s, args))
    assert f.dtype == np.float32 and f.shape == (2, N_FEATURES)  # init store + update store
    assert len(FEATURE_NAMES) == N_FEATURES == len(set(FEATURE_NAMES))
    assert all(FEATURE_DOCS[n] for n in FEATURE_NAMES)
    assert np.isfinite(f).all()


def test_matmul_op_counts():
    M, N, K = 8, 12, 7
    s, args, _ = _mm_schedule(M, N, K)
    f = get_per_store_features(kiln.lower(s, args))
    update = f[1]
    assert raw(update[COL["op_f_mul"]]) == pytest.approx(M * N * K)
    assert raw(update[COL["op_f_addsub"]]) == pytest.approx(M * N * K)
    assert raw(update[COL["op_fma"]]) == pytest.approx(M * N * K)
    assert raw(update[COL["outer_prod"]]) == pytest.approx(M * N * K)
    assert update[COL["num_loops"]] == 3
    assert raw(f[0][COL["op_f_mul"]]) == 0  # the init store does no arithmetic
    assert f[0][COL["is_init"]] == 1 and update[COL["is_init"]] == 0
    assert update[COL["store_is_rw"]] == 1 and update[COL["reduce_loops"]] == 1


def test_store_stride_along_inner_loop():
    s, args, _ = _mm_schedule(8, 12, 7)
    f = get_per_store_features(kiln.lower(s, args))
    init = f[0]  # c[i * 12 + j] = 0 inside for i, for j
    assert raw(init[COL["store_stride"]]) == pytest.approx(1)
    assert raw(init[COL["store_inner_stride"]]) == pytest.approx(1)
    update = f[1]  # innermost loop k leaves c's index unchanged: reuse carried by k
    assert update[COL["store_inner_stride"]] == 0
    assert raw(update[COL["store_stride"]]) == pytest.approx(1)
    assert update[COL["store_reuse_loop"]] == 1
    assert raw(update[COL["store_reuse_ct"]]) == pytest.approx(7)
    # a[i * 7 + k] along k: stride 1; b[j * 7 + k]: stride 1; both read 8*12*7 times
    assert raw(update[COL["load1_stride"]]) == pytest.approx(1)
    assert raw(update[COL["load1_bytes"]]) == pytest.approx(8 * 12 * 7 * 4, rel=1e-4)
    assert raw(update[COL["load1_unique_bytes"]]) == pytest.approx(8 * 7 * 4, rel=1e-4)


def test_vectorized_and_parallel_loops():
    s, args, c = _mm_schedule(8, 16, 7)
    i, j = c.op.axis
    jo, ji = s[c].split(j, factor=8)
    s[c].parallel(i)
    s[c].vectorize(ji)
    f = get_per_store_features(kiln.lower(s, args))
    init = f[0]
    assert raw(init[COL["vec_len"]]) == pytest.approx(8)
    assert init[COL["vec_num"]] == 1
    assert init[COL["store_vec_contig"]] == 1
    assert raw(init[COL["par_len"]]) == pytest.approx(8)
    assert init[COL["par_depth"]] == 1 and init[COL["par_num"]] == 1
    plain = get_per_store_features(kiln.lower(*_mm_schedule(8, 16, 7)[:2]))
    assert plain[0][COL["vec_len"]] == 0 and plain[0][COL["par_len"]] == 0


def test_unroll_pragma_and_cache_write_allocation():
    (a, b), (c,), _ = workloads.matmul(16, 16, 16)
    s = te.create_schedule(c.op)
    cc = s.cache_write(c, "local")
    i, j = c.op.axis
    io, ii = s[c].split(i, factor=4)
    jo, ji = s[c].split(j, factor=8)
    s[c].reorder(io, jo, ii, ji)
    s[c].unroll(ii)
    s[c].pragma(io, "auto_unroll_max_step", 16)
    s[cc].compute_at(s[c], jo)
    f = get_per_store_features(kiln.lower(s, [a, b, c]))
    last = f[-1]  # c[...] = c_local[...]
    assert last[COL["has_auto_unroll"]] == 1
    assert raw(last[COL["auto_unroll_max_step"]]) == pytest.approx(16)
    # lowering turns the pragma into unrolled inner loops within budget: i_1 (4) and j_1 (8)
    assert raw(last[COL["unroll_len"]]) == pytest.approx(8)
    assert last[COL["unroll_num"]] == 2 and raw(last[COL["unroll_prod"]]) == pytest.approx(32)
    assert last[COL["auto_unroll_full"]] == 0  # 256 iterations under the pragma loop > 16
    first = f[0]  # the accumulator init: stores into the local temporary
    assert first[COL["alloc_stack"]] == 1
    assert raw(first[COL["alloc_bytes"]]) == pytest.approx(4 * 8 * 4, rel=1e-4)
    assert first[COL["scope_allocs_in_loops"]] == 1


def test_random_states_are_finite_and_deterministic():
    for wl in (workloads.matmul, workloads.conv2d, workloads.softmax, workloads.layer_norm):
        inputs, outputs, _ = wl()
        dag = ComputeDAG(inputs + outputs)
        for seed in range(6):
            state = random_state(dag, PyRandom(seed))
            f1 = get_per_store_features(kiln.lower(state, inputs + outputs))
            f2 = get_per_store_features(kiln.lower(state, inputs + outputs))
            assert f1.shape[1] == N_FEATURES and len(f1) >= 1
            assert np.isfinite(f1).all()
            np.testing.assert_array_equal(f1, f2)


def test_max_stores_and_from_states():
    inputs, outputs, _ = workloads.softmax()
    dag = ComputeDAG(inputs + outputs)
    func = kiln.lower(dag.init_state(), inputs + outputs)
    full = get_per_store_features(func)
    assert len(full) > 2
    assert get_per_store_features(func, max_stores=2).shape == (2, N_FEATURES)
    states = [dag.init_state(), "not a state"]
    out = get_per_store_features_from_states(states, inputs + outputs)
    np.testing.assert_array_equal(out[0], full)
    assert out[1].shape == (0, N_FEATURES)
    many = [random_state(dag, PyRandom(seed)) for seed in range(12)]
    serial = get_per_store_features_from_states(many, inputs + outputs)
    forked = get_per_store_features_from_states(many, inputs + outputs, n_jobs=2)
    assert all(np.array_equal(x, y) for x, y in zip(serial, forked, strict=True))


def test_extraction_is_fast():
    inputs, outputs, _ = workloads.matmul(64, 64, 64)
    dag = ComputeDAG(inputs + outputs)
    funcs = [kiln.lower(random_state(dag, PyRandom(seed)), inputs + outputs)
             for seed in range(10)]
    t0 = time.perf_counter()
    for f in funcs:
        get_per_store_features(f)
    assert (time.perf_counter() - t0) / len(funcs) < 0.05
