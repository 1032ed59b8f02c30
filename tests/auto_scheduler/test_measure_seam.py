"""The measurement seam without Ray: protocols, build results that carry their library,
the reference built by the builder like any candidate, and the one measurer factory."""

import hashlib

import pytest
import workloads

from kiln import auto_scheduler
from kiln.auto_scheduler.measure import (
    Builder,
    BuildResult,
    LocalBuilder,
    LocalRunner,
    MeasureInput,
    Runner,
    make_measurer,
)
from kiln.errors import KilnError


@auto_scheduler.register_workload
def seam_mm(M, N, K):
    ins, outs, _ = workloads.matmul(M, N, K)
    return ins + outs


@pytest.fixture(scope="module")
def task():
    return auto_scheduler.SearchTask(func=seam_mm, args=(16, 16, 16), target="cpu")


class CountingBuilder(LocalBuilder):
    def __init__(self):
        super().__init__()
        self.references = 0

    def build(self, inputs):
        self.references += sum(bool((i.extra or {}).get("reference")) for i in inputs)
        return super().build(inputs)


def test_local_backends_satisfy_the_protocols():
    assert isinstance(LocalBuilder(), Builder) and isinstance(LocalRunner(), Runner)


def test_a_build_result_carries_its_library_only_when_packed(task, tmp_path):
    (br,) = LocalBuilder().build([MeasureInput(task, task.compute_dag.init_state())])
    assert br.ok and br.artifact is None  # the local path never reads the bytes
    packed = br.packed()
    assert packed.sha256 == hashlib.sha256(open(br.lib_path, "rb").read()).hexdigest()
    moved = BuildResult(None, br.source, artifact=packed.artifact, sha256=packed.sha256)
    path = moved.local_path(str(tmp_path))
    assert path.endswith(f"{packed.sha256}.so") and open(path, "rb").read() == packed.artifact
    bad = BuildResult(None, "", artifact=b"not it", sha256=packed.sha256)
    with pytest.raises(ValueError, match="sha256"):
        bad.local_path(str(tmp_path))


def test_the_reference_is_built_by_the_builder_once(task):
    builder = CountingBuilder()
    with LocalRunner(timeout=10, number=1, min_repeat_ms=0) as runner:
        opts = auto_scheduler.TuningOptions(builder=builder, runner=runner)
        measurer = make_measurer(opts)
        for _ in range(2):
            (res,) = measurer.measure(task, [task.compute_dag.init_state()])
            assert res.error_no == "ok" and res.checked
    assert builder.references == 1


def test_make_measurer_knows_local_and_rejects_unknown_names():
    m = make_measurer(auto_scheduler.TuningOptions())
    assert isinstance(m.builder, LocalBuilder) and isinstance(m.runner, LocalRunner)
    with pytest.raises(KilnError, match="unknown runner"):
        make_measurer(auto_scheduler.TuningOptions(runner="grid"))
