"""The CUDA runtime where no GPU is present: clear DeviceErrors, argument checks that need no
GPU, module export/load, kernel-parameter packing and the DLPack structs (checked on CPU
memory). Skipped on a machine that has a GPU (test_cuda_gpu.py covers those)."""

import ctypes
import gc
import json
import os

import numpy as np
import pytest
from cuda_sources import ADD_SCALE, N, add_scale_meta

import kiln
from kiln.codegen import nvrtc
from kiln.errors import ArgumentError, BuildError, DeviceError
from kiln.runtime import CudaModule, cuda, dlpack, load_cuda_module, load_module, ndarray

no_gpu = pytest.mark.skipif(cuda.available(), reason="a GPU is present")


@pytest.fixture(autouse=True)
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("KILN_CACHE_DIR", str(tmp_path / "cache"))


@pytest.fixture
def module(tmp_path):
    if nvrtc.available():
        path = nvrtc.compile_cuda(ADD_SCALE, "sm_90")
    else:
        path = str(tmp_path / "fake.cubin")
        with open(path, "wb") as f:
            f.write(b"\x7fELF not a real cubin")
    return CudaModule(path, add_scale_meta(), ADD_SCALE)


def host_args():
    a = np.arange(N, dtype="float32")
    return a, np.ones(N, "float32"), np.zeros(N, "float32")


@no_gpu
def test_no_gpu_is_reported_clearly():
    assert cuda.available() is False and cuda.device_count() == 0
    for call in (cuda.require, cuda.device_properties, lambda: cuda.DeviceBuffer(16),
                 cuda.synchronize, lambda: cuda.CuModule(b"")):
        with pytest.raises(DeviceError, match="no CUDA GPU"):
            call()


@no_gpu
def test_cuda_arrays_need_a_gpu():
    x = np.ones(4, "float32")
    for call in (lambda: kiln.nd.array(x, device="cuda"), lambda: kiln.nd.array(x, "cuda:0"),
                 lambda: kiln.nd.array(x, kiln.cuda(0)), lambda: kiln.nd.empty((4,), device="gpu"),
                 lambda: ndarray.NDArray(x, kiln.cuda()), lambda: kiln.nd.array(x).copyto("cuda")):
        with pytest.raises(DeviceError, match="no CUDA GPU"):
            call()


@no_gpu
def test_cuda_device_handle():
    dev = kiln.cuda(0)
    assert dev.device_type == "cuda" and dev.device_id == 0 and repr(dev) == "cuda(0)"
    assert dev == ndarray.Device("gpu") == ndarray.as_device("cuda:0") == kiln.nd.device("cuda")
    assert dev != kiln.cpu(0) and dev.exist is False and dev.dlpack_device_type == 2
    with pytest.raises(DeviceError, match="no CUDA GPU"):
        dev.sync()
    assert ndarray.as_device(None) == ndarray.as_device("cpu") == kiln.cpu()
    with pytest.raises(ArgumentError, match="'cpu' and 'cuda'"):
        ndarray.Device("rocm")
    with pytest.raises(ArgumentError, match="cuda:<index>"):
        ndarray.as_device("cuda:x")


def test_cpu_arrays_unchanged():
    a = kiln.nd.array(np.arange(3.0), device="cpu")
    assert type(a) is ndarray.NDArray and a.device == kiln.cpu()
    assert type(ndarray.NDArray(np.zeros(2))) is ndarray.NDArray
    assert isinstance(a.copyto(kiln.cpu()), ndarray.NDArray)


@no_gpu
def test_calling_a_module_without_gpu(module):
    with pytest.raises(DeviceError, match="no CUDA GPU"):
        module(*host_args())


def test_argument_checks_come_before_the_gpu(module):
    a, b, c = host_args()
    with pytest.raises(ArgumentError, match=r"add_scale takes 3 arguments \(A, B, C\), got 2"):
        module(a, b)
    with pytest.raises(ArgumentError, match=r"argument 2 'B' expects shape \(1000,\) float32, "
                                            r"got \(999,\) float32"):
        module(a, b[:999], c)
    with pytest.raises(ArgumentError, match=r"argument 1 'A' expects .* got \(1000,\) float64"):
        module(a.astype("float64"), b, c)
    with pytest.raises(ArgumentError, match="C-contiguous"):
        module(a, np.ones(2 * N, "float32")[::2], c)
    c.flags.writeable = False
    with pytest.raises(ArgumentError, match="'C' is written by the kernel but the array is "
                                            "read-only"):
        module(a, b, c)
    with pytest.raises(ArgumentError, match="argument 1 'A' expects a numpy.ndarray"):
        module([1.0] * N, b, c)


def test_argument_checks_on_cuda_array_interface(module):
    class Fake:  # a CUDA array described only by its interface (as torch / CuPy give)
        def __init__(self, shape, typestr="<f4", strides=None):
            self.__cuda_array_interface__ = {"shape": shape, "typestr": typestr,
                                             "data": (0x1000, False), "strides": strides,
                                             "version": 3}
    a, b, c = host_args()
    with pytest.raises(ArgumentError, match=r"'A' expects shape \(1000,\) float32, got "
                                            r"\(10,\) float32"):
        module(Fake((10,)), b, c)
    with pytest.raises(ArgumentError, match=r"got \(1000,\) int32"):
        module(Fake((N,), "<i4"), b, c)
    with pytest.raises(ArgumentError, match="C-contiguous"):
        module(Fake((N,), strides=(8,)), b, c)


def test_module_surface(module):
    assert module.type_key == "kiln_cuda" and module.entry_name == "add_scale"
    assert [p["name"] for p in module.params] == ["A", "B", "C"]
    assert module["add_scale"] is module.entry is module.get_function("add_scale")
    assert module.source == ADD_SCALE and module.get_source() == ADD_SCALE
    assert module.imported_modules == []
    with pytest.raises(ArgumentError, match="no function 'nope'"):
        module.get_function("nope")
    assert callable(module.time_evaluator(number=3))


def test_export_load_round_trip(module, tmp_path):
    path = module.export_library(str(tmp_path / "add_scale.kiln"))
    with open(path) as f:
        assert f.read(20) == '{"kiln_cuda_module":'
    for loaded in (load_cuda_module(path), load_module(path)):
        assert isinstance(loaded, CudaModule)
        assert loaded.meta == module.meta and loaded.source == module.source
        assert loaded.cubin == module.cubin
    os.remove(module.cubin_path)  # the loaded module has its own copy of the cubin
    assert load_cuda_module(path).cubin.startswith(b"\x7fELF")


def test_bad_module_files_and_meta(module, tmp_path):
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"something": 1}))
    with pytest.raises(BuildError, match="not a kiln CUDA module"):
        load_cuda_module(str(bad))
    with pytest.raises(BuildError, match="no cubin"):
        CudaModule(str(tmp_path / "missing.cubin"), add_scale_meta(), "")
    meta = add_scale_meta()
    meta["kernels"][0]["args"].append(["workspace", 3])
    with pytest.raises(BuildError, match=r"invalid argument \['workspace', 3\]"):
        CudaModule(module.cubin_path, meta, "")


def test_pack_params_layout():
    addr, keep = cuda.pack_params([0x7F00_0000_1234, np.int32(-7), np.float32(1.5),
                                   np.int64(2 ** 40), np.float64(0.25)])
    ptrs = (ctypes.c_void_p * 5).from_address(addr)
    assert ctypes.c_uint64.from_address(ptrs[0]).value == 0x7F00_0000_1234
    assert ctypes.c_int32.from_address(ptrs[1]).value == -7
    assert ctypes.c_float.from_address(ptrs[2]).value == 1.5
    assert ctypes.c_int64.from_address(ptrs[3]).value == 2 ** 40
    assert ctypes.c_double.from_address(ptrs[4]).value == 0.25
    assert cuda.pack_params([]) == (0, ())
    with pytest.raises(ArgumentError, match="argument 0 must be a device pointer"):
        cuda.pack_params([1.5])


def test_dlpack_export_on_host_memory():
    torch = pytest.importorskip("torch")
    a = np.arange(12, dtype="float32").reshape(3, 4)
    owner = [a]
    live = len(dlpack._LIVE)
    t = torch.from_dlpack(dlpack.to_capsule(a.ctypes.data, a.shape, a.dtype, (1, 0), owner))
    assert t.shape == (3, 4) and t.dtype == torch.float32 and t.stride() == (4, 1)
    t[1, 2] = -1.0
    assert a[1, 2] == -1.0  # shared, not copied
    assert len(dlpack._LIVE) == live + 1
    del t
    gc.collect()
    assert len(dlpack._LIVE) == live  # the consumer's deleter released the owner
    dlpack.to_capsule(a.ctypes.data, a.shape, a.dtype, (1, 0), owner)  # dropped unused
    gc.collect()
    assert len(dlpack._LIVE) == live


def test_dlpack_import_reads_the_struct():
    torch = pytest.importorskip("torch")
    t = torch.arange(6, dtype=torch.int64).reshape(2, 3)
    v = dlpack.DLView(t.__dlpack__())
    assert (v.device, v.shape, v.dtype, v.ptr) == ((1, 0), (2, 3), np.dtype("int64"),
                                                  t.data_ptr())
    assert v.c_contiguous and not dlpack.DLView(t.t().__dlpack__()).c_contiguous
    assert dlpack.DLView(torch.ones(2, dtype=torch.bool).__dlpack__()).dtype == np.bool_
    assert kiln.nd.from_dlpack(t).numpy().tolist() == [[0, 1, 2], [3, 4, 5]]  # CPU producer


@no_gpu
def test_from_dlpack_of_a_cuda_producer_needs_a_gpu():
    class Fake:
        __cuda_array_interface__ = {"shape": (4,), "typestr": "<f4", "data": (0x1000, False),
                                    "version": 3}
    with pytest.raises(DeviceError, match="no CUDA GPU"):
        kiln.nd.from_dlpack(Fake())
    with pytest.raises(ArgumentError, match="neither"):
        kiln.nd.from_dlpack(object())


def test_is_c_contiguous():
    assert dlpack.is_c_contiguous((2, 3), (12, 4), 4)
    assert not dlpack.is_c_contiguous((2, 3), (4, 8), 4)
    assert dlpack.is_c_contiguous((1, 3), (99, 4), 4)  # size-1 dims may have any stride
    assert dlpack.is_c_contiguous((0, 3), (1, 1), 4)
