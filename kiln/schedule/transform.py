"""What each Step does to a State: legality checks and the new loop summary / stages.

Kept apart from steps.py so that the Step classes stay small (record code + dispatch) and
the transformations, which share helpers, live in one place.
"""

from __future__ import annotations

from dataclasses import replace

from ..errors import ScheduleError
from ..te import expr as E
from ..te.tensor import THREAD_TAGS, ComputeOp
from .state import (
    SCOPES,
    ComputeDef,
    Fuse,
    Iterator,
    Split,
    Stage,
    ceildiv,
    extent_of,
    product,
    root_iters,
)


def _stage(state, si: int) -> Stage:
    if not 0 <= si < len(state.stages):
        raise ScheduleError(f"stage index {si} out of range")
    st = state.stages[si]
    if st.is_placeholder:
        raise ScheduleError(f"{st.name} is an input placeholder; it has no loops to schedule")
    if st.is_extern:
        raise ScheduleError(f"{st.name} is a te.extern op (one packed call); it has no loops "
                            "to schedule")
    return st


def _iter(st: Stage, ii: int) -> Iterator:
    if not 0 <= ii < len(st.iters):
        raise ScheduleError(f"stage {st.name}: iterator index {ii} out of range "
                            f"(loops: {[it.name for it in st.iters]})")
    return st.iters[ii]


def _fresh_name(st: Stage, base: str) -> str:
    names = {it.name for it in st.iters} | {n for r in st.relations for n in _rel_names(r)}
    if base not in names:
        return base
    k = 1
    while f"{base}_{k}" in names:
        k += 1
    return f"{base}_{k}"


def _rel_names(r) -> tuple:
    return (r.parent,) + r.outs if isinstance(r, Split) else r.names + (r.fused,)


def split(state, si: int, ii: int, lengths: tuple):
    st = _stage(state, si)
    it = _iter(st, ii)
    lengths = tuple(extent_of(x) for x in lengths)
    if not lengths or any(isinstance(x, int) and x < 1 for x in lengths):
        raise ScheduleError(f"split of {st.name}.{it.name}: factors must be positive, got "
                            f"{list(lengths)}")
    exts = (ceildiv(it.extent, product(lengths)),) + lengths
    names = [_fresh_name(st, f"{it.name}.{k}") for k in range(len(exts))]
    parts = tuple(Iterator(n, e, it.kind, "none") for n, e in zip(names, exts))
    iters = st.iters[:ii] + parts + st.iters[ii + 1:]
    rel = Split(it.name, tuple(names), lengths)
    st2 = replace(st, iters=iters, relations=st.relations + (rel,))
    # a stage computed at the split loop now sits at its innermost part
    return _retarget_attached(state.with_stage(si, st2), st.op, {it.name}, names[-1])


def fuse(state, si: int, ids: tuple):
    st = _stage(state, si)
    if len(ids) < 2:
        if len(ids) == 1:
            return state
        raise ScheduleError(f"fuse on {st.name} needs at least one iterator")
    ids = tuple(ids)
    if list(ids) != list(range(ids[0], ids[0] + len(ids))):
        raise ScheduleError(f"fuse on {st.name}: iterators {[_iter(st, i).name for i in ids]} "
                            "must be adjacent and in loop order")
    its = [_iter(st, i) for i in ids]
    kinds = {it.kind for it in its}
    if len(kinds) > 1:
        raise ScheduleError(f"fuse on {st.name}: cannot fuse spatial and reduction loops "
                            f"{[it.name for it in its]}")
    name = _fresh_name(st, "@".join(it.name for it in its) + "@")
    fused = Iterator(name, product(it.extent for it in its), its[0].kind)
    iters = st.iters[:ids[0]] + (fused,) + st.iters[ids[-1] + 1:]
    rel = Fuse(tuple(it.name for it in its), name)
    st2 = replace(st, iters=iters, relations=st.relations + (rel,))
    return _retarget_attached(state.with_stage(si, st2), st.op, {it.name for it in its}, name)


def _retarget_attached(state, op, old_names: set, new_name: str):
    """Stages computed at a loop that was fused now sit at the fused loop."""
    for j, s in enumerate(state.stages):
        if s.attach[0] == "at" and s.attach[1] is op and s.attach[2] in old_names:
            state = state.with_stage(j, replace(s, attach=("at", op, new_name)))
    return state


def reorder(state, si: int, order: tuple):
    st = _stage(state, si)
    if len(set(order)) != len(order):
        raise ScheduleError(f"reorder on {st.name}: an iterator appears twice")
    for i in order:
        _iter(st, i)
    pos = sorted(order)
    iters = list(st.iters)
    for p, i in zip(pos, order):
        iters[p] = st.iters[i]
    return state.with_stage(si, replace(st, iters=tuple(iters)))


def compute_at(state, si: int, ti: int, tii: int):
    st = _stage(state, si)
    tgt = _stage(state, ti)
    it = _iter(tgt, tii)
    if si == ti:
        raise ScheduleError(f"compute_at: cannot compute {st.name} at its own loop")
    if st.is_output:
        raise ScheduleError(f"compute_at: {st.name} is an output; only producers can be moved")
    if not _encloses(state, si, ti):
        raise ScheduleError(f"compute_at: {tgt.name}.{it.name} does not enclose the consumers "
                            f"of {st.name} ({_names(state, state.effective_consumers(si))})")
    return state.with_stage(si, replace(st, attach=("at", tgt.op, it.name)))


def _names(state, ids) -> list:
    return [state.stages[i].name for i in ids]


def _encloses(state, si: int, ti: int) -> bool:
    """Every consumer of si is ti or is computed (transitively) inside ti."""
    for c in state.effective_consumers(si):
        j, seen = c, set()
        while j != ti:
            s = state.stages[j]
            if s.attach[0] != "at" or j in seen:
                return False
            seen.add(j)
            j = state.stage_index(s.attach[1])
    return bool(state.effective_consumers(si))


def compute_inline(state, si: int):
    st = _stage(state, si)
    if st.compute.reduce_axis:
        raise ScheduleError(f"compute_inline: {st.name} is a reduction and cannot be inlined")
    if st.is_output:
        raise ScheduleError(f"compute_inline: {st.name} is an output of the schedule")
    if any(state.stages[c].is_extern for c in state.consumers(si)):
        raise ScheduleError(f"compute_inline: a te.extern reads {st.name} as a whole buffer")
    for _j, s in enumerate(state.stages):
        if s.attach[0] == "at" and s.attach[1] is st.op:
            raise ScheduleError(f"compute_inline: {s.name} is computed at {st.name}; "
                                "move it first")
    return state.with_stage(si, replace(st, attach=("inline",)))


def annotate(state, si: int, ii: int, ann: str):
    st = _stage(state, si)
    it = _iter(st, ii)
    if ann not in ("none", "parallel", "vectorize", "unroll") + THREAD_TAGS:
        raise ScheduleError(f"unknown annotation {ann!r} (parallel, vectorize, unroll, or a "
                            f"thread tag: {', '.join(THREAD_TAGS)})")
    if ann in ("parallel", "vectorize") + THREAD_TAGS and it.kind == "reduce" and \
            ann != "threadIdx.x":
        raise ScheduleError(f"cannot {ann} the reduction loop {st.name}.{it.name}: its "
                            "iterations update the same element; rfactor it first (or bind "
                            "it to threadIdx.x: a cross-thread reduction)")
    iters = list(st.iters)
    iters[ii] = replace(it, annotation=ann)
    return state.with_stage(si, replace(st, iters=tuple(iters)))


# pragma name -> what it asks of lowering (tir.passes / tir.gpu read them off the loops)
PRAGMAS = {"auto_unroll_max_step": "unroll serial loops of at most N iterations below",
           "unroll_explicit": "unroll in the IR, not by the compiler",
           "splitk_serial": "GPU: this stage sums N split-K slices at the end of their kernel",
           "mma_tf32x3": "GPU: this k loop of 8 and the tile product inside it run on the "
                         "tensor cores (m16n8k8, operands split in two TF32 parts)",
           "import_c": "C source placed before the kernel: the functions a tensorize "
                       "intrinsic calls through tir.call_extern"}


def pragma(state, si: int, ii: int, name: str, value):
    st = _stage(state, si)
    it = _iter(st, ii)
    if name == "import_llvm":
        raise ScheduleError(f"pragma import_llvm on {st.name}.{it.name}: kiln emits C, not LLVM "
                            "IR; give the C source of the functions with pragma 'import_c'")
    if name not in PRAGMAS:
        raise ScheduleError(f"unknown pragma {name!r} on {st.name}.{it.name} "
                            f"(known: {', '.join(PRAGMAS)})")
    if (name == "import_c") != isinstance(value, str):
        raise ScheduleError(f"pragma {name} on {st.name}.{it.name}: "
                            + ("the value is C source text" if name == "import_c" else
                               f"the value is an integer, got {value!r}"))
    iters = list(st.iters)
    prag = tuple(p for p in it.pragmas if p[0] != name) + \
        ((name, value if isinstance(value, str) else int(value)),)
    iters[ii] = replace(it, pragmas=prag)
    return state.with_stage(si, replace(st, iters=tuple(iters)))


# ------------------------------------------------------------------ stages that add stages

def _is_fresh(st: Stage) -> bool:
    return st.iters == root_iters(st.compute) and not st.relations


def _new_axes(comp: ComputeDef):
    axis = tuple(E.IterVar(a.extent, a.name) for a in comp.axis)
    red = tuple(E.IterVar(a.extent, a.name, "reduce") for a in comp.reduce_axis)
    mapping = dict(zip(comp.axis, axis)) | dict(zip(comp.reduce_axis, red))
    return axis, red, mapping


def clone_body(body: E.Expr, mapping: dict) -> E.Expr:
    """Substitute vars, including a Reduce's own axis list."""
    if isinstance(body, E.Reduce):
        cond = None if body.condition is None else E.substitute(body.condition, mapping)
        return body.rebuilt([E.substitute(x, mapping) for x in body.sources],
                            [mapping.get(a, a) for a in body.axis], cond)
    return E.substitute(body, mapping)


def _single_output(st: Stage, what: str) -> None:
    if st.compute.more:
        raise ScheduleError(f"{what} of {st.name}: kiln does not {what} multi-output computes "
                            f"({1 + len(st.compute.more)} outputs); schedule its loops instead")


def _insert(state, at: int, stage: Stage, replaced: dict):
    stages = list(state.stages)
    for i, s in replaced.items():
        stages[i] = s
    stages.insert(at, stage)
    return replace(state, stages=tuple(stages))


def cache_write(state, si: int, scope: str):
    st = _stage(state, si)
    if not _is_fresh(st):
        raise ScheduleError(f"cache_write on {st.name} must come before any loop transformation "
                            "of that stage")
    if st.attach[0] == "inline":
        raise ScheduleError(f"cache_write on {st.name}: the stage is inlined")
    axis, red, mapping = _new_axes(st.compute)
    bodies = [clone_body(b, mapping) for b in st.compute.bodies]  # all outputs together
    op = ComputeOp(f"{st.name}.{scope}", axis, bodies, tag="cache_write")
    cdef = ComputeDef(axis, red, bodies[0], tuple(bodies[1:]))
    local = Stage(op, cdef, root_iters(cdef), origin="cache_write", scope=_scope(scope))
    copies = [op.output(k)[tuple(st.compute.axis)] for k in range(len(bodies))]
    comp = ComputeDef(st.compute.axis, (), copies[0], tuple(copies[1:]))
    new_st = replace(st, compute=comp, iters=root_iters(comp), relations=())
    return _insert(state, si, local, {si: new_st})


def cache_read(state, si: int, scope: str, readers: tuple):
    src = state.stages[si]
    if not readers:
        raise ScheduleError(f"cache_read of {src.name}: name at least one reader stage")
    if not src.is_placeholder:
        _single_output(src, "cache_read")
    shape = src.op.output(0).shape
    axis = tuple(E.IterVar(d, f"ax{k}") for k, d in enumerate(shape))
    tensor = src.op.output(0)
    op = ComputeOp(f"{src.name}.{scope}", axis, [tensor[axis]], tag="cache_read")
    comp = ComputeDef(axis, (), op.body[0])
    cache = Stage(op, comp, root_iters(comp), origin="cache_read", scope=_scope(scope))
    new = op.output(0)
    repl = {}
    for r in readers:
        rs = _stage(state, r)
        if r <= si or src.op not in [n.tensor.op for b in rs.compute.bodies for n in E.walk(b)
                                     if isinstance(n, E.TensorLoad)]:
            raise ScheduleError(f"cache_read: {rs.name} does not read {src.name}")
        bodies = [E.transform(b, lambda n: E.TensorLoad(new, n.indices)
                              if isinstance(n, E.TensorLoad) and n.tensor.op is src.op else None)
                  for b in rs.compute.bodies]
        repl[r] = replace(rs, compute=replace(rs.compute, body=bodies[0],
                                              more=tuple(bodies[1:])))
    return _insert(state, si + 1, cache, repl)


def _scope(scope: str) -> str:
    if scope not in SCOPES:
        raise ScheduleError(f"unknown memory scope {scope!r}; known: {', '.join(SCOPES)}")
    return scope


def rfactor(state, si: int, ii: int, factor_axis: int):
    from .rfactor import rfactor_stage
    st = _stage(state, si)
    it = _iter(st, ii)
    if it.kind != "reduce":
        raise ScheduleError(f"rfactor on {st.name}.{it.name}: not a reduction loop")
    rf_stage, new_st = rfactor_stage(st, it, factor_axis)
    return _insert(state, si, rf_stage, {si: new_st})


def tensorize(state, si: int, ii: int, intrin):
    from ..te.tensor_intrin import TensorIntrin
    st = _stage(state, si)
    it = _iter(st, ii)
    if not isinstance(intrin, TensorIntrin):
        raise ScheduleError(f"tensorize of {st.name}.{it.name}: expected an intrinsic from "
                            f"te.decl_tensor_intrin, got {type(intrin).__name__}")
    if st.attach[0] == "inline" or getattr(st.op, "is_scan", False) or st.compute.more:
        raise ScheduleError(f"tensorize of {st.name}: the stage must be a single-output "
                            "compute with its own loops")
    return state.with_stage(si, replace(st, tensorize=(it.name, intrin)))
