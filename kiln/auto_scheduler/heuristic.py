"""A deterministic, sensible Genome for a sketch (the tuner's first guess and the default
schedule of untuned graph kernels).

In: a SketchInfo and a Target. Out: a Genome whose multi-level tiles make a register tile of
rows x cols (cols = up to 2 vector registers, rows 4-8 within half the vector register file),
a reduction inner tile of up to 8, parallel outer tiles, vectorized innermost loops and
auto-unroll 64. Seeding the search with it means tuning starts from a good point and a tuned
kernel is never worse than the untuned default.
"""

from __future__ import annotations

from ..schedule.steps import CacheReadStep, SplitStep
from ..target import Target
from .annotate import Genome, SketchInfo, divisors

MAX_VECTOR = 64
UNROLL = 64
EDGE_SHARE = 8  # an edge tile is worth it when it is at most 1 / EDGE_SHARE of the axis


def _largest_divisor(n: int, limit: int) -> int:
    return max(d for d in divisors(n) if d <= limit)


def first_divisor(n: int, preferred: list, limit: int) -> int:
    for d in preferred:
        if d > 0 and n % d == 0:
            return d
    return _largest_divisor(n, limit)


class _TilePlan:
    """Tile sizes for the spatial/reduce axes of one multi-level-tiled stage."""

    def __init__(self, stage, target: Target, dtype: str, innermost: str | None = None):
        lanes = target.vector_lanes(dtype) if dtype in ("float32", "float64", "int32") else 4
        regs = 32 if target.vector_bytes == 64 else 16
        axes = [(a.name, int(a.extent.value)) for a in stage.compute.axis]
        big = [(n, e) for n, e in axes if e > 1]
        if innermost is not None and innermost in dict(big):  # the sketch's vectorized axis
            big = [(n, e) for n, e in big if n != innermost] + [(innermost, dict(big)[innermost])]
        self.inner: dict = {}
        if big:
            cname, cext = big[-1]
            cols = first_divisor(cext, [2 * lanes, lanes], 2 * lanes)
            if cols < lanes // 2 and cext > 2 * lanes:
                # a prime-ish extent (ViT's 197 keys): one vector of columns with an edge
                # guard (the C printer peels it: only the last tile runs scalar) beats
                # scalar columns everywhere
                cols = lanes
            elif cols % lanes and cext > 2 * lanes and \
                    (cext % (2 * lanes)) * EDGE_SHARE <= cext:
                # no vector multiple divides (Whisper's 1500 keys: 30 = 16 + 8 + 4 + 2 lanes,
                # half the FMA slots empty): two full vectors and an edge tile. Only where
                # the edge is a small share of the axis: where the tile loop is fused into the
                # parallel loop the C printer cannot split the edge off and it runs lane by
                # lane (a depthwise conv's 56 columns as 32 + 24: 0.75 ms against 0.2 as
                # 2 x 28 = 16 + 8 + 4 lanes; 196 pixels as 6 x 32 + 4 lose 2% to the edge)
                cols = 2 * lanes
            self.inner[cname] = cols
            if len(big) > 1:
                rname, rext = big[-2]
                nvec = max(1, -(-cols // lanes))
                fits = [d for d in divisors(rext) if d <= 8 and d * nvec <= regs // 2]
                rows = max(fits) if fits else 1
                if rows < 4 and regs == 16 and nvec == 2 and cols == 2 * lanes and \
                        _is_conv(stage):
                    # 16 registers (AVX2), a convolution whose row extent has no divisor in
                    # 4..8 but 5..8 for one vector (ResNet's 7x7 and 14x14 maps: 2 x 16 or
                    # 1 x 16 tiles, one FMA per load): rows x one vector keeps more FMAs per
                    # load. Not for products: Swin's 49-token windows lost 2x that way
                    one = [d for d in divisors(rext) if 4 < d <= 8 and d + 3 <= regs]
                    if one:
                        rows, cols = max(one), lanes
                        self.inner[cname] = cols
                if rows < 4 and rext > 16:
                    # a prime-ish extent (ViT's 197 tokens): a full-height tile whose last
                    # one overhangs (lowering computes the overhang from clamped rows, no
                    # test per point) beats 1-row tiles that reload every weight vector
                    # (ViT-B/16's 197 x 768 x 3072 dense on a Xeon, interleaved: 4 rows 86,
                    # 6 rows 111, 8 rows 132 GFLOPS): the tallest the registers hold
                    rows = max([d for d in range(8, 3, -1) if d * nvec <= regs // 2] or [2])
                self.inner[rname] = rows
        red = [(a.name, int(a.extent.value)) for a in stage.compute.reduce_axis]
        if red:
            kname, kext = red[-1]
            self.inner[kname] = kext if kext <= 8 else first_divisor(kext, [8, 4, 16], 16)

    def lengths(self, name: str, n: int) -> tuple:
        return (1,) * (n - 1) + (self.inner.get(name, 1),)


def _is_conv(stage) -> bool:
    """A convolution stage (or its register-tile accumulator), by the topi tag."""
    op = stage.op
    tags = (getattr(op, "tag", "") or "", getattr(getattr(op, "_orig", None), "tag", "") or "")
    return any("conv2d" in t for t in tags) or "conv" in op.name


def _lane_split(steps: list, k: int) -> bool:
    """Whether split step k is rfactored right after by its inner part (RuleRfactorLanes)."""
    from ..schedule.steps import RfactorStep
    nxt = steps[k + 1] if k + 1 < len(steps) else None
    # RuleRfactorLanes puts the lanes last (factor_axis > 0); RuleAddRfactor first
    return isinstance(nxt, RfactorStep) and nxt.stage_id == steps[k].stage_id \
        and nxt.factor_axis > 0


def _innermost_axis(sketch, name: str) -> str | None:
    """The root axis whose part is the innermost loop of stage `name` in the sketch (by
    name: a replayed cache_write makes a new op object for the same stage)."""
    from ..errors import ScheduleError
    try:
        iters = sketch.stage(name).iters
    except ScheduleError:
        return None
    return iters[-1].name.rsplit(".", 1)[0] if iters else None


def heuristic_tiles(info: SketchInfo, target: Target) -> tuple:
    """Inner lengths of every sketch split, by the role of the axis it splits (a split that
    is rfactored into SIMD lanes gets the vector width)."""
    state = info.dag.init_state()
    out = []
    steps = list(info.sketch.steps)
    for k, step in enumerate(steps):
        if isinstance(step, SplitStep) and _lane_split(steps, k):
            st = state.stages[step.stage_id]
            lanes = target.vector_lanes(st.op.output(0).dtype) if \
                st.op.output(0).dtype in ("float32", "float64") else 4
            ext = st.iters[step.iter_id].extent
            f = first_divisor(ext, [lanes, lanes // 2], lanes)
            # a prime-ish reduce extent (197) still gets full vector lanes, with an edge
            out.append((lanes if f < lanes // 2 and ext > 2 * lanes else f,))
        elif isinstance(step, SplitStep):
            st = state.stages[step.stage_id]
            name = st.iters[step.iter_id].name
            plan = _TilePlan(st, target, st.op.output(0).dtype,
                             _innermost_axis(info.sketch, st.name)) if st.compute else None
            out.append(plan.lengths(name, len(step.lengths)) if plan else
                       (1,) * len(step.lengths))
        state = state.apply(step)
    return tuple(out)


def heuristic_genome_from_tiles(info: SketchInfo, tiles: tuple) -> Genome:
    from .annotate import replay_tiles
    base = replay_tiles(info, tiles)
    # a packed-read sketch puts the panel loop first: keep the row-tile loop (the last outer
    # one) serial inside the parallel loop, so each panel is packed once per row sweep
    packed = any(isinstance(s, CacheReadStep) for s in info.sketch.steps)
    par, vec, unr = [], [], []
    rows = {s.attach[1] for s in base.stages if s.attach[0] == "at" and not s.relations}
    for si, st in enumerate(base.stages):
        if st.is_placeholder or st.attach[0] == "inline" or \
                (not st.relations and st.origin not in ("cache_read", "rfactor")
                 and not _row_stage(st, rows)):
            continue
        if st.attach[0] == "root":
            n = len(st.compute.axis)
            par.append((si, max(1, n - 1) if packed else n))
            unr.append((si, UNROLL))
        vec.append((si, True))
    return Genome(info.sketch_id, tiles, tuple(par), tuple(vec), tuple(unr), ())


def _row_stage(st, rows: set) -> bool:
    """A row loop nest of RuleComputeAtRow / RuleMaterializeAtRow: the root stage that row
    producers are computed at, or an elementwise stage materialized inside it."""
    if st.op in rows:
        return True
    return st.attach[0] == "at" and st.attach[1] in rows and not st.compute.reduce_axis


def heuristic_genome(info: SketchInfo, target: Target) -> Genome:
    return heuristic_genome_from_tiles(info, heuristic_tiles(info, target))
