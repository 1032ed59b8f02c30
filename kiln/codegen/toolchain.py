"""Compile C source into a shared library, through a content-addressed cache.

In: C source text and a `Target` (whose `cflags()` pick the flags).
Out: the path of a .so in the cache directory ($KILN_CACHE_DIR, else ~/.cache/kiln), named by
the sha256 of (source, flags, compiler path, compiler version). The compiler is $KILN_CC or
`cc`.
Why: tuning compiles thousands of candidates, many of them identical; the cache makes a
repeated build free, and the atomic rename makes concurrent builder processes safe (two
processes compiling the same key both produce the same file; the last rename wins). Each
library has a `.sha256` sidecar written after its rename and checked before it is reused, so
a damaged cache entry is rebuilt (with a warning) instead of crashing whoever loads it.
"""

from __future__ import annotations

import functools
import hashlib
import os
import shutil
import signal
import subprocess
import tempfile
import warnings

from ..errors import BuildError
from ..fileio import sha256_file, write_bytes
from ..target import Target, as_target, mcpu_features

STDERR_LINES = 40


def compiler() -> str:
    """The C compiler command ($KILN_CC or cc), resolved to a path."""
    name = os.environ.get("KILN_CC", "").strip() or "cc"
    path = shutil.which(name)
    if path is None:
        raise BuildError(f"C compiler {name!r} not found: install a C compiler (gcc or clang) "
                         "or set KILN_CC to one")
    return path


def compiler_version(path: str) -> str:
    """The first line of `path --version` (part of the cache key)."""
    text = _version_text(path)
    return text.strip().splitlines()[0] if text.strip() else "unknown"


@functools.lru_cache(maxsize=16)
def _version_text(path: str) -> str:
    try:
        out = subprocess.run([path, "--version"], capture_output=True, text=True, timeout=60)
    except (OSError, subprocess.TimeoutExpired) as err:
        raise BuildError(f"cannot run the C compiler {path}: {err}") from err
    return out.stdout or out.stderr


def compile_flags(target: Target, cc: str) -> list:
    """The target's flags plus what this compiler needs to compile kiln's C correctly.
    GCC: no loop auto-vectorization. GCC 12.2 at -O3 with AVX2 or AVX-512 vectorizes a plain
    reduction nest (a random conv2d schedule: `for rx1, rx0: if (rx0 * 2 + rx1 < 3)
    conv[..] += pad[..] * kernel[..]` for three output rows) into wrong sums; kiln writes its
    SIMD code itself (vectorized loops become vector statements), and the zoo's models
    measured the same without it."""
    flags = list(target.cflags())
    if "Free Software Foundation" in _version_text(cc):  # GCC, whatever it is called
        flags.insert(1, "-fno-tree-loop-vectorize")
    return _known_march(flags, target, cc)


def _known_march(flags: list, target: Target, cc: str) -> list:
    """`flags` with a -march= this compiler does not know (GCC 12 predates znver4) replaced
    by the generic x86-64 base plus the named CPU's features: the instructions kiln's code
    uses are those features, not the CPU's scheduling model. A name outside kiln's table is
    a BuildError here rather than the compiler's error on every kernel."""
    if not target.mcpu or _accepts(cc, f"-march={target.mcpu}"):
        return flags
    implied = mcpu_features(target.mcpu)
    if implied is None:
        raise BuildError(f"the C compiler {cc} does not know -mcpu={target.mcpu} (target "
                         f"{target}); name a CPU it knows, or give the features: "
                         "cpu -mattr=+avx2,+fma,...")
    k = flags.index(f"-march={target.mcpu}")
    isa = [f"-m{f}" for f in target.features if f != "neon"]
    return flags[:k] + ["-march=x86-64", "-mtune=generic", *isa] + flags[k + 1:]


@functools.lru_cache(maxsize=64)
def _accepts(cc: str, flag: str) -> bool:
    """Whether `cc` compiles an empty file with `flag`."""
    try:
        out = subprocess.run([cc, flag, "-x", "c", "-c", "-o", os.devnull, "-"], input="",
                             capture_output=True, text=True, timeout=60)
    except (OSError, subprocess.TimeoutExpired):
        return False
    return out.returncode == 0


def cache_dir() -> str:
    """The cache folder, created if needed; BuildError if it cannot be created."""
    root = os.environ.get("KILN_CACHE_DIR") or os.path.join(os.path.expanduser("~"), ".cache",
                                                             "kiln")
    try:
        os.makedirs(root, exist_ok=True)
    except OSError as err:
        raise _cache_error(root, err) from None
    return root


def check_cache_dir() -> str:
    """The cache folder after a test write: BuildError now (read-only, full, not a folder)
    instead of a failure in the middle of a build or of every tuning candidate."""
    root = cache_dir()
    try:
        fd, tmp = tempfile.mkstemp(dir=root, suffix=".probe")
        try:
            os.write(fd, b"kiln" * 1024)
        finally:
            os.close(fd)
            os.remove(tmp)
    except OSError as err:
        raise _cache_error(root, err) from None
    return root


def _cache_error(root: str, err: OSError) -> BuildError:
    return BuildError(f"cannot write to the compile cache {root} ({err.strerror or err}); "
                      "free space there or set KILN_CACHE_DIR to a writable folder")


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
    flags = compile_flags(target, cc)
    key = cache_key(source, flags, cc)
    root = cache_dir()
    lib = os.path.join(root, f"{key}.so")
    if cached(lib):
        return lib
    src = os.path.join(root, f"{key}.c")
    try:
        write_bytes(src, source.encode())
        _run_compiler(cc, flags, src, lib, root)
    except OSError as err:
        raise _cache_error(root, err) from None
    return lib


def cached(lib: str) -> bool:
    """Whether the cache holds `lib` intact. A library without its checksum (a crash between
    the two renames, an older kiln) or with another content (a truncated or damaged file,
    which would SIGBUS the process that maps it) does not count: the caller rebuilds it."""
    if not os.path.exists(lib):
        return False
    try:
        with open(lib + ".sha256") as f:
            want = f.read().strip()
        ok = want == sha256_file(lib)
    except OSError:
        return False
    if not ok:
        warnings.warn(f"kiln: cached library {lib} does not match its checksum (damaged or "
                      "truncated); rebuilding it", stacklevel=3)
    return ok


def install(tmp: str, lib: str) -> None:
    """Move a freshly built library into the cache (atomic), then write its checksum."""
    digest = sha256_file(tmp)
    os.chmod(tmp, 0o755)
    os.replace(tmp, lib)
    write_bytes(lib + ".sha256", (digest + "\n").encode())


def run_isolated(cmd: list, timeout: float) -> subprocess.CompletedProcess:
    """Run cmd in its own session: a terminal Ctrl-C reaches only us, and we decide. On a
    timeout (subprocess.TimeoutExpired is raised) or any exception here (Ctrl-C) the whole
    process group is killed, cc's cc1/as/ld children too."""
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True)
    try:
        out, err = proc.communicate(timeout=timeout)
    except BaseException:
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        proc.communicate()
        raise
    return subprocess.CompletedProcess(cmd, proc.returncode, out, err)


def _run_compiler(cc: str, flags: list, src: str, lib: str, root: str) -> None:
    fd, tmp = tempfile.mkstemp(dir=root, suffix=".so.tmp")
    os.close(fd)
    cmd = [cc, *flags, "-o", tmp, src, "-lm"]
    try:
        out = run_isolated(cmd, 600)
    except BaseException as err:
        _remove(tmp)
        if not isinstance(err, (OSError, subprocess.TimeoutExpired)):
            raise
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
    install(tmp, lib)


def compile_object(source: str, target: Target | str | None, path: str) -> str:
    """Compile C source to the object file `path` (TVM's Module.save("x.o")); link it with
    link_shared. Not cached: the caller names the file."""
    from ..target import as_target
    cc = compiler()
    flags = [f for f in compile_flags(as_target(target), cc) if f != "-shared"]
    fd, src = tempfile.mkstemp(suffix=".c")
    with os.fdopen(fd, "w") as f:
        f.write(source)
    try:
        out = run_isolated([cc, *flags, "-c", "-o", path, src], 600)
    finally:
        _remove(src)
    if out.returncode != 0:
        raise BuildError(f"C compilation of {path} failed (exit {out.returncode}):\n"
                         f"{(out.stderr or out.stdout).strip()[:2000]}")
    return path


def link_shared(output: str, objects: list, options: list | None = None,
                cc: str | None = None) -> str:
    """Link object files into the shared library `output` (with OpenMP and libm, which
    kiln's kernels use)."""
    cc = cc or compiler()
    out = run_isolated([cc, "-shared", "-fopenmp", "-o", output, *objects, "-lm",
                        *(options or [])], 600)
    if out.returncode != 0:
        raise BuildError(f"linking {output} failed (exit {out.returncode}):\n"
                         f"{(out.stderr or out.stdout).strip()[:2000]}")
    return output


def _remove(path: str) -> None:
    try:
        os.remove(path)
    except OSError:
        pass
