"""Hand-written GPU schedules (TVM's topi.cuda): a matmul tiled through shared memory and
registers, with its elementwise epilogue fused.

In: a TVM-style `Schedule`, the output tensor and the matmul tensor it is computed from
(`out` may be the matmul itself), and the tile sizes.
Out: the schedule, modified in place (it appends Steps like any hand schedule).
Why: the GPU's reference schedule for dense-like kernels, written with the public schedule
primitives only (split / reorder / bind / cache_read("shared") / cache_write("local") /
compute_at / storage_align / unroll / vectorize), so it doubles as the worked example of GPU
scheduling and as a baseline the auto-scheduler has to beat.

Layout of the work: a block computes a (ty*tm) x (tx*tn) tile of the output; each thread a
tm x tn register tile of contiguous outputs; the reduction runs in steps of bk, and per step
the block's threads cooperatively copy the bk-wide panels of both inputs into shared memory.
With both inputs k-contiguous (C = A B^T) a shared panel row is bk floats; padding rows to an
odd stride (storage_align(.., bk, 1): bk + 1) puts the rows a warp reads at once in
distinct banks
when a warp spans at most 8 threads along x (tx = 8), so neither panel read conflicts.
"""

from __future__ import annotations

from ..errors import ScheduleError
from ..te import thread_axis


def schedule_matmul(s, out, mm=None, tm: int = 4, tn: int = 4, tx: int = 8, ty: int = 8,
                    bk: int = 16, pad: bool = True, vec: int = 1):
    """Schedule `out` (= matmul `mm`, or an elementwise function of it) for a CUDA target."""
    mm = _find_matmul(out) if mm is None else mm
    if len(mm.op.reduce_axis) != 1 or len(mm.op.input_tensors) != 2:
        raise ScheduleError(f"schedule_matmul: {mm.name} is not a two-input matmul")
    _inline_between(s, out, mm)
    acc = s.cache_write(mm, "local") if out is mm else mm
    a, b = acc.op.input_tensors
    panels = [s.cache_read(a, "shared", [acc]), s.cache_read(b, "shared", [acc])]
    i, j = s[out].op.axis
    by, i = s[out].split(i, factor=ty * tm)
    t_y, ii = s[out].split(i, factor=tm)
    bx, j = s[out].split(j, factor=tx * tn)
    t_x, jj = s[out].split(j, factor=tn)
    s[out].reorder(by, bx, t_y, t_x, ii, jj)
    s[out].bind(by, thread_axis("blockIdx.y"))
    s[out].bind(bx, thread_axis("blockIdx.x"))
    s[out].bind(t_y, thread_axis("threadIdx.y"))
    s[out].bind(t_x, thread_axis("threadIdx.x"))
    s[out].unroll(ii)
    s[out].unroll(jj)
    s[acc].compute_at(s[out], t_x)
    ai, aj = s[acc].op.axis
    ko, ki = s[acc].split(s[acc].op.reduce_axis[0], factor=bk)
    s[acc].reorder(ko, ki, ai, aj)
    for ax in (ki, ai, aj):
        s[acc].unroll(ax)
    for p in panels:
        _cooperative_fetch(s, p, acc, ko, tx, ty, bk if pad else 0, vec)
    return s


def _find_matmul(out):
    """The first stage with a reduction that `out` is computed from (out itself included)."""
    todo = [out]
    while todo:
        t = todo.pop(0)
        if getattr(t.op, "reduce_axis", None):
            return t
        todo.extend(t.op.input_tensors)
    raise ScheduleError(f"schedule_matmul: {out.name} is not computed from a matmul")


def _inline_between(s, out, mm) -> None:
    """Inline every stage strictly between the matmul and the output (the epilogue)."""
    todo, seen = list(out.op.input_tensors), set()
    while todo:
        t = todo.pop()
        if t.op is mm.op or id(t.op) in seen or not t.op.input_tensors:
            continue
        seen.add(id(t.op))
        s[t].compute_inline()
        todo.extend(t.op.input_tensors)


def _cooperative_fetch(s, panel, acc, ko, tx: int, ty: int, align: int, vec: int) -> None:
    s[panel].compute_at(s[acc], ko)
    if align:  # row stride align + 1: odd, so the rows a warp reads sit in distinct banks
        s[panel].storage_align(panel.op.axis[0], max(align, 2), 1)
    fused = s[panel].fuse(*panel.op.axis)
    if vec > 1:
        fused, v = s[panel].split(fused, factor=vec)
        s[panel].vectorize(v)
    fused, t_x = s[panel].split(fused, factor=tx)
    _, t_y = s[panel].split(fused, factor=ty)
    s[panel].bind(t_y, thread_axis("threadIdx.y"))
    s[panel].bind(t_x, thread_axis("threadIdx.x"))
