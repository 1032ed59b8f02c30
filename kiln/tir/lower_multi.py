"""Lowering of what is more than one output of one loop nest: te.extern calls and
multi-output computes (a mixin of tir.lower.Lowerer, like lower_gpu).

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
from .lower_helpers import c_name, int_dim


def key(si: int, k: int):
    """Lowerer.param_of's key of output k of stage si."""
    return si if k == 0 else (si, k)


class MultiLowering:
    """Methods of Lowerer (it provides stages, info, param_of, gpu, var_names, index and
    _temp)."""

    def _plan_extern(self, si: int) -> None:
        """A te.extern: its outputs are whole tensors, written by one call at the root."""
        from .lower import LStage
        st = self.stages[si]
        if self.gpu:
            raise LoweringError(f"te.extern {st.name}: packed calls run on the host; a kernel "
                                "with GPU thread bindings cannot contain one")
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
        bufs = [info.buffer] + info.more
        op = info.stage.op
        args = []
        for a in op.call.args:
            if isinstance(a, E.Expr):
                args.append(a)
            elif a.tensor.op is op:  # one of its outs
                args.append(bufs[a.tensor.value_index])
            else:
                args.append(self._buffer_of(a.tensor, op.name))
        return S.CallPacked(op.call.func_name, args)

    def _buffer_of(self, t: Tensor, reader: str) -> S.Buffer:
        j, k = self.index[id(t.op)], t.value_index
        if j in self.info:
            info = self.info[j]
            return info.buffer if k == 0 else info.more[k - 1]
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
