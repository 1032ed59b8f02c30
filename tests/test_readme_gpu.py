"""The README's GPU examples run as written (without a GPU they build for sm_90, print the CUDA
source and the GPU search space; with one they also run, time and tune)."""

import re
from pathlib import Path

import pytest

pytest.importorskip("kiln.codegen.nvrtc")


def test_readme_gpu_example_runs(capsys):
    from kiln.codegen import nvrtc
    if not nvrtc.available():
        pytest.skip("NVRTC is not installed")
    text = (Path(__file__).parents[1] / "README.md").read_text()
    section = text.split("## NVIDIA GPUs (CUDA)", 1)[1]
    section = section.split("\n## ", 1)[0]
    scope: dict = {}
    for k, block in enumerate(re.findall(r"```python\n(.*?)```", section, re.S)):
        exec(compile(block, f"README.md (GPU example {k})", "exec"), scope)
    out = capsys.readouterr().out
    assert '__global__ void __launch_bounds__(64)' in out and "__syncthreads();" in out
    assert "multi-level tiling" in out and "blockIdx" in out
