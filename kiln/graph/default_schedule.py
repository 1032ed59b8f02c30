"""Rule-based schedules for workloads without a tuning record.

In: a ComputeDAG, the names of its layout-free (constant) placeholders and a Target.
Out: a complete State. For a DAG with a data-reuse reduction (dense, batch_matmul, conv2d)
the auto-scheduler's first sketch (multi-level tiling with the epilogue or a local
accumulator fused at the outer tile) is filled with a deterministic Genome: a register tile of
`rows` x `cols` (cols = 2 vector registers when the extent allows, rows 4-8 within half the
vector register file), a reduction inner tile of up to 8, parallel outer tiles, a vectorized
innermost loop, auto-unroll 64, and the constant weight packed for contiguous vector loads.
Every other root stage gets fuse + parallel + vectorize (the innermost loop split to at most
64 lanes). Nothing here is a naive loop nest.
Why: an untuned model must still run at a reasonable speed, and the same sketches the search
explores make the default a point of the search space (records can only improve on it).
"""

from __future__ import annotations

from ..auto_scheduler import analysis as A
from ..auto_scheduler.annotate import SketchInfo, materialize
from ..auto_scheduler.heuristic import MAX_VECTOR, first_divisor, heuristic_genome
from ..auto_scheduler.sketch import generate_sketches, is_whole_pack
from ..errors import KilnError
from ..schedule.steps import CacheReadStep, RfactorStep
from ..target import as_target
from ..te import expr as E

__all__ = ["default_schedule", "gpu_schedules", "simple_schedule"]

def _vector_factor(extent: int, lanes: int) -> int:
    f = first_divisor(extent, [MAX_VECTOR, 4 * lanes, 2 * lanes, lanes], MAX_VECTOR)
    if f < lanes and extent > 2 * lanes:
        # a prime-ish row (ViT's 197 keys) would run scalar (a scalar expf per element in
        # softmax: 6x slower): two full vectors, the edge tile split off by the C printer
        return 2 * lanes
    return f


def _simple_stage(state, si: int, lanes: int):
    """Fuse + parallel the outer spatial loops, vectorize the innermost (split to <= 64)."""
    st = state.stages[si]
    op = st.op
    all_spatial = all(it.kind == "spatial" for it in st.iters)
    if all_spatial and st.iters and st.iters[-1].extent > MAX_VECTOR:
        last = len(st.iters) - 1
        f = _vector_factor(st.iters[-1].extent, lanes)
        if f > 1:
            state = state.split(op, last, [f])
    st = state.stages[si]
    n_sp = 0
    for it in st.iters:
        if it.kind != "spatial":
            break
        n_sp += 1
    n_par = n_sp - 1 if all_spatial else n_sp
    if n_par > 1:
        state = state.fuse(op, list(range(n_par)))
    st = state.stages[si]
    if n_par >= 1 and st.iters[0].extent > 1:
        state = state.parallel(op, 0)
    st = state.stages[si]
    last = st.iters[-1] if st.iters else None
    if all_spatial and last is not None and last.annotation == "none" \
            and 1 < last.extent <= MAX_VECTOR:
        state = state.vectorize(op, len(st.iters) - 1)
    return state


def lane_rfactor(state, si: int, lanes: int, multi: bool = False):
    """A row reduction (one reduce loop, no tiling) reduces `lanes` partial results at once:
    rfactor by the SIMD width into a per-row vector of partials computed inside the row loop
    (the reduce loop outside, the lanes innermost and vectorized, so an exp inside the sum,
    as in softmax, runs as a vector polynomial), then sum the lanes. A root reduction's rows
    are fused and parallel; one already computed inside a row loop keeps its place. With
    multi, a reduction over several loops splits its innermost one."""
    st = state.stages[si]
    red = [it for it in st.iters if it.kind == "reduce"]
    n_sp = len(st.compute.axis)
    width = lanes
    if not red or (len(red) > 1 and not multi) or red[-1].extent < 2 * lanes or \
            st.relations or n_sp == 0 or any(it.annotation != "none" for it in st.iters):
        return state
    op = st.op
    state = state.split(op, red[-1].name, [min(width, red[-1].extent // 2)])
    state = state.rfactor(op, state.stages[si].relations[-1].outs[1], factor_axis=n_sp)
    rf = state.stages[si]
    lane = rf.compute.axis[-1].name
    state = state.reorder(rf.op, [it.name for it in rf.iters if it.name != lane] + [lane])
    row = state.stages[si + 1].iters[n_sp - 1].name
    if state.stages[si + 1].attach[0] == "root":
        if n_sp > 1:
            state = state.fuse(op, list(range(n_sp)))
            row = state.stages[si + 1].iters[0].name
        state = state.parallel(op, row)
    state = state.compute_at(rf.op, op, row)
    return state.vectorize(rf.op, len(state.stages[si].iters) - 1)


WHOLE_PARTS = (16, 8, 4, 2)


def whole_rfactor(state, si: int, lanes: int):
    """A reduction of a whole tensor to one value (ONNX's ReduceMax without axes, the range of
    DynamicQuantizeLinear) has no row loop to run in parallel: its outermost reduce loop that
    splits evenly is cut into chunks, rfactor makes one partial result per chunk (a row
    reduction that lane_rfactor runs in parallel and in SIMD lanes), and the few partials
    are combined last. Unchanged when the tensor is too small to share."""
    st = state.stages[si]
    sp = st.compute.axis
    red = [it for it in st.iters if it.kind == "reduce"]
    if not red or st.relations or any(int(a.extent.value) != 1 for a in sp) or \
            any(it.annotation != "none" for it in st.iters):
        return state
    total = 1
    for it in red:
        total *= it.extent
    # chunk the outermost loop that some part count divides ([1, 128, 3072]: the 128; ViT's
    # [1, 197, 3072]: the 3072, whose chunks must still fill the lanes twice)
    pick = next(((it, p) for it in red if it.extent > 1 for p in WHOLE_PARTS
                 if it.extent % p == 0 and total // p >= 4 * lanes and
                 (red[-1].extent >= 2 * lanes if it is not red[-1] else
                  it.extent // p >= 2 * lanes)), None)
    if pick is None:
        return state
    outer, parts = pick
    op = st.op
    state = state.split(op, outer.name, [outer.extent // parts])
    inner = state.stages[si].relations[-1].outs[1].replace(".", "_")  # its name after rfactor
    state = state.rfactor(op, state.stages[si].relations[-1].outs[0], factor_axis=len(sp))
    rf = state.stages[si]
    names = [it.name for it in rf.iters]
    if outer is red[-1] and inner in names:  # the contiguous part innermost, for the lanes
        state = state.reorder(rf.op, [n for n in names if n != inner] + [inner])
    return lane_rfactor(state, si, lanes, multi=True)


def _vectorize_reductions(state, lanes: int):
    """lane_rfactor (or whole_rfactor) on every plain root reduction (they sit before their
    consumers, so indices of later stages shift by one per rfactor: walk from the end)."""
    for si in reversed(range(len(state.stages))):
        st = state.stages[si]
        if not st.is_placeholder and st.attach[0] == "root" and st.compute.reduce_axis \
                and not any(s.attach[0] == "at" and s.attach[1] is st.op
                            for s in state.stages):
            state = lane_rfactor(whole_rfactor(state, si, lanes), si, lanes)
    return state


def _row_producers(state):
    """Compute every row-wise producer (A.row_target) inside its consumer's row loop, walking
    from the output back; an inlined elementwise stage with a transcendental and several
    consumers (softmax's exp: the sum and the division) is materialized there instead, so
    it runs once per element. Returns (state, {target op: row loop name})."""
    rows = {}
    for si in reversed(range(len(state.stages))):
        st = state.stages[si]
        if st.is_placeholder:
            continue
        trial = state
        if st.attach[0] == "inline":
            if len(state.effective_consumers(si)) < 2 or not A.has_expensive_call(state, si):
                continue
            trial = state.compute_root(st.op)
        tgt = A.row_target(trial, si)
        if tgt is not None and rows.get(tgt[0], tgt[1]) == tgt[1]:
            state = trial.compute_at(st.op, *tgt)
            rows[tgt[0]] = tgt[1]
    return state, rows


def _fuse_rows(state, lanes: int):
    """Normalisations (softmax, layer norm) as one parallel pass over rows: producers computed
    per row, the rows fused and parallel, the row's innermost loop vectorized, reductions
    inside it lane-rfactored, materialized elementwise stages vectorized."""
    state, rows = _row_producers(state)
    for op, row in rows.items():
        k = [it.name for it in state.stage(op).iters].index(row) + 1
        if k > 1:
            state = state.fuse(op, list(range(k)))
        state = state.parallel(op, 0)
        state = _vectorize_inner(state, state.stage_index(op), lanes)
    for si in reversed(range(len(state.stages))):
        st = state.stages[si]
        if st.attach[0] != "at" or st.attach[1] not in rows or st.relations:
            continue
        if st.compute.reduce_axis:
            state = lane_rfactor(state, si, lanes)
        else:
            state = _vectorize_inner(state, si, lanes)
    return state


def _vectorize_inner(state, si: int, lanes: int):
    """Vectorize the innermost loop (split to at most 64 lanes, a multiple of the width)."""
    st = state.stages[si]
    last = st.iters[-1]
    if last.kind != "spatial" or last.annotation != "none" or last.extent < 2:
        return state
    if last.extent > MAX_VECTOR:
        f = _vector_factor(last.extent, lanes)
        if f <= 1:
            return state
        state = state.split(st.op, len(st.iters) - 1, [f])
    return state.vectorize(st.op, len(state.stages[si].iters) - 1)


def _window_reduction(state, si: int):
    """A sliding-window reduction (pooling: the last output axis and a reduce axis index the
    same input dim, x * s + rx): the outer output axes fused and parallel, the window loops
    next and the last output axis innermost and vectorized, each window tap a vector of
    outputs (the accumulators stay in registers; no per-element index arithmetic). None when
    the stage is not of that form."""
    st = state.stages[si]
    sp = [it for it in st.iters if it.kind == "spatial"]
    red = [it for it in st.iters if it.kind == "reduce"]
    if len(sp) < 2 or not red or st.relations or not 2 <= sp[-1].extent <= MAX_VECTOR:
        return None
    last, reduce_vars = st.compute.axis[-1], set(st.compute.reduce_axis)
    windowed = any(isinstance(n, E.TensorLoad) and any(
        last in E.free_vars(i) and E.free_vars(i) & reduce_vars for i in n.indices)
        for n in E.walk(st.compute.body))
    if not windowed:
        return None
    op = st.op
    state = state.reorder(op, [it.name for it in sp[:-1]] + [it.name for it in red] +
                          [sp[-1].name])
    state = state.fuse(op, list(range(len(sp) - 1)))
    state = state.parallel(op, 0)
    return state.vectorize(op, len(state.stages[si].iters) - 1)


def _finish_simple_stages(state, lanes: int):
    state = _fuse_rows(state, lanes)
    state = _vectorize_reductions(state, lanes)
    for si, st in enumerate(state.stages):
        if st.is_placeholder or st.attach[0] != "root" or st.relations:
            continue
        if any(it.annotation != "none" for it in st.iters):
            continue
        if any(s.attach[0] == "at" and s.attach[1] is st.op for s in state.stages):
            continue
        state = _window_reduction(state, si) or _simple_stage(state, si, lanes)
    return state


def simple_schedule(dag, target=None):
    """The initial State with fuse + parallel + vectorize on every root stage (no tiling)."""
    target = as_target(target)
    state = dag.init_state()
    for si, st in enumerate(state.stages):
        if not st.is_placeholder and not st.is_output and not st.compute.reduce_axis \
                and state.effective_consumers(si):
            state = state.compute_inline(st.op)
    return _finish_simple_stages(state, target.vector_lanes("float32"))


def _ordered_sketches(dag, layout_free: tuple, target) -> list:
    """Sketches to try, best first: packed-read variants (a transposed input copied into a
    vector-contiguous panel), then plain ones, rfactor sketches last."""
    sketches = generate_sketches(dag, layout_free=layout_free, target=target)

    def has(s, kind):
        return any(isinstance(x, kind) for x in s.steps)
    plain = [s for s in sketches if not has(s, RfactorStep)]
    packed = [s for s in plain if has(s, CacheReadStep)]
    # whole-input packing first (generate_sketches made it only where each batch's slice
    # fits the L2)
    packed.sort(key=lambda s: not is_whole_pack(s))
    rest = [s for s in plain if s not in packed]
    return packed + rest + [s for s in sketches if s not in plain]


def gpu_schedules(dag, target, tensor_cores: bool = False) -> list:
    """GPU States to try for `dag`, best first: topi.cuda.schedule_auto (tiled matmul, one
    block per row for softmax / layer norm, flat injective; with tensor_cores a matmul on
    the tensor cores first, where its tiles fit), then schedule_simple."""
    from ..schedule.facade import Schedule
    from ..topi import cuda as tc
    out = dag.outputs[0].output(0)
    found = []
    first = [lambda s: tc.schedule_auto(s, out, target, mma=True)] if tensor_cores else []
    for fn in (*first, lambda s: tc.schedule_auto(s, out, target),
               lambda s: tc.schedule_simple(s, out)):
        s = Schedule.from_state(dag, dag.init_state())
        try:
            fn(s)
        except KilnError:
            continue
        found.append(s.state)
    return found


def _reductions(dag) -> tuple:
    """(the initial state with its strictly inlinable stages inlined, its reduce stages)."""
    state = dag.init_state()
    for si in range(len(state.stages)):
        if A.is_strict_inlinable(state, si):
            state = state.compute_inline(state.stages[si].op)
    return state, [si for si, st in enumerate(state.stages) if A.has_reduce(state, si)]


def _is_row_normalization(dag) -> bool:
    """No stage with data reuse, and some reduction a row loop can hold (softmax, layer norm):
    _fuse_rows schedules it whole, so the sketches (whose rfactor variants crowd out the
    plain ones for few rows) have nothing to add."""
    state, reds = _reductions(dag)
    return bool(reds) and not any(A.needs_multi_level_tiling(state, si) for si in reds) and \
        any(A.row_target(state, si) is not None for si in reds)


def _is_row_reduction(dag) -> bool:
    """One reduction, over one axis that is the innermost index of every tensor it reads, each
    read once per output row (a row's min / max / sum, as int8 quantization takes per row: no
    data reuse, whatever the tiling analysis says of its long reduce loop; a product's
    operands each miss an output axis): simple_schedule runs it as one parallel
    pass in SIMD lanes (lane_rfactor), where the sketches' tiles leave its loop scalar
    (0.48 ms against 0.03 for 128 x 3072)."""
    state, reds = _reductions(dag)
    if len(reds) != 1:
        return False
    comp = state.stages[reds[0]].compute
    if len(comp.reduce_axis) != 1 or not comp.axis:
        return False
    k = comp.reduce_axis[0]
    bodies = comp.body if isinstance(comp.body, (list, tuple)) else [comp.body]
    loads = [n for b in bodies for n in E.walk(b) if isinstance(n, E.TensorLoad)]
    rows = {a.uid for a in comp.axis if int(a.extent.value) > 1}
    # every load reads each output row once (no reuse: a product's operands miss an axis)
    return bool(loads) and all(
        n.indices and isinstance(n.indices[-1], E.Var) and n.indices[-1].uid == k.uid and
        rows <= {v.uid for i in n.indices for v in E.free_vars(i)} for n in loads)


def default_schedule(dag, layout_free: tuple = (), target=None):
    """A complete, deterministic State for `dag` (see the module docstring)."""
    target = as_target(target)
    if target.kind == "cuda":
        states = gpu_schedules(dag, target)
        if not states:
            raise KilnError(f"no GPU schedule applies to {dag.outputs[0].name}")
        return states[0]
    from .default_attention import attention_schedule
    from .default_im2col import im2col_schedule
    from .default_winograd import winograd_schedule
    for rule in (attention_schedule, winograd_schedule, im2col_schedule):
        state = rule(dag, target)
        if state is not None:
            return state
    if _is_row_normalization(dag) or _is_row_reduction(dag):
        return simple_schedule(dag, target)
    lanes = target.vector_lanes("float32")
    for sketch in _ordered_sketches(dag, tuple(layout_free), target):
        sid = 0
        info = SketchInfo(dag, sketch, sid, layout_free)
        try:
            state = materialize(info, heuristic_genome(info, target))
            return _finish_simple_stages(state, lanes)
        except KilnError:
            continue
    return simple_schedule(dag, target)
