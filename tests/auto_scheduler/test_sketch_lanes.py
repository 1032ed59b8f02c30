"""RuleRfactorLanes: the search space of a softmax holds schedules whose sums use the SIMD
lanes (rfactored partials inside the row loop, vectorized, a vector exp), next to the plain
ones, and every such candidate computes the softmax."""

import numpy as np

import kiln
from kiln import te, topi
from kiln.auto_scheduler.annotate import SketchInfo, materialize
from kiln.auto_scheduler.heuristic import heuristic_genome
from kiln.auto_scheduler.sketch import generate_sketches
from kiln.schedule import ComputeDAG
from kiln.schedule.steps import RfactorStep
from kiln.target import Target


def test_softmax_sketches_include_lane_rfactored_sums():
    x = te.placeholder((4, 8, 64), name="x")
    y = topi.nn.softmax(x)
    dag = ComputeDAG([x, y])
    sketches = generate_sketches(dag)
    with_rf = [s for s in sketches if any(isinstance(t, RfactorStep) for t in s.steps)]
    assert with_rf and len(with_rf) < len(sketches)  # plain sketches stay
    lanes = Target("cpu").vector_lanes("float32")
    xn = np.random.default_rng(0).standard_normal((4, 8, 64)).astype("float32")
    e = np.exp(xn - xn.max(-1, keepdims=True))
    ref = e / e.sum(-1, keepdims=True)
    for k, sk in enumerate(sketches):
        info = SketchInfo(dag, sk, k)
        state = materialize(info, heuristic_genome(info, Target("cpu")))
        f = kiln.build(state, [x, y], target="cpu")
        out = np.empty_like(xn)
        f(xn, out)
        np.testing.assert_allclose(out, ref, rtol=1e-5, atol=1e-6)
        if sk is with_rf[0]:
            rf = [st for st in state.stages if st.origin == "rfactor"]
            assert rf and rf[0].attach[0] == "at"
            assert rf[0].iters[-1].annotation == "vectorize"
            assert rf[0].iters[-1].extent == min(lanes, 64)


def test_row_fused_sketch_seeds_one_parallel_row_pass():
    """RuleComputeAtRow + RuleMaterializeAtRow + RuleRfactorLanes: a sketch with the max, the
    exp and the sum inside the output's row loop; its heuristic seed parallelises the rows,
    vectorizes the row and computes the softmax."""
    x = te.placeholder((4, 8, 64), name="x")
    y = topi.nn.softmax(x)
    dag = ComputeDAG([x, y])
    want = {"softmax_maxelem", "softmax_exp", "softmax_expsum"}
    fused = [(k, sk) for k, sk in enumerate(generate_sketches(dag))
             if want <= {st.name for st in sk.stages if st.attach[0] == "at"}]
    assert fused, "no row-fused sketch"
    info = SketchInfo(dag, fused[0][1], fused[0][0])
    state = materialize(info, heuristic_genome(info, Target("cpu")))
    out_stage = state.stages[-1]
    assert out_stage.iters[0].annotation == "parallel"
    assert out_stage.iters[-1].annotation == "vectorize"
    f = kiln.build(state, [x, y], target="cpu")
    body = f.source.split("int32_t default_function(")[1]
    assert body.count("#pragma omp parallel") == 1
    xn = np.random.default_rng(1).standard_normal((4, 8, 64)).astype("float32")
    out = np.empty_like(xn)
    f(xn, out)
    e = np.exp(xn - xn.max(-1, keepdims=True))
    np.testing.assert_allclose(out, e / e.sum(-1, keepdims=True), rtol=1e-5, atol=1e-6)
