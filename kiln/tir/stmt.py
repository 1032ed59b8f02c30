"""The loop IR: buffers, statements and PrimFunc, the output of lowering and the input of codegen.

Every loop runs from 0 to `extent`; buffer accesses are flat (one index, row-major offsets are
already applied). Expressions are the te nodes plus BufferLoad. The IR is target-neutral.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field

from ..te import expr as E

_uids = itertools.count()

FOR_KINDS = ("serial", "parallel", "vectorized", "unrolled", "thread")
# global: parameters and GPU workspace; stack / heap: CPU temporaries; shared / local: GPU
# per-block and per-thread memory.
SCOPES = ("global", "stack", "heap", "shared", "local")


class Buffer:
    """A named, typed, row-major block of memory: a function parameter or a temporary."""

    def __init__(self, name: str, shape, dtype: str, scope: str = "global", strides=None):
        self.name, self.shape, self.dtype, self.scope = name, tuple(shape), dtype, scope
        self.uid = next(_uids)
        self._strides = tuple(int(x) for x in strides) if strides is not None else None
        self.double_buffer = False  # a shared stage's double_buffer (codegen.cuda pipelines it)

    @property
    def size(self) -> int:
        """Elements to allocate (padded rows included)."""
        if self._strides is not None:
            return 1 + sum((int(d) - 1) * st for d, st in zip(self.shape, self._strides)) \
                if all(int(d) > 0 for d in self.shape) else 0
        n = 1
        for d in self.shape:
            n *= int(d)
        return n

    @property
    def strides(self) -> tuple:
        if self._strides is not None:
            return self._strides
        out, acc = [], 1
        for d in reversed(self.shape):
            out.append(acc)
            acc *= int(d)
        return tuple(reversed(out))

    def __repr__(self):
        return f"Buffer({self.name}, {self.shape}, {self.dtype}, {self.scope})"


class BufferLoad(E.Expr):
    """buffer[index] with a flat integer index."""

    __slots__ = ("buffer", "index")

    def __init__(self, buffer: Buffer, index: E.Expr):
        self.buffer, self.index, self.dtype = buffer, index, buffer.dtype

    def expr_children(self):
        return (self.index,)

    def expr_rebuild(self, c):
        return BufferLoad(self.buffer, c[0])

    def expr_str(self, f):
        return f"{self.buffer.name}[{f(self.index)}]"


class AccessPtr(E.Expr):
    """The address of buffer[offset] (TVM's access_ptr): what a tensorize intrinsic passes
    to an external C function. `mask` says how the callee uses it: "r", "w" or "rw"."""

    __slots__ = ("buffer", "offset", "mask")

    def __init__(self, buffer: Buffer, offset: E.Expr, mask: str = "rw"):
        self.buffer, self.offset, self.mask, self.dtype = buffer, offset, mask, "handle"

    def expr_children(self):
        return (self.offset,)

    def expr_rebuild(self, c):
        return AccessPtr(self.buffer, c[0], self.mask)

    def expr_str(self, f):
        return f"&{self.buffer.name}[{f(self.offset)}]"


class CallExtern(E.Expr):
    """A call of an external C function by name (tvm.tir.call_extern of a name that is not
    a math intrinsic); its definition comes from a pragma "import_c"."""

    __slots__ = ("name", "args")

    def __init__(self, name: str, args, dtype: str):
        self.name, self.args, self.dtype = name, tuple(args), dtype

    def expr_children(self):
        return self.args

    def expr_rebuild(self, c):
        return CallExtern(self.name, c, self.dtype)

    def expr_str(self, f):
        return f"{self.name}({', '.join(f(a) for a in self.args)})"


class Stmt:
    def __repr__(self) -> str:
        from .printer import stmt_str
        return stmt_str(self)


@dataclass(eq=False, repr=False)
class For(Stmt):
    """for var in [0, extent): body. kind: serial | parallel | vectorized | unrolled | thread.

    A "thread" loop is bound to the GPU index `thread_tag` ("blockIdx.x", "threadIdx.y"...):
    every thread runs the body once with var = its index (SIMT semantics, not a loop)."""

    var: E.Var
    extent: E.Expr
    kind: str
    body: Stmt
    pragmas: dict = field(default_factory=dict)
    thread_tag: str = ""


@dataclass(eq=False, repr=False)
class Store(Stmt):
    buffer: Buffer
    index: E.Expr
    value: E.Expr


@dataclass(eq=False, repr=False)
class Allocate(Stmt):
    """Scope of a temporary buffer (buffer.scope is 'stack' or 'heap')."""

    buffer: Buffer
    body: Stmt


@dataclass(eq=False, repr=False)
class IfThenElse(Stmt):
    cond: E.Expr
    then: Stmt
    else_: Stmt | None = None


@dataclass(eq=False, repr=False)
class Barrier(Stmt):
    """All threads of a GPU block wait here (__syncthreads): shared memory written before it
    is visible to every thread after it."""


@dataclass(eq=False, repr=False)
class LastBlock(Stmt):
    """A grid-level hand-off inside a GPU kernel, at block level (outside thread loops):
    every block of the launch arrives here with all its threads; of the `count` blocks that
    arrive with one value of `index` (uniform in a block, in [0, slots)), the last to arrive
    runs `body`, and sees every global write those blocks made before arriving. Split-K's
    slices are summed this way by the last slice of each tile, in the kernel that computed
    them. (CUDA: __threadfence, one atomic arrival count per index in a module-scope array
    that the last block resets to zero, so it is zero before every launch; loads of `l2`
    buffers in body bypass L1, which may hold another launch's lines.)"""

    index: E.Expr
    count: int
    slots: int
    body: Stmt
    l2: tuple = ()  # uids of the buffers body reads that other blocks wrote


@dataclass(eq=False, repr=False)
class AllReduce(Stmt):
    """A cross-thread reduction inside a GPU block: the `extent` threads along threadIdx.x
    that share threadIdx.y / z each hold one value in `src` (a one-element local buffer);
    every one of them gets `combiner` over all of them in `dst`. All threads of the block
    reach it together (it may synchronise the block). extent is a power of two, the block's
    threadIdx.x extent. (CUDA: butterfly warp shuffles, then one value per warp through
    shared memory when the lanes span several warps.)"""

    src: Buffer
    dst: Buffer
    name: str  # the reducer's: "sum", "max", ...
    extent: int
    lhs: E.Var  # `combined` is the reducer applied to lhs and rhs (kept as an expression:
    rhs: E.Var  # a CommReducer holds Python functions, and kernels are pickled)
    combined: E.Expr

    @staticmethod
    def of(src: Buffer, dst: Buffer, combiner, extent: int) -> AllReduce:
        """The AllReduce of te CommReducer `combiner`."""
        lhs, rhs = E.Var("lhs", dst.dtype), E.Var("rhs", dst.dtype)
        return AllReduce(src, dst, combiner.name, extent, lhs, rhs, combiner.combine(lhs, rhs))


@dataclass(eq=False, repr=False)
class MmaTile(Stmt):
    """A warp's tile product on the tensor cores, one 8-step of the reduction: for every
    pair (f, h) of its fm x fn 16 x 8 output tiles, acc += A_f (16 x 8) B_h (8 x 8) as
    m16n8k8 products. Each lane, g = lane / 4 and t = lane % 4 of threadIdx.x (whole warps,
    every lane of the block reaches it), supplies fragment values: a[f][h + 2 q] = A_f[g +
    8 h, t + 4 q], b[f][q] = B_f[t + 4 q, g], and holds accumulators acc[c[f][h][2 i + e]] =
    C[g + 8 i, 2 t + e]. `kind` "tf32x3": each operand is split into a TF32 part and the
    TF32 part of what is left, and three products (small*big, big*small, big*big) are
    summed, which keeps float32 accuracy. Made from an ordinary per-thread nest by
    codegen.cuda_mma (the loop-IR interpreter runs that nest; the emulated GPU runs this)."""

    acc: Buffer
    a: list  # [fm][4] expressions
    b: list  # [fn][2] expressions
    c: list  # [fm][fn][4] indices into acc
    kind: str = "tf32x3"


@dataclass(eq=False, repr=False)
class CallPacked(Stmt):
    """A te.extern's call of the packed (Python) function `func_name`: `args` are Buffers
    (passed as pointers) and scalar expressions; a non-zero status ends the kernel."""

    func_name: str
    args: list


@dataclass(eq=False, repr=False)
class Evaluate(Stmt):
    """An expression evaluated for its effect: an external call."""

    value: E.Expr


@dataclass(eq=False, repr=False)
class SeqStmt(Stmt):
    stmts: list


@dataclass(eq=False, repr=False)
class LetStmt(Stmt):
    """var = value (immutable) inside body."""

    var: E.Var
    value: E.Expr
    body: Stmt


@dataclass(eq=False, repr=False)
class PrimFunc:
    """A kernel: buffer parameters (inputs then outputs), scalar parameters, a body."""

    name: str
    params: list
    body: Stmt
    scalar_params: list = field(default_factory=list)
    attrs: dict = field(default_factory=dict)

    def __repr__(self) -> str:
        from .printer import func_str
        return func_str(self)

    def script(self) -> str:
        return repr(self)


def seq(stmts) -> Stmt:
    flat = []
    for s in stmts:
        if s is None:
            continue
        if isinstance(s, SeqStmt):
            flat.extend(s.stmts)
        else:
            flat.append(s)
    return flat[0] if len(flat) == 1 else SeqStmt(flat)


def stmt_children(s: Stmt) -> list:
    if isinstance(s, (For, Allocate, LetStmt, LastBlock)):
        return [s.body]
    if isinstance(s, IfThenElse):
        return [s.then] + ([s.else_] if s.else_ is not None else [])
    if isinstance(s, SeqStmt):
        return list(s.stmts)
    return []


def walk_stmts(s: Stmt):
    stack = [s]
    while stack:
        n = stack.pop()
        yield n
        stack.extend(reversed(stmt_children(n)))


def map_leaves(s: Stmt, fn) -> Stmt | None:
    """A copy of `s` with fn applied to every statement that holds no other (loops, ifs,
    allocations, lets and hand-offs rebuilt around the results; a leaf fn maps to None is
    dropped from its sequence)."""
    if isinstance(s, SeqStmt):
        return SeqStmt([y for y in (map_leaves(x, fn) for x in s.stmts) if y is not None])
    if isinstance(s, For):
        return For(s.var, s.extent, s.kind, map_leaves(s.body, fn), dict(s.pragmas),
                   s.thread_tag)
    if isinstance(s, Allocate):
        return Allocate(s.buffer, map_leaves(s.body, fn))
    if isinstance(s, IfThenElse):
        return IfThenElse(s.cond, map_leaves(s.then, fn),
                          None if s.else_ is None else map_leaves(s.else_, fn))
    if isinstance(s, LetStmt):
        return LetStmt(s.var, s.value, map_leaves(s.body, fn))
    if isinstance(s, LastBlock):
        return LastBlock(s.index, s.count, s.slots, map_leaves(s.body, fn), s.l2)
    return fn(s)


def map_exprs(s: Stmt, fn) -> Stmt:
    """A copy of `s` with fn applied to every top-level expression of every statement."""
    if isinstance(s, For):
        return For(s.var, fn(s.extent), s.kind, map_exprs(s.body, fn), dict(s.pragmas),
                   s.thread_tag)
    if isinstance(s, Store):
        return Store(s.buffer, fn(s.index), fn(s.value))
    if isinstance(s, Allocate):
        return Allocate(s.buffer, map_exprs(s.body, fn))
    if isinstance(s, IfThenElse):
        return IfThenElse(fn(s.cond), map_exprs(s.then, fn),
                          None if s.else_ is None else map_exprs(s.else_, fn))
    if isinstance(s, SeqStmt):
        return SeqStmt([map_exprs(x, fn) for x in s.stmts])
    if isinstance(s, LetStmt):
        return LetStmt(s.var, fn(s.value), map_exprs(s.body, fn))
    if isinstance(s, LastBlock):
        return LastBlock(fn(s.index), s.count, s.slots, map_exprs(s.body, fn), s.l2)
    if isinstance(s, CallPacked):
        return CallPacked(s.func_name, [a if isinstance(a, Buffer) else fn(a) for a in s.args])
    if isinstance(s, Evaluate):
        return Evaluate(fn(s.value))
    if isinstance(s, MmaTile):
        return MmaTile(s.acc, [[fn(x) for x in f] for f in s.a], [[fn(x) for x in f] for f in s.b],
                       [[[fn(x) for x in h] for h in f] for f in s.c], s.kind)
    return s
