"""Runtime: load compiled kernel libraries, call and time them, host arrays and devices."""

from . import ndarray
from .module import Kernel, Module, ProfileResult, load_module
from .ndarray import Device, NDArray, array, cpu, device, empty

__all__ = ["Device", "Kernel", "Module", "NDArray", "ProfileResult", "array", "cpu", "device",
           "empty", "load_module", "ndarray"]
