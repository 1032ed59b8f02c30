"""Hand-written GPU schedules (TVM's topi.cuda): a matmul tiled through shared memory and
registers with its elementwise epilogue fused, row reductions (softmax, layer norm) with one
block per row and cross-thread reductions (warp shuffles), injective ops, and `schedule_auto`
choosing one.

In: a TVM-style `Schedule`, the output tensor (and for the matmul the tile sizes).
Out: the schedule, modified in place (it appends Steps like any hand schedule).
Why: the GPU's reference schedules, written with the public schedule primitives only (split /
fuse / reorder / bind (of a reduction loop too: a cross-thread reduction) /
cache_read("shared") / cache_write("local") / compute_at / storage_align / rfactor /
double_buffer / unroll / vectorize), so they double as worked examples
of GPU scheduling, as the default schedules of whole models on a GPU, and as the baseline the
auto-scheduler has to beat.

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
from .cuda_model import handoff_unroll, k_last, mma_b_pad
from .cuda_tiles import matmul_tiles, matmul_tiles_mma, pow2_floor
from .cuda_tvm import (  # TVM's topi.cuda names with TVM's signatures  # noqa: F401
    _tvm_form,
    conv2d_nchw,
    dense,
    schedule_batch_matmul,
    schedule_conv2d_nchw,
    schedule_dense,
    schedule_pool,
    schedule_reduce,
    schedule_softmax,
)

MAX_THREADS = 256  # threads per block of the injective and row-reduction schedules


def schedule_matmul(s, out, mm=None, tm: int = 4, tn: int = 4, tx: int = 8, ty: int = 8,
                    bk: int = 16, pad: int = 1, vec: int = 1, splitk: int = 1,
                    serial: int = 1, dbuf: int = 0, mma: int = 0):
    """Schedule `out` (= matmul `mm`, or an elementwise function of it) for a CUDA target.
    Leading (batch) axes, as in batch_matmul, are fused and bound to blockIdx.z. With
    splitk > 1 the reduction is cut into that many slices computed by separate blocks (an
    rfactor stage in global memory, tiled like a batched matmul): more blocks when the output
    alone has too few. The slices are summed and the epilogue applied either by the last
    slice of each tile to finish, in the same kernel (`serial`, the default: the stage that
    sums is tiled like the slices and carries the pragma tir.gpu.SPLITK_PRAGMA), or by a
    second kernel with one thread per output element (serial=0).
    `pad` is the number of words added to each row of a k-contiguous shared panel (True =
    1); see `conflict_free_pad` for which pad keeps a thread tile's reads conflict-free.
    `dbuf` double-buffers both panels (Stage.double_buffer): one barrier per reduction step,
    the next step's panels stored while this step's are read.
    `mma=1` computes each warp's tile on the tensor cores, in float32 accuracy: the threads
    are laid out as the m16n8k8 accumulator fragments want (each warp a 16 fm x 8 fn tile,
    tm = 2 fm, tn = 2 fn, tx a multiple of 4, ty of 8, bk of 8, one threadIdx.x) and the
    accumulation loops carry tir.gpu.MMA_PRAGMA, which codegen.cuda_mma turns into mma.sync
    with each operand split into two TF32 parts (3xTF32: big*big + big*small + small*big)."""
    mm = find_matmul(out) if mm is None else mm
    if len(mm.op.reduce_axis) != 1 or len(mm.op.input_tensors) != 2:
        raise ScheduleError(f"schedule_matmul: {mm.name} is not a two-input matmul")
    parts = matmul_parts(out)
    prologue = parts[1] if parts is not None and parts[0].op is mm.op else []
    if prologue and (splitk > 1 or tx & (tx - 1)):
        raise ScheduleError(f"schedule_matmul: {mm.name} reads row reductions "
                            f"({', '.join(r.name for r in prologue)}): that needs splitk = 1 "
                            f"and a power-of-two tx, got splitk={splitk}, tx={tx}")
    if mma:
        _check_mma(mm, tm, tn, tx, ty, bk, splitk, prologue)
    _inline_between(s, out, mm)
    _inline_producers(s, mm)
    if splitk > 1:
        kext = int(mm.op.reduce_axis[0].extent.value)
        slices = -(-kext // -(-kext // splitk))  # what split(nparts=splitk) makes
        _, ko = s[mm].split(mm.op.reduce_axis[0], nparts=splitk)
        ks, _ = s[mm].leaf_iter_vars[-2:]
        rf = s.rfactor(mm, ks, factor_axis=0)
        final = out
        if out is mm:  # sum the slices in a register, then store once
            mm = s.cache_write(mm, "local")
        if serial:
            _bind_tiles(s, final, ty * tm, tx * tn, *((tx * ty, 0) if mma else (tx, ty)),
                        slices)
        else:
            _bind_flat(s, final)
        if out is not mm:
            s[mm].compute_at(s[out], s[out].leaf_iter_vars[-1])
        if serial:  # the slices' loads of one element in flight together
            s[mm].unroll(s[mm].leaf_iter_vars[-1])
        out = mm = rf
    acc = s.cache_write(mm, "local") if out is mm else mm
    a, b = acc.op.input_tensors
    panels = [s.cache_read(a, "shared", [acc]), s.cache_read(b, "shared", [acc])]
    *batch, i, j = s[out].op.axis
    if batch:
        bz = s[out].fuse(*batch) if len(batch) > 1 else batch[0]
        s[out].bind(bz, thread_axis("blockIdx.z"))
    by, i = s[out].split(i, factor=ty * tm)
    t_y, ii = s[out].split(i, factor=tm)
    bx, j = s[out].split(j, factor=tx * tn)
    t_x, jj = s[out].split(j, factor=tn)
    s[out].reorder(by, bx, t_y, t_x, ii, jj)
    s[out].bind(by, thread_axis("blockIdx.y"))
    s[out].bind(bx, thread_axis("blockIdx.x"))
    if mma:
        inner = _bind_fragments(s, out, t_y, t_x)
    else:
        s[out].bind(t_y, thread_axis("threadIdx.y"))
        s[out].bind(t_x, thread_axis("threadIdx.x"))
        inner = t_x
    s[out].unroll(ii)
    s[out].unroll(jj)
    s[acc].compute_at(s[out], inner)
    *_, ai, aj = s[acc].op.axis
    ko, ki = s[acc].split(s[acc].op.reduce_axis[0], factor=bk)
    s[acc].reorder(ko, ki, ai, aj)
    if mma:  # each 8-step of k: one m16n8k8 product per fragment pair of the warp's tile
        from ..tir.gpu import MMA_PRAGMA
        _, ki = s[acc].split(ki, factor=8)
        s[acc].pragma(ki, MMA_PRAGMA, 1)
    for ax in (ki, ai, aj):
        s[acc].unroll(ax)
    threads = (tx * ty, 0) if mma else (tx, ty)  # ty 0: threadIdx.x only
    pads = (int(pad), mma_b_pad(tn, bk) if mma else int(pad))
    for p, t, row_pad in zip(panels, (a, b), pads):
        _cooperative_fetch(s, p, acc, ko, *threads, bk, row_pad if k_last(acc, t) else 0,
                           vec)
        if dbuf:
            s[p].double_buffer()
    for r in reversed(prologue):  # consumers first: compute_at needs them placed
        _row_prologue(s, r, out, bx, tx, tm)
    return s


def _check_mma(mm, tm: int, tn: int, tx: int, ty: int, bk: int, splitk: int,
               prologue) -> None:
    """The shapes the tensor-core form needs (no edge guards: whole tiles, whole k-steps in
    every slice), or a ScheduleError naming what is off."""
    *_, m, n = (int(a.extent.value) for a in mm.op.axis)
    k = int(mm.op.reduce_axis[0].extent.value)
    per_slice = -(-k // max(splitk, 1))
    bad = [f"{name}={v} (a multiple of {q})" for name, v, q in
           (("tm", tm, 2), ("tn", tn, 2), ("tx", tx, 4), ("ty", ty, 8), ("bk", bk, 8))
           if v % q]
    bad += [f"{what} {v} not a multiple of the {tile} tile" for what, v, tile in
            (("rows", m, ty * tm), ("columns", n, tx * tn), ("k", k, per_slice),
             ("k per slice", per_slice, bk)) if v % tile]
    if (tx * ty) % 32:
        bad.append(f"{tx * ty} threads (whole warps)")
    if mm.dtype != "float32" or any(t.dtype != "float32" for t in mm.op.input_tensors):
        bad.append("float32 operands and result")
    if prologue:
        bad.append("no row prologue")
    if bad:
        raise ScheduleError(f"schedule_matmul(mma=1) of {mm.name} needs " + "; ".join(bad))


def _bind_fragments(s, out, t_y, t_x):
    """One threadIdx.x whose lanes hold the m16n8k8 accumulator fragments: lane = 4 g + t
    owns rows g (and g + 8) and columns 2t, 2t + 1 of each 16 x 8 product. Thread (row g,
    column t) of a warp's 8 x 4 grid holds the contiguous tm x tn tile at rows g tm ..,
    columns t tn ..: the products' rows and columns are a permutation of the tile's, which
    codegen.cuda_mma applies when it loads the operand fragments."""
    wy, g = s[out].split(t_y, factor=8)
    wx, t = s[out].split(t_x, factor=4)
    s[out].reorder(wy, wx, g, t)
    lanes = s[out].fuse(wy, wx, g, t)
    s[out].bind(lanes, thread_axis("threadIdx.x"))
    return lanes


def _row_prologue(s, r, out, bx, tx: int, tm: int) -> None:
    """A row reduction the A operand is computed from, for the block's rows before its
    k loop: each threadIdx.y reduces its tm rows across the tx threads along x (a
    cross-thread reduction); the results go to shared memory, where the cooperative fetch
    of the A panel reads them."""
    s[r].set_scope("shared")
    s[r].compute_at(s[out], bx)
    i = s[r].op.axis[-1]
    io, ii = s[r].split(i, factor=tm)
    ko, ki = s[r].split(s[r].op.reduce_axis[0], factor=tx)
    s[r].reorder(io, ii, ki, ko)
    s[r].bind(io, thread_axis("threadIdx.y"))
    s[r].bind(ki, thread_axis("threadIdx.x"))


def _bind_tiles(s, t, bm: int, bn: int, tx: int, ty: int, slices: int) -> None:
    """t's output in the block tiles (bm x bn, batch axes on blockIdx.z) and threads (ty x
    tx) of the split-K slices it sums; the tile's elements are shared out row-major over the
    threads (consecutive threads, consecutive columns). The pragma tells tir.gpu to run it
    as the end of the slices' kernel."""
    from ..tir.gpu import SPLITK_PRAGMA
    *batch, i, j = s[t].op.axis
    by, ii = s[t].split(i, factor=bm)
    bx, jj = s[t].split(j, factor=bn)
    if batch:
        bz = s[t].fuse(*batch) if len(batch) > 1 else batch[0]
        s[t].reorder(bz, by, bx, ii, jj)
        s[t].bind(bz, thread_axis("blockIdx.z"))
    else:
        s[t].reorder(by, bx, ii, jj)
    s[t].bind(by, thread_axis("blockIdx.y"))
    s[t].bind(bx, thread_axis("blockIdx.x"))
    s[t].pragma(by, SPLITK_PRAGMA, slices)
    rest, t_x = s[t].split(s[t].fuse(ii, jj), factor=tx)
    if ty:  # 0: the threads are one threadIdx.x
        rest, t_y = s[t].split(rest, factor=ty)
        s[t].bind(t_y, thread_axis("threadIdx.y"))
    s[t].bind(t_x, thread_axis("threadIdx.x"))
    # a thread's elements one after another would wait one L2 round trip each: unroll a few
    # so that their slices' loads are in flight together
    _, ahead = s[t].split(rest, factor=handoff_unroll(bm * bn // (tx * max(ty, 1)), slices))
    s[t].unroll(ahead)


def find_matmul(out):
    """The first stage with a reduction that `out` is computed from (out itself included)."""
    todo = [out]
    while todo:
        t = todo.pop(0)
        if getattr(t.op, "reduce_axis", None):
            return t
        todo.extend(t.op.input_tensors)
    raise ScheduleError(f"schedule_matmul: {out.name} is not computed from a matmul")


def _inline_producers(s, t) -> None:
    """Inline the injective stages that compute t's inputs (transposes, reshapes, padding),
    so they are evaluated while the shared-memory panels are fetched."""
    for p in t.op.input_tensors:
        if p.op.input_tensors and not getattr(p.op, "reduce_axis", None):
            _inline_producers(s, p)
            s[p].compute_inline()


def _inline_between(s, out, mm) -> None:
    """Inline every stage strictly between the matmul and the output (the epilogue)."""
    todo, seen = list(out.op.input_tensors) if out.op is not mm.op else [], set()
    while todo:
        t = todo.pop()
        if t.op is mm.op or id(t.op) in seen or not t.op.input_tensors:
            continue
        seen.add(id(t.op))
        s[t].compute_inline()
        todo.extend(t.op.input_tensors)


def _cooperative_fetch(s, panel, acc, ko, tx: int, ty: int, bk: int, pad: int,
                       vec: int) -> None:
    s[panel].compute_at(s[acc], ko)
    if pad == 1:  # row stride bk + 1: odd, so the rows a warp reads sit in distinct banks
        s[panel].storage_align(panel.op.axis[-2], max(bk, 2), 1)
    elif pad:  # row stride bk + pad (the stride is padded to 32 k + (bk + pad) % 32)
        s[panel].storage_align(panel.op.axis[-2], 32, (bk + pad) % 32)
    fused = s[panel].fuse(*panel.op.axis)
    if vec > 1:
        fused, v = s[panel].split(fused, factor=vec)
        s[panel].vectorize(v)
    fused, t_x = s[panel].split(fused, factor=tx)
    if ty:
        _, t_y = s[panel].split(fused, factor=ty)
        s[panel].bind(t_y, thread_axis("threadIdx.y"))
    s[panel].bind(t_x, thread_axis("threadIdx.x"))


# ---------------------------------------------------------------- other kernels

def _reductions(out) -> list:
    """Every stage with a reduce axis that out is computed from, producers first."""
    found, todo, seen = [], [out], set()
    while todo:
        t = todo.pop()
        if id(t.op) in seen or not t.op.input_tensors:
            continue
        seen.add(id(t.op))
        if getattr(t.op, "reduce_axis", None):
            found.append(t)
        todo.extend(t.op.input_tensors)
    return sorted(found, key=lambda t: _depth(t))


def _depth(t) -> int:
    return 1 + max((_depth(p) for p in t.op.input_tensors), default=0)


def _inline_elementwise(s, out) -> None:
    """Inline every computed stage out depends on that has no reduction (and is not out)."""
    todo, seen = list(out.op.input_tensors), set()
    while todo:
        t = todo.pop()
        if id(t.op) in seen or not t.op.input_tensors:
            continue
        seen.add(id(t.op))
        if not getattr(t.op, "reduce_axis", None):
            s[t].compute_inline()
        todo.extend(t.op.input_tensors)


def _bind_flat(s, t, threads: int = MAX_THREADS) -> None:
    """Fuse all spatial loops of t, split by the thread count, bind block and thread. A
    scalar (0-d) reduction has no spatial loop: one block reduces it across its threads."""
    axes = list(t.op.axis)
    if not axes:
        _bind_scalar(s, t, threads)
        return
    fused = s[t].fuse(*axes) if len(axes) > 1 else axes[0]
    size = 1
    for a in axes:
        size *= int(a.extent.value)
    threads = min(threads, pow2_floor(size))
    bx, tx = s[t].split(fused, factor=threads)
    s[t].bind(bx, thread_axis("blockIdx.x"))
    s[t].bind(tx, thread_axis("threadIdx.x"))


def _bind_scalar(s, t, threads: int) -> None:
    red = list(getattr(t.op, "reduce_axis", ()))
    if not red:
        raise ScheduleError(f"{t.name} is a scalar with no loop to give the GPU threads")
    size = 1
    for a in red:
        size *= int(a.extent.value)
    k = s[t].fuse(*red) if len(red) > 1 else red[0]
    ko, ki = s[t].split(k, factor=min(threads, pow2_floor(size)))
    s[t].reorder(ki, ko)
    s[t].bind(ki, thread_axis("threadIdx.x"))  # a cross-thread reduction, as in schedule_rows


def schedule_injective(s, out=None, threads: int = MAX_THREADS):
    """Elementwise / broadcast / data-movement kernels: one thread per output element.
    TVM's form `schedule_injective(outs)` (no schedule given) returns a new schedule."""
    if out is None:
        return _tvm_form(s)
    _inline_elementwise(s, out)
    _bind_flat(s, out, threads)
    return s


def schedule_simple(s, out, threads: int = MAX_THREADS):
    """Always legal: producers inlined, each reduction its own kernel with one thread per
    output element (the reduction runs serially in that thread), the output flat-bound."""
    _inline_elementwise(s, out)
    for r in _reductions(out):
        if r.op is not out.op:
            _bind_flat(s, r, threads)
    _bind_flat(s, out, threads)
    return s


def _reduction_threads(extent: int) -> int:
    """Threads that share a row: a warp at least (when the row has that many elements),
    up to MAX_THREADS, about 4 elements per thread."""
    return max(min(32, pow2_floor(extent)), min(MAX_THREADS, pow2_floor(extent // 4)))


def schedule_rows(s, out, threads: int | None = None):
    """Softmax / layer-norm-like kernels: every reduction reduces the innermost axes of
    `out`'s rows. One block per row; each reduction is a cross-thread reduction: its loop
    split by the thread count, the inner part bound to threadIdx.x, so each thread reduces
    a strided share of the row (loads coalesced) and the threads combine their shares with
    warp shuffles (and shared memory past one warp); every thread keeps the result."""
    reds = [r for r in _reductions(out) if r.op is not out.op]
    if not reds or out.op in [r.op for r in reds] or getattr(out.op, "reduce_axis", None):
        raise ScheduleError(f"schedule_rows: {out.name} is not an elementwise function of row "
                            "reductions")
    *rows, last = out.op.axis
    nthreads = threads or _reduction_threads(int(last.extent.value))
    for r in reds:
        if len(r.op.reduce_axis) != 1 or len(r.op.axis) != len(rows) or \
                [int(a.extent.value) for a in r.op.axis] != \
                [int(a.extent.value) for a in rows] or (threads is None and _reduction_threads(
                    int(r.op.reduce_axis[0].extent.value)) != nthreads):
            raise ScheduleError(f"schedule_rows: {r.name} does not reduce the rows of {out.name}")
    _inline_elementwise(s, out)
    row = s[out].fuse(*rows) if len(rows) > 1 else rows[0]
    lo, t_x = s[out].split(last, factor=nthreads)
    s[out].reorder(row, t_x, lo)
    s[out].bind(row, thread_axis("blockIdx.x"))
    s[out].bind(t_x, thread_axis("threadIdx.x"))
    for r in reversed(reds):  # consumers first: compute_at needs them placed
        ko, ki = s[r].split(s[r].op.reduce_axis[0], factor=nthreads)
        s[r].reorder(ki, ko)
        s[r].bind(ki, thread_axis("threadIdx.x"))
        s[r].compute_at(s[out], row)
    return s


def matmul_parts(out, reds: list | None = None):
    """(the product, its row prologue) when `out` is one two-input product reduction plus an
    elementwise epilogue, whose operands may be computed from row reductions over the rows
    of its A operand (the prologue, producers first: the softmax before attention's P.V);
    else None. `reds`: _reductions(out), when the caller has it."""
    reds = _reductions(out) if reds is None else reds
    prods = [r for r in reds if len(r.op.input_tensors) == 2 and len(r.op.reduce_axis) == 1
             and _is_product(r)]
    if len(prods) != 1:
        return None
    mm = prods[0]
    rows = [int(a.extent.value) for a in mm.op.axis[:-1]]
    upstream = {id(t.op) for t in _producers(mm)}
    prologue = [r for r in reds if r is not mm]
    for r in prologue:
        if len(r.op.reduce_axis) != 1 or id(r.op) not in upstream or \
                [int(a.extent.value) for a in r.op.axis] != rows:
            return None
    return mm, prologue


def _producers(t) -> list:
    out, todo, seen = [], list(t.op.input_tensors), set()
    while todo:
        p = todo.pop()
        if id(p.op) not in seen:
            seen.add(id(p.op))
            out.append(p)
            todo.extend(p.op.input_tensors)
    return out


def kernel_kind(out) -> str:
    """Which GPU schedule family fits the kernel computing `out`: "matmul" (one two-input
    product reduction, plus an elementwise epilogue and a row prologue: matmul_parts),
    "conv" (a conv2d_nchw with groups = 1 plus an elementwise epilogue: topi.cuda_conv),
    "injective" (no reduction), "rows" (reductions over the innermost axes of out's rows),
    else "simple"."""
    from .cuda_conv import conv_stage
    reds = _reductions(out)
    if matmul_parts(out, reds) is not None:
        return "matmul"
    if conv_stage(out) is not None:
        return "conv"
    if not reds:
        return "injective"
    *rows, _ = out.op.axis
    ok = all(len(r.op.reduce_axis) == 1 and r.op is not out.op and
             [int(a.extent.value) for a in r.op.axis] == [int(a.extent.value) for a in rows]
             for r in reds)
    return "rows" if ok and not getattr(out.op, "reduce_axis", None) else "simple"


def schedule_auto(s, out, target=None, mma: bool = False):
    """The default GPU schedule of the kernel computing `out`: the matmul schedule with tiles
    sized to the problem when `out` is a matmul (plus epilogue), the direct convolution
    schedule (topi.cuda_conv) for a conv2d_nchw, rows for softmax / layer-norm
    shaped kernels, flat for injective ones; schedule_simple when the first choice does not
    apply (the caller retries schedule_simple on a fresh schedule). `target` (a CUDA Target;
    default sm_90) sizes the matmul tiles. With `mma` a matmul runs on the tensor cores
    (matmul_tiles_mma), or raises ScheduleError when no such tile fits it. Returns the name
    of the schedule used."""
    reds = _reductions(out)
    parts = matmul_parts(out, reds)
    if parts is not None:
        tiles = matmul_tiles_mma(parts[0], target) if mma and not parts[1] else None
        if mma and tiles is None:
            raise ScheduleError(f"no tensor-core tile fits {parts[0].name} on {target}")
        schedule_matmul(s, out, parts[0],
                        **(tiles or matmul_tiles(parts[0], target, bool(parts[1]))))
        return "matmul"
    if mma:
        raise ScheduleError(f"{out.name} is not a matmul: nothing for the tensor cores")
    from .cuda_conv import conv_stage, conv_tiles, schedule_conv2d
    conv = conv_stage(out)
    if conv is not None:
        schedule_conv2d(s, out, conv, **conv_tiles(conv, target))
        return "conv"
    if not reds:
        schedule_injective(s, out)
        return "injective"
    schedule_rows(s, out)  # raises ScheduleError before changing s when it does not apply
    return "rows"


def _is_product(t) -> bool:
    from ..te import expr as E
    body = t.op.body[0]
    return isinstance(body, E.Reduce) and isinstance(body.source, E.BinOp) and \
        body.source.op == "mul" and len(t.op.axis) >= 2


