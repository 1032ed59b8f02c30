"""Winograd F(m x m, 3 x 3) convolutions: the transform matrices, the graph rewrite
(graph/passes/winograd.py), the transforms' schedules (graph/default_winograd.py) and built
models against the NumPy interpreter of the original convolution."""

from __future__ import annotations

import numpy as np
import pytest
from graph_interp import run_graph

import kiln
from kiln import te
from kiln.graph.frontend.common import GraphBuilder
from kiln.graph.passes import default_pipeline, op_histogram
from kiln.topi import nn

RNG = np.random.default_rng(7)


def _rand(*shape, scale=1.0):
    return (RNG.standard_normal(shape) * scale).astype(np.float32)


@pytest.mark.parametrize("m", [1, 2, 3, 4, 5, 6])
def test_matrices_compute_a_three_tap_correlation(m):
    """y = A^T ((G g) * (B^T d)) is the correlation of d with g, for any data."""
    at, g, bt = nn.winograd_matrices(m)
    for _ in range(5):
        d, w = RNG.standard_normal(m + 2), RNG.standard_normal(3)
        want = np.array([w @ d[i:i + 3] for i in range(m)])
        np.testing.assert_allclose(at @ ((g @ w) * (bt @ d)), want, rtol=1e-10, atol=1e-10)
    with pytest.raises(kiln.errors.ShapeError, match="tile size"):
        nn.winograd_matrices(9)


def _conv_graph(shape, oc, stride=1, padding=1, then_pointwise=0):
    """relu(conv3x3(x) + bias) [then a 1x1 conv reading it]."""
    b = GraphBuilder("wino")
    x = b.input("x", shape, "float32")
    ic = shape[1]
    y = b.op("conv2d", [x, b.const(_rand(oc, ic, 3, 3, scale=0.2), "w"),
                        b.const(_rand(oc), "bias")],
             strides=[stride, stride], padding=[padding] * 4, dilation=[1, 1], groups=1)
    y = b.op("relu", [y])
    if then_pointwise:
        y = b.op("conv2d", [y, b.const(_rand(then_pointwise, oc, 1, 1, scale=0.2), "w1")],
                 strides=[1, 1], padding=[0, 0, 0, 0], dilation=[1, 1], groups=1)
    return b.finish([y])


def _ops(g) -> dict:
    return {k: v for k, v in op_histogram(g).items() if k not in ("input", "const")}


def test_pass_rewrites_eligible_convs_with_the_same_results():
    """A 3x3 stride-1 conv with 16-multiple channels over >= 16 tiles becomes the four
    Winograd steps; the interpreter gives the same results. Stride 2, no padding, 8
    channels and a 7x7 image (4 tiles) stay convolutions."""
    g = _conv_graph((2, 16, 14, 14), 32)
    r = default_pipeline(g, winograd_lanes=16)
    ops = _ops(r)
    assert "conv2d" not in ops and ops["winograd_input"] == ops["winograd_output"] == 1
    assert ops["batch_matmul"] == 1 and ops["transpose"] == 1 and ops["pad"] == 1
    x = _rand(2, 16, 14, 14)
    for a, b in zip(run_graph(g, {"x": x}), run_graph(r, {"x": x})):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-4)
    for case in (_conv_graph((1, 16, 16, 16), 16, stride=2),
                 _conv_graph((1, 16, 16, 16), 16, padding=0),
                 _conv_graph((1, 8, 16, 16), 16), _conv_graph((1, 16, 7, 7), 16)):
        assert _ops(default_pipeline(case, winograd_lanes=16)) == _ops(default_pipeline(case))


def test_transform_schedules_unroll_positions_into_vector_sums():
    """Both transforms get the rule-based schedule: the position loops are unrolled, so
    the C has no per-element Select chain (no `==` position tests, no ternaries) and reads
    whole channel vectors."""
    from kiln.graph.default_winograd import winograd_schedule
    from kiln.target import Target
    xp = te.placeholder((1, 18, 18, 16), name="xp")
    mt = te.placeholder((36, 16, 16), name="mt")
    outs = [(nn.winograd_input(xp, 4), [xp]), (nn.winograd_output(mt, 4, (1, 16, 14, 14)), [mt])]
    lanes = Target("cpu").vector_lanes("float32")  # 16 with AVX-512, 8 with AVX2
    for out, ins in outs:
        dag = kiln.auto_scheduler.ComputeDAG(ins + [out])
        state = winograd_schedule(dag, Target("cpu"))
        assert state is not None
        sched, args = dag.apply_steps_from_state(state)
        src = kiln.build(sched, args, target="cpu").source
        body = src[src.index("#pragma omp parallel"):]
        assert f"kiln_load_f32x{lanes}" in body and "==" not in body and " ? " not in body


@pytest.mark.parametrize("shape,oc,pointwise", [((1, 16, 14, 14), 32, 0),
                                                ((2, 32, 16, 16), 16, 16)])
def test_built_winograd_convs_match_numpy(shape, oc, pointwise):
    """Built for the CPU: edge tiles (14 = 3 * 4 + 2), a batch of 2, and the [N, C, H*W]
    view a following pointwise product reads (fused into the output transform) all match
    the direct convolution."""
    g = _conv_graph(shape, oc, then_pointwise=pointwise)
    lib = kiln.graph.build(g, dict(g.params), target="cpu")
    x = _rand(*shape)
    names = [row[0] for row in lib.profile(number=1, x=x)]
    assert sum("winograd" in n for n in names) == 2 and not any("conv2d" in n for n in names
                                                                if "winograd" not in n)
    for got, want in zip(lib.run(x=x).values(), run_graph(g, {"x": x})):
        np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4)


def test_products_are_tuning_tasks_and_tuned_builds_match(tmp_path):
    """extract_tasks offers the 36 products (not the transforms, whose schedule is fixed);
    records from a short tune are applied and the build still matches."""
    from kiln import auto_scheduler
    g = _conv_graph((1, 16, 16, 16), 16)
    tasks, _ = auto_scheduler.extract_tasks(g, dict(g.params), target="cpu")
    assert not any("winograd" in t.desc for t in tasks)
    (task,) = [t for t in tasks if "batch_matmul" in t.desc]
    log = str(tmp_path / "wino.json")
    task.tune(auto_scheduler.TuningOptions(
        num_measure_trials=4, num_measures_per_round=4, verbose=0, seed=0,
        measure_callbacks=[auto_scheduler.RecordToFile(log)]))
    with auto_scheduler.ApplyHistoryBest(log):
        lib = kiln.graph.build(g, dict(g.params), target="cpu")
    assert any(k["tuned"] for k in lib.meta["kernels"])
    x = _rand(1, 16, 16, 16)
    for got, want in zip(lib.run(x=x).values(), run_graph(g, {"x": x})):
        np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("seed", range(4))
def test_random_winograd_convs_match_the_direct_sum(seed):
    """Random eligible shapes (batch, odd and non-square images, with or without a bias,
    a residual add after it): the rewritten graph computes what the convolution does."""
    rng = np.random.default_rng(100 + seed)
    batch = int(rng.integers(1, 4))
    h, w = (int(v) for v in rng.integers(9, 23, 2))
    ic, oc = (16 * int(v) for v in rng.integers(1, 3, 2))
    b = GraphBuilder("rand")
    x = b.input("x", (batch, ic, h, w), "float32")
    ins = [x, b.const(_rand(oc, ic, 3, 3, scale=0.2), "w")]
    if rng.random() < 0.5:
        ins.append(b.const(_rand(oc), "bias"))
    y = b.op("conv2d", ins, strides=[1, 1], padding=[1, 1, 1, 1], dilation=[1, 1], groups=1)
    y = b.op("add", [y, b.input("r", (batch, oc, h, w), "float32")])
    g = b.finish([y])
    r = default_pipeline(g, winograd_lanes=16)
    assert "conv2d" not in _ops(r)
    feeds = {"x": _rand(batch, ic, h, w), "r": _rand(batch, oc, h, w)}
    lib = kiln.graph.build(g, dict(g.params), target="cpu")
    want = run_graph(g, feeds)[0]
    np.testing.assert_allclose(run_graph(r, feeds)[0], want, rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(list(lib.run(**feeds).values())[0], want, rtol=1e-4, atol=1e-4)


def test_chained_convs_store_the_next_input_channels_last():
    """conv -> relu -> conv: the first output transform's epilogue ends in the transpose and
    pad the second reads. Its schedule follows the transpose (vector of channels stored
    contiguously, positions unrolled: no per-lane `==` position tests) and the model matches."""
    b = GraphBuilder("chain")
    x = b.input("x", (1, 16, 16, 16), "float32")
    y = x
    for i in range(2):
        y = b.op("conv2d", [y, b.const(_rand(16, 16, 3, 3, scale=0.2), f"w{i}")],
                 strides=[1, 1], padding=[1] * 4, dilation=[1, 1], groups=1)
        y = b.op("relu", [y])
    g = b.finish([y])
    lib = kiln.graph.build(g, dict(g.params), target="cpu")
    src = lib.source
    start = src.index("winograd_output_relu_transpose_pad")
    kernel = src[src.index("#pragma omp parallel", start):src.index("\n}\n", start)]
    assert "kiln_store_f32x" in kernel and "==" not in kernel
    xv = _rand(1, 16, 16, 16)
    np.testing.assert_allclose(list(lib.run(x=xv).values())[0], run_graph(g, {"x": xv})[0],
                               rtol=1e-4, atol=1e-4)
