"""Hand-written GPU schedules (TVM's topi.cuda): a matmul tiled through shared memory and
registers with its elementwise epilogue fused, row reductions (softmax, layer norm) with one
block per row and a cross-thread reduction, injective ops, and `schedule_auto` choosing one.

In: a TVM-style `Schedule`, the output tensor (and for the matmul the tile sizes).
Out: the schedule, modified in place (it appends Steps like any hand schedule).
Why: the GPU's reference schedules, written with the public schedule primitives only (split /
fuse / reorder / bind / cache_read("shared") / cache_write("local") / compute_at /
storage_align / rfactor / set_scope / unroll / vectorize), so they double as worked examples
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

MAX_THREADS = 256  # threads per block of the injective and row-reduction schedules


def schedule_matmul(s, out, mm=None, tm: int = 4, tn: int = 4, tx: int = 8, ty: int = 8,
                    bk: int = 16, pad: int = 1, vec: int = 1, splitk: int = 1):
    """Schedule `out` (= matmul `mm`, or an elementwise function of it) for a CUDA target.
    Leading (batch) axes, as in batch_matmul, are fused and bound to blockIdx.z. With
    splitk > 1 the reduction is cut into that many slices computed by separate blocks (an
    rfactor stage in global memory, tiled like a batched matmul), and a second kernel sums
    the slices and applies the epilogue: more blocks when the output alone has too few.
    `pad` is the number of words added to each row of a k-contiguous shared panel (True =
    1); see `conflict_free_pad` for which pad keeps a thread tile's reads conflict-free."""
    mm = _find_matmul(out) if mm is None else mm
    if len(mm.op.reduce_axis) != 1 or len(mm.op.input_tensors) != 2:
        raise ScheduleError(f"schedule_matmul: {mm.name} is not a two-input matmul")
    _inline_between(s, out, mm)
    _inline_producers(s, mm)
    if splitk > 1:
        _, ko = s[mm].split(mm.op.reduce_axis[0], nparts=splitk)
        ks, _ = s[mm].leaf_iter_vars[-2:]
        rf = s.rfactor(mm, ks, factor_axis=0)
        if out is not mm:
            _bind_flat(s, out)
            s[mm].compute_at(s[out], s[out].leaf_iter_vars[-1])
        else:
            _bind_flat(s, mm)
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
    s[out].bind(t_y, thread_axis("threadIdx.y"))
    s[out].bind(t_x, thread_axis("threadIdx.x"))
    s[out].unroll(ii)
    s[out].unroll(jj)
    s[acc].compute_at(s[out], t_x)
    *_, ai, aj = s[acc].op.axis
    ko, ki = s[acc].split(s[acc].op.reduce_axis[0], factor=bk)
    s[acc].reorder(ko, ki, ai, aj)
    for ax in (ki, ai, aj):
        s[acc].unroll(ax)
    for p, t in zip(panels, (a, b)):
        _cooperative_fetch(s, p, acc, ko, tx, ty, bk, int(pad) if _k_last(acc, t) else 0, vec)
    return s


def _k_last(mm, t) -> bool:
    """Whether the matmul reads `t` with the reduction index last (a k-contiguous panel, as
    A and B of C = A B^T). Only such panels are padded: their threads read along columns of
    the panel. A k-major panel (B of C = A B) is read along its rows, consecutive threads
    consecutive 4-float chunks, conflict-free unpadded; padding it would only misalign the
    rows (no 16-byte shared loads)."""
    from ..te import expr as E
    ks = {id(r) for r in mm.op.reduce_axis}
    loads = [x for x in E.walk(mm.op.body[0]) if isinstance(x, E.TensorLoad) and
             x.tensor.op is t.op]
    return not loads or any(id(v) in ks for x in loads for v in E.walk(x.indices[-1]))


def _find_matmul(out):
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
    todo, seen = list(out.op.input_tensors), set()
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
    _, t_y = s[panel].split(fused, factor=ty)
    s[panel].bind(t_y, thread_axis("threadIdx.y"))
    s[panel].bind(t_x, thread_axis("threadIdx.x"))


# ---------------------------------------------------------------- other kernels

def _pow2_floor(n: int) -> int:
    return 1 << (max(int(n), 1).bit_length() - 1)


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
    """Fuse all spatial loops of t, split by the thread count, bind block and thread."""
    axes = list(t.op.axis)
    fused = s[t].fuse(*axes) if len(axes) > 1 else axes[0]
    size = 1
    for a in axes:
        size *= int(a.extent.value)
    threads = min(threads, _pow2_floor(size))
    bx, tx = s[t].split(fused, factor=threads)
    s[t].bind(bx, thread_axis("blockIdx.x"))
    s[t].bind(tx, thread_axis("threadIdx.x"))


def schedule_injective(s, out, threads: int = MAX_THREADS):
    """Elementwise / broadcast / data-movement kernels: one thread per output element."""
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
    return max(min(32, _pow2_floor(extent)), min(MAX_THREADS, _pow2_floor(extent // 4)))


def schedule_rows(s, out, threads: int | None = None):
    """Softmax / layer-norm-like kernels: every reduction reduces the innermost axes of
    `out`'s rows. One block per row; each reduction is rfactored across the block's threads
    into shared memory, then every thread sums the partial results itself (a row's values are
    read once from global memory, coalesced)."""
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
    rfs = []
    for r in reds:
        _, ki = s[r].split(s[r].op.reduce_axis[0], factor=nthreads)
        rfs.append(s.rfactor(r, ki, factor_axis=len(rows)))
    for r, rf in reversed(list(zip(reds, rfs))):  # consumers first: compute_at needs them
        s[r].compute_at(s[out], row)
        s[rf].compute_at(s[out], row)
        s[rf].set_scope("shared")
        *_, lane = s[rf].op.axis
        s[rf].bind(lane, thread_axis("threadIdx.x"))
    return s


def kernel_kind(out) -> str:
    """Which GPU schedule family fits the kernel computing `out`: "matmul" (one two-input
    product reduction, plus an elementwise epilogue), "injective" (no reduction), "rows"
    (reductions over the innermost axes of out's rows), else "simple"."""
    reds = _reductions(out)
    if len(reds) == 1 and len(reds[0].op.input_tensors) == 2 and \
            len(reds[0].op.reduce_axis) == 1 and _is_product(reds[0]):
        return "matmul"
    if not reds:
        return "injective"
    *rows, _ = out.op.axis
    ok = all(len(r.op.reduce_axis) == 1 and r.op is not out.op and
             [int(a.extent.value) for a in r.op.axis] == [int(a.extent.value) for a in rows]
             for r in reds)
    return "rows" if ok and not getattr(out.op, "reduce_axis", None) else "simple"


def schedule_auto(s, out, target=None):
    """The default GPU schedule of the kernel computing `out`: the matmul schedule with tiles
    sized to the problem when `out` is a matmul (plus epilogue), rows for softmax / layer-norm
    shaped kernels, flat for injective ones; schedule_simple when the first choice does not
    apply (the caller retries schedule_simple on a fresh schedule). `target` (a CUDA Target;
    default sm_90) sizes the matmul tiles. Returns the name of the schedule used."""
    reds = _reductions(out)
    if len(reds) == 1 and len(reds[0].op.input_tensors) == 2 and \
            len(reds[0].op.reduce_axis) == 1 and _is_product(reds[0]):
        schedule_matmul(s, out, reds[0], **matmul_tiles(reds[0], target))
        return "matmul"
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


def matmul_tiles(mm, target=None) -> dict:
    """Tile sizes for schedule_matmul on `target` (a CUDA Target or its text; default
    sm_90): the candidate (thread tile, threads, row pad, split-K slices) with the fewest
    cycles under `matmul_estimate`, ties to the larger block tile. Panels are fetched 4
    floats per thread when rows allow it (float4 global loads; the CUDA printer stages them
    through registers)."""
    target = _as_cuda(target)
    nb, i, j, k = _mm_shape(mm)
    a, b = mm.op.input_tensors
    kcontig = (_k_last(mm, a), _k_last(mm, b))
    bk = min(16, _pow2_floor(k))
    vec = 4 if k % 4 == 0 and bk % 4 == 0 else 1
    best = None
    for rank, (tm, tn, tx, ty) in enumerate(_TILES):
        if tx * ty > target.max_threads_per_block:
            continue
        for pad in (1, 2, 4, 0):
            for splitk in _split_options(k, bk):
                cfg = dict(tm=tm, tn=tn, tx=tx, ty=ty, bk=bk, pad=pad, vec=vec, splitk=splitk)
                est = matmul_estimate((nb, i, j, k), cfg, target, kcontig)
                if est["shared_bytes"] > target.max_shared_memory_per_block:
                    continue
                score = (round(est["cycles"], -2), -tm * ty * tn * tx, rank, pad, splitk)
                if best is None or score < best[0]:
                    best = (score, cfg)
    return best[1]


def _as_cuda(target):
    from ..target import as_target
    return as_target(target or "cuda -arch=sm_90")


def _mm_shape(mm) -> tuple:
    *batch, i, j = (int(a.extent.value) for a in mm.op.axis)
    nb = 1
    for b in batch:
        nb *= b
    return nb, i, j, int(mm.op.reduce_axis[0].extent.value)


def _split_options(k: int, bk: int) -> list:
    """Slice counts that cut k into whole bk steps of >= MIN_SLICE elements (1 always)."""
    steps = k // bk
    return [d for d in range(1, min(steps, 32) + 1) if d == 1 or
            (steps % d == 0 and k // d >= MIN_SLICE)]


MIN_SLICE = 128  # fewest reduction elements per split-K slice
# (tm, tn, tx, ty): thread tile and threads
_TILES = [(8, 4, 8, 16), (8, 8, 8, 8), (4, 8, 16, 8), (8, 4, 8, 8), (4, 4, 8, 16),
          (4, 4, 16, 8), (4, 4, 8, 8), (2, 4, 8, 4), (4, 2, 8, 4), (1, 4, 8, 4),
          (1, 1, 8, 4)]


# ---------------------------------------------------------------- static performance model
#
# A written-down model of one tiled matmul kernel on an SM of the Hopper / Ampere kind, used
# to choose default tiles (matmul_tiles), as cost-model features (auto_scheduler.gpu.features)
# and by scripts/sass_report.py. Machine facts come from the Target (SMs, shared memory and
# registers per block); the per-SM constants below are Hopper's (sm_80 / sm_90 alike):
# - 4 schedulers (SMSPs) per SM, each issues one warp instruction per clock; FFMA runs at one
#   warp instruction per clock per SMSP (128 FFMA lanes per SM);
# - shared memory serves one 128-byte wavefront per clock per SM; a warp-wide LDS costs as
#   many wavefronts as the most distinct words any one of the 32 banks holds (at least its
#   bytes / 128);
# - a warp's instructions per k-step (bk reduction elements): tm*tn*bk FFMA, the LDS that read
#   the thread tile (LDS.128 along k when the tile rows are 16-byte aligned: ptxas reads a
#   padded tile as one contiguous run of float4), the cooperative fetch (LDG + STS, float4
#   when vec = 4 and the shared rows stay 16-byte aligned), two barriers and ~8 others;
# - blocks are dealt to SMs round robin: the busiest SM runs ceil(blocks / SMs) blocks, its
#   warps spread over the 4 SMSPs; issue time is that SMSP's instructions divided by an issue
#   efficiency that grows with the warps it can switch between (ISSUE_EFF; one warp per SMSP
#   stalls on barriers and load latency about 30% of the time);
# - the panels come from L2 (ld.global.cg) at L2_BYTES_PER_CLK per SM;
# - the kernel takes about the largest of the issue, shared-memory and L2 times; they overlap
#   imperfectly, so the model sums them as a 4-norm (two equal parts: 1.19x either), which
#   also breaks near-ties toward conflict-free shared reads; split-K adds a second kernel
#   (KERNEL_CLKS) that reads the slices back.
SMSP_PER_SM = 4
LDS_BANKS = 32
L2_BYTES_PER_CLK = 32          # per SM: ~7 TB/s of L2 bandwidth over 132 SMs at ~1.7 GHz
KERNEL_CLKS = 3000             # one more kernel in the launch sequence (~1.7 us)
ISSUE_EFF = (0.0, 0.7, 0.85, 0.95)  # by resident warps per SMSP (1, 2, 3+)
REGS_PER_SM = 65536
SHARED_PER_SM = 228 * 1024
MAX_WARPS_PER_SM = 64


def lds_wavefronts(lanes: int, stride: int, width: int) -> int:
    """Wavefronts of one warp-wide shared load when `lanes` threads read `width` consecutive
    words each, `stride` words apart (the warp's other lanes read the same addresses:
    broadcast)."""
    lanes = max(1, min(lanes, 32))
    banks: dict = {}
    for lane in range(lanes):
        for w in range(width):
            word = lane * stride + w
            banks.setdefault(word % LDS_BANKS, set()).add(word)
    ways = max(len(words) for words in banks.values())
    return max(ways, -(-lanes * width // LDS_BANKS))


def panel_reads(t: int, lanes: int, bk: int, pad: int, kcontig: bool) -> tuple:
    """(LDS instructions, wavefronts) per warp and k-step reading one panel, when each thread
    reads a t-row slice of it and `lanes` distinct slices are read by one warp."""
    if kcontig:  # rows of bk (+ pad) words; a thread reads t rows along k
        row = bk + pad
        if row % 4 == 0:
            return t * bk // 4, t * bk // 4 * lds_wavefronts(lanes, t * row, 4)
        if (t * row) % 4 == 0:  # the padded tile is read as one run of float4s
            n = -(-(t * row - pad) // 4)
            return n, n * lds_wavefronts(lanes, t * row, 4)
        return t * bk, t * bk * lds_wavefronts(lanes, t * row, 1)
    width = 4 if t % 4 == 0 else 2 if t % 2 == 0 else 1  # k-major: t contiguous words per k
    n = bk * t // width
    return n, n * lds_wavefronts(lanes, t, width)


def conflict_free_pad(t: int, bk: int) -> int:
    """The smallest row pad (words) with which `lanes` (<= 8) threads reading t-row tiles of
    a k-contiguous panel hit distinct banks with 16-byte loads: t * (bk + pad) / 4 odd.
    t = 1: bk + pad = 4 mod 8; t = 2: 2 mod 4; t = 4: odd; t >= 8 cannot (2-way with pad 1)."""
    for pad in (0, 1, 2, 4):
        row = bk + pad
        if (t * row) % 4 == 0 and (t * row // 4) % 2 == 1:
            return pad
    return 1


def matmul_estimate(shape: tuple, cfg: dict, target=None, kcontig=(True, True)) -> dict:
    """The static model above for a matmul of `shape` = (batch, M, N, K) under schedule_matmul
    knobs `cfg`; `kcontig` says which panels are k-contiguous (A and B of C = A B^T).
    Returns cycles (on the busiest SMSP, plus split-K's second kernel), its parts and the
    launch shape: blocks, waves, blocks_per_sm, warps_per_smsp, instructions and LDS
    wavefronts per warp and k-step, bank_ways_a / _b, regs (estimated), shared_bytes."""
    target = _as_cuda(target)
    nb, m, n, k = shape
    tm, tn, tx, ty, bk = (int(cfg[x]) for x in ("tm", "tn", "tx", "ty", "bk"))
    pad, vec, splitk = int(cfg.get("pad", 1)), int(cfg.get("vec", 1)), int(cfg.get("splitk", 1))
    bm, bn, threads = tm * ty, tn * tx, tx * ty
    warps = -(-threads // 32)
    blocks = nb * -(-m // bm) * -(-n // bn) * splitk
    ksteps = -(-_ceil_div(k, splitk) // bk)
    lanes_x, lanes_y = min(tx, 32), max(1, min(ty, 32 // max(tx, 1)))
    pa, pb = (pad if kc else 0 for kc in kcontig)
    lds_a, wf_a = panel_reads(tm, lanes_y, bk, pa, kcontig[0])
    lds_b, wf_b = panel_reads(tn, lanes_x, bk, pb, kcontig[1])
    per_thread = (bm + bn) * bk / threads
    sts_vec = vec if all((bk + p) % vec == 0 for p in (pa, pb)) else 1
    fetch = per_thread / vec + per_thread / sts_vec
    instr = tm * tn * bk + lds_a + lds_b + fetch + 10
    shared = 4 * (bm * (bk + pa) if kcontig[0] else bm * bk) + \
        4 * (bn * (bk + pb) if kcontig[1] else bn * bk)
    regs = min(255, tm * tn + 2 * (tm + tn) * 4 + int(per_thread) + 24)
    per_sm = max(1, min(32, MAX_WARPS_PER_SM // warps, REGS_PER_SM // (regs * warps * 32),
                        SHARED_PER_SM // max(shared, 1)))
    sms = target.sm_count
    busiest = -(-blocks // sms)
    resident = min(busiest, per_sm) * warps
    smsp_warps = -(-busiest * warps // SMSP_PER_SM)
    eff = ISSUE_EFF[min(3, -(-resident // SMSP_PER_SM))]
    issue = smsp_warps * ksteps * instr / eff
    lds = busiest * warps * ksteps * (wf_a + wf_b)
    l2 = busiest * ksteps * 4 * (bm + bn) * bk / L2_BYTES_PER_CLK
    cycles = (issue ** 4 + lds ** 4 + l2 ** 4) ** 0.25
    if splitk > 1:  # the second kernel: slices read back, the epilogue, one more launch
        cycles += KERNEL_CLKS + splitk * nb * m * n * 4 / (L2_BYTES_PER_CLK * sms)
    return {"cycles": cycles, "issue": issue, "lds": lds, "l2": l2, "blocks": blocks,
            "waves": blocks / (sms * per_sm), "busiest_sm_blocks": busiest,
            "sm_balance": blocks / (busiest * sms), "blocks_per_sm": per_sm,
            "warps_per_smsp": smsp_warps, "instr_per_kstep": instr,
            "lds_per_kstep": lds_a + lds_b, "wavefronts_per_kstep": wf_a + wf_b,
            "bank_ways_a": wf_a / max(lds_a, 1), "bank_ways_b": wf_b / max(lds_b, 1),
            "ffma_share": tm * tn * bk / instr, "regs": regs, "shared_bytes": shared,
            "ksteps": ksteps}


def _ceil_div(a: int, b: int) -> int:
    return -(-a // b)
