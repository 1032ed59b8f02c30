"""Arrays and devices for calling compiled kernels (TVM's tvm.nd / tvm.cpu / tvm.cuda look-alikes).

In: numpy arrays, shapes and dtypes; device names ("cpu", "cuda", "cuda:0", `Device`);
objects exporting `__cuda_array_interface__` or DLPack (PyTorch CUDA tensors, CuPy arrays).
Out: `NDArray` (on the CPU a C-contiguous numpy array with `.numpy()`, `.shape`, `.dtype`,
`.copyfrom`; on the GPU a `CudaNDArray` in device memory, exported to PyTorch/CuPy through
`__cuda_array_interface__` and `__dlpack__`), `Device` objects (`cpu(0)`, `cuda(0)`), and the
constructors `array`, `empty` and `from_dlpack`.
Why: code written against TVM (`tvm.nd.array(x, dev)`, `tvm.cpu()`, `tvm.cuda()`) runs
unchanged; on the CPU an NDArray is only a thin, always-contiguous wrapper, so kernels take it
without copies; on the GPU arrays stay in device memory between calls and are shared with
other libraries without copies. The GPU is touched only when a CUDA array is made.
"""

from __future__ import annotations

import numpy as np

from ..errors import ArgumentError
from .bfloat16 import from_bfloat16, to_bfloat16  # noqa: F401 - kiln.nd.to_bfloat16
from .dlpack import is_c_contiguous

_TYPES = {"cpu": "cpu", "llvm": "cpu", "cuda": "cuda", "gpu": "cuda", "nvptx": "cuda"}
_DLPACK_TYPES = {"cpu": 1, "cuda": 2}


class Device:
    """A device handle: the host CPU ("cpu") or a CUDA GPU ("cuda", alias "gpu")."""

    def __init__(self, device_type: str = "cpu", device_id: int = 0):
        if device_type not in _TYPES:
            raise ArgumentError(f"device {device_type!r}: kiln has the 'cpu' and 'cuda' devices")
        self.device_type, self.device_id = _TYPES[device_type], int(device_id)

    def sync(self) -> None:
        """Wait for the device's queued work (CPU kernels run synchronously)."""
        if self.device_type == "cuda":
            from . import cuda as rt
            rt.synchronize(str(self))

    @property
    def exist(self) -> bool:
        if self.device_type == "cpu":
            return True
        from . import cuda as rt
        return self.device_id < rt.device_count()

    @property
    def dlpack_device_type(self) -> int:
        return _DLPACK_TYPES[self.device_type]

    def __eq__(self, other) -> bool:
        return isinstance(other, Device) and (other.device_type, other.device_id) == \
            (self.device_type, self.device_id)

    def __hash__(self) -> int:
        return hash((self.device_type, self.device_id))

    def __repr__(self) -> str:
        return f"{self.device_type}({self.device_id})"


def cpu(dev_id: int = 0) -> Device:
    return Device("cpu", dev_id)


def cuda(dev_id: int = 0) -> Device:
    """The CUDA GPU `dev_id` (creating the handle does not touch the GPU)."""
    return Device("cuda", dev_id)


gpu = cuda


def device(dev_type: str = "cpu", dev_id: int = 0) -> Device:
    """A Device by name ("cpu", "llvm", "cuda", or a target string such as str(target))."""
    dev = as_device(dev_type)
    return dev if dev_id == 0 else Device(dev.device_type, dev_id)


def as_device(dev) -> Device:
    """A Device from a Device, None (the CPU) or a name: "cpu", "cuda", "gpu", "cuda:1"."""
    if dev is None:
        return cpu()
    if isinstance(dev, Device):
        return dev
    if isinstance(dev, str):
        # a target string names its device by its first word: tvm.device(str(target), 0)
        kind, _, index = (dev.split() or [""])[0].partition(":")
        if index and not index.isdigit():
            raise ArgumentError(f"device {dev!r}: expected 'cuda' or 'cuda:<index>'")
        return Device(kind.lower(), int(index or 0))
    raise ArgumentError(f"device must be a kiln Device or a name such as 'cuda', got "
                        f"{type(dev).__name__}")


class NDArray:
    """An array on a device: on the host it wraps one C-contiguous numpy array; made for a
    CUDA device it is a `CudaNDArray`."""

    def __new__(cls, data=None, device: Device | None = None):
        if cls is NDArray and device is not None and as_device(device).device_type == "cuda":
            cls = CudaNDArray
        return super().__new__(cls)

    def __init__(self, data: np.ndarray, device: Device | None = None):
        data = np.asarray(data)
        # not np.ascontiguousarray: it makes a 0-d array (a scalar constant) 1-d
        self._data = data if data.flags.c_contiguous else np.array(data, order="C")
        self.device = as_device(device)

    @property
    def shape(self) -> tuple:
        return self._data.shape

    @property
    def dtype(self) -> str:
        return str(self._data.dtype)

    @property
    def ndim(self) -> int:
        return self._data.ndim

    def numpy(self) -> np.ndarray:
        """A copy of the contents as a numpy array."""
        return self._data.copy()

    asnumpy = numpy

    def copyfrom(self, source) -> NDArray:
        if hasattr(source, "__cuda_array_interface__") and not isinstance(source, NDArray):
            source = CudaNDArray.view_of(source)
        src = source.numpy() if isinstance(source, NDArray) else np.asarray(source)
        if src.shape != self.shape:
            raise ArgumentError(f"copyfrom: shape {src.shape} does not match {self.shape}")
        self._data[...] = src.astype(self._data.dtype, copy=False)
        return self

    def copyto(self, target) -> NDArray:
        if isinstance(target, (Device, str)):
            return NDArray(self._data.copy(), as_device(target))
        return target.copyfrom(self)

    def __array__(self, dtype=None, copy=None):
        return self._data if dtype is None else self._data.astype(dtype)

    def __repr__(self) -> str:
        return f"<kiln.NDArray shape={self.shape}, {self.device}>\n{self._data!r}"


def array(arr, device: Device | str | None = None) -> NDArray:
    """A new NDArray holding a copy of `arr`, on `device` (default: the CPU)."""
    dev = as_device(device)
    if dev.device_type == "cuda":
        return CudaNDArray.from_any(arr, dev)
    return NDArray(np.array(arr, copy=True, order="C"), dev)


def empty(shape, dtype: str = "float32", device: Device | str | None = None) -> NDArray:
    dev = as_device(device)
    shape = tuple(int(s) for s in shape)
    if dev.device_type == "cuda":
        return CudaNDArray.allocate(shape, dtype, dev)
    return NDArray(np.empty(shape, dtype=dtype), dev)


def as_numpy(x) -> np.ndarray:
    """The numpy array a kernel argument refers to (no copy for NDArray / ndarray); a GPU
    array comes back as itself, which a CPU kernel then rejects."""
    if isinstance(x, NDArray) and x.device.device_type == "cpu":
        return x._data
    return x


def from_dlpack(obj) -> NDArray:
    """A zero-copy NDArray over another library's array (`__cuda_array_interface__`, or a
    `__dlpack__` / DLPack capsule); the producer is kept alive by the view."""
    if hasattr(obj, "__cuda_array_interface__"):
        return CudaNDArray.view_of(obj)
    if hasattr(obj, "__dlpack__"):
        kind, dev_id = obj.__dlpack_device__()
        if int(kind) == 1:
            return NDArray(np.from_dlpack(obj))
        if int(kind) != 2:
            raise ArgumentError(f"from_dlpack: DLPack device type {kind} is neither the CPU "
                                "(1) nor CUDA (2)")
        return CudaNDArray.from_capsule(obj.__dlpack__(stream=1))  # we use the legacy stream
    if type(obj).__name__ == "PyCapsule":
        return CudaNDArray.from_capsule(obj)
    raise ArgumentError(f"from_dlpack: {type(obj).__name__} has neither "
                        "__cuda_array_interface__ nor __dlpack__")


# ---------------------------------------------------------------- GPU arrays

def cuda_array_info(obj) -> tuple:
    """(pointer, shape, numpy dtype, C-contiguous?, stream) of a `__cuda_array_interface__`."""
    cai = obj.__cuda_array_interface__
    shape = tuple(int(d) for d in cai["shape"])
    dtype = np.dtype(cai["typestr"])
    strides = cai.get("strides")
    contiguous = strides is None or is_c_contiguous(shape, strides, dtype.itemsize)
    return int(cai["data"][0] or 0), shape, dtype, contiguous, cai.get("stream")


class CudaNDArray(NDArray):
    """An array in CUDA device memory: its own `DeviceBuffer`, or a view of another
    library's memory (whose owner it keeps alive)."""

    def __init__(self, data, device: Device | None = None):
        arr = np.ascontiguousarray(np.asarray(data))
        self._setup(cuda() if device is None else as_device(device), arr.shape, arr.dtype)
        self._alloc()
        _rt().copy_host_to_device(self._ptr, arr)

    # ------------------------------------------------------------ constructors
    @classmethod
    def allocate(cls, shape, dtype, device: Device | None = None) -> CudaNDArray:
        out = object.__new__(cls)
        out._setup(device or cuda(), tuple(int(s) for s in shape), np.dtype(dtype))
        out._alloc()
        return out

    @classmethod
    def view(cls, ptr: int, shape, dtype, device: Device | None = None,
             owner=None) -> CudaNDArray:
        """An array over existing device memory at `ptr`, keeping `owner` alive."""
        out = object.__new__(cls)
        out._setup(device or cuda(), tuple(int(s) for s in shape), np.dtype(dtype))
        out._ptr, out._owner = int(ptr), owner
        return out

    @classmethod
    def view_of(cls, obj) -> CudaNDArray:
        """A zero-copy view of an object with `__cuda_array_interface__`."""
        ptr, shape, dtype, contiguous, _stream = cuda_array_info(obj)
        if not contiguous:
            raise ArgumentError(f"{type(obj).__name__} is not C-contiguous; pass a contiguous "
                                "copy (e.g. tensor.contiguous())")
        _rt().require()
        return cls.view(ptr, shape, dtype, cuda(), owner=obj)

    @classmethod
    def from_capsule(cls, capsule) -> CudaNDArray:
        from .dlpack import DLView
        v = DLView(capsule)
        if v.device[0] != 2:
            raise ArgumentError(f"from_dlpack: the capsule holds memory of DLPack device type "
                                f"{v.device[0]}, not CUDA (2)")
        if not v.c_contiguous:
            raise ArgumentError("from_dlpack: the tensor is not C-contiguous")
        _rt().require()
        return cls.view(v.ptr, v.shape, v.dtype, cuda(v.device[1]), owner=v)

    @classmethod
    def from_any(cls, arr, device: Device) -> CudaNDArray:
        """A new device array holding a copy of `arr` (host data or device memory)."""
        if isinstance(arr, CudaNDArray) or hasattr(arr, "__cuda_array_interface__"):
            src = arr if isinstance(arr, CudaNDArray) else cls.view_of(arr)
            return cls.allocate(src.shape, src.dtype, device).copyfrom(src)
        return cls(arr, device)

    def _setup(self, device: Device, shape: tuple, dtype: np.dtype) -> None:
        if device.device_type != "cuda" or device.device_id != 0:
            raise ArgumentError(f"a CUDA array needs the device cuda(0) (kiln drives GPU 0 "
                                f"only), got {device}")
        self.device, self._shape, self._dtype = device, shape, np.dtype(dtype)
        self._ptr, self._buf, self._owner = 0, None, None

    def _alloc(self) -> None:
        self._buf = _rt().DeviceBuffer(self.nbytes)
        self._ptr = self._buf.ptr

    # ------------------------------------------------------------ attributes
    @property
    def shape(self) -> tuple:
        return self._shape

    @property
    def dtype(self) -> str:
        return "bool" if self._dtype == np.bool_ else str(self._dtype)

    @property
    def ndim(self) -> int:
        return len(self._shape)

    @property
    def size(self) -> int:
        return int(np.prod(self._shape, dtype=np.int64))

    @property
    def nbytes(self) -> int:
        return self.size * self._dtype.itemsize

    @property
    def data_ptr(self) -> int:
        """The device address of the first element."""
        return self._ptr

    # ------------------------------------------------------------ copies
    def numpy(self) -> np.ndarray:
        """A host copy of the contents."""
        return _rt().copy_device_to_host(np.empty(self._shape, self._dtype), self._ptr)

    asnumpy = numpy

    def copyfrom(self, source) -> CudaNDArray:
        """Copy from a numpy array, an NDArray (CPU or GPU) or a CUDA-array-interface object."""
        if isinstance(source, CudaNDArray) or hasattr(source, "__cuda_array_interface__"):
            src = source if isinstance(source, CudaNDArray) else CudaNDArray.view_of(source)
            self._check_same(src.shape, src._dtype, "copyfrom")
            _rt().copy_device_to_device(self._ptr, src._ptr, self.nbytes)
            return self
        src = source.numpy() if isinstance(source, NDArray) else np.asarray(source)
        if src.shape != self._shape:
            raise ArgumentError(f"copyfrom: shape {src.shape} does not match {self._shape}")
        _rt().copy_host_to_device(self._ptr, np.ascontiguousarray(src, dtype=self._dtype))
        return self

    def copyto(self, target) -> NDArray:
        if isinstance(target, (Device, str)):
            dev = as_device(target)
            if dev.device_type == "cpu":
                return NDArray(self.numpy(), dev)
            return CudaNDArray.allocate(self._shape, self._dtype, dev).copyfrom(self)
        return target.copyfrom(self)

    def _check_same(self, shape, dtype, what: str) -> None:
        if tuple(shape) != self._shape or np.dtype(dtype) != self._dtype:
            raise ArgumentError(f"{what}: {tuple(shape)} {np.dtype(dtype)} does not match "
                                f"{self._shape} {self._dtype}")

    def __array__(self, dtype=None, copy=None):
        out = self.numpy()
        return out if dtype is None else out.astype(dtype)

    # ------------------------------------------------------------ exchange
    @property
    def __cuda_array_interface__(self) -> dict:
        # stream None: kiln's work is finished (synchronous) when an array is handed out
        return {"shape": self._shape, "typestr": self._dtype.str, "strides": None,
                "data": (self._ptr, False), "version": 3, "stream": None}

    def __dlpack_device__(self) -> tuple:
        return 2, self.device.device_id

    def __dlpack__(self, *, stream=None, max_version=None, dl_device=None, copy=None):
        """A legacy (unversioned) "dltensor" capsule, which consumers accept whatever
        `max_version` they ask for; it keeps this array alive until the consumer is done."""
        from .dlpack import to_capsule
        here = self.__dlpack_device__()
        if dl_device is not None and tuple(dl_device) != here:
            raise BufferError(f"kiln CUDA arrays export to DLPack device {here} only, not "
                              f"{tuple(dl_device)}")
        if stream not in (None, -1, 1, 2):  # the consumer's stream must see finished data
            _rt().synchronize("exporting an array through DLPack")
        src = self.copyto(self.device) if copy else self
        return to_capsule(src._ptr, src._shape, src._dtype, here, src)

    def __repr__(self) -> str:
        try:
            body = repr(self.numpy())
        except Exception as err:  # a broken context should not break printing
            body = f"<unreadable: {err}>"
        return f"<kiln.NDArray shape={self.shape}, {self.device}>\n{body}"


def _rt():
    from . import cuda as rt
    return rt
