"""Auto-scheduling for CUDA targets: the GPU search space, GPU program features, GPU
measurement (compile on CPU workers, measure in a worker owning the CUDA context) and the
search loop."""
