"""Features of a GPU candidate, for the cost model: one fixed-length vector per program.

In: the task's GpuSpace, a GpuConfig and its lowered PrimFunc and launch plan.
Out: `features(...) -> np.ndarray` of len(FEATURE_NAMES) floats.
Why: the CPU features describe each store of a loop nest run by one core; what decides a GPU
kernel's speed is different: how many blocks there are per multiprocessor (waves,
occupancy), how much work each thread does between synchronisations, how many shared-memory
loads feed each FMA and whether a warp's accesses hit distinct banks, and whether global loads
are coalesced (the stride of threadIdx.x in their addresses). The names sit beside the
extractor so the two cannot drift apart.
"""

from __future__ import annotations

import math

import numpy as np

from ...te import expr as E
from ...tir import gpu
from ...tir import stmt as S
from ...tir.simplify import simplify

KINDS = ("matmul", "rows", "injective", "simple")
FEATURE_NAMES = (
    *(f"kind_{k}" for k in KINDS),
    "kernels", "log2_blocks", "log2_threads", "warps_per_block", "blocks_per_sm", "occupancy",
    "waves", "log2_shared_bytes", "log2_flops_per_thread",
    "coalesced_loads", "broadcast_loads", "strided_loads", "mean_load_stride",
    "reg_tile", "smem_loads_per_fma", "bk", "pad", "vec", "splitk", "tx", "ty",
    "bank_ways_a", "bank_ways_b", "tile_waste",
)
MAX_BLOCKS_PER_SM = 32
MAX_THREADS_PER_SM = 2048


def features(space, cfg, func: S.PrimFunc, plan: dict) -> np.ndarray:
    out = dict.fromkeys(FEATURE_NAMES, 0.0)
    out[f"kind_{cfg.kind}"] = 1.0
    kernels, _ = gpu.split_kernels(func, space.target)
    main = max(kernels, key=lambda k: k.threads * _blocks(k))
    blocks, threads = _blocks(main), main.threads
    smem_limit = space.target.max_shared_memory_per_block
    per_sm = min(MAX_BLOCKS_PER_SM, MAX_THREADS_PER_SM // max(threads, 1),
                 (4 * smem_limit) // max(main.shared_bytes, 1))
    out.update(kernels=len(kernels), log2_blocks=math.log2(blocks),
               log2_threads=math.log2(threads), warps_per_block=math.ceil(threads / 32),
               blocks_per_sm=per_sm, occupancy=per_sm * threads / MAX_THREADS_PER_SM,
               waves=blocks / max(space.target.sm_count * per_sm, 1),
               log2_shared_bytes=math.log2(1 + main.shared_bytes),
               log2_flops_per_thread=math.log2(1 + space.dag.flop_ct / (blocks * threads)))
    out.update(_load_strides(main))
    if cfg.kind == "matmul":
        out.update(_matmul(space, dict(cfg.knobs)))
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


def _bank_ways(lanes: int, step: int) -> float:
    """Shared-memory wavefronts per warp-wide load when `lanes` distinct threads read
    addresses `step` words apart (the others broadcast)."""
    lanes = max(1, min(lanes, 32))
    banks = {(i * step) % 32 for i in range(lanes)}
    return lanes / len(banks)


def _matmul(space, k: dict) -> dict:
    row = k["bk"] + (1 if k["pad"] else 0)
    mm = space.out
    *_, i, j = (int(a.extent.value) for a in mm.op.axis)
    bm, bn = k["tm"] * k["ty"], k["tn"] * k["tx"]
    waste = (-(-i // bm) * bm * -(-j // bn) * bn) / (i * j)
    return {"reg_tile": k["tm"] * k["tn"],
            "smem_loads_per_fma": (k["tm"] + k["tn"]) / (k["tm"] * k["tn"]),
            "bk": k["bk"], "pad": k["pad"], "vec": k["vec"], "splitk": k["splitk"],
            "tx": k["tx"], "ty": k["ty"],
            "bank_ways_a": _bank_ways(max(1, 32 // k["tx"]), k["tm"] * row),
            "bank_ways_b": _bank_ways(k["tx"], k["tn"] * row), "tile_waste": waste}
