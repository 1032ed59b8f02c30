"""The CUDA runtime on a real GPU: memory, launches, CudaModule calls with NumPy / kiln /
PyTorch arrays, DLPack and the CUDA array interface, timing, graphs and error reporting.
Marked `cuda` (run with `pytest -m cuda`) and skipped where no GPU is present."""

import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest
from cuda_sources import ADD_SCALE, AXPY, GRID, OUT_OF_BOUNDS, N, add_scale_meta, boom_meta

import kiln
from kiln.codegen import nvrtc
from kiln.errors import ArgumentError, DeviceError
from kiln.runtime import CudaModule, cuda, load_module

pytestmark = [pytest.mark.cuda,
              pytest.mark.skipif(not cuda.available(), reason="no CUDA GPU is present")]
REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


@pytest.fixture(autouse=True)
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("KILN_CACHE_DIR", str(tmp_path / "cache"))


@pytest.fixture
def arch():
    return cuda.device_properties()["arch"]


@pytest.fixture
def module(arch):
    return CudaModule(nvrtc.compile_cuda(ADD_SCALE, arch), add_scale_meta(arch), ADD_SCALE)


def torch_cuda():
    torch = pytest.importorskip("torch")
    if not torch.cuda.is_available():
        pytest.skip("this PyTorch has no CUDA")
    return torch


def inputs():
    rng = np.random.default_rng(0)
    return rng.random(N, dtype=np.float32), rng.random(N, dtype=np.float32)


def test_device_properties():
    p = cuda.device_properties(0)
    assert p["arch"].startswith("sm_") and p["compute_capability"] >= (7, 0)
    assert p["arch"] == "sm_{}{}".format(*p["compute_capability"])
    assert p["warp_size"] == 32 and p["max_threads_per_block"] >= 1024
    assert p["max_shared_memory_per_block"] == 48 * 1024
    assert p["max_shared_memory_per_block_optin"] >= p["max_shared_memory_per_block"]
    assert p["sm_count"] > 0 and p["l2_bytes"] > 0 and p["total_memory"] > 2 ** 30
    assert p["max_registers_per_block"] >= 32768 and p["name"]
    assert kiln.cuda(0).exist and cuda.device_count() >= 1


def test_device_buffer_round_trip():
    x = np.arange(257, dtype=np.int32)
    buf = cuda.DeviceBuffer(x.nbytes)
    buf.copy_from_host(x)
    out = buf.copy_to_host(np.empty_like(x))
    np.testing.assert_array_equal(out, x)
    other = cuda.DeviceBuffer(x.nbytes)
    other.copy_from_device(buf.ptr, x.nbytes)
    np.testing.assert_array_equal(other.copy_to_host(np.empty_like(x)), x)
    other.memset_d8(0)
    assert not other.copy_to_host(np.empty_like(x)).any()
    with pytest.raises(ArgumentError, match="more than the device buffer"):
        buf.copy_from_host(np.zeros(300, np.int32))
    empty = cuda.DeviceBuffer(0)
    assert empty.ptr != 0 and empty.nbytes == 0
    buf.free()
    buf.free()  # idempotent
    assert buf.ptr == 0


def test_out_of_memory_is_reported():
    with pytest.raises(DeviceError, match=r"out of device memory in cuMemAlloc \(asked for "
                                          r"1125899906842624|cuMemAlloc failed"):
        cuda.DeviceBuffer(2 ** 50)
    cuda.DeviceBuffer(16)  # not sticky: the context still works


def test_module_with_numpy_arguments(module):
    a, b = inputs()
    c = np.zeros(N, np.float32)
    module(a, b, c)
    np.testing.assert_allclose(c, 2 * (a + b), rtol=1e-6)


def test_module_with_device_arrays(module):
    a, b = inputs()
    da, db = kiln.nd.array(a, device="cuda"), kiln.nd.array(b, kiln.cuda(0))
    dc = kiln.nd.empty((N,), "float32", device="cuda")
    assert isinstance(dc, kiln.nd.CudaNDArray) and dc.device == kiln.cuda(0)
    module(da, db, dc)
    np.testing.assert_allclose(dc.numpy(), 2 * (a + b), rtol=1e-6)
    assert dc.copyto(kiln.cpu()).numpy().shape == (N,)
    dc.copyfrom(np.ones(N, np.float32))
    assert (dc.numpy() == 1).all()
    dc.copyfrom(da)
    np.testing.assert_array_equal(dc.numpy(), a)
    np.testing.assert_array_equal(np.asarray(da), a)


def test_module_surface_after_load(module, tmp_path):
    path = module.export_library(str(tmp_path / "m.kiln"))
    loaded = load_module(path)
    a, b = inputs()
    c = np.zeros(N, np.float32)
    loaded(a, b, c)
    np.testing.assert_allclose(c, 2 * (a + b), rtol=1e-6)


def test_torch_tensors_in_and_out(module):
    torch = torch_cuda()
    a, b = inputs()
    ta, tb = torch.from_numpy(a).cuda(), torch.from_numpy(b).cuda()
    tc = torch.zeros(N, device="cuda")
    module(ta, tb, tc)  # through __cuda_array_interface__, no copies
    torch.testing.assert_close(tc.cpu(), torch.from_numpy(2 * (a + b)))
    dc = kiln.nd.empty((N,), "float32", device="cuda")
    module(ta, tb, dc)
    out = torch.from_dlpack(dc)  # shares dc's memory
    assert out.device.type == "cuda" and out.data_ptr() == dc.data_ptr
    torch.testing.assert_close(out.cpu(), torch.from_numpy(2 * (a + b)))
    view = torch.as_tensor(dc, device="cuda")  # via __cuda_array_interface__
    assert view.data_ptr() == dc.data_ptr
    del dc
    torch.cuda.synchronize()
    assert out.sum().item() > 0  # the capsule kept the kiln array alive


def test_misaligned_torch_views_go_through_aligned_copies():
    """torch's x[1:] starts 4 bytes into its storage; kiln's panel fetches read float4s,
    which such a pointer would make a misaligned-address fault (poisoning the context)."""
    torch = torch_cuda()
    from kiln import te
    from kiln.topi import cuda as tc
    A = te.placeholder((16, 32), name="A")
    B = te.placeholder((32, 32), name="B")
    k = te.reduce_axis((0, 32), name="k")
    C = te.compute((16, 32), lambda i, j: te.sum(A[i, k] * B[j, k], axis=k), name="C")
    s = te.create_schedule(C.op)
    tc.schedule_matmul(s, C, C, tm=2, tn=2, tx=8, ty=4, bk=8, vec=4)
    f = kiln.build(s, [A, B, C], target="cuda")
    assert "float4" in f.source
    ta = torch.randn(16 * 32 + 1, device="cuda")[1:].view(16, 32)
    tb = torch.randn(32, 32, device="cuda")
    tcat = torch.zeros(16 * 32 + 1, device="cuda")
    out = tcat[1:].view(16, 32)
    assert ta.data_ptr() % 16 and out.data_ptr() % 16
    f(ta, tb, out)
    torch.testing.assert_close(out, ta @ tb.T, rtol=1e-5, atol=1e-5)
    assert tcat[0].item() == 0.0


def test_from_dlpack_views_torch_memory():
    torch = torch_cuda()
    t = torch.arange(8, dtype=torch.float32, device="cuda")
    v = kiln.nd.from_dlpack(t)
    assert v.data_ptr == t.data_ptr() and v.shape == (8,) and v.dtype == "float32"
    v.copyfrom(np.full(8, 3, np.float32))
    assert t.sum().item() == 24.0
    copy = kiln.nd.array(t, device="cuda")
    assert copy.data_ptr != t.data_ptr() and copy.numpy().tolist() == [3.0] * 8
    with pytest.raises(ArgumentError, match="C-contiguous"):
        kiln.nd.from_dlpack(t.reshape(2, 4).t())


def test_non_contiguous_torch_tensor_is_rejected(module):
    torch = torch_cuda()
    a, b = inputs()
    strided = torch.zeros(2 * N, device="cuda")[::2]
    with pytest.raises(ArgumentError, match="C-contiguous"):
        module(a, b, strided)


def test_time_evaluator(module):
    a, b = inputs()
    c = np.zeros(N, np.float32)
    for number, repeat in ((1, 3), (20, 2)):  # graph path in both (two kernels)
        res = module.time_evaluator(number=number, repeat=repeat)(a, b, c)
        assert len(res.results) == repeat and all(0 < t < 0.1 for t in res.results)
    res = module.time_evaluator(number=5, repeat=2, min_repeat_ms=2,
                                f_preproc="cache_flush")(a, b, c)
    assert all(0 < t < 0.1 for t in res.results)
    dc = kiln.nd.empty((N,), "float32", device="cuda")
    assert module.time_evaluator(number=10)(a, b, dc).mean > 0


def test_scalar_arguments_and_dynamic_shared_memory(arch):
    props = cuda.device_properties()
    with open(nvrtc.compile_cuda(AXPY, arch), "rb") as f:
        cu = cuda.CuModule(f.read())
    fn = cu.function("axpy")
    assert fn.attributes()["num_regs"] > 0 and fn.attributes()["max_threads"] >= 128
    x = np.arange(N, dtype=np.float32)
    dx, dy = kiln.nd.array(x, "cuda"), kiln.nd.array(np.ones(N, np.float32), "cuda")
    grid = [(N + 127) // 128]
    # more dynamic shared memory than the 48 KiB default needs the opt-in attribute
    shared = min(64 * 1024, props["max_shared_memory_per_block_optin"])
    fn.launch(grid, [128], [dx.data_ptr, dy.data_ptr, np.float32(0.5), np.int32(N)], shared)
    cuda.synchronize("axpy")
    np.testing.assert_allclose(dy.numpy(), 1 + 0.5 * x)


def test_graph_capture_and_events(module):
    a, b = inputs()
    da, db = kiln.nd.array(a, "cuda"), kiln.nd.array(b, "cuda")
    dc = kiln.nd.empty((N,), "float32", "cuda")
    module.load()
    args = [da.data_ptr, db.data_ptr, dc.data_ptr]
    graph = cuda.capture(lambda s: module.launch_all(args, [], s), cuda.Stream())
    dc.copyfrom(np.zeros(N, np.float32))
    graph.launch()
    graph.launch()
    graph.stream.synchronize("graph")
    np.testing.assert_allclose(dc.numpy(), 2 * (a + b), rtol=1e-6)
    times = cuda.time_kernels(graph.launch, number=10, repeat=3, stream=graph.stream)
    assert len(times) == 3 and all(0 < t < 0.1 for t in times)
    cuda.flush_l2()
    start, end = cuda.Event(), cuda.Event()
    start.record()
    module.launch_all(args, [])
    end.record()
    end.synchronize()
    assert cuda.Event.elapsed_ms(start, end) >= 0


def test_bad_launch_names_the_kernel(module):
    module.load()
    fn = module._launchers[0]
    with pytest.raises(DeviceError, match="add_kernel"):
        fn.launch(GRID, [4096, 1, 1], [0, 0, 0])  # more threads than a block may have
    cuda.synchronize("after a rejected launch")  # a launch error is not sticky


def test_illegal_address_poisons_the_context_in_a_subprocess(arch, tmp_path):
    script = textwrap.dedent(f"""
        import numpy as np
        from kiln.codegen import nvrtc
        from kiln.errors import DeviceError
        from kiln.runtime import CudaModule
        import sys
        sys.path.insert(0, {os.path.dirname(__file__)!r})
        from cuda_sources import OUT_OF_BOUNDS, boom_meta
        m = CudaModule(nvrtc.compile_cuda(OUT_OF_BOUNDS, {arch!r}), boom_meta(), OUT_OF_BOUNDS)
        for attempt in (1, 2):
            try:
                m(np.zeros(4, np.float32))
                print("NO ERROR")
            except DeviceError as err:
                print("ERROR", attempt, err)
    """)
    env = dict(os.environ, PYTHONPATH=REPO + os.pathsep + os.environ.get("PYTHONPATH", ""),
               KILN_CACHE_DIR=str(tmp_path))
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                         env=env, timeout=300, cwd=REPO)
    text = out.stdout + out.stderr
    assert "ERROR 1" in text and "boom_kernel" in text, text
    assert "CUDA_ERROR_ILLEGAL_ADDRESS" in text and "restart the process" in text, text
    assert "ERROR 2" in text and "unusable" in text, text


def test_sources_are_shared_with_the_subprocess():
    assert "boom_kernel" in OUT_OF_BOUNDS and boom_meta()["kernels"][0]["name"] == "boom_kernel"
