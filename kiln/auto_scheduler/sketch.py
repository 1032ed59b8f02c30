"""Sketch generation: the loop structures worth searching, derived by rules (Ansor, CPU).

In: a ComputeDAG. Out: a list of sketch States whose SplitSteps carry placeholder lengths
(all 1) that annotation fills in. Rules run on stages from the output backwards; each either
passes, or returns successor states (and whether later rules may still apply):

  RuleSkipStage                 placeholders
  RuleMaterializeAtRow          an elementwise stage with a transcendental read by several
                                stages of one row loop (softmax's exp) is computed once per
                                element inside that loop (next to the inlined alternative)
  RuleAlwaysInline              reduction-free non-output stages are inlined
  RuleMultiLevelTilingWithFusion  a reuse stage with one elementwise consumer: SSRSRS tiles,
                                consumer follows the outer tiles, the stage is computed inside
                                (for an NCHW convolution, first with the output channels as
                                the innermost, vectorized, tile)
  RuleAddCacheWrite             a reuse stage without such a consumer gets a local
                                accumulator stage (which then fuses into the write-back)
  RuleMultiLevelTiling          SSRSRS tiles alone
  RuleComputeAtRow              a row reduction read one row at a time by an elementwise
                                consumer (softmax, layer norm) is computed inside the
                                consumer's row loop: one parallel pass over the rows
  RuleAddRfactor                a reduction with little spatial parallelism: rfactor
  RuleRfactorLanes              a row reduction with many rows: rfactor by the SIMD lanes,
                                partials computed per row, lanes vectorized
  RuleSimple                    leave as is (annotation parallelises and vectorises it)
"""

from __future__ import annotations

from contextvars import ContextVar

from . import analysis as A

# (layout-free (constant) input names, L2 bytes or 0) of the DAG whose sketches are derived
_WEIGHTS: ContextVar = ContextVar("kiln_sketch_weights", default=((), 0))

SPATIAL_LEVELS = 4  # S S . S . S
REDUCE_LEVELS = 2  # . . R . R .


def multi_level_tiling(state, si: int, last: str | None = None):
    """SSRSRS: returns (state, {axis name: split step index}) with placeholder lengths.
    `last`: the spatial axis whose innermost tile goes innermost (the one vectorized), instead
    of the last axis."""
    op = state.stages[si].op
    split_of = {}
    parts = {}
    for it in list(state.stages[si].iters):
        n = SPATIAL_LEVELS if it.kind == "spatial" else REDUCE_LEVELS
        state = state.split(op, it.name, [1] * (n - 1))
        split_of[it.name] = len(state.steps) - 1
        parts[it.name] = state.stages[si].relations[-1].outs
    st = state.stages[si]
    sp = [parts[it.name] for it in _roots(st, "spatial")]
    rd = [parts[it.name] for it in _roots(st, "reduce")]
    inner = [p[3] for p in sp]
    if last is not None:
        mine = parts[last][3]
        inner = [x for x in inner if x != mine] + [mine]
    order = [p[0] for p in sp] + [p[1] for p in sp] + [p[0] for p in rd] + [p[2] for p in sp] \
        + [p[1] for p in rd] + inner
    state = state.reorder(op, order)
    return state, split_of


def _roots(st, kind: str) -> list:
    axes = st.compute.axis if kind == "spatial" else st.compute.reduce_axis
    return list(axes)


def fuse_into_consumer(state, si: int, ci: int, split_of: dict, level: int):
    """Consumer follows the producer's outer `level` tiles; producer computed at that level.
    The outer tiles keep the consumer's axis order except for products (below)."""
    prod, cons = state.stages[si], state.stages[ci]
    parts = []
    for pa, ca in zip(prod.compute.axis, cons.compute.axis):
        state = state.follow_split(cons.op, ca.name, split_of[pa.name], level)
        parts.append(state.stages[ci].relations[-1].outs)
    outer = parts
    if len(parts) >= 2 and _columns_read_weights(prod):
        # a product with a constant weight along its columns (dense): column tiles
        # outermost, so each core keeps one weight panel in cache across all its row tiles
        # instead of streaming the whole weight once per row tile (ViT-B/16's 197 x 768 x
        # 3072 dense on a 2-core Xeon, interleaved: 160 -> 230 GFLOPS; BERT's 128 x 768 x
        # 3072: 141 -> 173). Products of activations keep row-major order (pack_reads)
        outer = parts[:-2] + [parts[-1], parts[-2]]
    order = [p[k] for k in range(level) for p in outer] + [p[level] for p in parts]
    state = state.reorder(cons.op, order)
    return state.compute_at(prod.op, cons.op, outer[-1][level - 1])


def _columns_read_weights(st) -> bool:
    """Whether `st` reads a layout-free input by its last spatial axis but not the one
    before (dense's W[j, k]) and that weight does not stay in the L2 on its own: then rows
    outer would stream it once per row tile, columns outer streams the row operand once per
    column panel (4x less with 8 x 32 tiles). A small weight (a 1x1 convolution done as a
    product, 64 x 64) keeps rows outer. Without a target: when the weight is at least what
    the rows read. Not for convolutions (their own sketch)."""
    from ..te import expr as E
    from ..tir.lower_helpers import dtype_bytes
    weights, l2 = _WEIGHTS.get()
    if not weights or len(st.compute.axis) < 2 or not st.compute.reduce_axis:
        return False
    row, col = st.compute.axis[-2], st.compute.axis[-1]
    by_col, by_row = 0, 0
    for n in E.walk(st.compute.body):
        if not isinstance(n, E.TensorLoad):
            continue
        used = {id(v) for i in n.indices for v in E.walk(i)}
        size = dtype_bytes(n.tensor.dtype)
        for d in n.tensor.shape:
            size *= int(d.value) if isinstance(d, E.IntImm) else 1
        if id(col) in used and id(row) not in used and n.tensor.op.name in weights and \
                len(n.tensor.shape) == 2:
            by_col += size
        elif id(row) in used and id(col) not in used:
            by_row += size
    if not by_col:
        return False
    return by_col > l2 // 2 if l2 else by_col >= by_row


def rule_materialize_at_row(state, si: int):
    st = state.stages[si]
    if not A.is_strict_inlinable(state, si) or len(state.effective_consumers(si)) < 2 \
            or not A.has_expensive_call(state, si):
        return None, True
    tgt = A.row_target(state, si)
    if tgt is None:
        return None, True
    return [(state.compute_at(st.op, *tgt), si - 1)], True  # RuleAlwaysInline adds the other


def rule_compute_at_row(state, si: int):
    st = state.stages[si]
    if not A.has_reduce(state, si) or A.needs_multi_level_tiling(state, si) \
            or st.origin == "rfactor":
        return None, True
    tgt = A.row_target(state, si)
    if tgt is None:
        return None, True
    # the moved stage is seen again (RuleRfactorLanes then splits it into SIMD lanes); the
    # root placement stays a sketch through the rules after this one
    return [(state.compute_at(st.op, *tgt), si)], True


def rule_always_inline(state, si: int):
    if A.is_strict_inlinable(state, si):
        return [(state.compute_inline(state.stages[si].op), si - 1)], False
    return None, True


def rule_mlt_with_fusion(state, si: int):
    if not A.needs_multi_level_tiling(state, si):
        return None, True
    ci = A.fusible_consumer(state, si)
    if ci is None:
        return None, True
    out = []
    for last in _inner_axes(state, si):
        tiled, split_of = multi_level_tiling(state, si, last)
        out += [(fuse_into_consumer(tiled, si, ci, split_of, lv), si - 1) for lv in (1, 2)]
    return out, False


def _inner_axes(state, si: int) -> list:
    """Which axis the register tile vectorizes, best first: a convolution's output channels
    (its weights packed along them, each input value broadcast: no strided or halo loads in
    the inner loop), then the last axis as for any other stage."""
    ch = A.conv_channel_axis(state, si)
    return [ch, None] if ch is not None else [None]


def rule_add_cache_write(state, si: int):
    st = state.stages[si]
    if not A.needs_multi_level_tiling(state, si) or A.fusible_consumer(state, si) is not None \
            or st.origin == "cache_write":
        return None, True
    # the local stage is inserted at si; the rules then see it with its fusible write-back
    return [(state.cache_write(st.op, "local"), si)], True


def rule_multi_level_tiling(state, si: int):
    if not A.needs_multi_level_tiling(state, si):
        return None, True
    return [(multi_level_tiling(state, si, last)[0], si - 1)
            for last in _inner_axes(state, si)], False


def rule_add_rfactor(state, si: int):
    if not A.has_reduce(state, si) or A.needs_multi_level_tiling(state, si) \
            or state.stages[si].origin == "rfactor" or state.stages[si].attach[0] != "root":
        return None, True
    if A.spatial_size(state, si) >= 4 * _cores() or A.reduce_size(state, si) < 64:
        return None, True
    st = state.stages[si]
    out = []
    red = [it for it in st.iters if it.kind == "reduce"]
    if len(red) != 1:
        return None, True
    for part in (0, 1):
        s2 = state.split(st.op, red[0].name, [1])
        name = s2.stages[si].relations[-1].outs[part]
        s2 = s2.rfactor(st.op, name)
        out.append((s2, si))  # the .rf stage now sits at si; the original at si + 1
    return out, True


def rule_rfactor_lanes(state, si: int):
    """RuleRfactorLanes: a row reduction with enough rows for every core (softmax's sums,
    layer norm) reduces a vector of partial results at once: split the reduce loop (its inner
    part becomes the SIMD lanes), rfactor the lanes into a per-row stage computed inside the
    row loop with the lanes innermost (vectorized by annotation), then sum the lanes. An exp
    inside the sum then runs as a vector polynomial."""
    st = state.stages[si]
    if not A.has_reduce(state, si) or A.needs_multi_level_tiling(state, si) \
            or st.origin == "rfactor" or not st.compute.axis:
        return None, True
    red = [it for it in st.iters if it.kind == "reduce"]
    if len(red) != 1 or red[0].extent < 32 or A.spatial_size(state, si) < _cores():
        return None, True
    n_sp = len(st.compute.axis)
    s2 = state.split(st.op, red[0].name, [1])
    s2 = s2.rfactor(st.op, s2.stages[si].relations[-1].outs[1], n_sp)
    rf = s2.stages[si]  # the .rf stage sits at si, the original at si + 1
    lane = rf.compute.axis[-1].name
    s2 = s2.reorder(rf.op, [it.name for it in rf.iters if it.name != lane] + [lane])
    s2 = s2.compute_at(rf.op, st.op, s2.stages[si + 1].iters[n_sp - 1].name)
    if st.attach[0] == "at":  # inside a row loop only the lane form is worth searching
        return [(s2, si - 1)], True
    return [(s2, si - 1), (state, si - 1)], True  # the plain reduction stays a sketch too


def _cores() -> int:
    import os
    return len(os.sched_getaffinity(0))


RULES = [rule_materialize_at_row, rule_always_inline, rule_mlt_with_fusion,
         rule_add_cache_write, rule_multi_level_tiling, rule_compute_at_row, rule_add_rfactor,
         rule_rfactor_lanes]


def pack_reads(state, layout_free: tuple = (), whole: bool = False):
    """RuleAddCacheReadPack: a tiled stage reading an input whose vectorized axis is not the
    input's contiguous dim (b[j, k] with j vectorized) gets a cache_read copy of that input,
    stored j-contiguous. Two placements: `whole=False` packs one panel (layout factor 0 = the
    whole tile) where the tile is, with the panel's loop outermost so each panel is packed
    once; `whole=True` packs the whole input once before the tiled loops, whose order stays
    row-major (attention's q @ k^T over 1500 keys: panel-first order writes the 9 MB score
    matrix in 120-byte column strips, each cache line filled by several panels). Returns the
    new sketch, or None when no input needs it."""
    from ..te import expr as E
    changed = False
    for T in [s.op for s in state.stages if s.relations and not s.is_placeholder]:
        st = state.stage(T)
        if not st.compute.reduce_axis or not st.compute.axis:
            continue
        inner = st.compute.axis[-1]
        packed = set()  # a bf16 pair reduction reads one input twice: one copy serves both
        for n in [n for n in E.walk(st.compute.body) if isinstance(n, E.TensorLoad)]:
            pst = state.stage(n.tensor.op)
            dims = [d for d, i in enumerate(n.indices) if i is inner]
            if not pst.is_placeholder or pst.name in layout_free or not dims \
                    or dims[0] == len(n.indices) - 1 or id(pst.op) in packed:
                continue
            packed.add(id(pst.op))
            state = pack_input(state, T, pst.op, dims[0], whole)
            changed = True
    return state if changed else None


def pack_input(state, T, placeholder, dim: int, whole: bool = True):
    """A cache_read copy of `placeholder` for stage T with its axis `dim` made contiguous
    (pack_reads' two placements; whole=True leaves the copy at the root)."""
    state = state.cache_read(placeholder, "local", [T])
    cache = state.stages[state.stage_index(placeholder) + 1].op
    if not whole:
        state = _panel_first(state, T, cache)
    state = state.layout_rewrite(cache, [(dim, 0)])
    # copy along the dim that becomes contiguous: vector stores into the panel
    # (strided scalar stores of a transpose cost as much as a third of the kernel)
    cnames = [it.name for it in state.stage(cache).iters]
    if dim != len(cnames) - 1:
        inner_name = cnames[dim]
        state = state.reorder(cache, [n for n in cnames if n != inner_name] + [inner_name])
    return state


def _panel_first(state, T, cache):
    """Pack each panel once: the panel's loop (the outermost tile loop of the vectorized
    axis) goes outermost in the root stage, every row tile runs inside it."""
    st = state.stage(T)
    root = st.attach[1] if st.attach[0] == "at" else T
    rst = state.stage(root)
    panel = next((it.name for it in rst.iters if it.name.startswith(
        rst.compute.axis[-1].name + ".")), rst.iters[0].name)
    names = [it.name for it in rst.iters]
    order = [panel] + [n for n in names if n != panel]
    state = state.reorder(root, order)
    if st.attach[0] == "at" and st.attach[2] == panel:
        # keep the tile the same: attach at the loop now at the old depth
        state = state.compute_at(T, root, order[names.index(panel)])
    return state.compute_at(cache, root, panel)


def is_whole_pack(sketch) -> bool:
    """Whether a sketch packs an input whole before its tiled loops (pack_reads(whole=True))."""
    return any(st.origin == "cache_read" and st.attach[0] == "root" and
               st.scope == "local" for st in sketch.stages)


def generate_sketches(dag, max_sketches: int = 16, layout_free: tuple = (),
                      target=None) -> list:
    """All sketches of `dag` (deduplicated, at most max_sketches), plus packed-read variants:
    per panel, and whole where each batch's slice fits the target's L2 (slice_fits_l2; every
    whole variant when no target is given)."""
    token = _WEIGHTS.set((tuple(layout_free), target.l2_bytes if target is not None else 0))
    try:
        base = _derive(dag, max_sketches)
    finally:
        _WEIGHTS.reset(token)
    out = list(base)
    for s in base:
        for whole in (False, True):
            packed = pack_reads(s, layout_free, whole)
            if packed is None or len(out) >= max_sketches:
                continue
            if not whole or target is None or slice_fits_l2(packed, target):
                out.append(packed)
    return out


def slice_fits_l2(sketch, target) -> bool:
    """Whether each packed input's slice that one batch index reads (its dims indexed by the
    tiled stage's row and reduction axes, not its batch axes) fits in half the L2: then the
    row tiles of a batch reread their slice from L2, and a whole-input copy in row-major order
    beats per-panel copies in panel-major order."""
    from ..te import expr as E
    l2 = target.l2_bytes
    if not l2:
        return False
    for st in sketch.stages:
        if st.origin != "cache_read" or st.is_placeholder:
            continue
        reader = next((r for r in sketch.stages if r.compute is not None and any(
            isinstance(n, E.TensorLoad) and n.tensor.op is st.op
            for n in E.walk(r.compute.body))), None)
        if reader is None:
            return False
        batch = {id(a) for a in reader.compute.axis[:-1]}
        loads = [n for n in E.walk(reader.compute.body)
                 if isinstance(n, E.TensorLoad) and n.tensor.op is st.op]
        shape = [int(x.value) for x in st.op.output(0).shape]
        per = 1
        for ext, idx in zip(shape, loads[0].indices):
            if not (isinstance(idx, E.Var) and id(idx) in batch):
                per *= ext
        if per * 4 > l2 // 2:
            return False
    return True


def _derive(dag, max_sketches: int) -> list:
    done, work, seen = [], [(dag.init_state(), len(dag.ops) - 1)], set()
    while work and len(done) < max_sketches:
        state, si = work.pop()
        if si < 0:
            key = state.record_key()
            if key not in seen:
                seen.add(key)
                done.append(state)
            continue
        if state.stages[si].is_placeholder:
            work.append((state, si - 1))
            continue
        succ = []
        for rule in RULES:
            out, go_on = rule(state, si)
            if out:
                succ.extend(out)
            if not go_on:
                break
        if all(nxt == si for _, nxt in succ):
            # only structural rules (cache_write, rfactor) fired, or none: keep the plain stage
            succ.append((state, si - 1))
        work.extend(reversed(succ))
    return done
