"""TVM's tir.ir_builder: statements built imperatively (the usual body of a tensor
intrinsic's function).

    ib = tvm.tir.ir_builder.create()
    with ib.for_range(0, 16, name="i") as i:
        ib.emit(outs[0].vstore([i], ins[0].vload([i]) * 2.0))
    ib.emit(tvm.tir.call_extern("int32", "my_kernel", outs[0].access_ptr("w"), 16))
    stmt = ib.get()
"""

from __future__ import annotations

from contextlib import contextmanager

from ..errors import LoweringError
from ..te import expr as E
from . import stmt as S

_KINDS = {"serial": "serial", "unroll": "unrolled", "parallel": "parallel",
          "vectorize": "vectorized"}


class BufferPtr:
    """`ib.buffer_ptr(buf)`: flat element access, `p[i]` reads and `p[i] = v` writes."""

    def __init__(self, ib: IRBuilder, buf):
        self.ib, self.buf = ib, buf

    def _index(self, i) -> E.Expr:
        return self.buf.base + (i if isinstance(i, E.Expr) else E.convert(int(i)))

    def __getitem__(self, i) -> E.Expr:
        return S.BufferLoad(self.buf._data("buffer_ptr"), self._index(i))

    def __setitem__(self, i, value) -> None:
        v = E.convert(value, self.buf.dtype)
        if v.dtype != self.buf.dtype:
            v = E.cast(self.buf.dtype, v)
        self.ib.emit(S.Store(self.buf._data("buffer_ptr"), self._index(i), v))


class _Alloc:
    """A mark in a scope's statement list: the statements after it see `buffer`."""

    def __init__(self, buffer: S.Buffer):
        self.buffer = buffer


def _close(stmts: list) -> S.Stmt:
    """A scope's statements, each allocation wrapping the ones after it."""
    out: list = []
    for st in reversed(stmts):
        if isinstance(st, _Alloc):
            out = [S.Allocate(st.buffer, S.seq(out))]
        else:
            out.insert(0, st)
    return S.seq(out)


class IRBuilder:
    def __init__(self):
        self._stack: list = [[]]

    def emit(self, stmt) -> None:
        """Append a statement; an expression (an external call) is evaluated for effect."""
        if isinstance(stmt, E.Expr):
            stmt = S.Evaluate(stmt)
        if not isinstance(stmt, S.Stmt):
            raise LoweringError(f"ir_builder.emit: expected a statement or an expression, got "
                                f"{type(stmt).__name__}")
        self._stack[-1].append(stmt)

    @contextmanager
    def for_range(self, begin, end, name: str = "i", dtype: str = "int32",
                  kind: str = "serial"):
        """A loop from begin to end (exclusive); yields the loop variable."""
        if kind not in _KINDS:
            raise LoweringError(f"ir_builder.for_range: kind {kind!r}; known: "
                                f"{', '.join(_KINDS)}")
        var = E.Var(name, dtype)
        begin, end = E.convert(begin, dtype), E.convert(end, dtype)
        self._stack.append([])
        yield var
        body = _close(self._stack.pop())
        if not (isinstance(begin, E.IntImm) and begin.value == 0):
            # loops run from 0: the body sees var + begin
            inner = E.Var(name, dtype)
            body = S.map_exprs(body, lambda e: E.substitute(e, {var: inner + begin}))
            var = inner
        extent = E.IntImm(end.value - begin.value, dtype) if isinstance(end, E.IntImm) and \
            isinstance(begin, E.IntImm) else end - begin
        self.emit(S.For(var, extent, _KINDS[kind], body))

    @contextmanager
    def if_scope(self, cond):
        self._stack.append([])
        yield
        self.emit(S.IfThenElse(E.as_bool(E.convert(cond)), _close(self._stack.pop())))

    @contextmanager
    def else_scope(self):
        last = self._stack[-1][-1] if self._stack[-1] else None
        if not isinstance(last, S.IfThenElse) or last.else_ is not None:
            raise LoweringError("ir_builder.else_scope must follow an if_scope")
        self._stack.append([])
        yield
        last.else_ = _close(self._stack.pop())

    def buffer_ptr(self, buf) -> BufferPtr:
        return BufferPtr(self, buf)

    def allocate(self, dtype: str, shape, name: str = "buf", scope: str = "local") -> BufferPtr:
        """A temporary for the rest of the current scope (registers or the stack: the
        printer places it); returns flat element access, p[i] / p[i] = v."""
        from .decl import DeclBuffer
        dims = [int(getattr(d, "value", d)) for d in
                (shape if isinstance(shape, (list, tuple)) else [shape])]
        buf = S.Buffer(name, dims, E.check_dtype(dtype), "stack")  # built IR is CPU-only
        self._stack[-1].append(_Alloc(buf))
        return BufferPtr(self, DeclBuffer(dims, dtype, name).bound(buf, E.IntImm(0),
                                                                    list(buf.strides)))

    def get(self) -> S.Stmt:
        """The statements emitted so far, in order."""
        if len(self._stack) != 1:
            raise LoweringError("ir_builder.get inside an open scope")
        if not self._stack[0]:
            raise LoweringError("ir_builder.get: nothing was emitted")
        return _close(self._stack[0])


def create() -> IRBuilder:
    return IRBuilder()
