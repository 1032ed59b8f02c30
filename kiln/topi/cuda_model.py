"""A static performance model of one tiled matmul kernel on an NVIDIA multiprocessor.

In: a matmul's shape (batch, M, N, K), schedule_matmul's knobs (thread tile, threads, bk, pad,
fetch width, split-K, double buffering), which panels are k-contiguous, and the CUDA Target.
Out: `matmul_estimate(...) -> dict`: cycles on the busiest scheduler and their parts (issue,
shared-memory wavefronts, L2), the launch shape, bank-conflict ways, estimated registers.
Why: default tiles (topi.cuda_tiles.matmul_tiles), cost-model features and the GPU search's prior
(auto_scheduler.gpu) and scripts/sass_report.py all ask the same question, "how fast is this
tile here", and answer it with this one model. Machine facts (SMs, per-SM registers, shared
memory and threads, per-block limits) come from the Target; the per-SM pipe rates below are
those of Ampere and Hopper SMs (sm_80 / sm_90 alike), which no driver attribute reports.
"""

from __future__ import annotations

from ..te import expr as E


def as_cuda(target):
    from ..target import as_target
    return as_target(target or "cuda -arch=sm_90")


# A written-down model of one tiled matmul kernel on an SM of the Hopper / Ampere kind, used
# to choose default tiles (topi.cuda_tiles), as cost-model features (auto_scheduler.gpu.features)
# and by scripts/sass_report.py. Machine facts come from the Target (SMs; registers, shared
# memory and threads per SM); the pipe rates below are Hopper's (sm_80 / sm_90 alike):
# - 4 schedulers (SMSPs) per SM, each issues one warp instruction per clock; FFMA runs at one
#   warp instruction per clock per SMSP (128 FFMA lanes per SM);
# - shared memory serves one 128-byte wavefront per clock per SM; a warp-wide LDS costs as
#   many wavefronts as the most distinct words any one of the 32 banks holds (at least its
#   bytes / 128);
# - a warp's instructions per k-step (bk reduction elements): tm*tn*bk FFMA, the LDS that read
#   the thread tile (LDS.128 along k when the tile rows are 16-byte aligned: ptxas reads a
#   padded tile as one contiguous run of float4), the cooperative fetch (LDG + STS, float4
#   when vec = 4 and the shared rows stay 16-byte aligned), two barriers (one when the
#   panels are double-buffered, with twice the shared memory) and ~8 others;
# - blocks are dealt to SMs round robin: the busiest SM runs ceil(blocks / SMs) blocks, its
#   warps spread over the 4 SMSPs; issue time is that SMSP's instructions divided by an issue
#   efficiency that grows with the warps it can switch between (ISSUE_EFF; one warp per SMSP
#   stalls on barriers and load latency about 30% of the time);
# - the panels come from L2 (ld.global.cg) at L2_BYTES_PER_CLK per SM;
# - the kernel takes about the largest of the issue, shared-memory and L2 times; they overlap
#   imperfectly, so the model sums them as a 4-norm (two equal parts: 1.19x either), which
#   also breaks near-ties toward conflict-free shared reads; split-K adds a second kernel
#   (KERNEL_CLKS) that reads the slices back, or (serial) the last slice of each tile reads
#   them back at the end of the same kernel (HANDOFF_CLKS, a round trip to L2 per group of
#   elements a thread sums at once, over fewer SMs when tiles are few);
# - a row prologue (cfg "prologue") adds its instructions once per block: every column block
#   of a row band computes the band's statistics again.
SMSP_PER_SM = 4
LDS_BANKS = 32
L2_BYTES_PER_CLK = 32          # per SM: ~7 TB/s of L2 bandwidth over 132 SMs at ~1.7 GHz
KERNEL_CLKS = 3000             # one more kernel in the launch sequence (~1.7 us)
HANDOFF_CLKS = 800             # serial split-K: fence, arrival atomic, barriers, a tail
L2_LATENCY_CLKS = 300          # one dependent round trip to L2
HANDOFF_LOADS = 48             # slice loads a thread of the last block keeps in flight
# a row prologue (softmax before P.V, topi.cuda.matmul_parts), per A element of the block:
# two passes (max; exp and sum) and the exp when the panel is fetched; per row a cross-thread
# reduction of each statistic (shuffles, per warp)
PROLOGUE_INSTR = 10
ALLREDUCE_INSTR = 20
ISSUE_EFF = (0.0, 0.7, 0.85, 0.95)  # by resident warps per SMSP (1, 2, 3+)
# double-buffered panels (dbuf): one barrier per k-step instead of two, and the shared-memory
# stores overlap other warps' arithmetic instead of sitting between two barriers. A guess
# until measured (the GPU search measures dbuf 0 and 1)
ISSUE_EFF_DBUF = (0.0, 0.78, 0.9, 0.95)


# tensor cores (schedule_matmul(mma=1), 3xTF32): each m16n8k8 product is 3 HMMA.1688.TF32
# instructions; mma.sync keeps a Hopper SM's tensor cores busy only part of the time (the
# full rate needs wgmma): about MMA_CLKS cycles of an SM sub-partition per HMMA, a guess
# until measured (A100's TF32 rate is 8; the GPU search measures mma 0 and 1). Each operand
# value the warp loads from shared memory costs 3 more instructions (a mask that keeps its
# TF32 part, the subtraction that leaves the rest, a mask of that: KILN_TF32_SPLIT).
MMA_CLKS = 8
MMA_SPLIT_INSTR = 3


def mma_wavefronts(words) -> int:
    """Wavefronts of one warp-wide scalar shared load of `words` (the 32 lanes' addresses):
    the most distinct words that fall in one bank."""
    banks: dict = {}
    for w in words:
        banks.setdefault(w % LDS_BANKS, set()).add(w)
    return max(len(v) for v in banks.values())


def mma_panel_reads(t: int, bk: int, pad: int, kcontig: bool, rows: int, b_side: bool) -> tuple:
    """(LDS instructions, wavefronts) per warp and k-step loading one panel's tensor-core
    fragments (codegen.cuda_mma): lane (g, t') reads row g t + c of an A panel, or row
    g t / 2 + c of a B panel, at column k = t' (+ 4, + 8 ...); `rows` is the panel's row
    count (the stride of a k-major panel)."""
    def row(lane):
        g = lane // 4
        return g * (t // 2) if b_side else g * t
    stride = bk + pad
    words = [(row(ln) * stride + ln % 4) if kcontig else ((ln % 4) * rows + row(ln))
             for ln in range(32)]
    per_step = (2 if b_side else 4) * (t // 2) * (bk // 8)
    return per_step, per_step * mma_wavefronts(words)


def mma_b_pad(tn: int, bk: int) -> int:
    """The row pad of a k-contiguous B panel that keeps its tensor-core fragment reads
    conflict-free (the smallest of 0, 1, 2, 4 with the fewest wavefronts); the A panel's
    pad stays the schedule's `pad` (a trade between its fragment reads and 16-byte stores)."""
    return min((0, 1, 2, 4), key=lambda p: (mma_panel_reads(tn, bk, p, True, 1, True)[1], p))


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


def handoff_unroll(per_thread: int, slices: int) -> int:
    """How many of a thread's elements the last block sums at once: loads in flight up to
    about HANDOFF_LOADS (the main loop's accumulators and panel registers are dead by then,
    and it holds more: no occupancy is lost), and a divisor of per_thread: an uneven split
    would run past the tile into elements whose slices another tile's last block sums
    (nothing orders those reads)."""
    most = max(1, HANDOFF_LOADS // max(slices, 1))
    return max(d for d in range(1, min(per_thread, most) + 1) if per_thread % d == 0)


def matmul_estimate(shape: tuple, cfg: dict, target=None, kcontig=(True, True)) -> dict:
    """The static model above for a matmul of `shape` = (batch, M, N, K) under schedule_matmul
    knobs `cfg`; `kcontig` says which panels are k-contiguous (A and B of C = A B^T).
    Returns cycles (on the busiest SMSP, plus split-K's second kernel), its parts and the
    launch shape: blocks, waves, blocks_per_sm, warps_per_smsp, instructions and LDS
    wavefronts per warp and k-step, bank_ways_a / _b, regs (estimated), shared_bytes."""
    target = as_cuda(target)
    nb, m, n, k = shape
    tm, tn, tx, ty, bk = (int(cfg[x]) for x in ("tm", "tn", "tx", "ty", "bk"))
    pad, vec, splitk = int(cfg.get("pad", 1)), int(cfg.get("vec", 1)), int(cfg.get("splitk", 1))
    splitk = -(-k // -(-k // max(splitk, 1)))  # the slices split(nparts=splitk) really makes
    bm, bn, threads = tm * ty, tn * tx, tx * ty
    warps = -(-threads // 32)
    blocks = nb * -(-m // bm) * -(-n // bn) * splitk
    slice_k = -(-k // splitk)
    ksteps = -(-slice_k // bk)
    lanes_x, lanes_y = min(tx, 32), max(1, min(ty, 32 // max(tx, 1)))
    pa, pb = (pad if kc else 0 for kc in kcontig)
    if int(cfg.get("mma", 0)) and kcontig[1]:
        pb = mma_b_pad(tn, bk)
    lds_a, wf_a = panel_reads(tm, lanes_y, bk, pa, kcontig[0])
    lds_b, wf_b = panel_reads(tn, lanes_x, bk, pb, kcontig[1])
    per_thread = (bm + bn) * bk / threads
    sts_vec = vec if all((bk + p) % vec == 0 for p in (pa, pb)) else 1
    fetch = per_thread / vec + per_thread / sts_vec
    dbuf = int(cfg.get("dbuf", 0))
    mma = int(cfg.get("mma", 0))
    hmma = 3 * (tm // 2) * (tn // 2) * (bk // 8) if mma else 0
    if mma:  # fragments instead of the thread tile's rows and columns
        lds_a, wf_a = mma_panel_reads(tm, bk, pa, kcontig[0], bm, False)
        lds_b, wf_b = mma_panel_reads(tn, bk, pb, kcontig[1], bn, True)
        math = hmma + MMA_SPLIT_INSTR * (lds_a + lds_b)
    else:
        math = tm * tn * bk
    instr = math + lds_a + lds_b + fetch + 10 - dbuf
    shared = (4 * (bm * (bk + pa) if kcontig[0] else bm * bk) +
              4 * (bn * (bk + pb) if kcontig[1] else bn * bk)) * (2 if dbuf else 1)
    regs = min(255, tm * tn + 2 * (tm + tn) * 4 + int(per_thread) + 24)
    if mma:  # each fragment value in two TF32 parts
        regs = min(255, tm * tn + 2 * (2 * tm + tn) + int(per_thread) + 24)
    per_sm = max(1, min(32, target.max_threads_per_sm // 32 // warps,
                        target.max_registers_per_sm // (regs * warps * 32),
                        target.max_shared_memory_per_sm // max(shared, 1)))
    sms = target.sm_count
    busiest = -(-blocks // sms)
    resident = min(busiest, per_sm) * warps
    smsp_warps = -(-busiest * warps // SMSP_PER_SM)
    eff = (ISSUE_EFF_DBUF if dbuf else ISSUE_EFF)[min(3, -(-resident // SMSP_PER_SM))]
    issue = smsp_warps * ksteps * instr / eff
    if int(cfg.get("prologue", 0)):  # row statistics of the A operand, then its normalizing
        issue += smsp_warps * (bm * k / threads * PROLOGUE_INSTR + 2 * tm * ALLREDUCE_INSTR) \
            / eff
    lds = busiest * warps * ksteps * (wf_a + wf_b)
    l2 = busiest * ksteps * 4 * (bm + bn) * bk / L2_BYTES_PER_CLK
    tensor = smsp_warps * ksteps * hmma * MMA_CLKS
    cycles = (issue ** 4 + lds ** 4 + l2 ** 4 + tensor ** 4) ** 0.25
    if splitk > 1 and int(cfg.get("serial", 0)):  # the last slice of each tile sums them
        tiles = blocks // splitk
        per_thread = max(1, bm * bn // threads)
        rounds = per_thread // handoff_unroll(per_thread, splitk)
        cycles += HANDOFF_CLKS + rounds * L2_LATENCY_CLKS + \
            splitk * nb * m * n * 4 / (L2_BYTES_PER_CLK * min(sms, tiles))
    elif splitk > 1:  # the second kernel: slices read back, the epilogue, one more launch
        cycles += KERNEL_CLKS + splitk * nb * m * n * 4 / (L2_BYTES_PER_CLK * sms)
    return {"cycles": cycles, "issue": issue, "lds": lds, "l2": l2, "blocks": blocks,
            "waves": blocks / (sms * per_sm), "busiest_sm_blocks": busiest,
            "sm_balance": blocks / (busiest * sms), "blocks_per_sm": per_sm,
            "warps_per_smsp": smsp_warps, "instr_per_kstep": instr,
            "lds_per_kstep": lds_a + lds_b, "wavefronts_per_kstep": wf_a + wf_b,
            "bank_ways_a": wf_a / max(lds_a, 1), "bank_ways_b": wf_b / max(lds_b, 1),
            "ffma_share": (hmma if mma else tm * tn * bk) / instr,  # FFMA, or HMMA with mma
            "regs": regs, "shared_bytes": shared,
            "ksteps": ksteps, "tensor": tensor}


def k_last(mm, t) -> bool:
    """Whether the matmul reads `t` with the reduction index last (a k-contiguous panel, as
    A and B of C = A B^T). Only such panels are padded: their threads read along columns of
    the panel. A k-major panel (B of C = A B) is read along its rows, consecutive threads
    consecutive 4-float chunks, conflict-free unpadded; padding it would only misalign the
    rows (no 16-byte shared loads)."""
    ks = {id(r) for r in mm.op.reduce_axis}
    loads = [x for x in E.walk(mm.op.body[0]) if isinstance(x, E.TensorLoad) and
             x.tensor.op is t.op]
    return not loads or any(id(v) in ks for x in loads for v in E.walk(x.indices[-1]))


def mm_shape(mm) -> tuple:
    """(batch, M, N, K) of a matmul stage."""
    *batch, i, j = (int(a.extent.value) for a in mm.op.axis)
    nb = 1
    for b in batch:
        nb *= b
    return nb, i, j, int(mm.op.reduce_axis[0].extent.value)
