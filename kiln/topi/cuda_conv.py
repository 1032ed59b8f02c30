"""The GPU schedule of a 2-d convolution (NCHW, groups = 1) with its epilogue fused, and its
default tile sizes.

In: a Schedule and the output of a kernel that is one NCHW convolution with groups = 1
(topi.nn.conv2d_nchw, or the same written with te.compute) plus an elementwise epilogue
(bias, activation, residual add); the padding compute before it is inlined into the fetch.
Out: `schedule_conv2d(s, out, ...)` (the schedule, modified in place); `conv_stage(out)`
(the convolution, or None when the kernel is not one); `conv_tiles(conv, target)` (the knobs
an untuned build uses); `conv_estimate` (the static cost those tiles are ranked by).
Why a schedule of its own, not the matmul's: the convolution has three reduction axes and its
data operand is read through a sliding window. Tiled directly (TVM's direct conv2d schedule,
Ansor's multi-level tiling of every spatial and reduction axis), a block's input patch is
fetched into shared memory once per channel step with its halo and reused by every
(ry, rx) tap and every output channel of the block, which an im2col matrix would copy
KH x KW times. No axis is fused below the block level, so bound inference keeps each
thread's register tile exactly tf x tw.

Layout of the work: a block computes ty*tf output channels x th rows x tx*tw columns of one
image; a thread tf channels x 1 row x tw adjacent columns in registers (threadIdx.z, .y, .x
over channels, rows and columns: lanes of a warp step along columns, so the output stores
and the patch reads are coalesced). The input channels run in steps of bc; per step the
block's threads cooperatively copy the input patch [bc, rows + halo, columns + halo] and the
weights [ty*tf, bc, KH, KW] into shared memory (padded border elements read as zeros).
"""

from __future__ import annotations

import itertools
import math

from ..errors import ScheduleError
from ..te import thread_axis
from .cuda_model import as_cuda
from .nn.conv2d import nchw_conv_operands

MAX_UNROLLED_FMAS = 512  # past this the channel step stays a loop (code size, registers)
MAX_REGISTERS = 128  # conv_tiles keeps estimated registers per thread under this (no spills)
LATENCY_CYCLES = 700  # one global-memory round trip, roughly, on sm_80 / sm_90
DEFAULT_TILES = dict(tf=4, tw=2, ty=4, th=2, tx=8, bc=8, pad=1, dbuf=0)


def conv_stage(out):
    """The convolution `out` is an elementwise function of (out itself included), or None:
    exactly one reduction in the kernel, of the same shape as out, that reads like a
    groups = 1 NCHW convolution (conv_operands), whether topi.nn built it or a user wrote
    it with te.compute."""
    from .cuda import _reductions
    reds = _reductions(out)
    if len(reds) != 1:
        return None
    conv = reds[0]
    if _extents(conv.op.axis) != _extents(out.op.axis) or conv_operands(conv) is None:
        return None
    return conv


def conv_operands(conv):
    """(data, kernel) of `conv` when it reads like a groups = 1 NCHW convolution
    (topi.nn.conv2d.nchw_conv_operands), else None."""
    return nchw_conv_operands(conv.op)


def conv_geometry(conv) -> dict:
    """Shapes of a conv2d_nchw stage: n, o (output channels), oh, ow, c (input channels),
    kh, kw, and the (padded) input's height and width."""
    n, o, oh, ow = _extents(conv.op.axis)
    c, kh, kw = _extents(conv.op.reduce_axis)
    src, _ = conv_operands(conv)
    _, _, h, w = (int(getattr(d, "value", d)) for d in src.shape)
    return dict(n=n, o=o, oh=oh, ow=ow, c=c, kh=kh, kw=kw, h=h, w=w)


def _extents(axes) -> list:
    return [int(a.extent.value) for a in axes]


def schedule_conv2d(s, out, conv=None, tf: int = 4, tw: int = 2, ty: int = 4, th: int = 2,
                    tx: int = 8, bc: int = 8, pad: int = 1, dbuf: int = 0):
    """Schedule `out` (= conv2d_nchw `conv`, or an elementwise function of it) for a CUDA
    target: tf x tw outputs per thread, ty x th x tx threads, bc input channels per shared
    step (see the module docstring). `pad` = 1 pads each output channel's row of the weight
    panel to an odd stride, so threads of a warp reading different channels hit distinct
    banks; `dbuf` double-buffers both panels (one barrier per step)."""
    from .cuda import _inline_between, _inline_producers
    conv = conv_stage(out) if conv is None else conv
    if conv is None:
        raise ScheduleError(f"schedule_conv2d: {out.name} is not an elementwise function of a "
                            "conv2d_nchw with groups = 1")
    if min(tf, tw, ty, th, tx, bc) < 1:
        raise ScheduleError(f"schedule_conv2d: tile sizes must be positive, got tf={tf} "
                            f"tw={tw} ty={ty} th={th} tx={tx} bc={bc}")
    _inline_between(s, out, conv)
    _inline_producers(s, conv)
    src, ker = conv_operands(conv)
    acc = s.cache_write(conv, "local") if out is conv else conv
    n, f, y, x = s[out].op.axis
    bf, f = s[out].split(f, factor=ty * tf)
    t_f, ff = s[out].split(f, factor=tf)
    by, t_h = s[out].split(y, factor=th)
    bx, x = s[out].split(x, factor=tx * tw)
    t_w, xx = s[out].split(x, factor=tw)
    s[out].reorder(n, bf, by, bx, t_f, t_h, t_w, ff, xx)
    bz = s[out].fuse(n, bf)
    for ax, tag in ((bz, "blockIdx.z"), (by, "blockIdx.y"), (bx, "blockIdx.x"),
                    (t_f, "threadIdx.z"), (t_h, "threadIdx.y"), (t_w, "threadIdx.x")):
        s[out].bind(ax, thread_axis(tag))
    s[out].unroll(ff)
    s[out].unroll(xx)
    s[acc].compute_at(s[out], t_w)
    an, af, ay, ax = s[acc].op.axis
    rc, ry, rx = s[acc].op.reduce_axis
    rco, rci = s[acc].split(rc, factor=bc)
    s[acc].reorder(rco, rci, ry, rx, an, af, ay, ax)
    g = conv_geometry(conv)
    inner = (rci, ry, rx, af, ax) if bc * g["kh"] * g["kw"] * tf * tw <= MAX_UNROLLED_FMAS \
        else (ry, rx, af, ax)
    for a in inner:
        s[acc].unroll(a)
    panels = [s.cache_read(src, "shared", [acc]), s.cache_read(ker, "shared", [acc])]
    row = bc * g["kh"] * g["kw"]  # words per output channel in the weight panel
    if pad and ty > 1:
        s[panels[1]].storage_align(panels[1].op.axis[0], 32, (row | 1) % 32)
    for p in panels:
        _fetch(s, p, acc, rco, tx, th, ty)
        if dbuf:
            s[p].double_buffer()
    return s


def _fetch(s, panel, acc, at, tx: int, th: int, ty: int) -> None:
    """The block's threads copy the panel together: all its loops fused, split by the
    thread counts (x fastest, so consecutive lanes read consecutive words)."""
    s[panel].compute_at(s[acc], at)
    fused = s[panel].fuse(*panel.op.axis)
    fused, t_x = s[panel].split(fused, factor=tx)
    fused, t_y = s[panel].split(fused, factor=th)
    _, t_z = s[panel].split(fused, factor=ty)
    s[panel].bind(t_x, thread_axis("threadIdx.x"))
    s[panel].bind(t_y, thread_axis("threadIdx.y"))
    s[panel].bind(t_z, thread_axis("threadIdx.z"))


# ---------------------------------------------------------------- default tiles

def conv_estimate(g: dict, k: dict, target=None) -> dict:
    """A static estimate of one tiling on `target`: blocks, threads, shared bytes, the share
    of computed outputs that lie past the tensor's edge (`waste`), shared-memory words read
    per FMA, and `cycles` on the busiest SM: the larger of the issue time (FMAs, shared
    loads, the cooperative copy and the barriers of every channel step, over its 4
    schedulers, slowed when too few warps are resident) and the latency time (one global
    round trip per channel step, overlapped across the resident blocks). For ranking
    tilings, not for predicting microseconds."""
    target = as_cuda(target)
    bf, bw = k["ty"] * k["tf"], k["tx"] * k["tw"]
    tiles = (math.ceil(g["o"] / bf), math.ceil(g["oh"] / k["th"]), math.ceil(g["ow"] / bw))
    blocks = g["n"] * tiles[0] * tiles[1] * tiles[2]
    threads = k["ty"] * k["th"] * k["tx"]
    waste = tiles[0] * bf * tiles[1] * k["th"] * tiles[2] * bw / (g["o"] * g["oh"] * g["ow"])
    sh, sw = _strides(g)
    rows = (k["th"] - 1) * sh + g["kh"]
    cols = (bw - 1) * sw + g["kw"]
    words = k["bc"] * rows * cols + bf * (k["bc"] * g["kh"] * g["kw"] + k.get("pad", 0))
    smem = 4 * words * (2 if k.get("dbuf") else 1)
    # per (channel, ry): tf weights x kw taps and (tw - 1) sw + kw patch words feed tf tw kw FMAs
    reads = k["tf"] * g["kw"] + (k["tw"] - 1) * sw + g["kw"]
    fmas = k["tf"] * k["tw"] * g["kw"]
    step = k["bc"] * g["kh"] * (fmas + reads) + 3 * math.ceil(words / threads) + 40
    steps = math.ceil(g["c"] / k["bc"])
    # registers: accumulators and the fetch values the printer stages through registers
    # (codegen.cuda_pipeline) with their index arithmetic. A rough upper trend of ptxas on
    # sm_90 over 60 random tilings of four ResNet layers (it errs high: ptxas ranged from 27
    # to 255 and often chose fewer); past ~20 staged values per thread it climbs steeply.
    regs = 32 + 2 * k["tf"] * k["tw"] + 4 * words / threads
    per_sm = max(1, min(32, target.max_threads_per_sm // max(threads, 1),
                        target.max_shared_memory_per_sm // max(smem, 1),
                        target.max_registers_per_sm // max(int(regs) * threads, 1)))
    on_busiest = math.ceil(blocks / target.sm_count)
    resident = min(per_sm, on_busiest)
    warps = math.ceil(threads / 32)
    issue = on_busiest * warps * steps * step / 4 / min(1.0, resident * warps / 8)
    latency = math.ceil(on_busiest / resident) * steps * LATENCY_CYCLES
    return dict(blocks=blocks, threads=threads, shared_bytes=smem, waste=waste,
                smem_words_per_fma=reads / fmas, registers=regs, cycles=max(issue, latency))


def _strides(g: dict) -> tuple:
    """(sh, sw) recovered from the shapes: the input patch a block reads (dilation 1 is
    assumed for the estimate; the schedule itself handles any)."""
    sh = max(1, (g["h"] - g["kh"]) // max(g["oh"] - 1, 1)) if g["oh"] > 1 else 1
    sw = max(1, (g["w"] - g["kw"]) // max(g["ow"] - 1, 1)) if g["ow"] > 1 else 1
    return sh, sw


def channel_steps(c: int) -> tuple:
    """bc values worth trying for c input channels: powers of two up to 32 that divide c,
    and c itself when it is small (3 for an RGB stem)."""
    out = [b for b in (1, 2, 4, 8, 16, 32) if b <= c and c % b == 0]
    if c <= 16 and c not in out:
        out.append(c)
    return tuple(out)


def conv_tiles(conv, target=None) -> dict:
    """Knobs for schedule_conv2d on `target` (a CUDA Target or its text; default sm_90):
    the tiling with the fewest `conv_estimate` cycles among warp-multiple thread counts up
    to 256 whose panels fit in a quarter of an SM's shared memory and whose estimated
    registers stay under MAX_REGISTERS."""
    target = as_cuda(target)
    g = conv_geometry(conv)
    best, best_key = None, None
    for tf, tw, ty, th, tx, bc in itertools.product((1, 2, 4, 8), (1, 2, 4), (1, 2, 4, 8, 16),
                                                    (1, 2, 4, 8), (4, 8, 16, 32),
                                                    channel_steps(g["c"])):
        threads = ty * th * tx
        if threads % 32 or threads > 256 or tf * tw > 32 or ty * tf > 2 * g["o"] or \
                tx * tw > 2 * g["ow"] or th > g["oh"]:
            continue
        k = dict(tf=tf, tw=tw, ty=ty, th=th, tx=tx, bc=bc, pad=1, dbuf=0)
        est = conv_estimate(g, k, target)
        if est["shared_bytes"] > target.max_shared_memory_per_sm // 4 or \
                est["registers"] > MAX_REGISTERS:
            continue
        key = (est["cycles"], -tf * tw, -threads)
        if best_key is None or key < best_key:
            best, best_key = k, key
    return best or dict(DEFAULT_TILES, bc=channel_steps(g["c"])[-1])
