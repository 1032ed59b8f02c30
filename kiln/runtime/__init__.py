"""Runtime: load compiled kernel libraries, call and time them, host arrays and devices.

`kiln.runtime.cuda` is the CUDA driver layer (a submodule); the CUDA device handle is
`kiln.cuda(0)` / `kiln.runtime.ndarray.cuda(0)`.
"""

from . import ndarray
from .cuda_module import CudaModule, load_cuda_module
from .module import Kernel, Module, ProfileResult, load_module
from .ndarray import CudaNDArray, Device, NDArray, array, cpu, device, empty, from_dlpack

__all__ = ["CudaModule", "CudaNDArray", "Device", "Kernel", "Module", "NDArray", "ProfileResult",
           "array", "cpu", "device", "empty", "from_dlpack", "load_cuda_module",
           "load_module", "ndarray"]
