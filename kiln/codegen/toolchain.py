"""Compile C source into a shared library, through a content-addressed cache.

In: C source text and a `Target` (whose `cflags()` pick the flags).
Out: the path of a .so in the cache directory ($KILN_CACHE_DIR, else ~/.cache/kiln), named by
the sha256 of (source, flags, compiler path, compiler version). The compiler is $KILN_CC or
`cc`.
Why: tuning compiles thousands of candidates, many of them identical; the cache makes a
repeated build free, and the atomic rename makes concurrent builder processes safe (two
processes compiling the same key both produce the same file; the last rename wins).
"""

from __future__ import annotations

import functools
import hashlib
import os
import shutil
import subprocess
import tempfile

from ..errors import BuildError
from ..target import Target, as_target

STDERR_LINES = 40


def compiler() -> str:
    """The C compiler command ($KILN_CC or cc), resolved to a path."""
    name = os.environ.get("KILN_CC", "").strip() or "cc"
    path = shutil.which(name)
    if path is None:
        raise BuildError(f"C compiler {name!r} not found: install a C compiler (gcc or clang) "
                         "or set KILN_CC to one")
    return path


@functools.lru_cache(maxsize=16)
def compiler_version(path: str) -> str:
    try:
        out = subprocess.run([path, "--version"], capture_output=True, text=True, timeout=60)
    except (OSError, subprocess.TimeoutExpired) as err:
        raise BuildError(f"cannot run the C compiler {path}: {err}") from err
    return (out.stdout or out.stderr).strip().splitlines()[0] if (out.stdout or out.stderr) \
        else "unknown"


def cache_dir() -> str:
    root = os.environ.get("KILN_CACHE_DIR") or os.path.join(os.path.expanduser("~"), ".cache",
                                                             "kiln")
    os.makedirs(root, exist_ok=True)
    return root


def cache_key(source: str, flags: list, cc: str) -> str:
    h = hashlib.sha256()
    for part in (source, " ".join(flags), cc, compiler_version(cc)):
        h.update(part.encode())
        h.update(b"\0")
    return h.hexdigest()


def compile(source: str, target: Target | str | None = None) -> str:  # noqa: A001
    """Path of a shared library (CPU) or a cubin (CUDA) built from `source` (cached)."""
    if getattr(target, "kind", None) != "cuda":
        target = as_target(target)
    if getattr(target, "kind", "cpu") == "cuda":
        from . import nvrtc
        return nvrtc.compile_cuda(source, target.arch)
    cc = compiler()
    flags = target.cflags()
    key = cache_key(source, flags, cc)
    root = cache_dir()
    lib = os.path.join(root, f"{key}.so")
    if os.path.exists(lib):
        return lib
    src = os.path.join(root, f"{key}.c")
    _write_atomic(src, source)
    _run_compiler(cc, flags, src, lib, root)
    return lib


def _write_atomic(path: str, text: str) -> None:
    fd, tmp = tempfile.mkstemp(dir=os.path.dirname(path), suffix=".c.tmp")
    with os.fdopen(fd, "w") as f:
        f.write(text)
    os.replace(tmp, path)


def _run_compiler(cc: str, flags: list, src: str, lib: str, root: str) -> None:
    fd, tmp = tempfile.mkstemp(dir=root, suffix=".so.tmp")
    os.close(fd)
    cmd = [cc, *flags, "-o", tmp, src, "-lm"]
    try:
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    except (OSError, subprocess.TimeoutExpired) as err:
        _remove(tmp)
        raise BuildError(f"running the C compiler failed: {err}\n  command: {' '.join(cmd)}\n"
                         f"  source kept at {src}") from err
    if out.returncode != 0:
        _remove(tmp)
        lines = (out.stderr or out.stdout).strip().splitlines()
        shown = "\n".join(lines[:STDERR_LINES])
        more = f"\n... ({len(lines) - STDERR_LINES} more lines)" if len(lines) > STDERR_LINES \
            else ""
        raise BuildError(f"C compilation failed (exit {out.returncode}); source kept at {src}\n"
                         f"  command: {' '.join(cmd)}\n{shown}{more}")
    os.chmod(tmp, 0o755)
    os.replace(tmp, lib)


def _remove(path: str) -> None:
    try:
        os.remove(path)
    except OSError:
        pass
