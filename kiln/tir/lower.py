"""Lowering: State (or TVM-style Schedule) -> PrimFunc.

Replays the State's loop summary into loop nests: inlines, infers the region each attached
stage must produce (bound inference through splits, fuses and compute_at), allocates
intermediate buffers (stack when small, heap otherwise), emits reduction init/update nests,
guards splits that do not divide, and simplifies every index.

GPU schedules (loops bound to blockIdx / threadIdx) lower to the same IR: bound loops become
"thread" loops, temporaries get GPU scopes (shared: one copy per block, local: one per thread,
global: a workspace in device memory), the region of a shared stage is inferred with the
thread indices of its attach point relaxed (cooperative fetching: the block's threads together
load what all of them read), and a barrier goes before and after each shared stage's fetch
(the GPU-only statements are in tir/lower_gpu.py).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from ..errors import LoweringError
from ..schedule.layout import pack_indices, packed_shape
from ..schedule.state import Fuse, Split, Stage
from ..te import expr as E
from ..te.tensor import THREAD_TAGS, Tensor
from . import stmt as S
from .bound import region_of
from .lower_gpu import GpuLowering
from .lower_helpers import (
    aligned_strides,
    bound_ancestors,
    c_name,
    const_range,
    dtype_bytes,
    flat_index,
    index_dtype,
    int_dim,
    split_extents,
    sum_exprs,
    vector_minor_strides,
    vector_roots,
)
from .lower_multi import MultiLowering
from .lower_multi import key as _key
from .passes import run_passes
from .simplify import simplify
from .tensorize import TensorizeLowering

STACK_LIMIT_BYTES = 32 * 1024
_KIND = {"none": "serial", "parallel": "parallel", "vectorize": "vectorized", "unroll": "unrolled"}


@dataclass
class Leaf:
    name: str
    var: E.Var
    extent: int
    kind: str
    annotation: str
    pragmas: tuple


@dataclass
class LStage:
    """What lowering knows about one stage."""

    stage: Stage
    outer: list  # enclosing Leaf loops, outermost first
    leaves: list = field(default_factory=list)
    root_val: dict = field(default_factory=dict)  # root IterVar -> expr in loop vars
    read_val: dict = field(default_factory=dict)  # root_val, clamped where a tile overhangs
    guards: list = field(default_factory=list)
    buffer: S.Buffer | None = None
    more: list = field(default_factory=list)  # a multi-output stage's other outputs' buffers

    @property
    def buffers(self) -> list:
        """One buffer per output of the stage."""
        return [self.buffer] + self.more
    offsets: list = field(default_factory=list)  # region mins per dim
    layout: tuple = ()  # packed layout of a temporary, factors resolved


class Lowerer(GpuLowering, MultiLowering, TensorizeLowering):
    def __init__(self, state, args, name: str):
        self.state, self.name = state, name
        self.stages = state.stages
        self.index = {id(s.op): i for i, s in enumerate(self.stages)}
        args = list(args) if args is not None else list(state.dag.tensors)
        # scalar arguments (te.var: a bias, a scale) come after the tensors, as in TVM's
        # build(s, [A, B, D, bias]); the kernel takes them in that order
        self.scalar_args = [a for a in args if isinstance(a, E.Var)]
        self.args = [a for a in args if not isinstance(a, E.Var)]
        if self.scalar_args and args[len(self.args):] != self.scalar_args:
            raise LoweringError(f"{name}: list the scalar arguments "
                                f"{[v.name for v in self.scalar_args]} after the tensors")
        self.info: dict[int, LStage] = {}
        self.ranges: dict = {}
        self.var_names: set = set()
        self._eff: dict = {}
        self.param_of: dict = {}  # stage index (output 0) or (index, k) (output k) -> Buffer
        self._partials: dict = {}  # stage -> its cross-thread reduction's per-thread share
        self._tensor_codes: dict = {}  # tensorized stage -> its intrinsic's bound code
        self.imports: list = []  # C source of pragma import_c
        self.gpu = any(it.annotation in THREAD_TAGS for st in self.stages for it in st.iters)

    # ------------------------------------------------------------ entry
    def run(self) -> S.PrimFunc:
        self.index_dtype = index_dtype(self.stages)
        self.states = self._scan_states()
        self._check_scan_body(self.states)
        self.params = self._params()
        for si in reversed(range(len(self.stages))):
            st = self.stages[si]
            if st.is_extern:
                self._plan_extern(si)
            elif not st.is_placeholder and st.attach[0] != "inline":
                self._plan(si)
        body = self._emit_roots()
        body = S.map_exprs(body, lambda e: simplify(e, self.ranges))
        func = S.PrimFunc(self.name, self.params, body, self._scalar_params(body),
                          self._func_attrs())
        return run_passes(func)

    def _params(self) -> list:
        out = []
        for a in self.args:
            if not isinstance(a, Tensor):
                raise LoweringError(f"build arguments must be te Tensors, got {type(a).__name__}")
            si = self.index.get(id(a.op))
            if si is None:
                raise LoweringError(f"argument {a.name} is not a tensor of this schedule")
            shape = [int_dim(d, a.name) for d in a.shape]
            if self.stages[si].layout:
                shape = list(packed_shape(shape, self.stages[si].layout))
            out.append(S.Buffer(c_name(a.name, self.var_names), shape, a.dtype, "global"))
            self.param_of[_key(si, a.value_index)] = out[-1]
        for si, st in enumerate(self.stages):
            used = st.is_output or self.state.effective_consumers(si)
            n = st.op.num_outputs if st.compute is None else len(st.compute.bodies)
            absent = [k for k in range(n) if _key(si, k) not in self.param_of]
            if absent and used and (st.is_placeholder or st.is_output) and \
                    id(st.op) not in self.states:
                what = "input" if st.is_placeholder else "output"
                raise LoweringError(f"{what} tensor {st.op.output(absent[0]).name} is used but "
                                    f"missing from the build arguments "
                                    f"{[a.name for a in self.args]}")
        return out

    # ------------------------------------------------------------ inlining
    def effective_body(self, si: int) -> E.Expr:
        return self.effective_bodies(si)[0]

    def effective_bodies(self, si: int) -> list:
        """Each output's body with inlined stages substituted."""
        if si in self._eff:
            return self._eff[si]
        st = self.stages[si]
        if st.compute is None:  # a te.extern reads whole buffers, not expressions
            self._eff[si] = []
            return self._eff[si]

        def fn(n):
            if isinstance(n, E.TensorLoad):
                j = self.index.get(id(n.tensor.op))
                if j is not None and self.stages[j].attach[0] == "inline":
                    sj = self.stages[j]
                    return E.substitute(self.effective_bodies(j)[n.tensor.value_index],
                                        dict(zip(sj.compute.axis, n.indices)))
            return None
        self._eff[si] = [E.transform(b, fn) for b in st.compute.bodies]
        return self._eff[si]

    # ------------------------------------------------------------ planning a stage
    def _plan(self, si: int) -> None:
        st = self.stages[si]
        shape = [int(a.extent.value) for a in st.compute.axis]
        if st.attach[0] == "at":
            ti = self.index[id(st.attach[1])]
            t = self.info.get(ti)
            if t is None:
                raise LoweringError(f"{st.name} is computed at {st.attach[1].name}, "
                                    "which is not a loop nest (inlined?)")
            pos = [lf.name for lf in t.leaves].index(st.attach[2])
            outer = t.outer + t.leaves[:pos + 1]
            region = self._infer_region(si, outer, shape)
        else:
            outer = []
            region = [(E.IntImm(0), d) for d in shape]
        full = region
        if getattr(st.op, "is_scan", False):
            region = self._scan_region(si, region)
        info = LStage(st, outer)
        self._make_leaves(info, [r[1] for r in region])
        clampable = {a.name for a in st.compute.axis} - vector_roots(st) \
            if self._may_clamp(si) else set()
        for a, (lo, ext) in zip(st.compute.axis, region):
            info.root_val[a] = simplify(info.root_val[a] + lo, self.ranges)
            lo_min, lo_max = const_range(lo, self.ranges)
            if ext + lo_max > int(a.extent.value) and lo_min >= 0 and a.name in clampable:
                info.read_val[a] = E.min(info.root_val[a], E.IntImm(int(a.extent.value) - 1))
            elif ext + lo_max > int(a.extent.value):
                info.guards.append(info.root_val[a] < a.extent)
            if lo_min < 0:
                info.guards.append(info.root_val[a] >= 0)
        self._make_buffer(si, info, full)
        self.info[si] = info

    def _make_leaves(self, info: LStage, spatial_ext: list) -> None:
        st = info.stage
        ext = {a.name: e for a, e in zip(st.compute.axis, spatial_ext)}
        ext.update({a.name: int(a.extent.value) for a in st.compute.reduce_axis})
        bound = bound_ancestors(st)
        for rel in st.relations:
            if isinstance(rel, Split):
                ext.update(split_extents(ext[rel.parent], rel))
                for name, length in zip(rel.outs[1:], rel.lengths):
                    if name in bound:  # thread indices keep the launch's extent, guarded
                        ext[name] = length
            else:
                ext[rel.fused] = math.prod(ext[n] for n in rel.names)
        for it in st.iters:
            v = E.Var(c_name(it.name, self.var_names), self.index_dtype)
            info.leaves.append(Leaf(it.name, v, ext[it.name], it.kind, it.annotation,
                                    self._loop_pragmas(it.pragmas)))
            self.ranges[v] = (0, ext[it.name] - 1)
        val = {lf.name: lf.var for lf in info.leaves}
        for rel in reversed(st.relations):
            if isinstance(rel, Split):
                strides = [math.prod(rel.lengths[k:]) for k in range(len(rel.outs))]
                val[rel.parent] = sum_exprs(val[o] * s if s != 1 else val[o]
                                       for o, s in zip(rel.outs, strides))
                top = sum((ext[o] - 1) * st_ for o, st_ in zip(rel.outs, strides)) + 1
                if top > ext[rel.parent]:
                    info.guards.append(val[rel.parent] < ext[rel.parent])
            elif isinstance(rel, Fuse):
                inner = 1
                for k in reversed(range(len(rel.names))):
                    n = rel.names[k]
                    x = val[rel.fused] if inner == 1 else E.binop("floordiv", val[rel.fused], inner)
                    val[n] = x if k == 0 else E.binop("floormod", x, ext[n])
                    inner *= ext[n]
        for a in st.root_vars():
            info.root_val[a] = simplify(val[a.name], self.ranges)

    def _infer_region(self, si: int, outer: list, shape: list) -> list:
        st = self.stages[si]
        if any(self.stages[ci].is_extern for ci in self.state.effective_consumers(si)):
            return [(E.IntImm(0), d) for d in shape]  # a packed call reads whole tensors
        fixed = [lf.var for lf in outer]
        accesses = []
        ranging = {}
        if self._scope_of(si) == "shared":  # the whole block fetches it: relax thread indices
            for lf in outer:
                if lf.annotation.startswith("threadIdx"):
                    ranging[lf.var] = (0, lf.extent - 1)
        for ci in self.state.effective_consumers(si):
            c = self.info.get(ci)
            if c is None:
                raise LoweringError(f"consumer {self.stages[ci].name} of {st.name} is not "
                                    "lowered before it (is it inlined into nothing?)")
            loops = c.outer + c.leaves
            if [lf.var for lf in loops[:len(fixed)]] != fixed:
                raise LoweringError(f"{st.name} is computed at a loop that does not enclose "
                                    f"its consumer {c.stage.name}")
            for lf in loops[len(fixed):]:
                ranging[lf.var] = (0, lf.extent - 1)
            vals = self._region_vals(ci, c, fixed, ranging)
            for b in self.effective_bodies(ci):
                for n in E.walk(E.substitute(b, vals)):
                    if isinstance(n, E.TensorLoad) and n.tensor.op is st.op:
                        accesses.append(n.indices)
        if not accesses:
            raise LoweringError(f"{st.name} is computed at a loop but nothing reads it there")
        return region_of(accesses, shape, ranging, self.ranges)

    def _make_buffer(self, si: int, info: LStage, region: list) -> None:
        st = info.stage
        keys = [_key(si, k) for k in range(len(st.compute.bodies))]
        if any(k in self.param_of for k in keys):  # arguments are whole tensors
            region = [(E.IntImm(0), int(a.extent.value)) for a in st.compute.axis]
            bufs = [self.param_of.get(key) or self._temp(info, region, k)
                    for k, key in enumerate(keys)]
            info.buffer, info.more = bufs[0], bufs[1:]
            info.offsets = [E.IntImm(0)] * len(region)
            return
        info.buffer = self._temp(info, region)
        info.more = [self._temp(info, region, k) for k in range(1, len(keys))]
        info.offsets = [lo for lo, _ in region]

    def _temp(self, info: LStage, region: list, k: int = 0) -> S.Buffer:
        """The buffer of output k of the stage over `region`, a temporary."""
        st = info.stage
        shape = [ext for _, ext in region]
        if st.layout:  # a packed temporary (e.g. a transposed cache_read panel)
            info.layout = tuple((d, f or shape[d]) for d, f in st.layout)
            shape = list(packed_shape(shape, info.layout, pad=True))
        dtype = st.op.output(k).dtype
        nbytes = math.prod(shape) * dtype_bytes(dtype)
        scope = "stack" if nbytes <= STACK_LIMIT_BYTES else "heap"
        if self.gpu:
            scope = self._scope_of(self.index[id(st.op)])
        name = c_name(st.name if k == 0 else f"{st.name}_v{k}", self.var_names)
        strides = aligned_strides(shape, st.align) if st.align and not st.layout else None
        if strides is None and not st.layout and not self.gpu:
            strides = vector_minor_strides(st, shape)
        buf = S.Buffer(name, shape, dtype, scope, strides)
        buf.double_buffer = st.double_buffer and scope == "shared"
        return buf

    def _region_vals(self, ci: int, c: LStage, fixed: list, ranging: dict) -> dict:
        """The consumer's axis values for bound inference. When the producer is computed
        outside all of the consumer's own loops, each spatial axis is its region's start
        plus a fresh variable over the region: the consumer's guards drop whatever its loops
        run past the region (a cooperative fetch's threads outnumbering the panel's
        elements), and reading the loops' index arithmetic instead would widen the region.
        Rows a consumer clamps (read_val) are read clamped, so bounds use those values."""
        if len(fixed) > len(c.outer) or c.layout or self.stages[ci].layout or \
                len(c.offsets) != len(c.stage.compute.axis):
            return {**c.root_val, **c.read_val}
        vals = dict(c.root_val)
        for d, a in enumerate(c.stage.compute.axis):
            v = E.Var(f"{a.name}_r", self.index_dtype)
            ranging[v] = (0, int(c.buffer.shape[d]) - 1)
            vals[a] = c.offsets[d] + v
            if a in c.read_val:
                vals[a] = E.min(vals[a], E.IntImm(int(a.extent.value) - 1))
        return vals

    # ------------------------------------------------------------ emission
    def _emit_roots(self) -> S.Stmt:
        stmts, allocs = [], []
        for si, st in enumerate(self.stages):
            if st.is_placeholder or st.attach[0] != "root":
                continue
            if st.is_extern:
                stmts.append(self._emit_extern(si))
            else:
                if getattr(st.op, "is_scan", False):
                    stmts.append(self._scan_init(si))
                stmts.append(self._emit_stage(si))
            allocs += self._temps(si)
        body = S.seq(stmts)
        for b in reversed(allocs):
            body = S.Allocate(b, body)
        return body

    def _attached(self, si: int) -> dict:
        op = self.stages[si].op
        out: dict = {}
        for j, s in enumerate(self.stages):
            if s.attach[0] == "at" and s.attach[1] is op:
                out.setdefault(s.attach[2], []).append(j)
        return out

    def _emit_stage(self, si: int, in_parallel: bool = False) -> S.Stmt:
        info = self.info[si]
        leaves = info.leaves
        attached = self._attached(si)
        red = [k for k, lf in enumerate(leaves) if lf.kind == "reduce"]
        r0 = red[0] if red and isinstance(info.stage.compute.body, E.Reduce) else None
        par = [in_parallel]
        for lf in leaves:
            par.append(par[-1] or lf.annotation == "parallel")

        across = r0 is not None and leaves[r0].annotation in THREAD_TAGS
        tpos = self._tensor_pos(info)
        for lf in leaves[(r0 or 0) + 1:]:
            if lf.kind == "reduce" and lf.annotation in THREAD_TAGS:
                raise LoweringError(f"cross-thread reduction {info.stage.name}.{lf.name}: the "
                                    "reduction loop bound to a thread index must be the "
                                    "outermost reduction loop; reorder it")

        def inner(pos: int) -> S.Stmt:
            # content inside loop `pos` (pos == -1: outside all loops)
            parts = []
            for j in attached.get(leaves[pos].name, []) if pos >= 0 else []:
                parts.append((j, self._emit_stage(j, par[pos + 1])))
            rest = []
            if self.gpu:
                parts = self._with_barriers(parts)
            if across and pos + 1 == r0:
                rest.append(self._cross_thread(si, info, r0, inner))
            elif tpos is not None and pos + 1 == tpos:
                rest.append(self._tensor_stmt(si, info, tpos, r0 is None or r0 >= tpos))
            else:
                if r0 is not None and pos + 1 == r0:
                    rest.append(self._init_nest(info, r0, par[pos + 1]) if tpos is None else
                                self._tensor_init(si, info, r0, tpos, par[pos + 1]))
                if pos + 1 < len(leaves):
                    rest.append(self._loop(leaves[pos + 1], inner(pos + 1), par[pos + 1]))
                else:
                    rest.append(self._body(si, info))
            body = S.seq([s for _, s in parts] + rest)
            for j, _ in reversed(parts):
                for b in reversed(self._temps(j) if j is not None else []):
                    body = S.Allocate(b, body)
            return body
        return inner(-1)

    def _loop(self, lf: Leaf, body: S.Stmt, in_parallel: bool) -> S.Stmt:
        if lf.extent == 1 and lf.annotation not in THREAD_TAGS:
            return body  # the simplifier turns the variable (range 0..0) into 0
        if lf.annotation == "vthread":  # virtual threads: interleaved copies of the body
            return S.For(lf.var, E.IntImm(lf.extent), "unrolled", body, dict(lf.pragmas))
        if lf.annotation in THREAD_TAGS:
            return S.For(lf.var, E.IntImm(lf.extent), "thread", body, dict(lf.pragmas),
                         lf.annotation)
        kind = _KIND[lf.annotation]
        if kind == "parallel" and in_parallel:
            kind = "serial"
        return S.For(lf.var, E.IntImm(lf.extent), kind, body, dict(lf.pragmas))

    def _out_index(self, info: LStage) -> E.Expr:
        idx = [info.root_val[a] - off for a, off in zip(info.stage.compute.axis, info.offsets)]
        if info.layout:
            idx = pack_indices(idx, info.layout)
        return flat_index(info.buffer, idx, self.index_dtype)

    def _guarded(self, stmt: S.Stmt, conds: list) -> S.Stmt:
        conds = [c for c in (simplify(c, self.ranges) for c in conds)
                 if not (isinstance(c, E.IntImm) and c.value)]
        conds = list({repr(c): c for c in conds}.values())  # e.g. a predicate said twice
        return S.IfThenElse(E.all(*conds), stmt) if conds else stmt

    def _temps(self, si: int) -> list:
        """The buffers of stage si that are temporaries (to allocate), not arguments."""
        info, params = self.info[si], {id(b) for b in self.params}
        return [b for b in info.buffers if id(b) not in params]

    def _init_nest(self, info: LStage, r0: int, in_parallel: bool) -> S.Stmt:
        idx = self._out_index(info)
        store = S.seq([S.Store(buf, idx, b.identity()) for buf, b in
                       zip(info.buffers, info.stage.compute.bodies)])
        spatial_vars = {lf.var for lf in info.leaves[:r0]} | {lf.var for lf in info.outer}
        spatial_vars |= {lf.var for lf in info.leaves[r0:] if lf.kind == "spatial"}
        guards = [g for g in info.guards if E.free_vars(g) <= spatial_vars]
        stmt = self._guarded(store, guards + self._predicate(info))
        loops = [lf for lf in info.leaves[r0:] if lf.kind == "spatial"]
        for lf in reversed(loops):
            stmt = self._loop(lf, stmt, in_parallel)
        return stmt

    def _body(self, si: int, info: LStage) -> S.Stmt:
        bodies = [E.substitute(b, {**info.root_val, **info.read_val})
                  for b in self.effective_bodies(si)]
        body, idx = bodies[0], self._out_index(info)
        if isinstance(body, E.Reduce):
            buf = self._partials.get(si, info.buffer)  # a cross-thread reduction's share
            if si in self._partials:
                idx = E.IntImm(0)
            if len(bodies) > 1:
                stmt = self._update_all(bodies, info.buffers, idx)
            else:
                src = self._to_buffers(body.source)
                stmt = S.Store(buf, idx, body.combiner.combine(S.BufferLoad(buf, idx), src))
            conds = list(info.guards)
            if body.condition is not None:
                conds.append(self._to_buffers(body.condition))
            if si not in self._partials:  # every thread computes its share
                conds += self._predicate(info)
            return self._guarded(stmt, conds)
        stores = [S.Store(buf, idx, self._to_buffers(b))
                  for buf, b in zip(info.buffers, bodies)]
        return self._guarded(S.seq(stores), info.guards + self._predicate(info))

    def _to_buffers(self, e: E.Expr) -> E.Expr:
        def fn(n):
            if isinstance(n, E.TensorLoad) and id(n.tensor.op) in self.states:
                return self._state_load(n)
            if isinstance(n, E.TensorLoad):
                j = self.index.get(id(n.tensor.op))
                if j is None or j not in self.info and j not in self.param_of:
                    raise LoweringError(f"tensor {n.tensor.name} is read but is neither a build "
                                        "argument nor computed by this schedule")
                k = n.tensor.value_index
                if j in self.info:
                    t = self.info[j]
                    idx = [i - off for i, off in zip(n.indices, t.offsets)]
                    if t.layout:
                        idx = pack_indices(idx, t.layout)
                    tb = t.buffers[k]
                    return S.BufferLoad(tb, flat_index(tb, idx, self.index_dtype))
                buf = self.param_of[_key(j, k)]
                idx = list(n.indices)
                if self.stages[j].layout:
                    idx = pack_indices(idx, self.stages[j].layout)
                return S.BufferLoad(buf, flat_index(buf, idx, self.index_dtype))
            return None
        return E.transform(e, fn)


def lower(sch, args=None, name: str = "default_function", simple_mode: bool = False):
    """Lower a Schedule (or State) with its argument tensors to a PrimFunc."""
    from ..recursion import deep_recursion
    state = getattr(sch, "state", sch)
    with deep_recursion(f"kernel {name}"):
        return Lowerer(state, args, name).run()
