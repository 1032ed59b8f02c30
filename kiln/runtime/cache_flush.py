"""CPU cache flushing for honest kernel timing: evict chosen arrays from every cache level.

In: arrays (numpy), e.g. the constant weights of a kernel.
Out: `flush(arrays)` returns once every cache line of those arrays is evicted (contents
unchanged; x86 `clflush`, Arm `dc civac`, from a tiny C helper compiled once and cached);
without a helper it streams a buffer twice the last-level cache instead.
Why: a network streams its weights from DRAM (BERT-base holds 340 MB of them), while a kernel
timed alone in a loop finds them in L2/L3 from the previous call, which flatters the kernels
that read the most weight bytes. Flushing only the arguments costs far less than evicting
the whole cache and leaves the activations (which the previous kernel just wrote) warm.
"""

from __future__ import annotations

import ctypes
import functools
import math
import statistics

import numpy as np

from ..errors import ArgumentError

FLUSH_FALLBACK_CAP = 256 << 20  # bytes streamed when no helper library can be built
MAX_FLUSHED_CALLS = 200  # flushed calls per repeat: each one costs a flush, so cap them
F_PREPROC = ("", "cache_flush_cpu_non_first_arg", "cache_flush_cpu_all_args")

_SOURCE = r"""
#include <stdint.h>
#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#endif
int32_t kiln_flush_lines(void** ptrs, const int64_t* nbytes, int32_t n) {
#if defined(__x86_64__) || defined(__i386__) || defined(__aarch64__)
  for (int32_t k = 0; k < n; ++k) {
    uintptr_t a = (uintptr_t)ptrs[k] & ~(uintptr_t)63;
    uintptr_t end = (uintptr_t)ptrs[k] + (uintptr_t)nbytes[k];
    for (; a < end; a += 64) {
#if defined(__aarch64__)
      __asm__ volatile("dc civac, %0" : : "r"(a) : "memory");
#else
      _mm_clflush((const void*)a);
#endif
    }
  }
#if defined(__aarch64__)
  __asm__ volatile("dsb ish" : : : "memory");
#else
  _mm_mfence();
#endif
  return 0;
#else
  (void)ptrs; (void)nbytes; (void)n;
  return -1;  /* no line flush instruction known here: the caller streams a buffer */
#endif
}
"""


@functools.lru_cache(maxsize=1)
def _helper():
    """The C helper's function, or None when it cannot be built or has no flush instruction."""
    try:
        from ..codegen import toolchain
        fn = ctypes.CDLL(toolchain.compile(_SOURCE, "cpu")).kiln_flush_lines
    except Exception:  # noqa: BLE001 - no compiler (a deployed library): use the fallback
        return None
    fn.restype = ctypes.c_int32
    fn.argtypes = [ctypes.c_void_p, ctypes.c_void_p, ctypes.c_int32]
    return fn


def flush_pointers(ptrs: list[int], sizes: list[int]) -> None:
    """Evict the byte ranges [ptrs[i], ptrs[i] + sizes[i]) from the CPU caches."""
    if not ptrs:
        return
    fn = _helper()
    addr = (ctypes.c_void_p * len(ptrs))(*ptrs)
    nbytes = (ctypes.c_int64 * len(sizes))(*sizes)
    if fn is None or fn(addr, nbytes, len(ptrs)) != 0:
        _stream_buffer()


def flush(arrays: list) -> None:
    """Evict the memory of these numpy arrays from the CPU caches."""
    arrays = [a for a in arrays if isinstance(a, np.ndarray) and a.nbytes]
    flush_pointers([a.ctypes.data for a in arrays], [a.nbytes for a in arrays])


def available() -> bool:
    """Whether line flushing works here (else flush() streams a large buffer, much slower)."""
    fn = _helper()
    return fn is not None and fn((ctypes.c_void_p * 1)(), (ctypes.c_int64 * 1)(0), 0) == 0


_BUF: dict = {}


def _stream_buffer() -> None:
    """Fallback: write a buffer twice the last-level cache, pushing everything else out."""
    buf = _BUF.get("buf")
    if buf is None:
        from ..target import host_cache_sizes
        sizes = host_cache_sizes()
        last = sizes.get("l3") or sizes.get("l2") or (8 << 20)
        buf = _BUF["buf"] = np.empty(min(FLUSH_FALLBACK_CAP, 2 * last) // 8, np.int64)
    buf.fill(len(_BUF))


def flush_indices(kernel, f_preproc: str = "", flush_args=None) -> list[int]:
    """The array arguments of `kernel` a time_evaluator evicts before each call: `flush_args`
    (indices) when given, else by TVM's `f_preproc` names: "cache_flush_cpu_non_first_arg"
    all but the first (the activation the previous layer left in cache),
    "cache_flush_cpu_all_args" all of them, "" none."""
    n = len(kernel.params)
    if flush_args is None:
        if f_preproc not in F_PREPROC:
            raise ArgumentError(f"unknown f_preproc {f_preproc!r}: use one of {F_PREPROC}")
        flush_args = {"": [], F_PREPROC[1]: range(1, n), F_PREPROC[2]: range(n)}[f_preproc]
    idx = sorted({int(i) for i in flush_args})
    bad = [i for i in idx if not 0 <= i < n]
    if bad:
        raise ArgumentError(f"flush_args {bad}: {kernel.name} has {n} array arguments")
    return idx


def measure_flushed(kernel, args, idx: list[int], number: int, repeat: int,
                    min_repeat_ms: float):
    """kernel.measure() with the arrays at `idx` evicted before every call, each call timed on
    its own (in a loop of `number` calls all but the first would find them warm again). A
    repeat averages at least `number` calls, more (at most MAX_FLUSHED_CALLS) until
    `min_repeat_ms` of kernel time is covered."""
    from .module import ProfileResult
    argv, keep = kernel.pack(args)
    ptrs = [keep[i].ctypes.data for i in idx]
    sizes = [keep[i].nbytes for i in idx]

    def one() -> float:
        flush_pointers(ptrs, sizes)
        return kernel.time_once(argv, 1)
    est = one()  # warm-up (code, page tables) and the time of one flushed call
    calls = max(1, int(number))
    if min_repeat_ms > 0:
        calls = max(calls, min(MAX_FLUSHED_CALLS, math.ceil(min_repeat_ms / 1e3 / max(est, 1e-9))))
    return ProfileResult([statistics.fmean(one() for _ in range(calls))
                          for _ in range(max(1, int(repeat)))])
