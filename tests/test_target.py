"""Target strings, host detection and compiler flags."""

from __future__ import annotations

import os

import pytest

from kiln.errors import TargetError
from kiln.target import Target, as_target, host_cache_sizes, host_features


def test_llvm_is_an_alias_of_cpu():
    assert Target("llvm") == Target("cpu") == Target("c")
    assert str(Target("llvm")).startswith("cpu") and hash(Target("llvm")) == hash(Target("cpu"))


def test_canonical_string_orders_options():
    t = Target("llvm -num-cores=2 -mattr=+fma,+avx2 -mcpu=znver3 -mtriple=x86_64-linux-gnu")
    assert str(t) == "cpu -mcpu=znver3 -mattr=+avx2,+fma -num-cores=2"
    assert Target(str(t)) == t and t.kind == "cpu" and t.cores == 2


def test_unknown_kinds_and_options():
    with pytest.raises(TargetError, match="CUDA only"):
        Target("rocm")
    with pytest.raises(TargetError, match="known kinds: cpu"):
        Target("foo")
    with pytest.raises(TargetError, match="unknown target option '-bogus=1'"):
        Target("cpu -bogus=1")
    with pytest.raises(TargetError, match="unknown -mattr feature 'sse9'"):
        Target("cpu -mattr=+sse9")
    with pytest.raises(TargetError, match="positive integer"):
        Target("cpu -num-cores=0")
    with pytest.raises(TargetError, match="empty target"):
        Target("")


def test_host_detection():
    t = Target("cpu")
    assert t.cores == len(os.sched_getaffinity(0))
    assert set(t.features) == set(host_features())
    expect = 64 if "avx512f" in t.features else 32 if "avx2" in t.features else 16
    assert t.vector_bytes == expect
    assert t.vector_lanes("float32") == expect // 4 and t.vector_lanes("int8") == expect
    sizes = host_cache_sizes()
    if os.path.isdir("/sys/devices/system/cpu/cpu0/cache"):
        assert sizes["l1"] > 0 and sizes["l2"] >= sizes["l1"]
    assert t.l1_bytes == sizes["l1"]


def test_features_follow_mcpu_and_mattr():
    assert Target("cpu -mcpu=znver3").vector_bytes == 32
    assert Target("cpu -mcpu=skylake-avx512").vector_lanes("float32") == 16
    t = Target("cpu -mcpu=skylake-avx512 -mattr=-avx512f")
    assert not t.has("avx512f") and t.vector_bytes == 32
    assert Target("cpu -mcpu=x86-64").vector_bytes == 16


def test_cflags():
    flags = Target("cpu").cflags()
    for f in ("-O3", "-march=native", "-ffp-contract=fast", "-fopenmp", "-fPIC", "-shared",
              "-fno-math-errno"):
        assert f in flags
    flags = Target("llvm -mcpu=znver3 -mattr=+avx2,-avx512f").cflags()
    assert "-march=znver3" in flags and "-march=native" not in flags
    assert "-mavx2" in flags and "-mno-avx512f" in flags


def test_a_cpu_the_compiler_does_not_know_builds_from_its_features(monkeypatch):
    """GCC 12 has no -march=znver4: kiln passes the generic base plus znver4's features
    instead; a name outside kiln's table is a BuildError naming it."""
    import numpy as np

    import kiln
    from kiln import te
    from kiln.codegen import toolchain
    from kiln.errors import BuildError
    cc = toolchain.compiler()
    monkeypatch.setattr(toolchain, "_accepts", lambda cc, flag: False)
    flags = toolchain.compile_flags(Target("cpu -mcpu=znver4 -mattr=-avx512bf16"), cc)
    assert "-march=znver4" not in flags and "-march=x86-64" in flags
    assert {"-mavx512f", "-mavx512vnni", "-mfma"} <= set(flags)
    assert "-mavx512bf16" not in flags and "-mno-avx512bf16" in flags
    with pytest.raises(BuildError, match="-mcpu=zen9000"):
        toolchain.compile_flags(Target("cpu -mcpu=zen9000"), cc)
    A = te.placeholder((16,), name="A")
    B = te.compute((16,), lambda i: A[i] * 2, name="B")
    f = kiln.build(te.create_schedule(B.op), [A, B], target="cpu -mcpu=x86-64-v3")
    a = np.arange(16, dtype="float32")
    b = kiln.nd.array(np.zeros(16, "float32"))
    f(kiln.nd.array(a), b)
    np.testing.assert_array_equal(b.numpy(), a * 2)


def test_current_scope():
    assert Target.current() == Target("cpu")
    assert Target.current(allow_none=True) is None
    with Target("cpu -num-cores=1") as t:
        assert Target.current() is t and as_target(None) is t
    assert Target.current(allow_none=True) is None
    assert as_target("llvm") == Target("cpu")
    with pytest.raises(TargetError):
        as_target(3)


def test_cuda_targets():
    t = Target("cuda -arch=sm_90")
    assert str(t) == "cuda -arch=sm_90" and t.kind == "cuda" and t.is_gpu
    assert Target("nvptx -arch=sm_80") == Target("cuda -arch=sm_80")
    assert t.compute_capability == (9, 0) and t.warp_size == 32
    assert t.max_threads_per_block == 1024 and t.max_shared_memory_per_block >= 48 * 1024
    # per-SM facts the performance model reads (the arch table without a GPU of that arch)
    assert t.max_threads_per_sm == 2048 and t.max_registers_per_sm == 65536
    assert t.max_shared_memory_per_sm >= 228 * 1024 and t.sm_count > 0
    assert Target("cuda -arch=sm_86").max_threads_per_sm == 1536
    with pytest.raises(TargetError, match="bad CUDA architecture"):
        Target("cuda -arch=compute_90")
    with pytest.raises(TargetError, match="unknown cuda target option"):
        Target("cuda -mcpu=znver4")


def test_cuda_without_a_gpu_names_an_arch():
    from kiln.runtime import cuda
    if cuda.available():
        assert Target("cuda").arch.startswith("sm_")
    else:
        with pytest.raises(TargetError, match="no CUDA GPU is present.*-arch=sm_90"):
            Target("cuda")


def test_cpu_target_string_names_the_isa():
    from kiln.target import host_features, missing_features
    t = Target("cpu")
    assert str(t).startswith("cpu -mattr=") and Target(str(t)) == t
    assert all(f"+{f}" in str(t) for f in host_features())
    assert Target("llvm") == t and missing_features(str(t)) == []
    assert missing_features("cpu") == []  # a bare legacy string names no feature
    if "avx512f" not in host_features():
        assert "avx512f" in missing_features("cpu -mcpu=znver4")


def test_legacy_and_foreign_records_are_not_applied(tmp_path):
    import json

    from kiln.auto_scheduler.measure.record import LEGACY_CPU, record_target
    assert record_target("cpu") == LEGACY_CPU and record_target("llvm") == LEGACY_CPU
    assert record_target(str(Target("cpu"))) == str(Target("cpu"))
    from kiln.auto_scheduler.measure.record import load_best_record
    log = tmp_path / "log.json"
    base = {"workload_key": "k", "steps": [], "costs": [1e-3], "error": "ok",
            "timestamp": 0, "version": 1}
    log.write_text("\n".join(json.dumps({**base, "target": t}) for t in
                             ("cpu", "cpu -mattr=+avx2,+fma")) + "\n")
    assert load_best_record(str(log), "k", "cpu -mattr=+avx2,+fma") is not None
    assert load_best_record(str(log), "k", Target("cpu")) is None or \
        str(Target("cpu")) == "cpu -mattr=+avx2,+fma"
