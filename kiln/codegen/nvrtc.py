"""Compile CUDA C++ source to a cubin with NVRTC, through the content-addressed build cache.

In: CUDA source text (from `codegen.cuda`) and an exact GPU architecture such as "sm_90".
Out: the path of `<key>.cubin` in `toolchain.cache_dir()`, keyed by sha256(source, options,
NVRTC version), with the source kept beside it as `<key>.cu` and ptxas's resource report
(registers, spills, stack, shared memory per kernel) as `<key>.ptxas.json` (`ptxas_info`).
Why: NVRTC ships as a wheel, so no CUDA toolkit is needed. We always emit SASS for the exact
arch, never PTX: a PTX from an NVRTC newer than the driver is rejected at load time, a cubin
is not. `-default-device` makes plain helper functions device functions. The ptxas report
tells the tuner about spills without running anything.
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
import re

from ..errors import BuildError
from ..fileio import write_bytes

LOG_LINES = 40
_INSTALL = ("NVRTC is not installed: pip install 'kiln[cuda]' (the cuda-bindings and "
            "nvidia-cuda-nvrtc packages)")


def _nvrtc():
    try:
        from cuda.bindings import nvrtc
    except ImportError:
        try:
            from cuda import nvrtc  # cuda-python before the cuda.bindings split
        except ImportError:
            raise BuildError(_INSTALL) from None
    return nvrtc


@functools.lru_cache(maxsize=1)
def version() -> tuple:
    """(major, minor) of the NVRTC library; BuildError if it cannot be loaded."""
    nvrtc = _nvrtc()
    try:
        err, major, minor = nvrtc.nvrtcVersion()
    except Exception as exc:  # the bindings raise their own type for a missing library
        raise BuildError(f"{_INSTALL}; loading it failed: {_first_line(exc)}") from exc
    _check(nvrtc, err, "nvrtcVersion")
    return int(major), int(minor)


def available() -> bool:
    """True when NVRTC can be loaded; never raises."""
    try:
        version()
    except Exception:
        return False
    return True


def options(arch: str, lineinfo: bool = False) -> list:
    """The NVRTC options kiln compiles with for `arch` ("sm_90")."""
    if not re.fullmatch(r"sm_\d+[a-z]?", arch or ""):
        raise BuildError(f"CUDA architecture {arch!r} is not an exact one such as 'sm_90' "
                         "(NVRTC must emit a cubin, not PTX)")
    opts = [f"--gpu-architecture={arch}", "-default-device", "--std=c++17",
            "--ptxas-options=-v"]
    return opts + ["-lineinfo"] if lineinfo else opts


def cache_key(source: str, opts: list) -> str:
    h = hashlib.sha256()
    for part in (source, " ".join(opts), "nvrtc {}.{}".format(*version())):
        h.update(part.encode())
        h.update(b"\0")
    return h.hexdigest()


def compile_cuda(source: str, arch: str, lineinfo: bool = False) -> str:
    """Path of a cubin for `arch` built from `source` (cached by content)."""
    from .toolchain import cache_dir
    opts = options(arch, lineinfo)
    key = cache_key(source, opts)
    root = cache_dir()
    cubin_path = os.path.join(root, f"{key}.cubin")
    if os.path.exists(cubin_path):
        return cubin_path
    src_path = os.path.join(root, f"{key}.cu")
    write_bytes(src_path, source.encode())
    cubin, log = _compile(source, opts, src_path)
    write_bytes(_info_path(cubin_path), json.dumps(parse_ptxas_log(log), indent=1).encode())
    write_bytes(cubin_path, cubin)  # last: its presence means the entry is complete
    return cubin_path


def ptxas_info(cubin_path: str) -> dict:
    """{kernel: {"registers", "spill_stores", "spill_loads", "stack", "shared"}} of a cubin
    built by `compile_cuda` (empty if the report is missing)."""
    try:
        with open(_info_path(cubin_path)) as f:
            return json.load(f)
    except (OSError, ValueError):
        return {}


# ---------------------------------------------------------------- NVRTC calls

def _compile(source: str, opts: list, src_path: str) -> tuple:
    """(cubin bytes, log text); BuildError with the log when NVRTC rejects the source."""
    nvrtc = _nvrtc()
    version()  # a missing library raises the install hint here
    err, prog = nvrtc.nvrtcCreateProgram(source.encode(), os.path.basename(src_path).encode(),
                                         0, [], [])
    _check(nvrtc, err, "nvrtcCreateProgram")
    try:
        encoded = [o.encode() for o in opts]
        (err,) = nvrtc.nvrtcCompileProgram(prog, len(encoded), encoded)
        log = _log(nvrtc, prog)
        if int(err) != 0:
            raise BuildError(_failure_text(nvrtc, err, log, opts, src_path))
        err, size = nvrtc.nvrtcGetCUBINSize(prog)
        _check(nvrtc, err, "nvrtcGetCUBINSize")
        cubin = b" " * size  # NVRTC fills the buffer in place
        _check(nvrtc, nvrtc.nvrtcGetCUBIN(prog, cubin)[0], "nvrtcGetCUBIN")
        return cubin, log
    finally:
        nvrtc.nvrtcDestroyProgram(prog)


def _log(nvrtc, prog) -> str:
    err, size = nvrtc.nvrtcGetProgramLogSize(prog)
    if int(err) != 0 or size <= 1:
        return ""
    buf = b" " * size
    (err,) = nvrtc.nvrtcGetProgramLog(prog, buf)
    return buf.rstrip(b"\0 ").decode(errors="replace") if int(err) == 0 else ""


def _failure_text(nvrtc, err, log: str, opts: list, src_path: str) -> str:
    lines = log.strip().splitlines()
    shown = "\n".join(lines[:LOG_LINES])
    more = f"\n... ({len(lines) - LOG_LINES} more lines)" if len(lines) > LOG_LINES else ""
    return (f"CUDA compilation failed ({_error_name(nvrtc, err)}); source kept at {src_path}\n"
            f"  options: {' '.join(opts)}\n{shown}{more}")


def _check(nvrtc, err, what: str) -> None:
    if int(err) != 0:
        raise BuildError(f"{what} failed: {_error_name(nvrtc, err)}")


def _error_name(nvrtc, err) -> str:
    try:
        res, text = nvrtc.nvrtcGetErrorString(err)
        return text.decode() if isinstance(text, bytes) else str(text)
    except Exception:
        return getattr(err, "name", str(err))


# ---------------------------------------------------------------- ptxas report

_ENTRY = re.compile(r"(?:Compiling entry function|Function properties for) '?([\w$.]+)'?")
_FIELDS = {"registers": re.compile(r"Used (\d+) registers"),
           "spill_stores": re.compile(r"(\d+) bytes spill stores"),
           "spill_loads": re.compile(r"(\d+) bytes spill loads"),
           "stack": re.compile(r"(\d+) bytes stack frame"),
           "shared": re.compile(r"(\d+) bytes smem")}


def parse_ptxas_log(log: str) -> dict:
    """Per-function resource usage from `ptxas -v` output (the NVRTC log)."""
    out: dict = {}
    current = None
    for line in log.splitlines():
        m = _ENTRY.search(line)
        if m:
            current = m.group(1)
            out.setdefault(current, {k: 0 for k in _FIELDS})
            continue
        if current is None:
            continue
        for key, pattern in _FIELDS.items():
            found = pattern.search(line)
            if found:
                out[current][key] = int(found.group(1))
    return out


# ---------------------------------------------------------------- files

def _info_path(cubin_path: str) -> str:
    return os.path.splitext(cubin_path)[0] + ".ptxas.json"


def _first_line(exc: Exception) -> str:
    return (str(exc).strip().splitlines() or [type(exc).__name__])[0]
