"""Lowering beyond one loop nest per output: te.extern calls, multi-output computes, te.scan,
overhanging tiles and scalar parameters (a mixin of tir.lower.Lowerer, like lower_gpu).

In: a te.extern stage (ExternOp) or a stage whose compute has several bodies.
Out: the extern's buffers (its outputs are whole tensors, passed to one `CallPacked` at the
root of the kernel) and one reduction step of a multi-output reduction (every new value is
computed from the old ones before any is stored).
"""

from __future__ import annotations

from ..errors import LoweringError
from ..te import expr as E
from ..te.tensor import Tensor
from . import stmt as S
from .lower_helpers import c_name, flat_index, int_dim, stmt_exprs


def key(si: int, k: int):
    """Lowerer.param_of's key of output k of stage si."""
    return si if k == 0 else (si, k)


class MultiLowering:
    """Methods of Lowerer (it provides stages, info, param_of, gpu, var_names, index,
    ranges, scalar_args and _temp)."""

    def _may_clamp(self, si: int) -> bool:
        """A CPU temporary whose tile overhangs the tensor (197 rows in tiles of 4) computes
        the overhanging rows from clamped indices (duplicates of the last row, never read)
        instead of testing every point: an `if` around each update of a register tile costs
        the dense layers of ViT-B/16 (197 tokens) 1.8x on an Intel AVX-512 core. Not along
        a vectorized axis: a clamped lane index is no vector load (the C printer peels a
        guarded edge tile off instead)."""
        st = self.stages[si]
        return not self.gpu and not st.store_predicate and not st.layout and \
            all(key(si, k) not in self.param_of for k in range(len(st.compute.bodies)))

    def _scalar_params(self, body: S.Stmt) -> list:
        loop_vars = set(self.ranges) | {s.var for s in S.walk_stmts(body)
                                        if isinstance(s, S.LetStmt)}
        found = list(self.scalar_args)
        for s in S.walk_stmts(body):
            for e in stmt_exprs(s):
                for n in E.walk(e):
                    if isinstance(n, E.Var) and n not in loop_vars and n not in found:
                        found.append(n)
        return found

    def _plan_extern(self, si: int) -> None:
        """A te.extern: its outputs are whole tensors, written by one call at the root."""
        from .lower import LStage
        st = self.stages[si]
        if self.gpu:
            raise LoweringError(f"te.extern {st.name}: external functions (packed calls, "
                                "loop IR) run on the host; a kernel with GPU thread "
                                "bindings cannot contain one")
        info = LStage(st, [])
        region = [(E.IntImm(0), int_dim(d, st.name)) for d in st.op.output(0).shape]
        bufs = []
        for k in range(st.op.num_outputs):
            t = st.op.output(k)
            full = [(E.IntImm(0), int_dim(d, t.name)) for d in t.shape]
            bufs.append(self.param_of.get(key(si, k)) or self._temp(info, full, k))
        info.buffer, info.more, info.offsets = bufs[0], bufs[1:], [E.IntImm(0)] * len(region)
        self.info[si] = info

    def _emit_extern(self, si: int) -> S.Stmt:
        info = self.info[si]
        bufs = info.buffers
        op = info.stage.op
        if op.call is None:  # loop IR from tir.ir_builder
            return self._extern_body(op, bufs)
        args = []
        for a in op.call.args:
            if isinstance(a, E.Expr):
                args.append(a)
            elif a.tensor.op is op:  # one of its outs
                args.append(bufs[a.tensor.value_index])
            else:
                args.append(self._buffer_of(a.tensor, op.name))
        return S.CallPacked(op.call.func_name, args)

    def _extern_body(self, op, bufs: list) -> S.Stmt:
        """fcompute over buffers bound to the inputs' and outputs' memory (whole tensors,
        row-major), its loop IR as the stage's code."""
        from .decl import DeclBuffer

        def view(t, buf):
            return DeclBuffer(t.shape, t.dtype, t.name).bound(buf, E.IntImm(0),
                                                              list(buf.strides))
        ins = [view(t, self._buffer_of(t, op.name)) for t in op.inputs]
        outs = [view(op.output(k), b) for k, b in enumerate(bufs)]
        from .tensorize import call_user
        body = call_user(op.fcompute, ins, outs, f"te.extern {op.name}")
        if body is None:
            raise LoweringError(f"te.extern {op.name}: fcompute returned None; return the "
                                "loop IR (ib.get()) or tvm.tir.call_packed(...)")
        return self._intrin_stmt(body, {}, f"te.extern {op.name}")

    def _buffer_of(self, t: Tensor, reader: str) -> S.Buffer:
        j, k = self.index[id(t.op)], t.value_index
        if j in self.info:
            info = self.info[j]
            return info.buffers[k]
        if key(j, k) not in self.param_of:
            raise LoweringError(f"te.extern {reader} reads {t.name}, which is inlined; "
                                "compute it at the root")
        return self.param_of[key(j, k)]

    def _update_all(self, bodies: list, bufs: list, idx: E.Expr) -> S.Stmt:
        """One step of a multi-output reduction: every new value is computed from the old
        values before any is stored (argmax's index update reads the old maximum)."""
        olds = [S.BufferLoad(b, idx) for b in bufs]
        if len(bodies[0].sources) > 1:  # a tuple reducer combines the components together
            srcs = [self._to_buffers(x) for x in bodies[0].sources]
            news = bodies[0].combiner.combine_all(olds, srcs)
        else:
            news = [b.combiner.combine(o, self._to_buffers(b.source))
                    for b, o in zip(bodies, olds)]
        lets = [E.Var(c_name(f"{b.name}_next", self.var_names), n.dtype)
                for b, n in zip(bufs, news)]
        stmt = S.seq([S.Store(b, idx, v) for b, v in zip(bufs, lets)])
        for v, n in reversed(list(zip(lets, news))):
            stmt = S.LetStmt(v, n, stmt)
        return stmt

    # ------------------------------------------------------------ te.scan
    def _scan_states(self) -> dict:
        """{id(state placeholder op): (scan stage index, output k)}: a state is read from
        the scan's own output buffer (the rows computed so far)."""
        out = {}
        for si, st in enumerate(self.stages):
            for k, s in enumerate(getattr(st.op, "state", ()) if _is_scan(st) else ()):
                out[id(s.op)] = (si, k)
        return out

    def _state_load(self, n: E.TensorLoad) -> S.BufferLoad:
        """A read of a scan's state: the rows of the scan's output computed so far."""
        si, k = self.states[id(n.tensor.op)]
        buf = self.info[si].buffers[k]
        return S.BufferLoad(buf, flat_index(buf, list(n.indices), self.index_dtype))

    def _scan_region(self, si: int, region: list) -> list:
        """The scan's loop nest starts after the init rows; checks its time loop."""
        st = self.stages[si]
        if self.gpu:
            raise LoweringError(f"te.scan {st.name}: kiln runs scans on CPU targets only")
        if st.attach[0] != "root":
            raise LoweringError(f"te.scan {st.name} must be computed at the root")
        first = st.iters[0] if st.iters else None
        time = st.op.time_axis.name
        if first is None or first.name != time or first.annotation != "none" or \
                any(time in getattr(r, "names", (getattr(r, "parent", None),))
                    for r in st.relations):
            raise LoweringError(f"te.scan {st.name}: its time loop {time} must stay the "
                                "outermost loop, serial and unsplit")
        n = st.op.init_len
        return [(E.IntImm(n), region[0][1] - n)] + list(region[1:])

    def _scan_init(self, si: int) -> S.Stmt:
        """out_k[t, ...] = init_k[t, ...] for the init rows, before the time loop."""
        info, op = self.info[si], self.stages[si].op
        shape = [op.init_len] + [int_dim(d, op.name) for d in op.output(0).shape[1:]]
        loop_vars = [E.Var(c_name(f"{op.name}_i{d}", self.var_names), self.index_dtype)
                     for d in range(len(shape))]
        for v, n in zip(loop_vars, shape):
            self.ranges[v] = (0, n - 1)
        stores = []
        for buf, init in zip(info.buffers, op.init):
            load = self._to_buffers(init[tuple(loop_vars)])
            stores.append(S.Store(buf, flat_index(buf, loop_vars, self.index_dtype), load))
        stmt = S.seq(stores)
        for v, n in reversed(list(zip(loop_vars, shape))):
            stmt = S.For(v, E.IntImm(n), "serial", stmt, {})
        return stmt

    def _check_scan_body(self, states: dict) -> None:
        """Every stage that reads a state, directly or through other stages, runs inside
        its scan's time loop (computed at the root it would read rows not yet computed)."""
        body = {sid: self.stages[si].op for sid, (si, _) in states.items()}  # op id -> scan
        for st in self.stages:
            if st.compute is None or _is_scan(st):
                continue
            reads = {id(n.tensor.op) for b in st.compute.bodies for n in E.walk(b)
                     if isinstance(n, E.TensorLoad)}
            scans = {id(body[r]): body[r] for r in reads if r in body}
            for scan in scans.values():
                body[id(st.op)] = scan
                if st.attach[0] != "inline" and not self._inside(st, scan):
                    raise LoweringError(f"{st.name} reads the state of te.scan {scan.name} but "
                                        "is not computed inside its time loop; leave it "
                                        "attached there (or compute_at a stage that is)")

    def _inside(self, st, op) -> bool:
        seen = set()
        while st.attach[0] == "at" and id(st) not in seen:
            seen.add(id(st))
            if st.attach[1] is op:
                return True
            st = self.stages[self.index[id(st.attach[1])]]
        return False


def _is_scan(st) -> bool:
    return getattr(st.op, "is_scan", False)
