"""Static memory plan: every intermediate tensor gets an offset in one workspace arena.

In: buffers, each with a size in bytes and a lifetime [first step, last step] in kernel
order (the step that writes it up to the last step that reads it).
Out: a MemoryPlan with one 64-byte aligned offset per buffer and the arena size; two buffers
share bytes only when their lifetimes do not overlap (a kernel's inputs and its output are
live at the same step, so they never alias, which the kernels' `restrict` needs).
Why: the executable allocates once (no malloc per inference) and reuses memory the way a
hand-written inference engine would; `naive_bytes` (the sum of all sizes) shows the saving.
Placement is greedy by size, largest first, at the lowest offset that fits (a classic
heuristic for this interval-packing problem).
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["ALIGN", "Buffer", "MemoryPlan", "plan_memory"]

ALIGN = 64


@dataclass(frozen=True)
class Buffer:
    key: object
    nbytes: int
    first: int
    last: int

    def overlaps(self, other: Buffer) -> bool:
        return self.first <= other.last and other.first <= self.last


@dataclass
class MemoryPlan:
    offsets: dict  # buffer key -> byte offset in the arena
    arena_bytes: int
    naive_bytes: int

    def __str__(self) -> str:
        saved = 1 - self.arena_bytes / self.naive_bytes if self.naive_bytes else 0.0
        return (f"workspace arena {self.arena_bytes} bytes for {len(self.offsets)} "
                f"intermediates (naive {self.naive_bytes} bytes, {saved:.0%} saved)")


def _aligned(n: int) -> int:
    return (max(n, 1) + ALIGN - 1) // ALIGN * ALIGN


def plan_memory(buffers: list) -> MemoryPlan:
    """Offsets for `buffers` (list of Buffer) that never overlap in space and time."""
    placed: list = []  # (offset, size, buffer)
    offsets = {}
    order = sorted(buffers, key=lambda b: (-_aligned(b.nbytes), b.first, b.last))
    for buf in order:
        size = _aligned(buf.nbytes)
        busy = sorted((off, off + sz) for off, sz, other in placed if other.overlaps(buf))
        offset = 0
        for lo, hi in busy:
            if offset + size <= lo:
                break
            offset = max(offset, hi)
        placed.append((offset, size, buf))
        offsets[buf.key] = offset
    arena = max((off + sz for off, sz, _ in placed), default=0)
    naive = sum(_aligned(b.nbytes) for b in buffers)
    return MemoryPlan(offsets, arena, naive)
