"""NVRTC compilation to cubins: options, the content-addressed cache, ptxas reports, errors.
Runs without a GPU (NVRTC is a library); skipped where NVRTC is not installed."""

import json
import os
import sys
from types import SimpleNamespace

import pytest
from cuda_sources import ADD_SCALE

from kiln.codegen import nvrtc, toolchain
from kiln.errors import BuildError

needs_nvrtc = pytest.mark.skipif(not nvrtc.available(), reason="NVRTC is not installed")


@pytest.fixture(autouse=True)
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("KILN_CACHE_DIR", str(tmp_path))
    return tmp_path


@needs_nvrtc
@pytest.mark.parametrize("arch", ["sm_80", "sm_90"])
def test_compile_gives_a_cached_cubin(arch, cache, monkeypatch):
    path = nvrtc.compile_cuda(ADD_SCALE, arch)
    assert path.endswith(".cubin") and os.path.dirname(path) == str(cache)
    with open(path, "rb") as f:
        assert f.read(4) == b"\x7fELF"  # SASS in an ELF, never PTX text
    assert os.path.exists(path[:-len(".cubin")] + ".cu")

    def fail(*_a, **_k):
        raise AssertionError("recompiled a cached source")
    monkeypatch.setattr(nvrtc, "_compile", fail)
    assert nvrtc.compile_cuda(ADD_SCALE, arch) == path


@needs_nvrtc
def test_arch_and_source_change_the_key():
    a = nvrtc.compile_cuda(ADD_SCALE, "sm_80")
    b = nvrtc.compile_cuda(ADD_SCALE, "sm_90")
    c = nvrtc.compile_cuda(ADD_SCALE + "\n// another\n", "sm_90")
    assert len({a, b, c}) == 3


@needs_nvrtc
def test_ptxas_info_per_kernel():
    info = nvrtc.ptxas_info(nvrtc.compile_cuda(ADD_SCALE, "sm_90"))
    assert set(info) >= {"add_kernel", "scale_kernel"}
    for fields in info.values():
        assert set(fields) == {"registers", "spill_stores", "spill_loads", "stack", "shared"}
    assert info["add_kernel"]["registers"] > 0
    assert info["scale_kernel"]["shared"] == 128 * 4
    assert info["add_kernel"]["shared"] == 0 and info["add_kernel"]["spill_stores"] == 0


def test_parse_ptxas_log():
    log = """ptxas info    : 0 bytes gmem
ptxas info    : Compiling entry function 'k0' for 'sm_80'
ptxas info    : Function properties for k0
    264 bytes stack frame, 120 bytes spill stores, 96 bytes spill loads
ptxas info    : Used 255 registers, 4096 bytes smem, 368 bytes cmem[0]
ptxas info    : Compiling entry function 'k1' for 'sm_80'
ptxas info    : Function properties for k1
    0 bytes stack frame, 0 bytes spill stores, 0 bytes spill loads
ptxas info    : Used 8 registers, used 0 barriers, 360 bytes cmem[0]
"""
    info = nvrtc.parse_ptxas_log(log)
    assert info["k0"] == {"registers": 255, "spill_stores": 120, "spill_loads": 96,
                          "stack": 264, "shared": 4096}
    assert info["k1"]["registers"] == 8 and info["k1"]["shared"] == 0


def test_ptxas_info_missing_report(tmp_path):
    assert nvrtc.ptxas_info(str(tmp_path / "nothing.cubin")) == {}


@needs_nvrtc
def test_syntax_error_is_a_build_error_with_the_log(cache):
    bad = 'extern "C" __global__ void k(float* a) { a[0] = undefined_name + ; }'
    with pytest.raises(BuildError) as err:
        nvrtc.compile_cuda(bad, "sm_90")
    text = str(err.value)
    assert "CUDA compilation failed" in text and "error" in text
    assert "undefined_name" in text or "expected an expression" in text
    kept = text.split("source kept at ")[1].split()[0]
    with open(kept) as f:
        assert f.read() == bad
    assert not [p for p in os.listdir(cache) if p.endswith(".cubin")]


def test_inexact_arch_is_rejected():
    for arch in ("compute_90", "90", ""):
        with pytest.raises(BuildError, match="exact"):
            nvrtc.options(arch)


@needs_nvrtc
def test_options():
    opts = nvrtc.options("sm_90")
    assert "--gpu-architecture=sm_90" in opts and "-default-device" in opts
    assert "--std=c++17" in opts and "--ptxas-options=-v" in opts
    assert "-lineinfo" in nvrtc.options("sm_90", lineinfo=True)


@needs_nvrtc
def test_toolchain_dispatches_cuda_targets():
    duck = SimpleNamespace(kind="cuda", arch="sm_90")
    path = toolchain.compile(ADD_SCALE, duck)
    assert path == nvrtc.compile_cuda(ADD_SCALE, "sm_90")


@needs_nvrtc
def test_toolchain_with_a_cuda_target_string():
    from kiln.target import Target
    target = Target("cuda -arch=sm_80")
    if getattr(target, "kind", None) != "cuda":
        pytest.skip("Target has no CUDA kind yet")
    assert toolchain.compile(ADD_SCALE, target).endswith(".cubin")


def test_missing_nvrtc_says_how_to_install(monkeypatch):
    bindings = pytest.importorskip("cuda.bindings")
    monkeypatch.setitem(sys.modules, "cuda.bindings.nvrtc", None)
    monkeypatch.setitem(sys.modules, "cuda.nvrtc", None)
    if hasattr(bindings, "nvrtc"):
        monkeypatch.delattr(bindings, "nvrtc")
    nvrtc.version.cache_clear()
    try:
        assert not nvrtc.available()
        with pytest.raises(BuildError, match=r"NVRTC is not installed: pip install 'kiln\[cuda\]'"):
            nvrtc.compile_cuda(ADD_SCALE, "sm_90")
    finally:
        nvrtc.version.cache_clear()


def test_report_is_json_beside_the_cubin(cache):
    if not nvrtc.available():
        pytest.skip("NVRTC is not installed")
    path = nvrtc.compile_cuda(ADD_SCALE, "sm_90")
    with open(path[:-len(".cubin")] + ".ptxas.json") as f:
        assert json.load(f) == nvrtc.ptxas_info(path)
