"""Auto-scheduling for CUDA targets: the GPU search space, GPU program features, GPU
measurement (compile on CPU workers, measure in a worker owning the CUDA context) and the
search loop."""

from .measure import GpuBuilder, GpuRunner, as_gpu_builder, as_gpu_runner
from .model import GpuCostModel
from .search import GpuSearchPolicy
from .space import GpuConfig, GpuSpace

__all__ = ["GpuBuilder", "GpuConfig", "GpuCostModel", "GpuRunner", "GpuSearchPolicy",
           "GpuSpace", "as_gpu_builder", "as_gpu_runner"]
