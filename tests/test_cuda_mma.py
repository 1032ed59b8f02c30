"""Tensor-core matmuls (schedule_matmul(mma=1): m16n8k8 products, operands split into two
TF32 parts) without a GPU: the emulated GPU runs the warp products as the fragment layouts
say and must match float64 NumPy to float32 accuracy, for tiles with split-K, double
buffering, a fused epilogue and a batch axis; NVRTC compiles them for sm_80 and sm_90; the
shapes and targets they cannot serve are clear errors; the GPU search samples them."""

import dataclasses
import random

import numpy as np
import pytest
import simt_vec
import workloads
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import kiln
from kiln import te
from kiln.codegen import cuda as cuda_codegen
from kiln.errors import CodegenError, ScheduleError
from kiln.tir import gpu
from kiln.tir import stmt as S
from kiln.topi import cuda as tc

nvrtc = pytest.importorskip("kiln.codegen.nvrtc")
MMA_PTX = "mma.sync.aligned.m16n8k8.row.col.f32.tf32.tf32.f32"


def _emulate(func, arrays, rewrite=None) -> np.ndarray:
    """Run func's kernels as the printer prints them; returns the last array (the output)."""
    mem = {b.uid: a.reshape(-1) for b, a in zip(func.params, arrays)}
    kernels, workspace = gpu.split_kernels(func, None)
    for b in workspace:
        mem[b.uid] = np.full(max(b.size, 1), np.nan, np.float32)
    for k in kernels:
        body = cuda_codegen.device_body(k.body)
        simt_vec.run_kernel(dataclasses.replace(k, body=rewrite(body) if rewrite else body),
                            mem)
    return arrays[-1]


def _case(wl, m, n, k, **tiles):
    (a, b), (c,), ref = wl(m, n, k)
    s = te.create_schedule(c.op)
    tc.schedule_matmul(s, c, mma=1, **tiles)
    rng = np.random.default_rng(m + n + k)
    an = rng.standard_normal((m, k), dtype=np.float32)
    bn = rng.standard_normal((n, k), dtype=np.float32)
    return kiln.lower(s, [a, b, c]), [an, bn, np.full((m, n), np.nan, np.float32)], \
        ref(an.astype(np.float64), bn.astype(np.float64))


def _rel(got, want) -> float:
    return float(np.linalg.norm(got - want) / np.linalg.norm(want))


@pytest.mark.parametrize("wl,shape,tiles", [
    (workloads.matmul, (32, 32, 32), dict(tm=4, tn=4, tx=4, ty=8, bk=16)),
    (workloads.matmul, (64, 64, 64), dict(tm=2, tn=2, tx=8, ty=8, bk=8)),
    (workloads.matmul, (64, 96, 48), dict(tm=4, tn=2, tx=4, ty=16, bk=16, pad=4, vec=4)),
    (workloads.matmul, (64, 64, 128), dict(tm=4, tn=4, tx=4, ty=8, bk=16, dbuf=1)),
    (workloads.matmul, (32, 64, 128), dict(tm=4, tn=4, tx=4, ty=8, bk=16, splitk=2)),
    (workloads.matmul, (32, 64, 128), dict(tm=4, tn=4, tx=4, ty=8, bk=16, splitk=2, serial=0)),
    (workloads.matmul, (128, 64, 96), dict(tm=8, tn=8, tx=4, ty=8, bk=32, splitk=3)),
    (workloads.swish_mm, (64, 64, 64), dict(tm=4, tn=4, tx=8, ty=8, bk=16, dbuf=1)),
])
def test_tensor_core_tiles_match_float64_to_float32_accuracy(wl, shape, tiles):
    func, arrays, want = _case(wl, *shape, **tiles)
    assert any(isinstance(s, S.MmaTile) for k in gpu.split_kernels(func, None)[0]
               for s in S.walk_stmts(cuda_codegen.device_body(k.body)))
    got = _emulate(func, arrays)
    assert _rel(got, want) < 1e-6  # 3xTF32: ~3.5e-7; one TF32 product alone: ~8e-4


def test_batch_matmul_on_tensor_cores():
    a = te.placeholder((3, 32, 24), name="a")
    b = te.placeholder((3, 16, 24), name="b")
    k = te.reduce_axis((0, 24), name="k")
    c = te.compute((3, 32, 16), lambda z, i, j: te.sum(a[z, i, k] * b[z, j, k], axis=k),
                   name="c")
    s = te.create_schedule(c.op)
    tc.schedule_matmul(s, c, tm=2, tn=4, tx=4, ty=8, bk=8, mma=1)
    rng = np.random.default_rng(0)
    an, bn = rng.standard_normal((3, 32, 24), dtype=np.float32), \
        rng.standard_normal((3, 16, 24), dtype=np.float32)
    got = _emulate(kiln.lower(s, [a, b, c]), [an, bn, np.full((3, 32, 16), np.nan, np.float32)])
    assert _rel(got, np.einsum("zik,zjk->zij", an.astype(np.float64), bn)) < 1e-6


@pytest.mark.parametrize("tiles", [dict(tm=4, tn=4, tx=8, ty=8, bk=16),
                                   dict(tm=2, tn=8, tx=4, ty=16, bk=8, splitk=2, dbuf=1)])
def test_a_k_major_b_operand_on_tensor_cores(tiles):
    """C = A B with B stored k-major (x @ W): its fragments read along the panel's rows."""
    m, n, k = 64, 64, 64
    a = te.placeholder((m, k), name="a")
    b = te.placeholder((k, n), name="b")
    r = te.reduce_axis((0, k), name="r")
    c = te.compute((m, n), lambda i, j: te.sum(a[i, r] * b[r, j], axis=r), name="c")
    s = te.create_schedule(c.op)
    tc.schedule_matmul(s, c, mma=1, **tiles)
    rng = np.random.default_rng(2)
    an, bn = rng.standard_normal((m, k), dtype=np.float32), \
        rng.standard_normal((k, n), dtype=np.float32)
    got = _emulate(kiln.lower(s, [a, b, c]), [an, bn, np.full((m, n), np.nan, np.float32)])
    assert _rel(got, an.astype(np.float64) @ bn) < 1e-6


def test_the_emulator_holds_the_fragment_layout_and_the_tf32_split():
    """Two A fragment values swapped, or the small TF32 parts dropped, and the product is
    wrong: the emulated warp really reads the layouts the printer emits."""
    func, arrays, want = _case(workloads.matmul, 32, 32, 32, tm=4, tn=4, tx=4, ty=8, bk=16)

    def swap(body):
        def fix(s):
            if isinstance(s, S.MmaTile):
                a = [[f[1], f[0], f[2], f[3]] for f in s.a]
                return S.MmaTile(s.acc, a, s.b, s.c, s.kind)
            return s
        return S.map_leaves(body, fix)
    assert _rel(_emulate(func, [x.copy() for x in arrays], swap), want) > 0.1
    x = np.random.default_rng(0).standard_normal((64, 64)).astype(np.float32)
    hi = simt_vec._tf32(x)
    assert np.all(hi.view(np.uint32) & 0x1FFF == 0) and np.abs(hi - x).max() > 0
    exact = x.astype(np.float64) @ x.T
    one = hi.astype(np.float64) @ hi.T
    lo = simt_vec._tf32(x - hi)
    three = one + lo.astype(np.float64) @ hi.T + hi.astype(np.float64) @ lo.T
    assert _rel(one, exact) > 1e-4 > 1e-6 > _rel(three, exact)


@pytest.mark.skipif(not nvrtc.available(), reason="NVRTC is not installed")
def test_nvrtc_compiles_the_tensor_core_products():
    func, _, _ = _case(workloads.matmul, 64, 64, 64, tm=4, tn=4, tx=8, ty=8, bk=16, dbuf=1)
    src = cuda_codegen.render(func, "cuda -arch=sm_90")
    assert src.count(MMA_PTX) == 1 and src.count("kiln_mma_tf32(") == 1 + 2 * 2 * 3 * 2
    assert src.count("KILN_TF32_SPLIT(") == 1 + 2 * (2 * 4 + 2 * 2)  # per k8: A, B values
    for arch in ("sm_80", "sm_90"):
        nvrtc.compile_cuda(src, arch)
    with pytest.raises(CodegenError, match="sm_80 or newer"):
        cuda_codegen.render(func, "cuda -arch=sm_75")


def test_shapes_tensor_cores_cannot_serve_are_clear_errors():
    (a, b), (c,), _ = workloads.matmul(30, 32, 32)
    s = te.create_schedule(c.op)
    with pytest.raises(ScheduleError, match=r"tm=3 \(a multiple of 2\).*rows 30"):
        tc.schedule_matmul(s, c, tm=3, tn=4, tx=4, ty=8, bk=16, mma=1)
    (a, b), (c,), _ = workloads.matmul(32, 32, 32)
    s = te.create_schedule(c.op)
    with pytest.raises(ScheduleError, match="k per slice 11 not a multiple of the 8"):
        tc.schedule_matmul(s, c, tm=2, tn=4, tx=4, ty=8, bk=8, splitk=3, mma=1)
    x = te.placeholder((16, 32), name="x")
    p = kiln.topi.nn.softmax(x)
    v = te.placeholder((32, 16), name="v")
    r = te.reduce_axis((0, 32), name="r")
    pv = te.compute((16, 16), lambda i, j: te.sum(p[i, r] * v[r, j], axis=r), name="pv")
    s = te.create_schedule(pv.op)
    with pytest.raises(ScheduleError, match="no row prologue"):
        tc.schedule_matmul(s, pv, tm=2, tn=2, tx=4, ty=8, bk=8, mma=1)


def test_the_gpu_search_samples_tensor_core_tiles():
    from kiln.auto_scheduler import SearchTask
    from kiln.auto_scheduler.gpu.space import GpuSpace
    from kiln.schedule import ComputeDAG
    (a, b), (c,), ref = workloads.matmul(64, 64, 32)
    task = SearchTask(compute_dag=ComputeDAG([a, b, c]), target="cuda -arch=sm_90", desc="mm")
    space = GpuSpace(task.compute_dag, task.target)
    assert space.default().values()["mma"] == 0  # untuned builds stay on the FMA units
    rng = random.Random(0)
    found = None
    for _ in range(200):
        cfg = space.sample(rng)
        if cfg.values()["mma"] and space.lowered(cfg, task.args) is not None:
            found = cfg
            break
    assert found is not None
    _, func, _ = space.lowered(found, task.args)
    rng = np.random.default_rng(1)
    an, bn = rng.standard_normal((64, 32), dtype=np.float32), \
        rng.standard_normal((64, 32), dtype=np.float32)
    got = _emulate(func, [an, bn, np.full((64, 64), np.nan, np.float32)])
    assert _rel(got, an.astype(np.float64) @ bn.T) < 1e-6
    from kiln.target import Target
    old = GpuSpace(task.compute_dag, Target("cuda -arch=sm_75"))  # no TF32 tensor cores
    assert not any(old.sample(random.Random(i)).values()["mma"] for i in range(50))


@settings(max_examples=12, deadline=None, suppress_health_check=list(HealthCheck))
@given(tm=st.sampled_from([2, 4, 8]), tn=st.sampled_from([2, 4, 8]),
       tx=st.sampled_from([4, 8, 16]), ty=st.sampled_from([8, 16]),
       bk=st.sampled_from([8, 16, 32]), pad=st.sampled_from([0, 1, 2, 4]),
       vec=st.sampled_from([1, 2, 4]), splitk=st.sampled_from([1, 2, 3]),
       serial=st.booleans(), dbuf=st.booleans(), mult=st.tuples(
           st.integers(1, 2), st.integers(1, 2), st.integers(1, 3)),
       swish=st.booleans())
def test_random_tensor_core_schedules_match_float64(tm, tn, tx, ty, bk, pad, vec, splitk,
                                                    serial, dbuf, mult, swish):
    """Any legal tensor-core tiling (shapes made to divide it): float32 accuracy."""
    m, n, k = tm * ty * mult[0], tn * tx * mult[1], bk * splitk * mult[2]
    func, arrays, want = _case(workloads.swish_mm if swish else workloads.matmul, m, n, k,
                               tm=tm, tn=tn, tx=tx, ty=ty, bk=bk, pad=pad, vec=vec,
                               splitk=splitk, serial=int(serial), dbuf=int(dbuf))
    try:
        got = _emulate(func, arrays)
    except ScheduleError as err:  # a block's panels past 48 KiB: the limit check's to refuse
        assert "shared memory per block" in str(err)
        return
    assert _rel(got, want) < 2e-6
