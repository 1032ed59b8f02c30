"""GPU measurement and a short GPU tune on a real device (marked `cuda`; run with -m cuda; CI
runs them on the emulated GPU of tests/gpu_stub.py): the NVRTC builder pool and the
measurement worker, every result checked against the reference; a candidate that hits an
illegal address costs that candidate only; the best record builds and computes the task."""

import json

import numpy as np
import pytest
import workloads

import kiln
from kiln.auto_scheduler import RecordToFile, SearchTask, TuningOptions
from kiln.auto_scheduler.gpu.measure import GpuRunner
from kiln.auto_scheduler.measure.record import load_records
from kiln.runtime import cuda as rt
from kiln.schedule import ComputeDAG

pytestmark = [pytest.mark.cuda,
              pytest.mark.skipif(not rt.available(), reason="no CUDA GPU is present")]


def _task(m=64, n=128, k=32):
    (a, b), (c,), ref = workloads.swish_mm(m, n, k)
    return SearchTask(compute_dag=ComputeDAG([a, b, c]), target="cuda", desc="swish_mm"), ref


def test_a_short_tune_on_the_gpu(tmp_path):
    task, ref = _task()
    log = str(tmp_path / "gpu.json")
    task.tune(TuningOptions(num_measure_trials=8, num_measures_per_round=4,
                            measure_callbacks=[RecordToFile(log)]))
    recs = list(load_records(log))
    assert len(recs) == 8 and all(r.target == str(task.target) for r in recs)
    ok = [r for r in recs if r.error == "ok"]
    assert ok and all(r.checked and 0 < r.mean_cost < 1 for r in ok)
    sch, args = task.apply_best(log)
    f = kiln.build(sch, args, target="cuda")
    rng = np.random.default_rng(0)
    a = rng.standard_normal((64, 32), dtype=np.float32)
    b = rng.standard_normal((128, 32), dtype=np.float32)
    out = np.full((64, 128), np.nan, np.float32)
    f(a, b, out)
    np.testing.assert_allclose(out, ref(a.astype(np.float64), b.astype(np.float64)),
                               rtol=1e-4, atol=1e-4)


BOOM = """
extern "C" __global__ void boom_kernel(float* a) {
  a[threadIdx.x + (1ull << 40)] = 1.0f;
}
"""


def test_an_illegal_address_costs_one_candidate():
    """The worker whose context a candidate poisoned is replaced; the next candidate is
    measured normally."""
    from kiln.auto_scheduler.gpu.space import GpuSpace
    from kiln.codegen import cuda, nvrtc
    task, _ = _task(16, 32, 16)
    space = GpuSpace(task.compute_dag, task.target)
    _, func, plan = space.lowered(space.default(), task.args)
    arch = rt.device_properties()["arch"]
    cubin = nvrtc.compile_cuda(cuda.render(func, task.target), arch)
    boom_plan = dict(json.loads(json.dumps(plan)), workspace=[], kernels=[
        {"name": "boom_kernel", "grid": [1, 1, 1], "block": [32, 1, 1], "shared_bytes": 0,
         "args": [["param", len(plan["params"]) - 1]]}])
    runner = GpuRunner(repeat=2, min_repeat_ms=1)
    try:
        runner.set_task(task, (cubin, plan, func))
        bad, good = runner.run([(nvrtc.compile_cuda(BOOM, arch), boom_plan, func),
                                (cubin, plan, func)])
    finally:
        runner.close()
    assert bad.error_no != "ok" and not bad.costs, bad
    assert good.error_no == "ok" and good.costs and good.checked, good
