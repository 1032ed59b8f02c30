"""LocalBuilder: candidate States in, compiled shared libraries (or build errors) out.

In: a list of MeasureInput (task + State).
Out: one BuildResult per input, in order: the library path and C source, or the error kind
("lower" / "compile") and message. Never raises for a bad candidate.
Why: lowering and C rendering are fast Python and run here, in the tuner process; the C
compiler is the slow part, so up to n_parallel compiler processes run at once (threads only
wait on them), each with its own timeout. Libraries land in the toolchain's content-addressed
cache, so a candidate built twice compiles once.
"""

from __future__ import annotations

import os
import subprocess
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor

from ...codegen import toolchain
from ...codegen.c import render
from ...fileio import write_bytes
from ...tir.lower import lower
from .common import BuildResult, ErrorNo, MeasureInput

STDERR_CHARS = 2000


class LocalBuilder:
    """Builds candidates on this machine with the system C compiler."""

    def __init__(self, timeout: float = 15, n_parallel: int = 2):
        self.timeout = float(timeout)
        self.n_parallel = max(1, int(n_parallel))

    def build(self, inputs: list[MeasureInput]) -> list[BuildResult]:
        """One BuildResult per input (same order)."""
        rendered = [_render(inp) for inp in inputs]
        pool = ThreadPoolExecutor(self.n_parallel)
        try:
            futures = [None if isinstance(r, BuildResult) else
                       pool.submit(_compile, r[0], inp.task.target, self.timeout, r[1])
                       for inp, r in zip(inputs, rendered, strict=True)]
            return [r if f is None else f.result() for r, f in zip(rendered, futures, strict=True)]
        finally:
            # on Ctrl-C, compiles not yet started are dropped (the running ones end by
            # themselves) instead of compiling the rest of the batch first
            pool.shutdown(wait=False, cancel_futures=True)


def _render(inp: MeasureInput):
    """(C source, seconds spent) or a BuildResult carrying the error."""
    t0 = time.perf_counter()
    try:
        func = lower(inp.state, inp.task.args)
    except Exception as err:  # noqa: BLE001 - any failure is this candidate's error
        return BuildResult(None, "", ErrorNo.LOWER, _message(err), time.perf_counter() - t0)
    try:
        source = render(func, inp.task.target)
    except Exception as err:  # noqa: BLE001
        return BuildResult(None, "", ErrorNo.COMPILE, f"codegen: {_message(err)}",
                           time.perf_counter() - t0)
    return source, time.perf_counter() - t0


def _compile(source: str, target, timeout: float, spent: float) -> BuildResult:
    t0 = time.perf_counter()
    try:
        lib = compile_with_timeout(source, target, timeout)
    except Exception as err:  # noqa: BLE001
        return BuildResult(None, source, ErrorNo.COMPILE, _message(err),
                           spent + time.perf_counter() - t0)
    return BuildResult(lib, source, ErrorNo.OK, "", spent + time.perf_counter() - t0)


def compile_with_timeout(source: str, target, timeout: float) -> str:
    """Like toolchain.compile (same cache), but the compiler is killed after `timeout` s."""
    cc = toolchain.compiler()
    flags = toolchain.compile_flags(target, cc)
    root = toolchain.cache_dir()
    key = toolchain.cache_key(source, flags, cc)
    lib = os.path.join(root, f"{key}.so")
    if toolchain.cached(lib):
        return lib
    src = os.path.join(root, f"{key}.c")
    write_bytes(src, source.encode())
    fd, tmp = tempfile.mkstemp(dir=root, suffix=".so.tmp")
    os.close(fd)
    try:
        out = toolchain.run_isolated([cc, *flags, "-o", tmp, src, "-lm"], timeout)
        if out.returncode != 0:
            text = (out.stderr or out.stdout).strip()
            raise RuntimeError(f"C compilation failed (exit {out.returncode}); source at "
                               f"{src}\n{text[:STDERR_CHARS]}")
        toolchain.install(tmp, lib)
    except subprocess.TimeoutExpired:
        raise RuntimeError(f"C compilation timed out after {timeout:g} s; source at {src}") \
            from None
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)
    return lib


def _message(err: BaseException) -> str:
    return f"{type(err).__name__}: {err}"
