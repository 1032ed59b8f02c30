"""Puts every Python process that starts with KILN_GPU_STUB set on the emulated GPU
(tests/gpu_stub.py): the test process and the workers it spawns alike."""

import os

if os.environ.get("KILN_GPU_STUB"):
    import gpu_stub

    gpu_stub.install()
