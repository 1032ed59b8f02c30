"""The CUDA backend without a GPU: GPU schedules run through the loop-IR interpreter (SIMT
semantics, barriers respected) against NumPy, golden substrings of the generated CUDA, every
generated kernel compiled by NVRTC for sm_80 and sm_90, limit checks and misuse errors."""

import dataclasses

import numpy as np
import pytest
import tir_interp
import workloads
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import kiln
from kiln import te, topi
from kiln.codegen import cuda as cuda_codegen
from kiln.errors import DeviceError, ScheduleError
from kiln.tir import gpu
from kiln.topi import cuda as tc

nvrtc = pytest.importorskip("kiln.codegen.nvrtc")
needs_nvrtc = pytest.mark.skipif(not nvrtc.available(), reason="NVRTC is not installed")
ARCHS = ("sm_80", "sm_90")


def _run(sched, args, ref_inputs):
    """Interpret the GPU function (the oracle), interpret it again with the CUDA printer's
    software-pipelined fetches (must give the same output), and compile it with NVRTC for
    every architecture the tests name: every GPU kernel the tests make must compile."""
    f = kiln.lower(sched, args)
    out_shape = [int(d.value) for d in args[-1].shape]
    out = np.full(out_shape, np.nan, "float32")
    tir_interp.run(f, *ref_inputs, out)
    piped = np.full(out_shape, np.nan, "float32")
    _run_pipelined(f, [*ref_inputs, piped])
    np.testing.assert_array_equal(piped, out)
    if nvrtc.available():
        src = cuda_codegen.render(f, "cuda -arch=sm_90")
        for arch in ARCHS:
            nvrtc.compile_cuda(src, arch)
    return f, out


def _run_pipelined(f, arrays) -> int:
    """Interpret f's kernels as the CUDA printer prints them (pipeline_fetches applied);
    returns how many prefetch register buffers the transform made."""
    from kiln.tir import gpu
    from kiln.tir import stmt as S
    mem = {b.uid: a.reshape(-1) for b, a in zip(f.params, arrays)}
    kernels, workspace = gpu.split_kernels(f, None)
    for b in workspace:
        mem[b.uid] = np.full(max(b.size, 1), np.nan, "float32")
    made = 0
    for k in kernels:
        body = cuda_codegen.pipeline_fetches(k.body)
        made += sum(isinstance(x, S.Allocate) and x.buffer.name.endswith("_pf")
                    for x in S.walk_stmts(body))
        tir_interp.run_kernel(dataclasses.replace(k, body=body), mem)
    return made


def _matmul_case(wl, m, n, k, **tiles):
    (a, b), (c,), ref = wl(m, n, k)
    s = te.create_schedule(c.op)
    tc.schedule_matmul(s, c, **tiles)
    rng = np.random.default_rng(0)
    an = rng.standard_normal((m, k)).astype("float32")
    bn = rng.standard_normal((n, k)).astype("float32")
    f, out = _run(s, [a, b, c], [an, bn])
    np.testing.assert_allclose(out, ref(an, bn), rtol=1e-5, atol=1e-5)
    return s, [a, b, c], f


@pytest.mark.parametrize("wl", [workloads.matmul, workloads.swish_mm])
@pytest.mark.parametrize("tiles", [dict(tm=2, tn=4, tx=4, ty=4, bk=8),
                                   dict(tm=2, tn=2, tx=8, ty=4, bk=4, splitk=3),
                                   dict(tm=4, tn=2, tx=8, ty=2, bk=4, pad=False, vec=4),
                                   dict(tm=1, tn=1, tx=8, ty=8, bk=16)])
def test_hand_schedule_matches_numpy_in_the_interpreter(wl, tiles):
    _matmul_case(wl, 20, 24, 19, **tiles)  # nothing divides: guarded tiles and fetches


@needs_nvrtc
def test_hand_schedule_cuda_source_and_nvrtc():
    s, args, f = _matmul_case(workloads.swish_mm, 16, 64, 32, tm=2, tn=4, tx=8, ty=4, bk=8)
    src = cuda_codegen.render(f, "cuda -arch=sm_90")
    for needle in ("__global__ void __launch_bounds__(32)", "__shared__", "__syncthreads();",
                   "threadIdx.x", "threadIdx.y", "blockIdx.x", "blockIdx.y", "#pragma unroll",
                   "float c_local[8]" if "c_local" in src else "float c[8]"):
        assert needle in src, needle
    assert src.count("__syncthreads();") == 2  # one before and one after the panel fetch
    assert "for (" not in src.split("threadIdx.x")[0].split("__global__")[1]  # bound: no loops
    for arch in ARCHS:
        mod = kiln.build(s, args, target=f"cuda -arch={arch}")
        info = nvrtc.ptxas_info(mod.cubin_path)
        (kern,) = info.values()
        assert kern["spill_stores"] == 0 and kern["registers"] > 0


@pytest.mark.parametrize("tiles", [dict(tm=2, tn=4, tx=4, ty=4, bk=8),
                                   dict(tm=4, tn=2, tx=8, ty=2, bk=4, pad=True, vec=4),
                                   dict(tm=2, tn=2, tx=8, ty=4, bk=4, splitk=2)])
def test_pipelined_fetches_match_numpy_in_the_interpreter(tiles):
    """Register-staged prefetch of the next k-panels: same result, guards included (19 is
    not a multiple of bk: the last panel is partial), and the transform applies."""
    for m, n, k in ((16, 32, 32), (20, 24, 19)):
        (a, b), (c,), ref = workloads.matmul(m, n, k)
        s = te.create_schedule(c.op)
        tc.schedule_matmul(s, c, **tiles)
        f = kiln.lower(s, [a, b, c])
        rng = np.random.default_rng(1)
        an = rng.standard_normal((m, k)).astype("float32")
        bn = rng.standard_normal((n, k)).astype("float32")
        out = np.full((m, n), np.nan, "float32")
        assert _run_pipelined(f, [an, bn, out]) == 2  # both panels prefetched
        np.testing.assert_allclose(out, ref(an, bn), rtol=1e-5, atol=1e-5)


@needs_nvrtc
def test_pipelined_fetch_cuda_source():
    """The seed GEMM's hand schedule: panels of step k + 1 load (ld.global.cg, address split
    so the unrolled offsets fold into the load) before the barrier that starts step k's
    compute; padded rows still get float4 global loads through the registers."""
    (a, b), (c,), _ = workloads.matmul(128, 256, 64)
    s = te.create_schedule(c.op)
    tc.schedule_matmul(s, c, tm=8, tn=4, tx=8, ty=16, bk=16, vec=4)
    src = cuda_codegen.render(kiln.lower(s, [a, b, c]), "cuda -arch=sm_90")
    loop = src.split("for (int32_t k_0 = 0; k_0 < 4; ++k_0) {")[1]
    assert "__ldcg((const float4*)(" in src.split("k_0 = 0")[0]  # prologue: step 0
    assert "if (k_0 + 1 < 4) {" in loop and "k_0 * 16 + 16" in loop
    body = loop.split("if (k_0 + 1 < 4) {")[1]
    assert body.index("__ldcg((const float4*)(") < body.index("__syncthreads();") < \
        body.index("c_local[")
    assert "_shared[" in loop.split("if (k_0 + 1")[0] and "_pf[" in loop.split("if (k_0")[0]
    for arch in ARCHS:
        info = nvrtc.ptxas_info(nvrtc.compile_cuda(src, arch))
        assert all(v["spill_stores"] == 0 and v["stack"] == 0 for v in info.values())


@needs_nvrtc
def test_aligned_vector_fetch_prints_float4():
    s, args, f = _matmul_case(workloads.matmul, 32, 32, 32, tm=4, tn=4, tx=8, ty=2, bk=16,
                              pad=False, vec=4)
    src = cuda_codegen.render(f, "cuda -arch=sm_90")
    assert "*(float4*)" in src and "*(const float4*)" in src
    kiln.build(s, args, target="cuda -arch=sm_80")


@needs_nvrtc
def test_seed_gemm_builds_without_a_gpu_and_says_so_when_called():
    (a, b), (d,), _ = workloads.swish_mm(128, 3072, 768)
    s = te.create_schedule(d.op)
    tc.schedule_matmul(s, d, tm=8, tn=8, tx=8, ty=8, bk=16)
    mod = kiln.build(s, [a, b, d], target="cuda -arch=sm_90")
    assert "extern \"C\" __global__" in mod.source
    assert mod.params[0]["shape"] == [128, 768]
    from kiln.runtime import cuda
    if cuda.available():
        pytest.skip("a GPU is present")
    x = np.zeros((128, 768), "float32")
    with pytest.raises(DeviceError, match="no CUDA GPU"):
        mod(x, np.zeros((3072, 768), "float32"), np.zeros((128, 3072), "float32"))


def _softmax(shape):
    x = te.placeholder(shape, name="x")
    def ref(xn):
        e = np.exp(xn - xn.max(-1, keepdims=True))
        return e / e.sum(-1, keepdims=True)
    return [x], topi.nn.softmax(x), ref


def _layer_norm(shape):
    x = te.placeholder(shape, name="x")
    g = te.placeholder(shape[-1:], name="g")
    b = te.placeholder(shape[-1:], name="b")
    def ref(xn, gn, bn):
        m = xn.mean(-1, keepdims=True)
        v = ((xn - m) ** 2).mean(-1, keepdims=True)
        return (xn - m) / np.sqrt(v + 1e-5) * gn + bn
    return [x, g, b], topi.nn.layer_norm(x, g, b), ref


def _transpose_add(shape):
    x = te.placeholder(shape, name="x")
    y = te.placeholder(shape[::-1], name="y")
    return [x, y], topi.add(topi.transpose(x, (1, 0)), y), lambda xn, yn: xn.T + yn


@settings(max_examples=12, deadline=None, suppress_health_check=list(HealthCheck))
@given(kind=st.sampled_from(["softmax", "layer_norm", "transpose_add"]),
       rows=st.integers(1, 5), cols=st.integers(1, 70),
       how=st.sampled_from(["auto", "simple"]))
def test_default_gpu_schedules_match_numpy(kind, rows, cols, how):
    make = {"softmax": _softmax, "layer_norm": _layer_norm, "transpose_add": _transpose_add}
    ins, out, ref = make[kind]((rows, cols))
    s = te.create_schedule(out.op)
    (tc.schedule_auto if how == "auto" else tc.schedule_simple)(s, out)
    rng = np.random.default_rng(rows * 100 + cols)
    arrays = [rng.standard_normal([int(d.value) for d in t.shape]).astype("float32")
              for t in ins]
    _, got = _run(s, ins + [out], arrays)
    np.testing.assert_allclose(got, ref(*arrays), rtol=1e-4, atol=1e-5)


@settings(max_examples=15, deadline=None, suppress_health_check=list(HealthCheck))
@given(m=st.integers(1, 20), n=st.integers(1, 20), k=st.integers(1, 20),
       tm=st.sampled_from([1, 2, 4]), tn=st.sampled_from([1, 2, 4]),
       tx=st.sampled_from([1, 4, 8]), ty=st.sampled_from([1, 2, 4]),
       bk=st.sampled_from([1, 4, 8]), pad=st.sampled_from([0, 1, 2, 4]),
       vec=st.sampled_from([1, 2, 4]),
       batch=st.integers(0, 2), splitk=st.sampled_from([1, 1, 2, 3]),
       dbuf=st.sampled_from([0, 1]))
def test_random_gpu_matmul_schedules_match_numpy(m, n, k, tm, tn, tx, ty, bk, pad, vec, batch,
                                                 splitk, dbuf):
    """Random legal tilings (batch_matmul, split-K and double-buffered panels included): all
    compute the product."""
    bshape = (batch,) if batch else ()
    a = te.placeholder(bshape + (m, k), name="a")
    b = te.placeholder(bshape + (k, n), name="b")  # NN form: b is k-major
    r = te.reduce_axis((0, k), name="r")
    c = te.compute(bshape + (m, n), lambda *i: te.sum(a[i[:-1] + (r,)] * b[i[:-2] + (r, i[-1])],
                                                      axis=r), name="c")
    s = te.create_schedule(c.op)
    tc.schedule_matmul(s, c, tm=tm, tn=tn, tx=tx, ty=ty, bk=bk, pad=pad, vec=vec,
                       splitk=min(splitk, k), dbuf=dbuf)
    rng = np.random.default_rng(m * 400 + n * 20 + k)
    an = rng.standard_normal(bshape + (m, k)).astype("float32")
    bn = rng.standard_normal(bshape + (k, n)).astype("float32")
    _, got = _run(s, [a, b, c], [an, bn])
    np.testing.assert_allclose(got, an @ bn, rtol=1e-4, atol=1e-4)


def test_interpreter_catches_a_missing_barrier():
    """The oracle itself: drop the barriers and the shared panels are read too early."""
    (a, b), (c,), ref = workloads.matmul(8, 8, 8)
    s = te.create_schedule(c.op)
    tc.schedule_matmul(s, c, tm=2, tn=2, tx=4, ty=4, bk=4)
    f = kiln.lower(s, [a, b, c])
    from kiln.tir import stmt as S

    def strip(x):
        if isinstance(x, S.SeqStmt):
            return S.SeqStmt([strip(y) for y in x.stmts if not isinstance(y, S.Barrier)])
        if isinstance(x, S.For):
            return S.For(x.var, x.extent, x.kind, strip(x.body), x.pragmas, x.thread_tag)
        if isinstance(x, S.Allocate):
            return S.Allocate(x.buffer, strip(x.body))
        return x
    bad = S.PrimFunc(f.name, f.params, strip(f.body))
    an, bn = np.ones((8, 8), "float32"), np.ones((8, 8), "float32")
    out = np.zeros((8, 8), "float32")
    tir_interp.run(bad, an, bn, out)
    assert not np.allclose(out, ref(an, bn))


# ---------------------------------------------------------------- misuse and limits

def _bound_mm(tx, ty, tm=1, tn=1, bk=4, m=64, n=64, k=64):
    (a, b), (c,), _ = workloads.matmul(m, n, k)
    s = te.create_schedule(c.op)
    tc.schedule_matmul(s, c, tm=tm, tn=tn, tx=tx, ty=ty, bk=bk)
    return s, [a, b, c]


def test_limits_fail_at_build_time_naming_the_limit():
    s, args = _bound_mm(32, 64, m=128, n=64)
    with pytest.raises(ScheduleError, match="2048 threads per block.*max_threads_per_block"):
        kiln.build(s, args, target="cuda -arch=sm_90")
    s, args = _bound_mm(16, 16, tm=16, tn=16, bk=64, m=256, n=256, k=64)
    with pytest.raises(ScheduleError, match="bytes of shared memory.*max_shared_memory"):
        kiln.build(s, args, target="cuda -arch=sm_90")


def test_gpu_schedule_misuse_errors():
    (a, b), (c,), _ = workloads.matmul(16, 16, 16)
    s = te.create_schedule(c.op)
    with pytest.raises(ScheduleError, match="without thread bindings"):
        kiln.build(s, [a, b, c], target="cuda -arch=sm_90")
    with pytest.raises(ScheduleError, match="reduction loop.*threadIdx.x: a cross-thread"):
        s[c].bind(c.op.reduce_axis[0], te.thread_axis("blockIdx.x"))
    with pytest.raises(ScheduleError, match="unknown tag"):
        te.thread_axis("threadIdx.w")
    i, j = c.op.axis
    io, ii = s[c].split(i, factor=4)
    s[c].bind(ii, te.thread_axis("threadIdx.x"))
    s[c].bind(j, te.thread_axis("blockIdx.x"))
    with pytest.raises(ScheduleError, match="build it with target='cuda'"):
        kiln.build(s, [a, b, c], target="cpu")
    with pytest.raises(ScheduleError, match="outermost loops of a kernel"):
        kiln.build(s, [a, b, c], target="cuda -arch=sm_90")


def test_thread_extents_must_agree_within_a_kernel():
    x = te.placeholder((8, 8), name="x")
    y = te.compute((8, 8), lambda i, j: x[i, j] * 2.0, name="y")
    z = te.compute((8, 8), lambda i, j: y[i, j] + 1.0, name="z")
    s = te.create_schedule(z.op)
    i, j = z.op.axis
    s[z].bind(i, te.thread_axis("blockIdx.x"))
    s[z].bind(j, te.thread_axis("threadIdx.x"))
    s[y].compute_at(s[z], i)
    s[y].set_scope("shared")
    _, yj = s[y].op.axis
    yo, yi = s[y].split(yj, factor=4)
    s[y].bind(yi, te.thread_axis("threadIdx.x"))
    with pytest.raises(ScheduleError, match="threadIdx.x have extents 4 and 8"):
        kiln.build(s, [x, z], target="cuda -arch=sm_90")


def test_shared_stage_at_root_is_an_error():
    x = te.placeholder((64,), name="x")
    y = te.compute((64,), lambda i: x[i] * 2.0, name="y")
    z = te.compute((64,), lambda i: y[i] + 1.0, name="z")
    s = te.create_schedule(z.op)
    s[y].set_scope("shared")
    for t in (y, z):
        bo, bi = s[t].split(t.op.axis[0], factor=32)
        s[t].bind(bo, te.thread_axis("blockIdx.x"))
        s[t].bind(bi, te.thread_axis("threadIdx.x"))
    with pytest.raises(ScheduleError, match="scope shared but is computed at the root"):
        kiln.build(s, [x, z], target="cuda -arch=sm_90")


def test_row_pad_words_golden_and_interpreted():
    """pad = words per k-contiguous panel row: 2 and 4 keep the rows 8- / 16-byte aligned
    (shared sizes golden); C = A B^T with each pad computes the product (interpreter, both
    printer forms)."""
    def build(pad):
        (a, b), (c,), ref = workloads.matmul(24, 40, 36)
        s = te.create_schedule(c.op)
        tc.schedule_matmul(s, c, tm=2, tn=4, tx=8, ty=4, bk=8, pad=pad, vec=4)
        return s, [a, b, c], ref

    def shared(pad):
        s, args, _ = build(pad)
        src = cuda_codegen.render(kiln.lower(s, args), "cuda -arch=sm_90")
        return sorted(x.split("float ")[1] for x in src.splitlines() if "__shared__" in x)
    # a panel: 8 rows, b panel: 32 rows, 8 k each; stride 8 + pad (last row unpadded)
    assert shared(0) == ["a_shared[64];", "b_shared[256];"]
    assert shared(1) == ["a_shared[71];", "b_shared[287];"]
    assert shared(2) == ["a_shared[78];", "b_shared[318];"]
    assert shared(4) == ["a_shared[92];", "b_shared[380];"]
    rng = np.random.default_rng(3)
    for pad in (2, 4):
        s, args, ref = build(pad)
        arrays = [rng.standard_normal([int(d.value) for d in t.shape]).astype("float32")
                  for t in args[:-1]]
        _, got = _run(s, args, arrays)
        np.testing.assert_allclose(got, ref(*arrays), rtol=1e-4, atol=1e-4)


def test_default_tiles_of_a_small_dense_run_correctly():
    """The model's default for a small C = A B^T (split-K, padding chosen by the model) in
    the interpreter, both printer forms."""
    (a, b), (c,), ref = workloads.matmul(16, 48, 64)
    s = te.create_schedule(c.op)
    tc.schedule_auto(s, c, "cuda -arch=sm_90")
    rng = np.random.default_rng(5)
    arrays = [rng.standard_normal((16, 64)).astype("float32"),
              rng.standard_normal((48, 64)).astype("float32")]
    _, got = _run(s, [a, b, c], arrays)
    np.testing.assert_allclose(got, ref(*arrays), rtol=1e-4, atol=1e-4)


@needs_nvrtc
def test_serial_split_k_is_one_kernel_with_an_arrival_count():
    """Split-K's slices are summed by the last slice of each tile to finish, in the same
    kernel (serial=0 keeps the second kernel): published with __threadfence, counted with
    an atomic in a module-scope array, read back through L2; it compiles for both arches."""
    (a, b), (c,), _ = workloads.swish_mm(64, 96, 256)
    kernels = {}
    for serial in (1, 0):
        s = te.create_schedule(c.op)
        tc.schedule_matmul(s, c, tm=4, tn=4, tx=8, ty=4, bk=16, splitk=4, serial=serial)
        f = kiln.lower(s, [a, b, c])
        kernels[serial] = len(gpu.split_kernels(f, None)[0])
        if serial:
            src = cuda_codegen.render(f, "cuda -arch=sm_90")
            mod = kiln.build(s, [a, b, c], target="cuda -arch=sm_80")
    assert kernels == {1: 1, 0: 2}
    assert src.count("__global__") == 1
    for needle in ("__device__ unsigned int default_function_kernel0_arrivals[12];",
                   "__threadfence();", "atomicAdd(&default_function_kernel0_arrivals[",
                   "== 3u;", "__ldcg(c_rf + ("):
        assert needle in src, needle
    assert mod.cubin_path and nvrtc.ptxas_info(mod.cubin_path)


def test_the_split_k_pragma_needs_a_kernel_of_slices_before_it():
    x = te.placeholder((64,), name="x")
    y = te.compute((64,), lambda i: x[i] * 2.0, name="y")
    s = te.create_schedule(y.op)
    bx, tx = s[y].split(y.op.axis[0], factor=32)
    s[y].bind(bx, te.thread_axis("blockIdx.x"))
    s[y].bind(tx, te.thread_axis("threadIdx.x"))
    s[y].pragma(bx, "splitk_serial", 2)
    with pytest.raises(ScheduleError, match="splitk_serial on the first kernel"):
        cuda_codegen.render(kiln.lower(s, [x, y]), "cuda -arch=sm_90")


@needs_nvrtc
def test_double_buffered_panels_one_barrier_per_step():
    """Stage.double_buffer (TVM's name): each panel gets two copies, 16-byte aligned, and the
    k loop runs two steps per iteration with one barrier each (the plain pipeline has two);
    the result matches NumPy in the interpreter and compiles for both arches."""
    (a, b), (c,), ref = workloads.matmul(32, 64, 96)
    srcs = {}
    for dbuf in (0, 1):
        s = te.create_schedule(c.op)
        tc.schedule_matmul(s, c, tm=4, tn=4, tx=8, ty=4, bk=16, vec=4, dbuf=dbuf)
        rng = np.random.default_rng(0)
        arrays = [rng.standard_normal((32, 96)).astype("float32"),
                  rng.standard_normal((64, 96)).astype("float32")]
        f, got = _run(s, [a, b, c], arrays)
        np.testing.assert_allclose(got, ref(*arrays), rtol=1e-4, atol=1e-4)
        srcs[dbuf] = cuda_codegen.render(f, "cuda -arch=sm_90")
    loop = srcs[1][srcs[1].index("for (int32_t k_0_2 = 0; k_0_2 < 3;"):]
    assert loop.count("__syncthreads();") == 2
    # 16 rows of 16 + 1 words: 271, a copy every 272
    assert "float a_shared[544];" in srcs[1] and "float a_shared[271];" in srcs[0]
    assert "+ 272] = a_shared_pf[" in loop  # the even step fills the odd step's copy
    plain = srcs[0][srcs[0].index("for (int32_t k_0 = 0; k_0 < 6;"):]
    assert plain.count("__syncthreads();") == 2  # per step


def test_double_buffer_needs_a_shared_stage():
    (a, b), (c,), _ = workloads.matmul(8, 8, 8)
    s = te.create_schedule(c.op)
    cl = s.cache_write(c, "local")
    with pytest.raises(ScheduleError, match="double_buffer of c.local: only a shared-memory"):
        s[cl].double_buffer()


@needs_nvrtc
def test_a_softmax_prologue_normalizes_the_a_panel_as_it_is_fetched():
    """softmax(x) @ v in one kernel: each block's row max and sum first (cross-thread
    reductions into shared memory, a barrier between the two), then the A panel fetch reads
    x into registers a step ahead and normalizes it when storing it; both interpreters (the
    vectorized one checks the barriers) against NumPy, compiled for both arches."""
    import simt_vec
    h, m, k, n = 2, 32, 48, 16
    x = te.placeholder((h, m, k), name="x")
    v = te.placeholder((h, k, n), name="v")
    p = topi.softmax(x, -1)
    r = te.reduce_axis((0, k), name="r")
    o = te.compute((h, m, n), lambda b, i, j: te.sum(p[b, i, r] * v[b, r, j], axis=r),
                   name="o")
    assert tc.kernel_kind(o) == "matmul"
    mm, prologue = tc.matmul_parts(o)
    assert mm.op is o.op and [t.name for t in prologue] == ["softmax_maxelem",
                                                            "softmax_expsum"]
    rng = np.random.default_rng(0)
    xn = rng.standard_normal((h, m, k)).astype("float32")
    vn = rng.standard_normal((h, k, n)).astype("float32")
    e = np.exp(xn - xn.max(-1, keepdims=True))
    ref = (e / e.sum(-1, keepdims=True)) @ vn
    for dbuf in (0, 1):
        s = te.create_schedule(o.op)
        tc.schedule_matmul(s, o, tm=2, tn=2, tx=8, ty=4, bk=16, dbuf=dbuf)
        f, got = _run(s, [x, v, o], [xn, vn])
        np.testing.assert_allclose(got, ref, rtol=1e-5, atol=1e-5)
        mem = {b.uid: a.reshape(-1).copy() for b, a in zip(f.params, [xn, vn, np.zeros_like(ref)])}
        (kern,), _ = gpu.split_kernels(f, None)
        simt_vec.run_kernel(dataclasses.replace(kern, body=cuda_codegen.pipeline_fetches(
            kern.body)), mem)
        np.testing.assert_allclose(mem[f.params[2].uid].reshape(ref.shape), ref, rtol=1e-5,
                                   atol=1e-5)
    src = cuda_codegen.render(f, "cuda -arch=sm_90")
    assert src.count("__shfl_xor_sync(") == 6  # 8 lanes: three steps, max then sum
    assert "x_pf" not in src and "softmax_norm_shared_pf[" in src and "= __ldcg(x + (" in src
    s = te.create_schedule(o.op)
    with pytest.raises(ScheduleError, match="reads row reductions.*splitk = 1"):
        tc.schedule_matmul(s, o, tm=2, tn=2, tx=8, ty=4, bk=16, splitk=3)
