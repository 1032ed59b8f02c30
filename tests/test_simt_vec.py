"""The emulated GPU's kernel executor (tests/simt_vec.py): GPU schedules computed all threads at
once match NumPy and the one-thread-at-a-time interpreter, and its hazard records report a
missing barrier, two blocks writing one word, and out-of-bounds accesses."""

import dataclasses

import numpy as np
import pytest
import simt_vec
import tir_interp
import workloads

import kiln
from kiln import te
from kiln.codegen import cuda as cuda_codegen
from kiln.codegen.c_lib import CLib
from kiln.tir import gpu
from kiln.tir import stmt as S
from kiln.topi import cuda as tc


def _run(func, *arrays, pipelined=True):
    mem = {b.uid: a.reshape(-1) for b, a in zip(func.params, arrays)}
    kernels, workspace = gpu.split_kernels(func, None)
    for b in workspace:
        mem[b.uid] = np.full(max(b.size, 1), np.nan, tir_interp.np_dtype(b.dtype))
    for k in kernels:
        if pipelined:
            k = dataclasses.replace(k, body=cuda_codegen.device_body(k.body))
        simt_vec.run_kernel(k, mem)


def _matmul(m, n, k, **tiles):
    (a, b), (c,), ref = workloads.swish_mm(m, n, k)
    s = te.create_schedule(c.op)
    tc.schedule_matmul(s, c, **tiles)
    return kiln.lower(s, [a, b, c]), ref


@pytest.mark.parametrize("m,n,k,tiles", [
    (19, 37, 21, dict(tm=2, tn=4, tx=4, ty=4, bk=8)),                     # edge guards
    (16, 32, 32, dict(tm=2, tn=2, tx=8, ty=4, bk=16, pad=2, vec=4)),
    (8, 16, 48, dict(tm=2, tn=2, tx=4, ty=4, bk=8, splitk=3, serial=0)),  # two kernels
    (10, 37, 48, dict(tm=2, tn=2, tx=4, ty=4, bk=8, splitk=3)),           # serial split-K
    # 16 elements a thread, 6 slices: the last block sums 4 at a time, never past its tile
    (32, 64, 96, dict(tm=4, tn=4, tx=8, ty=4, bk=16, splitk=6)),
    # double-buffered panels: edge guards, float4 fetches, serial split-K, two k-steps only
    (19, 37, 21, dict(tm=2, tn=4, tx=4, ty=4, bk=4, dbuf=1)),
    (16, 32, 48, dict(tm=4, tn=2, tx=8, ty=4, bk=8, pad=1, vec=4, dbuf=1)),
    (10, 37, 48, dict(tm=2, tn=2, tx=4, ty=4, bk=8, splitk=3, dbuf=1)),
    (8, 8, 16, dict(tm=2, tn=2, tx=4, ty=4, bk=8, dbuf=1)),
    (12, 20, 40, dict(tm=2, tn=2, tx=4, ty=4, bk=8, dbuf=1)),                # 5 steps: a tail
])
def test_gpu_schedules_match_numpy_and_the_interpreter(m, n, k, tiles):
    func, ref = _matmul(m, n, k, **tiles)
    rng = np.random.default_rng(0)
    a = rng.standard_normal((m, k), dtype=np.float32)
    b = rng.standard_normal((n, k), dtype=np.float32)
    fast = np.full((m, n), np.nan, np.float32)
    _run(func, a, b, fast)
    np.testing.assert_allclose(fast, ref(a.astype(np.float64), b.astype(np.float64)),
                               rtol=1e-4, atol=1e-4)
    slow = np.full((m, n), np.nan, np.float32)
    tir_interp.run(func, a, b, slow)
    np.testing.assert_allclose(fast, slow, rtol=1e-5, atol=1e-5)


def _rewrite(x, leaf):
    """x with `leaf` applied to each statement that holds no other (None drops it)."""
    return S.map_leaves(x, leaf)


def _strip_barriers(x):
    return _rewrite(x, lambda y: None if isinstance(y, S.Barrier) else y)


def test_a_missing_barrier_is_a_race():
    func, _ = _matmul(16, 16, 16, tm=2, tn=2, tx=4, ty=4, bk=4)
    bad = S.PrimFunc(func.name, func.params, _strip_barriers(func.body))
    args = (np.ones((16, 16), np.float32), np.ones((16, 16), np.float32),
            np.zeros((16, 16), np.float32))
    _run(func, *args, pipelined=False)  # the real one is race-free
    with pytest.raises(simt_vec.Race, match="race on"):
        _run(bad, *args, pipelined=False)


def test_a_barrier_some_threads_skip_is_reported():
    """__syncthreads() under a condition that splits a block hangs a GPU (synccheck): the
    executor says so instead of running on, and the CUDA printer refuses to print it."""
    func, _ = _matmul(16, 16, 16, tm=2, tn=2, tx=4, ty=4, bk=4)
    (kern,), _ = gpu.split_kernels(func, None)
    tx = next(x.var for x in S.walk_stmts(kern.body) if isinstance(x, S.For)
              and x.thread_tag == "threadIdx.x")
    split = tx < 2
    bad = dataclasses.replace(kern, body=_rewrite(
        kern.body, lambda y: S.IfThenElse(split, y, None) if isinstance(y, S.Barrier) else y))
    mem = {p.uid: np.ones(p.size, np.float32) for p in kern.buffers}
    simt_vec.run_kernel(kern, dict(mem))
    with pytest.raises(simt_vec.Race, match=r"__syncthreads\(\) reached by 8 of the 16"):
        simt_vec.run_kernel(bad, mem)
    target = kiln.target.as_target("cuda -arch=sm_90")
    assert "__syncthreads();" in cuda_codegen.KernelPrinter(kern, CLib(), target).render()
    with pytest.raises(kiln.errors.CodegenError, match=r"__syncthreads\(\) is inside `if \("):
        cuda_codegen.KernelPrinter(bad, CLib(), target).render()


def test_double_buffered_panels_need_their_one_barrier():
    """The double-buffered loop runs two steps per iteration with one barrier each: without
    the second a thread refills a copy that a slower thread still reads."""
    func, _ = _matmul(16, 16, 32, tm=2, tn=2, tx=4, ty=4, bk=4, dbuf=1)
    (kern,), _ = gpu.split_kernels(func, None)
    body = cuda_codegen.pipeline_fetches(kern.body)
    loop = next(x for x in S.walk_stmts(body) if isinstance(x, S.For) and x.kind == "serial"
                and isinstance(x.body, S.SeqStmt) and isinstance(x.body.stmts[-1], S.Barrier))
    assert sum(isinstance(x, S.Barrier) for x in S.walk_stmts(loop)) == 2
    args = [np.ones(p.size, np.float32) for p in kern.buffers]
    simt_vec.run_kernel(dataclasses.replace(kern, body=body),
                        {p.uid: a for p, a in zip(kern.buffers, args)})
    loop.body = S.SeqStmt(loop.body.stmts[:-1])  # body is this test's own copy
    with pytest.raises(simt_vec.Race, match="race on"):
        simt_vec.run_kernel(dataclasses.replace(kern, body=body),
                            {p.uid: a for p, a in zip(kern.buffers, args)})


def test_two_blocks_writing_one_word_is_a_race():
    (a, b), (c,), _ = workloads.matmul(8, 8, 8)
    s = te.create_schedule(c.op)
    tc.schedule_matmul(s, c, tm=2, tn=2, tx=2, ty=2, bk=4)
    func = kiln.lower(s, [a, b, c])
    (kern,), _ = gpu.split_kernels(func, None)
    # every block stores to block (0, 0)'s tile: a launch whose blocks overwrite each other
    blocks = {v for v in S.walk_stmts(kern.body)
              if isinstance(v, S.For) and v.thread_tag.startswith("blockIdx")}
    zero = {f.var: te.expr.IntImm(0, f.var.dtype) for f in blocks}

    def pin(x):
        if isinstance(x, S.Store) and x.buffer.scope == "global":
            return S.Store(x.buffer, te.expr.substitute(x.index, zero), x.value)
        return x
    bad = dataclasses.replace(kern, body=_rewrite(kern.body, pin))
    rng = np.random.default_rng(0)  # distinct values: rewriting a word with its value is benign
    mem = {p.uid: rng.standard_normal(p.size).astype(np.float32) for p in kern.buffers}
    simt_vec.run_kernel(kern, dict(mem))
    with pytest.raises(simt_vec.Race, match="write-after-write|simultaneous write"):
        simt_vec.run_kernel(bad, mem)


def test_an_access_outside_a_buffer_is_reported():
    func, _ = _matmul(16, 16, 16, tm=2, tn=2, tx=4, ty=4, bk=4)
    (kern,), _ = gpu.split_kernels(func, None)
    mem = {p.uid: np.ones(p.size, np.float32) for p in kern.buffers}
    mem[kern.buffers[0].uid] = mem[kern.buffers[0].uid][:100]  # A is short by 156 floats
    with pytest.raises(simt_vec.OutOfBounds, match="out of bounds"):
        simt_vec.run_kernel(kern, mem)


def _serial_splitk(m=8, n=16, k=64):
    func, ref = _matmul(m, n, k, tm=2, tn=2, tx=4, ty=4, bk=8, splitk=4)
    (kern,), workspace = gpu.split_kernels(func, None)  # the slices are summed in-kernel
    (last,) = [x for x in S.walk_stmts(kern.body) if isinstance(x, S.LastBlock)]
    return func, ref, kern, workspace, last


def test_serial_split_k_runs_twice_and_its_hand_off_is_checked():
    """The last slice of each tile sums the slices: the arrival counts return to zero (a
    second launch is right too), and a body that reads another tile's slices (written by
    blocks its arrival does not wait for) is a race."""
    func, ref, kern, workspace, last = _serial_splitk()
    assert last.count == 4 and last.l2 == (workspace[0].uid,)
    rng = np.random.default_rng(0)
    a, b = rng.standard_normal((8, 64), np.float32), rng.standard_normal((16, 64), np.float32)
    for _ in range(2):
        out = np.full((8, 16), np.nan, np.float32)
        _run(func, a, b, out)
        np.testing.assert_allclose(out, ref(a.astype(np.float64), b.astype(np.float64)),
                                   rtol=1e-4, atol=1e-4)
    bx = next(f for f in S.walk_stmts(kern.body) if isinstance(f, S.For)
              and f.thread_tag == "blockIdx.x")
    gx = kern.grid[0]
    assert gx > 1
    shifted = te.expr.binop("floormod", te.expr.binop("add", bx.var, te.expr.IntImm(1)),
                            te.expr.IntImm(gx))

    inside = {id(x) for x in S.walk_stmts(last.body)}

    def neighbour(x):  # the statements of the hand-off read the next tile's slices
        if id(x) in inside:
            return S.map_exprs(x, lambda e: te.expr.substitute(e, {bx.var: shifted}))
        return x
    bad = dataclasses.replace(kern, body=_rewrite(kern.body, neighbour))
    mem = {p.uid: rng.standard_normal(p.size).astype(np.float32) for p in kern.buffers}
    with pytest.raises(simt_vec.Race, match="read-after-write race on c_rf"):
        simt_vec.run_kernel(bad, mem)
