"""Task extraction (unique workloads, weights) and the rule-based default schedules."""

import numpy as np
import pytest

from kiln.auto_scheduler import LayoutRewriteOption, extract_tasks
from kiln.codegen.c import render
from kiln.graph import Graph, Node
from kiln.graph.default_schedule import default_schedule
from kiln.graph.tasks import group_workload, prepare_graph
from kiln.schedule.steps import AnnotationStep, LayoutRewriteStep, SplitStep
from kiln.tir.lower import lower

F = "float32"
RNG = np.random.default_rng(0)


def _const(params, name, shape):
    params[name] = RNG.standard_normal(shape).astype(np.float32)
    return Node("const", [], {"name": name}, tuple(shape), F)


def stacked_mlp(layers=3, width=32):
    p = {}
    x = Node("input", [], {"name": "x"}, (8, width), F)
    h = x
    for k in range(layers):
        h = Node("dense", [h, _const(p, f"w{k}", (width, width))], {}, (8, width), F)
        h = Node("add", [h, _const(p, f"b{k}", (width,))], {}, (8, width), F)
        h = Node("gelu", [h], {"approximate": "none"}, (8, width), F)
    y = Node("softmax", [h], {"axis": -1}, (8, width), F)
    return Graph([x], [y], p)


def test_identical_layers_share_a_task_and_weights_add_up():
    g = stacked_mlp(3)
    tasks, weights = extract_tasks(g, target="cpu", run_passes=False)
    _, groups = prepare_graph(g, run_passes=False)
    assert sum(weights) == len(groups) == 4
    assert sorted(weights) == [1, 3]
    assert len({t.workload_key for t in tasks}) == len(tasks) == 2
    dense = tasks[weights.index(3)]
    assert dense.layout_rewrite_option == LayoutRewriteOption.REWRITE_FOR_PRE_TRANSFORMED
    assert dense.layout_free == ("p1",)
    assert "dense" in dense.desc
    simple, w2 = extract_tasks(g, include_simple_tasks=False, run_passes=False)
    assert len(simple) == 2 and sum(w2) == 4


def test_constant_and_runtime_weights_get_different_keys():
    p = {}
    x = Node("input", [], {"name": "x"}, (8, 16), F)
    wv = Node("input", [], {"name": "wv"}, (16, 16), F)
    a = Node("dense", [x, _const(p, "w", (16, 16))], {}, (8, 16), F)
    b = Node("dense", [x, wv], {}, (8, 16), F)
    g = Graph([x, wv], [a, b], p)
    _, groups = prepare_graph(g, run_passes=False)
    wa, wb = (group_workload(gr, p) for gr in groups)
    assert wa.dag.workload_key() == wb.dag.workload_key()
    assert wa.key != wb.key and wa.layout_free and not wb.layout_free


def test_scalar_constants_become_immediates():
    p = {"s": np.array([0.5], np.float32)}
    x = Node("input", [], {"name": "x"}, (4, 8), F)
    s = Node("const", [], {"name": "s"}, (1,), F)
    y = Node("multiply", [x, s], {}, (4, 8), F)
    _, (group,) = prepare_graph(Graph([x], [y], p), run_passes=False)
    wl = group_workload(group, p)
    assert [n.op for n in wl.arg_nodes] == ["input"] and len(wl.args) == 2


def _default_c(tensors, layout_free=()):
    from kiln.schedule import ComputeDAG
    dag = ComputeDAG(tensors)
    state = default_schedule(dag, layout_free, "cpu")
    return state, render(lower(state, tensors, "k"), "cpu")


@pytest.mark.parametrize("kind", ["dense", "batch_matmul", "conv2d"])
def test_default_schedule_is_tiled_parallel_and_vectorized(kind):
    from kiln import te, topi
    if kind == "dense":
        a, w = te.placeholder((64, 48), name="a"), te.placeholder((96, 48), name="w")
        out = topi.dense(a, w)
        out.op.attrs["layout_free_placeholders"] = [w]
        free = ("w",)
    elif kind == "batch_matmul":
        a, w = te.placeholder((2, 32, 16), name="a"), te.placeholder((2, 16, 64), name="w")
        out, free = topi.batch_matmul(a, w, False, False), ()
    else:
        a, w = te.placeholder((1, 8, 14, 14), name="a"), te.placeholder((16, 8, 3, 3), name="w")
        out, free = topi.conv2d_nchw(a, w, 1, 1), ()
    state, src = _default_c([a, w, out], free)
    tiles = [s.lengths for s in state.steps if isinstance(s, SplitStep)]
    assert any(max(t) > 1 for t in tiles), "the anchor must be tiled"
    notes = {s.annotation for s in state.steps if isinstance(s, AnnotationStep)}
    assert {"parallel", "vectorize"} <= notes
    assert "#pragma omp parallel for" in src and "kiln_f32x" in src
    if free:
        assert any(isinstance(s, LayoutRewriteStep) for s in state.steps)


def test_tuning_a_graph_task_measures_its_default_first(tmp_path):
    """A CPU graph task's baseline is the untuned build's schedule (for a softmax, a one-pass
    row schedule no sketch makes): the search measures it first, so a tuned record is never
    slower than the untuned build; a resumed search does not measure it again."""
    from kiln import auto_scheduler
    from kiln.auto_scheduler.measure.record import load_records
    x = Node("input", [], {"name": "x"}, (16, 64), "float32")
    graph = Graph([x], [Node("softmax", [x], {"axis": -1}, (16, 64), "float32")], {})
    (task,), _ = extract_tasks(graph, {}, target="cpu")
    assert task.baseline is not None
    log = str(tmp_path / "sm.json")

    def tune(n):
        task.tune(auto_scheduler.TuningOptions(
            num_measure_trials=n, num_measures_per_round=2, verbose=0,
            measure_callbacks=[auto_scheduler.RecordToFile(log)]))
    tune(3)
    recs = list(load_records(log))
    assert len(recs) == 3
    assert recs[0].steps == [st.to_record() for st in task.baseline.steps]
    best = min(r.mean_cost for r in recs)
    assert best <= recs[0].mean_cost
    tune(2)  # resumed: two new candidates, the baseline not again
    assert len(list(load_records(log))) == 5
