"""Default tile sizes of the GPU matmul (topi.cuda.schedule_matmul), chosen by the static model.

In: a matmul stage and a CUDA Target (or its text).
Out: `matmul_tiles(mm, target, prologue)`: the FMA schedule's knobs with the fewest modelled
cycles (what untuned builds use); `matmul_tiles_mma(mm, target)`: the same among tiles on
the tensor cores (schedule_matmul(mma=1)), or None where none fits.
Why apart: topi.cuda writes schedules, topi.cuda_model estimates them; choosing among
candidates by the estimate is a third job, shared by the default schedules, the GPU search's
starting point and the benchmarks' sweeps.
"""

from __future__ import annotations

import itertools

from .cuda_model import as_cuda, k_last, matmul_estimate, mm_shape

MIN_SLICE = 128  # fewest reduction elements per split-K slice
# (tm, tn, tx, ty): thread tile and threads, most preferred first
_TILES = [(8, 4, 8, 16), (8, 8, 8, 8), (4, 8, 16, 8), (8, 4, 8, 8), (4, 4, 8, 16),
          (4, 4, 16, 8), (4, 4, 8, 8), (2, 4, 8, 4), (4, 2, 8, 4), (1, 4, 8, 4),
          (1, 1, 8, 4)]


def pow2_floor(n: int) -> int:
    return 1 << (max(int(n), 1).bit_length() - 1)


def matmul_tiles(mm, target=None, prologue: bool = False) -> dict:
    """Tile sizes for schedule_matmul on `target` (a CUDA Target or its text; default
    sm_90): the candidate (thread tile, threads, row pad, split-K slices, double buffering)
    with the fewest cycles under `matmul_estimate`, ties to the larger block tile, then to
    fewer shared-memory wavefronts (bank conflicts). Panels are fetched 4 floats per thread
    when rows allow it (float4 global loads; the CUDA printer stages them through
    registers). With a row prologue (topi.cuda.matmul_parts): no split-K and a power-of-two
    tx."""
    target = as_cuda(target)
    k = mm_shape(mm)[3]
    bk = min(16, pow2_floor(k))
    vec = 4 if k % 4 == 0 and bk % 4 == 0 else 1

    def candidates():
        for rank, (tm, tn, tx, ty) in enumerate(_TILES):
            if tx * ty > target.max_threads_per_block or (prologue and tx & (tx - 1)):
                continue
            splits = [1] if prologue else _split_options(k, bk)
            for pad, splitk, dbuf in itertools.product((1, 2, 4, 0), splits, (1, 0)):
                yield dict(tm=tm, tn=tn, tx=tx, ty=ty, bk=bk, pad=pad, vec=vec, splitk=splitk,
                           serial=1, dbuf=dbuf), (rank,)
    return _best(mm, target, candidates(), {"prologue": int(prologue)},
                 lambda cfg, est, rank: (*rank, est["wavefronts_per_kstep"], cfg["pad"],
                                         cfg["splitk"], -cfg["dbuf"]))


def matmul_tiles_mma(mm, target=None) -> dict | None:
    """The tensor-core tiles (schedule_matmul(mma=1)) with the fewest cycles under
    `matmul_estimate`, or None when no tile divides the matmul or the target has no TF32
    tensor cores. Not the default: measured, not modelled, speed decides (gemm_gpu.py and
    the GPU search try them)."""
    target = as_cuda(target)
    if not target.tf32_tensor_cores:
        return None
    _, i, j, k = mm_shape(mm)

    def candidates():
        for tm, tn, tx, ty, bk in itertools.product((2, 4, 8), (2, 4, 8), (4, 8, 16), (8, 16),
                                                    (8, 16, 32)):
            if i % (tm * ty) or j % (tn * tx) or k % bk or tx * ty > 256:
                continue
            for pad, splitk, dbuf in itertools.product((0, 1, 2, 4), _split_options(k, bk),
                                                       (1, 0)):
                yield dict(tm=tm, tn=tn, tx=tx, ty=ty, bk=bk, pad=pad, vec=4, splitk=splitk,
                           serial=1, dbuf=dbuf, mma=1), ()
    return _best(mm, target, candidates(), {},
                 lambda cfg, est, rank: (cfg["pad"], cfg["splitk"], -cfg["dbuf"]))


def _best(mm, target, candidates, extra: dict, tie) -> dict | None:
    """The candidate config (with its rank) of the fewest modelled cycles that fits shared
    memory; ties to the larger block tile, then to the smallest tie(cfg, estimate, rank)."""
    shape = mm_shape(mm)
    kcontig = tuple(k_last(mm, t) for t in mm.op.input_tensors)
    best = None
    for cfg, rank in candidates:
        est = matmul_estimate(shape, {**cfg, **extra}, target, kcontig)
        if est["shared_bytes"] > target.max_shared_memory_per_block:
            continue
        score = (round(est["cycles"], -2), -cfg["tm"] * cfg["ty"] * cfg["tn"] * cfg["tx"],
                 *tie(cfg, est, rank))
        if best is None or score < best[0]:
            best = (score, cfg)
    return None if best is None else best[1]


def _split_options(k: int, bk: int) -> list:
    """Slice counts that cut k into whole bk steps of >= MIN_SLICE elements (1 always)."""
    steps = k // bk
    return [d for d in range(1, min(steps, 32) + 1) if d == 1 or
            (steps % d == 0 and k // d >= MIN_SLICE)]
