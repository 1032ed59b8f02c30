"""The README's GPU example runs as written (without a GPU it builds for sm_90 and prints the
CUDA source; with one it also runs, times and checks the kernel)."""

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
    block = re.search(r"```python\n(.*?)```", section, re.S).group(1)
    exec(compile(block, "README.md (GPU example)", "exec"), {})
    out = capsys.readouterr().out
    assert '__global__ void __launch_bounds__(64)' in out and "__syncthreads();" in out
