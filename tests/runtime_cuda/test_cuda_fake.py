"""The CUDA runtime's plumbing against a fake driver (host memory, Python kernels): parameter
packing, copies in and out, workspace, kernel order, device arrays, the CUDA array interface,
DLPack export, graphs, timing and error reporting. Runs everywhere; the real GPU is never
touched (test_cuda_gpu.py does that)."""

import gc
import threading

import numpy as np
import pytest
from cuda_sources import N, add_scale_meta, boom_meta
from fake_driver import CUresult, FakeDriver, floats

import kiln
from kiln.errors import ArgumentError, DeviceError
from kiln.runtime import CudaModule, cuda, dlpack


def add_kernel(grid, block, a, b, t):
    floats(t, N)[:] = floats(a, N) + floats(b, N)


def scale_kernel(grid, block, t, c):
    floats(c, N)[:] = 2 * floats(t, N)


def boom_kernel(grid, block, a):
    return CUresult.CUDA_ERROR_ILLEGAL_ADDRESS


def axpy(grid, block, x, y, alpha, n):
    alpha = np.frombuffer(alpha[:4], np.float32)[0]
    n = int(np.frombuffer(n[:4], np.int32)[0])
    floats(y, n)[:] += alpha * floats(x, n)


@pytest.fixture
def fake(monkeypatch):
    # Buffers must be freed by the driver that made them: collect other tests' leftovers
    # before switching drivers, and this test's before switching back.
    gc.collect()
    drv = FakeDriver({"add_kernel": add_kernel, "scale_kernel": scale_kernel,
                      "boom_kernel": boom_kernel, "axpy": axpy})
    monkeypatch.setattr(cuda, "_import_driver", lambda: drv)
    for name, fresh in (("_STATE", {}), ("_PROPS", {}), ("_POISON", []), ("FLUSH_STATE", {}),
                        ("_TLS", threading.local()),
                        ("CAPTURE_STATE", {"depth": 0, "deferred": []})):
        monkeypatch.setattr(cuda, name, fresh)
    yield drv
    gc.collect()


@pytest.fixture
def cubin(tmp_path):
    path = tmp_path / "fake.cubin"
    path.write_bytes(b"\x7fELF fake")
    return str(path)


def inputs():
    rng = np.random.default_rng(1)
    return rng.random(N, dtype=np.float32), rng.random(N, dtype=np.float32)


def test_initialisation_and_properties(fake):
    assert cuda.available() and kiln.cuda(0).exist
    p = cuda.device_properties()
    assert p["arch"] == "sm_90" and p["compute_capability"] == (9, 0)
    assert p["name"] == "Fake H200" and p["max_shared_memory_per_block"] == 48 * 1024
    assert p["l2_bytes"] == 4 * 2 ** 20 and p["total_memory"] == 141 * 2 ** 30
    with pytest.raises(DeviceError, match="no CUDA device 3"):
        cuda.device_properties(3)


def test_module_call_with_numpy(fake, cubin):
    m = CudaModule(cubin, add_scale_meta(), "src")
    a, b = inputs()
    c = np.zeros(N, np.float32)
    m(a, b, c)
    np.testing.assert_allclose(c, 2 * (a + b), rtol=1e-6)
    assert [x[0] for x in fake.launches] == ["add_kernel", "scale_kernel"]
    assert fake.launches[0][1:] == ((8, 1, 1), (128, 1, 1), 0)
    a_before = a.copy()
    m(a, b, c)
    np.testing.assert_array_equal(a, a_before)  # read-only params are not copied back
    assert len(fake.memory) == 1  # only the workspace stays allocated between calls


def test_module_call_with_device_arrays(fake, cubin):
    m = CudaModule(cubin, add_scale_meta(), "src")
    a, b = inputs()
    da, db = kiln.nd.array(a, "cuda"), kiln.nd.array(b, device=kiln.cuda())
    dc = kiln.nd.empty((N,), "float32", "cuda")
    m(da, db, dc)
    np.testing.assert_allclose(dc.numpy(), 2 * (a + b), rtol=1e-6)
    assert dc.shape == (N,) and dc.dtype == "float32" and dc.nbytes == 4 * N
    assert "cuda(0)" in repr(dc)
    back = dc.copyto(kiln.cpu())
    assert type(back) is kiln.nd.NDArray and back.device == kiln.cpu()
    again = kiln.nd.array(dc, "cuda")  # device-to-device copy
    assert again.data_ptr != dc.data_ptr
    np.testing.assert_array_equal(again.numpy(), dc.numpy())
    cpu = kiln.nd.array(np.zeros(N, np.float32))
    cpu.copyfrom(dc)
    np.testing.assert_array_equal(cpu.numpy(), dc.numpy())
    m(kiln.nd.array(a), kiln.nd.array(b), cpu)  # CPU NDArrays are copied in and back
    np.testing.assert_allclose(cpu.numpy(), 2 * (a + b), rtol=1e-6)


class Foreign:
    """Another library's CUDA array, known only by its __cuda_array_interface__."""

    def __init__(self, arr, stream=None):
        self.buf = cuda.DeviceBuffer(arr.nbytes)
        self.buf.copy_from_host(np.ascontiguousarray(arr))
        self.__cuda_array_interface__ = {"shape": arr.shape, "typestr": arr.dtype.str,
                                         "data": (self.buf.ptr, False), "strides": None,
                                         "version": 3, "stream": stream}


def test_cuda_array_interface_in_and_out(fake, cubin):
    m = CudaModule(cubin, add_scale_meta(), "src")
    a, b = inputs()
    fa, fb, fc = Foreign(a, stream=1), Foreign(b), Foreign(np.zeros(N, np.float32))
    m(fa, fb, fc)
    np.testing.assert_allclose(fc.buf.copy_to_host(np.empty(N, np.float32)), 2 * (a + b),
                               rtol=1e-6)
    view = kiln.nd.from_dlpack(fa)
    assert view.data_ptr == fa.buf.ptr and view._owner is fa
    np.testing.assert_array_equal(view.numpy(), a)
    cai = view.__cuda_array_interface__
    assert cai["data"] == (fa.buf.ptr, False) and cai["typestr"] == "<f4" and cai["version"] == 3


def _one_float_in(arr):
    """A Foreign array whose data starts 4 bytes into its allocation (torch's x[1:])."""
    f = Foreign(np.concatenate([np.zeros(1, arr.dtype), arr]))
    f.__cuda_array_interface__.update(shape=arr.shape, data=(f.buf.ptr + 4, False))
    return f


def test_misaligned_device_arrays_are_staged_through_aligned_copies(fake, cubin):
    seen = []

    def add_checked(grid, block, a, b, t):
        seen.append([int.from_bytes(v, "little") % 16 for v in (a, b, t)])
        add_kernel(grid, block, a, b, t)
    fake.kernels["add_kernel"] = add_checked
    m = CudaModule(cubin, add_scale_meta(), "src")
    a, b = inputs()
    fa, fc = _one_float_in(a), _one_float_in(np.zeros(N, np.float32))
    m(fa, kiln.nd.array(b, "cuda"), fc)
    assert seen == [[0, 0, 0]]  # kernels see 16-byte aligned copies
    out = fc.buf.copy_to_host(np.empty(N + 1, np.float32))
    np.testing.assert_allclose(out[1:], 2 * (a + b), rtol=1e-6)  # written back in place
    assert out[0] == 0


def test_dlpack_export_of_a_device_array(fake):
    d = kiln.nd.array(np.arange(6, dtype=np.int32).reshape(2, 3), "cuda")
    assert d.__dlpack_device__() == (2, 0)
    v = dlpack.DLView(d.__dlpack__(stream=1, max_version=(1, 0)))
    assert (v.device, v.shape, v.dtype, v.ptr) == ((2, 0), (2, 3), np.dtype("int32"),
                                                  d.data_ptr)
    copy = dlpack.DLView(d.__dlpack__(copy=True))
    assert copy.ptr != d.data_ptr
    with pytest.raises(BufferError):
        d.__dlpack__(dl_device=(1, 0))
    w = kiln.nd.from_dlpack(d.__dlpack__())  # a raw capsule
    assert w.data_ptr == d.data_ptr and w.shape == (2, 3)


def test_scalars_and_dynamic_shared_memory(fake, cubin):
    fn = cuda.CuModule(b"\x7fELF fake").function("axpy")
    x = np.arange(N, dtype=np.float32)
    dx, dy = kiln.nd.array(x, "cuda"), kiln.nd.array(np.ones(N, np.float32), "cuda")
    fn.launch([8], [128], [dx.data_ptr, dy, np.float32(0.5), np.int32(N)], 64 * 1024)
    cuda.synchronize("axpy")
    np.testing.assert_allclose(dy.numpy(), 1 + 0.5 * x)
    assert fake.func_attrs[("axpy", 8)] == 64 * 1024
    assert fn.attributes() == {"num_regs": 12, "shared_bytes": 0, "local_bytes": 0,
                               "max_threads": 1024}
    with pytest.raises(DeviceError, match=r"no kernel|looking up kernel 'missing'"):
        cuda.CuModule(b"\x7fELF fake").function("missing")


def test_time_evaluator_uses_a_graph(fake, cubin):
    m = CudaModule(cubin, add_scale_meta(), "src")
    a, b = inputs()
    c = np.zeros(N, np.float32)
    res = m.time_evaluator(number=4, repeat=3)(a, b, c)
    assert len(res.results) == 3 and all(t > 0 for t in res.results)
    # one plain call, then per repeat a warm-up and 4 graph launches of both kernels
    assert len(fake.launches) == 2 * (1 + 3 * (1 + 4))
    res = m.time_evaluator(number=2, repeat=1, min_repeat_ms=1,
                           f_preproc="cache_flush_cpu_non_first_arg")(a, b, c)
    assert res.results[0] > 0


def test_graph_capture_replays(fake, cubin):
    m = CudaModule(cubin, add_scale_meta(), "src")
    a, b = inputs()
    da, db, dc = (kiln.nd.array(x, "cuda") for x in (a, b, np.zeros(N, np.float32)))
    m.load()
    graph = cuda.capture(lambda s: m.launch_all([da.data_ptr, db.data_ptr, dc.data_ptr], [], s))
    assert fake.launches == []  # captured, not run
    graph.launch()
    np.testing.assert_allclose(dc.numpy(), 2 * (a + b), rtol=1e-6)
    assert len(fake.launches) == 2


def test_frees_during_capture_are_deferred(fake):
    buf = cuda.DeviceBuffer(64)
    ptr = buf.ptr

    def body(stream):
        buf.free()
        assert ptr in fake.memory  # not freed while capturing
    cuda.capture(body)
    assert ptr not in fake.memory


def test_capture_error_ends_the_capture(fake):
    def body(stream):
        raise ValueError("inside")
    with pytest.raises(ValueError, match="inside"):
        cuda.capture(body)
    assert fake.capturing == {} and cuda.CAPTURE_STATE["depth"] == 0


def test_sticky_error_names_the_kernel_and_poisons(fake, cubin):
    m = CudaModule(cubin, boom_meta(), "src")
    with pytest.raises(DeviceError) as err:
        m(np.zeros(4, np.float32))
    text = str(err.value)
    assert "boom_kernel" in text and "CUDA_ERROR_ILLEGAL_ADDRESS" in text
    assert "fake CUDA_ERROR_ILLEGAL_ADDRESS" in text and "restart the process" in text
    with pytest.raises(DeviceError, match="unusable after an earlier error"):
        m(np.zeros(4, np.float32))
    with pytest.raises(DeviceError, match="unusable"):
        kiln.nd.empty((3,), device="cuda")


def test_launch_errors_and_oom(fake, cubin):
    m = CudaModule(cubin, add_scale_meta(), "src")
    m.load()
    with pytest.raises(DeviceError, match=r"launching kernel add_kernel .*block \(2048, 1, 1\)"
                                          r".*CUDA_ERROR_INVALID_VALUE"):
        m._launchers[0].launch([1], [2048], [0, 0, 0])
    with pytest.raises(ArgumentError, match="grid must be 1 to 3 positive sizes"):
        m._launchers[0].launch([0], [32], [0, 0, 0])
    with pytest.raises(DeviceError, match=r"out of device memory in cuMemAlloc \(asked for "
                                          r"2199023255552 bytes; 1073741824 of"):
        cuda.DeviceBuffer(2 ** 41)
    cuda.synchronize("still fine")


def test_device_buffer_checks(fake):
    buf = cuda.DeviceBuffer(16)
    with pytest.raises(ArgumentError, match="the array has 32 bytes, more than the device "
                                            "buffer's 16"):
        buf.copy_from_host(np.zeros(8, np.float32))
    buf.copy_from_host(np.full(2, 3, np.int32))  # a smaller array fills the start
    with pytest.raises(ArgumentError, match="C-contiguous"):
        buf.copy_to_host(np.zeros(8, np.float32)[::2])
    with pytest.raises(ArgumentError, match="do not fit"):
        buf.copy_from_device(0, 32)
    buf.memset_d8(7)
    assert (buf.copy_to_host(np.empty(16, np.uint8)) == 7).all()
    assert cuda.DeviceBuffer(0).nbytes == 0
    cuda.flush_l2()
    cuda.flush_l2(cuda.Stream())
    times = cuda.time_kernels(lambda s: None, number=3, repeat=2)
    assert len(times) == 2


def test_scalar_parameters_and_shared_opt_in_at_load(fake, cubin):
    meta = {"version": 1, "name": "axpy_fn", "target": "cuda -arch=sm_90",
            "params": [{"name": "x", "shape": [N], "dtype": "float32", "written": False},
                       {"name": "y", "shape": [N], "dtype": "float32", "written": True}],
            "scalar_params": [{"name": "alpha", "dtype": "float32"},
                              {"name": "n", "dtype": "int32"}],
            "workspace": [],
            "kernels": [{"name": "axpy", "grid": [8, 1, 1], "block": [128, 1, 1],
                         "shared_bytes": 100 * 1024,
                         "args": [["param", 0], ["param", 1], ["scalar", 0], ["scalar", 1]]}]}
    m = CudaModule(cubin, meta, "src")
    m.load()
    assert fake.func_attrs[("axpy", 8)] == 100 * 1024  # opted in before any launch
    x, y = np.arange(N, dtype=np.float32), np.ones(N, np.float32)
    m(x, y, 0.5, N)
    np.testing.assert_allclose(y, 1 + 0.5 * x)
    with pytest.raises(ArgumentError, match="argument 4 'n' expects a number"):
        m(x, y, 0.5, "many")
    with pytest.raises(ArgumentError, match="argument 4 'n' expects an integer"):
        m(x, y, 0.5, 2.5)


def test_forked_child_is_told_to_spawn(fake):
    cuda.require()
    cuda._after_fork_in_child()  # what os.fork runs in the child
    assert not cuda.available()
    with pytest.raises(DeviceError, match="forked after CUDA was initialised"):
        cuda.require()
