"""Every Step type: record round trip (replaying parsed records gives an equal State) and a
lowering check against NumPy through the loop-IR interpreter."""

import json

import numpy as np
import pytest
import tir_interp
import workloads

from kiln.schedule import STEP_TYPES, ComputeDAG, replay
from kiln.schedule.layout import pack_array
from kiln.tir.lower import lower


def _mm():
    inputs, outputs, ref = workloads.swish_mm(8, 12, 10)
    return inputs, outputs, ref, ComputeDAG(inputs + outputs)


def _build(kind):
    inputs, outputs, ref, dag = _mm()
    s = dag.init_state()
    c = s.stages[2].op  # a, b, c, relu6, d
    assert c.name == "c"
    d = s.stages[-1].op
    if kind == "SP":
        s = s.split(d, 0, [3]).split(d, 2, [2, 3])
    elif kind == "FSP":
        s = s.split(c, 1, [2, 3])
        s = s.follow_split(d, 1, len(s.steps) - 1, 1)
    elif kind == "LR":
        s = s.layout_rewrite(s.stages[1].op, [(0, 4)])
    elif kind == "FU":
        s = s.fuse(d, [0, 1])
    elif kind == "RE":
        s = s.reorder(c, [2, 1, 0])
    elif kind == "CA":
        s = s.compute_inline(s.stages[3].op).split(d, 1, [4]).compute_at(c, d, 1)
    elif kind == "CI":
        s = s.compute_inline(s.stages[3].op)
    elif kind == "CR":
        s = s.compute_inline(s.stages[3].op).split(d, 0, [4]).compute_at(c, d, 0)
        s = s.compute_root(c)
    elif kind == "AN":
        s = s.parallel(d, 0).vectorize(d, 1).unroll(c, 2)
    elif kind == "PR":
        s = s.pragma(c, 0, "auto_unroll_max_step", 16)
    elif kind == "CW":
        s = s.cache_write(c, "local")
        s = s.compute_at(s.stages[2].op, s.stages[3].op, 1)
    elif kind == "CH":
        a = s.stages[0].op
        s = s.cache_read(a, "local", [c])
    elif kind == "SA":
        s = s.cache_read(s.stages[0].op, "shared", [c]).storage_align(1, 0, 4, 1)
    elif kind == "DB":
        s = s.cache_read(s.stages[0].op, "shared", [c])
        s = s.double_buffer(s.stages[1].op)
    elif kind == "SPR":  # a GPU schedule; the predicate holds for every thread there is
        s = s.compute_inline(s.stages[3].op).split(d, 1, [12])
        s = s.bind(d, 0, "blockIdx.x").bind(d, 1, "threadIdx.y").bind(d, 2, "threadIdx.x")
        s = s.compute_at(c, d, 2).store_predicate(d, [("threadIdx.y", 0)])
    elif kind == "SS":
        s = s.set_scope(c, "global")
    elif kind == "RF":
        s = s.split(c, 2, [4]).rfactor(c, 3)
    elif kind == "TZ":
        s = s.tensorize(c, 1, _row_times_matrix(12, 10))
    return s, inputs, outputs, ref, dag


def _row_times_matrix(n, k):
    """o[j] = sum_r x[r] * w[j, r], coded in the loop IR (the interpreter runs it)."""
    from kiln import te, tir
    x, w = te.placeholder((k,), name="x"), te.placeholder((n, k), name="w")
    r = te.reduce_axis((0, k), name="r")
    o = te.compute((n,), lambda j: te.sum(x[r] * w[j, r], axis=r), name="o")

    def fcompute(ins, outs):
        ib = tir.ir_builder.create()
        with ib.for_range(0, n, name="jj") as j:
            ib.emit(outs[0].vstore([j], 0.0))
            with ib.for_range(0, k, name="rr") as q:
                ib.emit(outs[0].vstore([j], outs[0].vload([j])
                                       + ins[0].vload([q]) * ins[1].vload([j, q])))
        return ib.get()
    return te.decl_tensor_intrin(o.op, fcompute)


@pytest.mark.parametrize("kind", sorted(STEP_TYPES))
def test_step_round_trip_and_lowering(kind):
    s, inputs, outputs, ref, dag = _build(kind)
    assert any(st.code == kind for st in s.steps)
    records = json.loads(json.dumps([st.to_record() for st in s.steps]))
    s2 = replay(dag, records)
    assert s2.record_key() == s.record_key()
    assert str(s2) == str(s)
    f1, f2 = lower(s, inputs + outputs), lower(s2, inputs + outputs)
    assert repr(f1) == repr(f2)
    arrays = workloads.random_inputs(inputs)
    out = np.zeros((8, 12), "float32")
    packed = [pack_array(x, st.layout) for x, st in zip(arrays, s.stages[:2])]
    tir_interp.run(f1, *packed, out)
    np.testing.assert_allclose(out, ref(*arrays), rtol=1e-4, atol=1e-5)


def test_state_is_hashable_and_immutable():
    s, *_ = _build("SP")
    s2 = s.split(s.stages[-1].op, 0, [2])
    assert s != s2 and len(s2.steps) == len(s.steps) + 1
    assert len({s, s2, s}) == 2
