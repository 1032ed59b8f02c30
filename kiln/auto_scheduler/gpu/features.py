"""Features of a GPU candidate, for the cost model: one fixed-length vector per program.

In: the task's GpuSpace, a GpuConfig and its lowered PrimFunc and launch plan.
Out: `features(...) -> np.ndarray` of len(FEATURE_NAMES) floats.
Why: the CPU features describe each store of a loop nest run by one core; what decides a GPU
kernel's speed is different: how many blocks there are per multiprocessor (waves,
occupancy), how much work each thread does between synchronisations, how many shared-memory
loads feed each FMA and whether a warp's accesses hit distinct banks, and whether global loads
are coalesced (the stride of threadIdx.x in their addresses). The names sit beside the
extractor so the two cannot drift apart, each documented in FEATURE_DOCS.
"""

from __future__ import annotations

import math

import numpy as np

from ...te import expr as E
from ...tir import gpu
from ...tir import stmt as S
from ...tir.simplify import simplify

KINDS = ("matmul", "conv", "rows", "injective", "simple")
FEATURE_NAMES = (
    *(f"kind_{k}" for k in KINDS),
    "kernels", "log2_blocks", "log2_threads", "warps_per_block", "blocks_per_sm", "occupancy",
    "waves", "log2_shared_bytes", "log2_flops_per_thread",
    "coalesced_loads", "broadcast_loads", "strided_loads", "mean_load_stride",
    "reg_tile", "smem_loads_per_fma", "bk", "pad", "vec", "splitk", "serial", "dbuf", "mma",
    "tx", "ty",
    "bank_ways_a", "bank_ways_b", "tile_waste",
    "sm_balance", "warps_per_smsp", "pipelined", "prefetch_regs", "lds_wavefronts_per_ffma",
    "model_log2_cycles",
)
FEATURE_DOCS = {
    **{f"kind_{k}": f"1 when the task's sketch is the {k} one" for k in KINDS},
    "kernels": "kernels launched (split-K adds the reduction kernel)",
    "log2_blocks": "log2 of the main kernel's blocks",
    "log2_threads": "log2 of threads per block",
    "warps_per_block": "warps per block",
    "blocks_per_sm": "resident blocks per SM (threads, 32 blocks, shared memory)",
    "occupancy": "resident threads per SM / 2048",
    "waves": "blocks / (SMs x resident blocks per SM)",
    "log2_shared_bytes": "log2(1 + shared bytes per block)",
    "log2_flops_per_thread": "log2(1 + flops / threads launched)",
    "coalesced_loads": "share of global loads whose address steps 1 with threadIdx.x",
    "broadcast_loads": "share of global loads the lanes of a warp share",
    "strided_loads": "share of global loads stepping more than 1 with threadIdx.x",
    "mean_load_stride": "mean threadIdx.x stride of global loads (capped at 64)",
    "reg_tile": "matmul: tm x tn accumulators per thread (conv: tf x tw)",
    "smem_loads_per_fma": "matmul: (tm + tn) / (tm tn) shared words per FMA",
    "bk": "matmul: reduction step per shared panel (conv: input channels per step)",
    "pad": "matmul: words of padding per k-contiguous panel row",
    "vec": "matmul: floats per thread per fetch",
    "splitk": "matmul: reduction slices",
    "serial": "matmul: 1 if the last slice of each tile sums the slices (one kernel)",
    "dbuf": "matmul: 1 if the shared panels are double-buffered (one barrier per k-step)",
    "mma": "matmul: 1 if the warps' products run on the tensor cores (m16n8k8, 3xTF32)",
    "tx": "matmul: threads along x", "ty": "matmul: threads along y (conv: over channels x rows)",
    "bank_ways_a": "matmul: wavefronts per shared load of a warp reading A's panel (1 = "
                   "conflict-free; topi.cuda_model, the width ptxas reads with included)",
    "bank_ways_b": "matmul: the same for B's panel",
    "tile_waste": "matmul, conv: padded output tiles / output elements",
    "sm_balance": "matmul: blocks / (SMs x blocks on the busiest SM); 1 = no wave "
                  "quantization (topi.cuda_model.matmul_estimate)",
    "warps_per_smsp": "matmul: warps the busiest SM scheduler runs (latency hiding and the "
                      "issue time of the whole kernel)",
    "pipelined": "1 when the CUDA printer stages the panel fetches through registers "
                 "(codegen.cuda.pipeline_fetches: next k-step's loads in flight)",
    "prefetch_regs": "values per thread the pipelined fetch holds in registers",
    "lds_wavefronts_per_ffma": "matmul: shared-memory wavefronts per FFMA instruction of a "
                               "warp's k-step, bank conflicts and float4 reads included (an SM "
                               "serves 1 per clock against 4 FFMA: above 0.25 LDS-bound)",
    "model_log2_cycles": "matmul: log2 of the static model's cycles (issue, shared memory, "
                         "L2, waves, split-K kernel; topi.cuda_model.matmul_estimate); conv: "
                         "of topi.cuda_conv.conv_estimate",
}
MAX_BLOCKS_PER_SM = 32


def features(space, cfg, func: S.PrimFunc, plan: dict) -> np.ndarray:
    out = dict.fromkeys(FEATURE_NAMES, 0.0)
    out[f"kind_{cfg.kind}"] = 1.0
    kernels, _ = gpu.split_kernels(func, space.target)
    main = max(kernels, key=lambda k: k.threads * _blocks(k))
    blocks, threads = _blocks(main), main.threads
    smem_limit = space.target.max_shared_memory_per_block
    per_sm_threads = space.target.max_threads_per_sm
    per_sm = min(MAX_BLOCKS_PER_SM, per_sm_threads // max(threads, 1),
                 (4 * smem_limit) // max(main.shared_bytes, 1))
    out.update(kernels=len(kernels), log2_blocks=math.log2(blocks),
               log2_threads=math.log2(threads), warps_per_block=math.ceil(threads / 32),
               blocks_per_sm=per_sm, occupancy=per_sm * threads / per_sm_threads,
               waves=blocks / max(space.target.sm_count * per_sm, 1),
               log2_shared_bytes=math.log2(1 + main.shared_bytes),
               log2_flops_per_thread=math.log2(1 + space.dag.flop_ct / (blocks * threads)))
    out.update(_load_strides(main))
    out.update(_pipelining(main))
    if cfg.kind == "matmul":
        out.update(_matmul(space, cfg.values()))
    elif cfg.kind == "conv":
        out.update(_conv(space, cfg.values()))
    return np.array([out[n] for n in FEATURE_NAMES], dtype=np.float32)


def _blocks(k) -> int:
    return k.grid[0] * k.grid[1] * k.grid[2]


def _thread_x_vars(body: S.Stmt) -> list:
    return [s.var for s in S.walk_stmts(body)
            if isinstance(s, S.For) and s.kind == "thread" and s.thread_tag == "threadIdx.x"]


def _global_loads(body: S.Stmt) -> list:
    out = []
    for s in S.walk_stmts(body):
        exprs = [s.index, s.value] if isinstance(s, S.Store) else []
        for e in exprs:
            out += [n for n in E.walk(e) if isinstance(n, S.BufferLoad)
                    and n.buffer.scope == "global"]
    return out


def _load_strides(kern) -> dict:
    """How the warp's lanes (consecutive threadIdx.x) address global memory."""
    txs = _thread_x_vars(kern.body)
    loads = _global_loads(kern.body)
    if not loads or not txs:
        return {}
    strides = []
    for ld in loads:
        free = [n for n in E.walk(ld.index) if isinstance(n, E.Var)]
        base = {v: E.IntImm(0, v.dtype) for v in free}
        step = {**base, **{v: E.IntImm(1, v.dtype) for v in txs if v in base}}
        d = simplify(E.substitute(ld.index, step) - E.substitute(ld.index, base))
        strides.append(abs(d.value) if isinstance(d, E.IntImm) else 64)
    n = len(strides)
    return {"coalesced_loads": sum(s == 1 for s in strides) / n,
            "broadcast_loads": sum(s == 0 for s in strides) / n,
            "strided_loads": sum(s > 1 for s in strides) / n,
            "mean_load_stride": float(np.mean(np.minimum(strides, 64)))}


def _pipelining(kern) -> dict:
    """Whether the printer's software pipelining applies, and the registers it holds."""
    from ...codegen.cuda import pipeline_fetches
    bufs = [s.buffer for s in S.walk_stmts(pipeline_fetches(kern.body))
            if isinstance(s, S.Allocate) and getattr(s.buffer, "prefetch_loops", None)
            is not None]
    return {"pipelined": float(bool(bufs)), "prefetch_regs": float(sum(b.size for b in bufs))}


def _estimate(space, k: dict) -> dict:
    from ...topi import cuda as tc
    from ...topi import cuda_model as cm
    mm, prologue = tc.matmul_parts(space.out)
    a, b = mm.op.input_tensors
    est = cm.matmul_estimate(cm.mm_shape(mm), {**k, "prologue": int(bool(prologue))},
                             space.target, (cm.k_last(mm, a), cm.k_last(mm, b)))
    ffma = k["tm"] * k["tn"] * k["bk"]
    return {"sm_balance": est["sm_balance"], "warps_per_smsp": est["warps_per_smsp"],
            "bank_ways_a": est["bank_ways_a"], "bank_ways_b": est["bank_ways_b"],
            "lds_wavefronts_per_ffma": est["wavefronts_per_kstep"] / ffma,
            "model_log2_cycles": math.log2(1 + est["cycles"])}


def _matmul(space, k: dict) -> dict:
    mm = space.out
    *_, i, j = (int(a.extent.value) for a in mm.op.axis)
    bm, bn = k["tm"] * k["ty"], k["tn"] * k["tx"]
    waste = (-(-i // bm) * bm * -(-j // bn) * bn) / (i * j)
    return {"reg_tile": k["tm"] * k["tn"],
            "smem_loads_per_fma": (k["tm"] + k["tn"]) / (k["tm"] * k["tn"]),
            "bk": k["bk"], "pad": k["pad"], "vec": k["vec"], "splitk": k["splitk"],
            "serial": k["serial"], "dbuf": k["dbuf"], "mma": k["mma"], "tx": k["tx"],
            "ty": k["ty"],
            "tile_waste": waste,
            **_estimate(space, k)}


def _conv(space, k: dict) -> dict:
    """The matmul features that mean the same for a convolution's tile (reg_tile tf x tw,
    bk = channels per step, ty = threads over channels, tx over columns), and the static
    estimate (topi.cuda_conv.conv_estimate)."""
    from ...topi import cuda_conv as tcv
    est = tcv.conv_estimate(space.conv_geometry, k, space.target)
    return {"reg_tile": k["tf"] * k["tw"], "smem_loads_per_fma": est["smem_words_per_fma"],
            "bk": k["bc"], "pad": k["pad"], "dbuf": k["dbuf"], "tx": k["tx"],
            "ty": k["ty"] * k["th"], "tile_waste": est["waste"],
            "model_log2_cycles": math.log2(1 + est["cycles"])}
