"""Property tests: any random legal schedule computes what NumPy computes."""

import numpy as np
import pytest
import tir_interp
import workloads
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from schedule_fuzz import HypothesisDraw, random_state

from kiln.schedule import ComputeDAG
from kiln.tir.lower import lower


def _check(name, state_fn, run):
    inputs, outputs, ref = workloads.ALL[name]()
    dag = ComputeDAG(inputs + outputs)
    state = state_fn(dag)
    arrays = workloads.random_inputs(inputs)
    out = np.zeros([int(d) for d in outputs[0].shape], outputs[0].dtype)
    run(state, inputs + outputs, arrays + [out])
    np.testing.assert_allclose(out, ref(*arrays), rtol=1e-4, atol=1e-5,
                               err_msg=f"{name}\n{state}")


def run_interp(state, args, arrays):
    tir_interp.run(lower(state, args), *arrays)


def run_c(state, args, arrays):
    import kiln
    kiln.build(state, args, target="cpu")(*arrays)


BACKENDS = {"interp": run_interp, "c": run_c}


@pytest.mark.parametrize("backend", ["interp", "c"])
@pytest.mark.parametrize("name", sorted(workloads.ALL))
@settings(max_examples=25, deadline=None, suppress_health_check=list(HealthCheck))
@given(data=st.data())
def test_random_schedule_matches_numpy(name, backend, data):
    if backend == "c":
        import kiln
        if not hasattr(kiln, "build"):
            pytest.skip("kiln.build not available yet")
    _check(name, lambda dag: random_state(dag, HypothesisDraw(data)), BACKENDS[backend])
