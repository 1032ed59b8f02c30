"""Layout rewrite: the packed layout a tiled kernel reads (constant inputs and temporaries).

A layout is a tuple of (dim, factor) pairs. Packing splits each listed dim d into d // factor
(kept in place) and d % factor (moved, in pair order, to the end), so a weight b[N, K] with
((0, 16),) becomes bp[N/16, K, 16] and the innermost tile of a GEMM loads contiguous vectors.
The rewrite is a Step on the placeholder's stage (LayoutRewriteStep), so records carry it and
replays rebuild the same kernel; callers pack the constant once with pack_array().
On a computed temporary (a cache_read panel) a factor of 0 means "the whole region extent",
so a panel b[j, k] of a tile is stored k-major with j contiguous.
"""

from __future__ import annotations

import numpy as np

from ..errors import ScheduleError


def packed_shape(shape, layout, pad: bool = False) -> tuple:
    """Shape of the packed tensor; with pad, a factor need not divide (temporaries)."""
    shape = [int(d) for d in shape]
    inner = []
    for dim, f in layout:
        if pad and 0 <= dim < len(shape) and f >= 1:
            shape[dim] = -(-shape[dim] // f)
            inner.append(f)
            continue
        if not 0 <= dim < len(shape) or f < 1 or shape[dim] % f:
            raise ScheduleError(f"layout {layout}: factor {f} does not divide dim {dim} of "
                                f"shape {tuple(shape)}")
        shape[dim] //= f
        inner.append(f)
    return tuple(shape + inner)


def pack_indices(indices, layout) -> list:
    """Index expressions (or ints) into the packed tensor."""
    idx = list(indices)
    inner = []
    for dim, f in layout:
        i = idx[dim]
        idx[dim] = i // f
        inner.append(i % f)
    return idx + inner


def pack_array(a: np.ndarray, layout) -> np.ndarray:
    """The packed copy of an array (what a kernel built with this layout expects)."""
    if not layout:
        return np.ascontiguousarray(a)
    nd = a.ndim
    split_shape, perm_outer, perm_inner = [], [], []
    pairs = dict(layout)
    for d in range(nd):
        if d in pairs:
            split_shape += [a.shape[d] // pairs[d], pairs[d]]
            perm_outer.append(len(split_shape) - 2)
        else:
            split_shape.append(a.shape[d])
            perm_outer.append(len(split_shape) - 1)
    for dim, _ in layout:
        perm_inner.append(perm_outer[dim] + 1)
    packed_shape(a.shape, layout)  # validates
    return np.ascontiguousarray(a.reshape(split_shape).transpose(perm_outer + perm_inner))


def input_layouts(sch, args) -> list:
    """The packed layout (or ()) each build argument of a schedule / State expects."""
    state = getattr(sch, "state", sch)
    out = []
    for t in args:
        try:
            out.append(state.stage(t.op).layout)
        except ScheduleError:
            out.append(())
    return out


def pack_inputs(sch, args, arrays) -> list:
    """Arrays as the kernel built from `sch` reads them (constants packed once, ahead of time)."""
    return [pack_array(a, lay) if lay else a for a, lay in zip(arrays, input_layouts(sch, args))]
