"""The GPU search space of one task: sketches and their knobs.

In: a task's ComputeDAG and its CUDA Target.
Out: `GpuSpace`: the sketch that fits the kernel (kiln.topi.cuda.kernel_kind: "matmul" =
multi-level tiling SSSRRSRS with shared-memory panels, a register tile, bound block / thread levels
and optional split-K; "conv" = the same structure over a convolution's channels, rows and
columns, its input patch and weights in shared memory (topi.cuda_conv); "rows" = one block per
row with cross-thread reductions (warp shuffles); "injective" and "simple" = flat thread
binding), the knobs each sketch leaves open (tile sizes, thread counts as warp multiples,
reduction step, row padding of the shared panels in words (0, 1, 2, 4: which one keeps a thread
tile's float4 reads conflict-free depends on tm / tn, topi.cuda_model.conflict_free_pad),
vector width of the cooperative fetch, reduction slices and whether the last slice of a tile
sums them in the same kernel, whether the panels are double-buffered, and whether the warps'
products run on the tensor cores in float32 accuracy (mma: 3xTF32)), random sampling, mutation
and crossover of knob values, and `state(config)`: the complete State (a Step list like any
other, so records replay it without this module).
Why: kiln's GPU schedules are written once (kiln.topi.cuda) with every tunable choice a
parameter; the search explores those parameters instead of re-deriving the structure, which
keeps every candidate structurally sound (bound threads, barriers, cooperative fetches).
Candidates are checked against the target's limits (threads per block, shared memory) by
lowering before they are scored or measured.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

from ...errors import KilnError
from ...schedule.facade import Schedule
from ...topi import cuda as tc
from ...topi import cuda_conv as tcv

WARP = 32
# knob -> candidate values, per sketch kind
_DOMAINS = {
    "matmul": {"tm": (1, 2, 4, 8), "tn": (1, 2, 4, 8), "tx": (4, 8, 16, 32),
               "ty": (1, 2, 4, 8, 16, 32), "bk": (4, 8, 16, 32), "pad": (0, 1, 2, 4),
               "vec": (1, 2, 4), "splitk": (1, 2, 3, 4, 6, 8, 12, 16), "serial": (0, 1),
               "dbuf": (0, 1), "mma": (0, 1)},
    "conv": {"tf": (1, 2, 4, 8), "tw": (1, 2, 4), "ty": (1, 2, 4, 8, 16), "th": (1, 2, 4, 8),
             "tx": (4, 8, 16, 32), "bc": (1, 2, 4, 8, 16, 32), "pad": (0, 1), "dbuf": (0, 1)},
    "rows": {"threads": (32, 64, 128, 256, 512)},
    "injective": {"threads": (64, 128, 256, 512, 1024)},
    "simple": {"threads": (32, 64, 128, 256, 512)},
}


# knobs added after records were written: the value those records were measured with
LEGACY_KNOBS = {"matmul": {"serial": 0, "dbuf": 0, "mma": 0}}


@dataclass(frozen=True)
class GpuConfig:
    """One point of the space: the sketch kind and its knob values (sorted name pairs)."""

    kind: str
    knobs: tuple

    def get(self, name: str):
        return dict(self.knobs)[name]

    def to_json(self) -> dict:
        return {"kind": self.kind, **dict(self.knobs)}

    def values(self) -> dict:
        """The knob values, with LEGACY_KNOBS for knobs the config predates."""
        return {**LEGACY_KNOBS.get(self.kind, {}), **dict(self.knobs)}


class GpuSpace:
    """The knob space of one task on one CUDA target."""

    def __init__(self, dag, target):
        self.dag, self.target = dag, target
        self.out = dag.outputs[0].output(0)
        self.kind = tc.kernel_kind(self.out)
        # a conv task's convolution stage and shapes, found once (the features and every
        # candidate's schedule read them)
        self.conv = tcv.conv_stage(self.out) if self.kind == "conv" else None
        self.conv_geometry = tcv.conv_geometry(self.conv) if self.conv is not None else None
        self.domains = self._domains()
        self._checked: dict = {}

    def _domains(self) -> dict:
        dom = {k: tuple(v) for k, v in _DOMAINS[self.kind].items()}
        if self.kind == "matmul":
            mm, prologue = tc.matmul_parts(self.out)
            k = int(mm.op.reduce_axis[0].extent.value)
            dom["bk"] = tuple(b for b in dom["bk"] if b <= k) or (1,)
            dom["splitk"] = (1,) if prologue else tuple(
                s for s in dom["splitk"] if k // s >= max(dom["bk"][0], 16) or s == 1)
        if self.kind == "conv":
            dom["bc"] = tcv.channel_steps(self.conv_geometry["c"])
        return dom

    # ------------------------------------------------------------ sketches
    def sketch_text(self) -> str:
        """What the sketch of this task is, in words (for inspection)."""
        return {"matmul": "multi-level tiling SSSRRSRS: blockIdx tiles, threadIdx tiles, a "
                          "register tile; the reduction split around shared-memory panels "
                          "fetched cooperatively (optionally double-buffered); optional split-K; "
                          "epilogue fused",
                "conv": "direct convolution, multi-level tiling of channels, rows and "
                        "columns (blockIdx tiles, threadIdx.z/y/x, a register tile of tf "
                        "channels x tw columns); input channels in steps around shared-memory "
                        "panels of the input patch (with its halo) and the weights, fetched "
                        "cooperatively; epilogue fused",
                "rows": "one block per row; each reduction a cross-thread reduction "
                        "(a strided share per thread, combined by warp shuffles); "
                        "elementwise work inlined",
                "injective": "all loops fused, split by the thread count, bound",
                "simple": "each reduction its own kernel, one thread per output element"
                }[self.kind]

    # ------------------------------------------------------------ sampling
    def default(self) -> GpuConfig:
        """The default schedule's knob values (what an untuned build uses)."""
        if self.kind == "matmul":
            mm, prologue = tc.matmul_parts(self.out)
            t = tc.matmul_tiles(mm, self.target, bool(prologue))
            knobs = {"pad": 1, "vec": 1, **t}
        elif self.kind == "conv":
            knobs = tcv.conv_tiles(self.conv, self.target)
        else:
            knobs = {"threads": {"rows": 128, "injective": 256, "simple": 256}[self.kind]}
        return self._config(knobs)

    def _config(self, knobs: dict) -> GpuConfig:
        """Every knob of the sketch present (those the caller leaves out: LEGACY_KNOBS)."""
        full = {**LEGACY_KNOBS.get(self.kind, {}), **knobs}
        return GpuConfig(self.kind, tuple(sorted(full.items())))

    def sample(self, rng: random.Random) -> GpuConfig:
        for _ in range(64):
            cfg = self._config({k: rng.choice(v) for k, v in self.domains.items()})
            if self.plausible(cfg):
                return cfg
        return self.default()

    def mutate(self, cfg: GpuConfig, rng: random.Random) -> GpuConfig:
        knobs = cfg.values()
        name = rng.choice(sorted(self.domains))
        values = self.domains[name]
        i = values.index(knobs[name]) if knobs[name] in values else 0
        knobs[name] = values[max(0, min(len(values) - 1, i + rng.choice((-1, 1))))] \
            if rng.random() < 0.7 else rng.choice(values)
        out = self._config(knobs)
        return out if self.plausible(out) else cfg

    def crossover(self, a: GpuConfig, b: GpuConfig, rng: random.Random) -> GpuConfig:
        da, db = a.values(), b.values()
        out = self._config({k: (da if rng.random() < 0.5 else db)[k] for k in da})
        return out if self.plausible(out) else a

    def plausible(self, cfg: GpuConfig) -> bool:
        """Cheap checks before lowering: a warp-multiple thread count within the limit, and
        for tensor-core tiles the fragment shapes (schedule_matmul(mma=1))."""
        k = cfg.values()
        threads = k["tx"] * k["ty"] * k.get("th", 1) if self.kind in ("matmul", "conv") \
            else k["threads"]
        if self.kind == "matmul" and k["mma"] and (
                k["tm"] % 2 or k["tn"] % 2 or k["tx"] % 4 or k["ty"] % 8 or k["bk"] % 8 or
                not self.target.tf32_tensor_cores):
            return False
        return threads % WARP == 0 and threads <= self.target.max_threads_per_block

    # ------------------------------------------------------------ states
    def state(self, cfg: GpuConfig):
        """The complete State of `cfg` (raises ScheduleError when the knobs do not apply)."""
        s = Schedule.from_state(self.dag, self.dag.init_state())
        k = cfg.values()
        if cfg.kind == "matmul":
            tc.schedule_matmul(s, self.out, tc.matmul_parts(self.out)[0], tm=k["tm"], tn=k["tn"],
                               tx=k["tx"], ty=k["ty"], bk=k["bk"], pad=int(k["pad"]),
                               vec=k["vec"], splitk=k["splitk"], serial=k["serial"],
                               dbuf=k["dbuf"], mma=k["mma"])
        elif cfg.kind == "conv":
            tcv.schedule_conv2d(s, self.out, self.conv, **k)
        elif cfg.kind == "rows":
            tc.schedule_rows(s, self.out, threads=k["threads"])
        elif cfg.kind == "injective":
            tc.schedule_injective(s, self.out, threads=k["threads"])
        else:
            tc.schedule_simple(s, self.out, threads=k["threads"])
        return s.state

    def lowered(self, cfg: GpuConfig, args: list):
        """(state, PrimFunc, launch plan) of a config that fits the target, or None (the
        reason is kept in `self.rejected[cfg]`)."""
        if cfg in self._checked:
            return self._checked[cfg]
        from ...codegen import cuda
        from ...tir.lower import lower
        try:
            state = self.state(cfg)
            func = lower(state, args, "default_function")
            out = (state, func, cuda.launch_plan(func, self.target))
        except KilnError:
            out = None
        self._checked[cfg] = out
        return out
