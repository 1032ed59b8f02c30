"""DLPack capsules with ctypes: export device memory to PyTorch/CuPy, import theirs.

In: a data pointer, a shape, a numpy dtype, a DLPack device (type, id) and an owner object
(export); a "dltensor" PyCapsule from a producer's `__dlpack__` (import).
Out: a PyCapsule named "dltensor" holding a DLManagedTensor whose deleter releases the owner;
or a `DLView` (pointer, shape, dtype, strides, device) that keeps the producer's memory alive
until the view is collected.
Why: DLPack is the zero-copy exchange every array library speaks; doing it with ctypes keeps
kiln free of compiled extensions. The struct layout is DLPack's stable pre-1.0 ABI (legacy,
unversioned capsules), which every consumer still accepts.
"""

from __future__ import annotations

import ctypes
import threading

import numpy as np

from ..errors import ArgumentError

KDL_CPU, KDL_CUDA = 1, 2
_CODES = {"i": 0, "u": 1, "f": 2, "b": 6}  # kDLInt, kDLUInt, kDLFloat, kDLBool
_KINDS = {v: k for k, v in _CODES.items()}
_NAME = b"dltensor"          # module constants: capsule names must outlive the capsules
_USED_NAME = b"used_dltensor"


class _DLDevice(ctypes.Structure):
    _fields_ = [("device_type", ctypes.c_int32), ("device_id", ctypes.c_int32)]


class _DLDataType(ctypes.Structure):
    _fields_ = [("code", ctypes.c_uint8), ("bits", ctypes.c_uint8), ("lanes", ctypes.c_uint16)]


class _DLTensor(ctypes.Structure):
    _fields_ = [("data", ctypes.c_void_p), ("device", _DLDevice), ("ndim", ctypes.c_int32),
                ("dtype", _DLDataType), ("shape", ctypes.POINTER(ctypes.c_int64)),
                ("strides", ctypes.POINTER(ctypes.c_int64)), ("byte_offset", ctypes.c_uint64)]


class _DLManagedTensor(ctypes.Structure):
    pass


_DELETER = ctypes.CFUNCTYPE(None, ctypes.c_void_p)
_DLManagedTensor._fields_ = [("dl_tensor", _DLTensor), ("manager_ctx", ctypes.c_void_p),
                             ("deleter", _DELETER)]

# Own prototypes (not ctypes.pythonapi's shared attributes, which other code may retype).
_api = ctypes.pythonapi
_capsule_new = ctypes.PYFUNCTYPE(ctypes.py_object, ctypes.c_void_p, ctypes.c_char_p,
                                 ctypes.c_void_p)(("PyCapsule_New", _api))
_capsule_is_valid = ctypes.PYFUNCTYPE(ctypes.c_int, ctypes.py_object, ctypes.c_char_p)(
    ("PyCapsule_IsValid", _api))
_capsule_get = ctypes.PYFUNCTYPE(ctypes.c_void_p, ctypes.py_object, ctypes.c_char_p)(
    ("PyCapsule_GetPointer", _api))
_capsule_set_name = ctypes.PYFUNCTYPE(ctypes.c_int, ctypes.py_object, ctypes.c_char_p)(
    ("PyCapsule_SetName", _api))
# The destructor sees a capsule whose refcount is already 0: raw pointers only, no py_object.
_raw_is_valid = ctypes.PYFUNCTYPE(ctypes.c_int, ctypes.c_void_p, ctypes.c_char_p)(
    ("PyCapsule_IsValid", _api))
_raw_get = ctypes.PYFUNCTYPE(ctypes.c_void_p, ctypes.c_void_p, ctypes.c_char_p)(
    ("PyCapsule_GetPointer", _api))

_LIVE: dict = {}   # DLManagedTensor address -> (struct, shape, strides, owner) until deleted
_LIVE_LOCK = threading.Lock()


def _delete(addr) -> None:
    with _LIVE_LOCK:
        _LIVE.pop(addr, None)


def _destroy_capsule(capsule) -> None:
    """A capsule nobody consumed is collected: release what it holds."""
    if _raw_is_valid(capsule, _NAME):
        _delete(_raw_get(capsule, _NAME))


_DELETER_FN = _DELETER(_delete)
_DESTRUCTOR = ctypes.CFUNCTYPE(None, ctypes.c_void_p)(_destroy_capsule)


def dl_dtype(dtype) -> tuple:
    """(code, bits) of a numpy dtype; ArgumentError for types DLPack has no code for."""
    dtype = np.dtype(dtype)
    if dtype.kind not in _CODES:
        raise ArgumentError(f"dtype {dtype} cannot be exchanged through DLPack")
    return _CODES[dtype.kind], dtype.itemsize * 8


def to_capsule(ptr: int, shape: tuple, dtype, device: tuple, owner) -> object:
    """A "dltensor" PyCapsule over C-contiguous memory at `ptr`; `owner` lives until the
    consumer calls the deleter (or the capsule is dropped unused)."""
    ndim = len(shape)
    itemsize_strides, step = [], 1
    for d in reversed(shape):
        itemsize_strides.insert(0, step)
        step *= max(int(d), 1)
    c_shape = (ctypes.c_int64 * max(ndim, 1))(*shape)
    c_strides = (ctypes.c_int64 * max(ndim, 1))(*itemsize_strides)
    code, bits = dl_dtype(dtype)
    mt = _DLManagedTensor()
    t = mt.dl_tensor
    t.data, t.ndim, t.byte_offset = int(ptr) or None, ndim, 0
    t.device = _DLDevice(int(device[0]), int(device[1]))
    t.dtype = _DLDataType(code, bits, 1)
    t.shape = ctypes.cast(c_shape, ctypes.POINTER(ctypes.c_int64))
    t.strides = ctypes.cast(c_strides, ctypes.POINTER(ctypes.c_int64))
    mt.deleter = _DELETER_FN
    addr = ctypes.addressof(mt)
    with _LIVE_LOCK:
        _LIVE[addr] = (mt, c_shape, c_strides, owner)
    return _capsule_new(addr, _NAME, ctypes.cast(_DESTRUCTOR, ctypes.c_void_p))


class DLView:
    """Memory described by a consumed DLPack capsule; calls the producer's deleter when
    collected."""

    def __init__(self, capsule):
        if not _capsule_is_valid(capsule, _NAME):
            raise ArgumentError("from_dlpack: expected an unused 'dltensor' capsule")
        addr = _capsule_get(capsule, _NAME)
        mt = _DLManagedTensor.from_address(addr)
        t = mt.dl_tensor
        self.device = (t.device.device_type, t.device.device_id)
        if t.dtype.lanes != 1 or t.dtype.code not in _KINDS:
            raise ArgumentError(f"from_dlpack: unsupported DLPack dtype (code {t.dtype.code}, "
                                f"{t.dtype.bits} bits, {t.dtype.lanes} lanes)")
        kind = _KINDS[t.dtype.code]
        self.dtype = np.dtype(bool) if kind == "b" else np.dtype(f"{kind}{t.dtype.bits // 8}")
        self.shape = tuple(t.shape[i] for i in range(t.ndim))
        self.strides = tuple(t.strides[i] for i in range(t.ndim)) if t.strides else None
        self.ptr = (t.data or 0) + t.byte_offset
        _capsule_set_name(capsule, _USED_NAME)  # we own it now; the capsule must not delete
        self._addr = addr

    @property
    def c_contiguous(self) -> bool:
        return self.strides is None or is_c_contiguous(self.shape, self.strides, 1)

    def __del__(self):
        addr, self._addr = getattr(self, "_addr", None), None
        if addr:
            try:
                mt = _DLManagedTensor.from_address(addr)
                if ctypes.cast(mt.deleter, ctypes.c_void_p).value:
                    mt.deleter(addr)
            except Exception:
                pass


def is_c_contiguous(shape, strides, itemsize: int) -> bool:
    """Whether `strides` (in units of `itemsize`) describe a C-contiguous layout; sizes 1 and
    0 are ignored, as PyTorch reports arbitrary strides for them."""
    if any(int(d) == 0 for d in shape):
        return True
    step = itemsize
    for d, s in zip(reversed(shape), reversed(strides)):
        if int(d) != 1 and int(s) != step:
            return False
        step *= int(d)
    return True
