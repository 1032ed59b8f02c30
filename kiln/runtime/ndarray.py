"""Host arrays and devices for calling compiled kernels (TVM's tvm.nd / tvm.cpu look-alikes).

In: numpy arrays, shapes and dtypes.
Out: `NDArray` (a C-contiguous numpy array with `.numpy()`, `.shape`, `.dtype`, `.copyfrom`),
`Device` objects (`cpu(0)`), and the constructors `array` and `empty`.
Why: code written against TVM (`tvm.nd.array(x, dev)`, `tvm.cpu()`) runs unchanged; on the CPU
an NDArray is only a thin, always-contiguous wrapper, so kernels take it without copies.
"""

from __future__ import annotations

import numpy as np

from ..errors import ArgumentError


class Device:
    """A device handle; kiln runs on the host CPU, so this only records the type and index."""

    def __init__(self, device_type: str = "cpu", device_id: int = 0):
        if device_type not in ("cpu", "llvm"):
            raise ArgumentError(f"device {device_type!r}: kiln only has the 'cpu' device")
        self.device_type, self.device_id = "cpu", int(device_id)

    def sync(self) -> None:
        """Kernels run synchronously; nothing to wait for."""

    @property
    def exist(self) -> bool:
        return True

    def __eq__(self, other) -> bool:
        return isinstance(other, Device) and (other.device_type, other.device_id) == \
            (self.device_type, self.device_id)

    def __hash__(self) -> int:
        return hash((self.device_type, self.device_id))

    def __repr__(self) -> str:
        return f"{self.device_type}({self.device_id})"


def cpu(dev_id: int = 0) -> Device:
    return Device("cpu", dev_id)


def device(dev_type: str = "cpu", dev_id: int = 0) -> Device:
    return Device(dev_type, dev_id)


class NDArray:
    """An array on a device (the host): wraps one C-contiguous numpy array."""

    def __init__(self, data: np.ndarray, device: Device | None = None):
        self._data = np.ascontiguousarray(data)
        self.device = device or cpu()

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
        src = source.numpy() if isinstance(source, NDArray) else np.asarray(source)
        if src.shape != self.shape:
            raise ArgumentError(f"copyfrom: shape {src.shape} does not match {self.shape}")
        self._data[...] = src.astype(self._data.dtype, copy=False)
        return self

    def copyto(self, target) -> NDArray:
        if isinstance(target, Device):
            return NDArray(self._data.copy(), target)
        return target.copyfrom(self)

    def __array__(self, dtype=None, copy=None):
        return self._data if dtype is None else self._data.astype(dtype)

    def __repr__(self) -> str:
        return f"<kiln.NDArray shape={self.shape}, {self.device}>\n{self._data!r}"


def array(arr, device: Device | None = None) -> NDArray:
    """A new NDArray holding a copy of `arr`."""
    return NDArray(np.array(arr, copy=True, order="C"), device)


def empty(shape, dtype: str = "float32", device: Device | None = None) -> NDArray:
    return NDArray(np.empty(tuple(int(s) for s in shape), dtype=dtype), device)


def as_numpy(x) -> np.ndarray:
    """The numpy array a kernel argument refers to (no copy for NDArray / ndarray)."""
    if isinstance(x, NDArray):
        return x._data
    return x
