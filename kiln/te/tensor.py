"""Tensors and the operations that define them: placeholder, compute, reduce_axis, reducers.

In: shapes, dtypes and Python lambdas over axes. Out: Tensor objects whose ops form a DAG
(PlaceholderOp leaves, ComputeOp nodes with an expression body). Shape and dtype mistakes
are caught here, at construction, with the op's name in the message.
"""

from __future__ import annotations

import inspect
import itertools

from ..errors import ExprError, ShapeError
from . import expr as E

_names = itertools.count()


def _shape(shape, where: str) -> tuple:
    if isinstance(shape, (int, E.Expr)):
        shape = (shape,)
    try:
        shape = tuple(shape)
    except TypeError:
        raise ShapeError(f"{where}: shape must be a tuple of ints, got {shape!r}") from None
    out = []
    for d in shape:
        if isinstance(d, bool) or not isinstance(d, (int, E.Expr)) and not hasattr(d, "__index__"):
            raise ShapeError(f"{where}: shape entries must be ints or te.var, got {d!r} in {shape}")
        if isinstance(d, E.Expr):
            if not E.is_int(d.dtype):
                raise ShapeError(f"{where}: shape entry {d} must be an integer expression")
            out.append(d)
            continue
        d = int(d)
        if d <= 0:
            raise ShapeError(f"{where}: every extent must be positive, got {shape}")
        out.append(E.IntImm(d))
    return tuple(out)


def _ints(shape) -> tuple:
    return tuple(int(d.value) if isinstance(d, E.IntImm) else d for d in shape)


class Operation:
    """Base of PlaceholderOp and ComputeOp; `output(i)` gives its tensors."""

    def __init__(self, name: str, tag: str = "", attrs: dict | None = None):
        self.name, self.tag, self.attrs = name, tag, dict(attrs or {})
        self._outputs = []

    def output(self, i: int = 0) -> Tensor:
        return self._outputs[i]

    @property
    def num_outputs(self) -> int:
        return len(self._outputs)

    @property
    def input_tensors(self) -> list:
        return []

    def __repr__(self):
        return f"{type(self).__name__}({self.name})"


class PlaceholderOp(Operation):
    def __init__(self, name: str, shape, dtype: str):
        super().__init__(name)
        self.shape, self.dtype = shape, dtype
        self._outputs = [Tensor(self, 0, shape, dtype)]


class ComputeOp(Operation):
    """out[axis] = body, where body may be a Reduce over reduce_axis."""

    def __init__(self, name, axis, body, tag="", attrs=None):
        super().__init__(name, tag, attrs)
        self.axis = list(axis)
        self.body = list(body)
        red = [b for b in self.body if isinstance(b, E.Reduce)]
        self.reduce_axis = list(red[0].axis) if red else []
        shape = tuple(a.extent for a in self.axis)
        self._outputs = [Tensor(self, i, shape, b.dtype) for i, b in enumerate(self.body)]

    @property
    def input_tensors(self) -> list:
        seen, out = set(), []
        for b in self.body:
            for n in E.walk(b):
                if isinstance(n, E.TensorLoad) and id(n.tensor) not in seen:
                    seen.add(id(n.tensor))
                    out.append(n.tensor)
        return out


class Tensor:
    """The i-th output of an op; `T[i, j]` reads it inside another compute."""

    def __init__(self, op: Operation, value_index: int, shape, dtype: str):
        self.op, self.value_index, self.shape, self.dtype = op, value_index, shape, dtype

    @property
    def name(self) -> str:
        return self.op.name if self.value_index == 0 else f"{self.op.name}.v{self.value_index}"

    @property
    def ndim(self) -> int:
        return len(self.shape)

    def __getitem__(self, indices) -> E.Expr:
        if not isinstance(indices, tuple):
            indices = (indices,)
        if len(indices) != len(self.shape):
            raise ShapeError(f"tensor {self.name} has {len(self.shape)} dimensions "
                             f"{_ints(self.shape)}, indexed with {len(indices)} indices")
        idx = []
        for i in indices:
            e = E.convert(i)
            if not E.is_int(e.dtype):
                raise ExprError(f"index {e} of tensor {self.name} must be an integer expression, "
                                f"got {e.dtype}")
            idx.append(e)
        return E.TensorLoad(self, idx)

    def __call__(self, *indices):
        return self[indices]

    def __len__(self):
        return int(self.shape[0])

    def __hash__(self):
        return hash((id(self.op), self.value_index))

    def __eq__(self, other):
        return isinstance(other, Tensor) and other.op is self.op \
            and other.value_index == self.value_index

    def __repr__(self):
        return f"Tensor(name={self.name}, shape={_ints(self.shape)}, dtype={self.dtype})"

    # TVM's tensor arithmetic (`a + b`, `e / 2.0`): a broadcasting topi operator. topi builds
    # on te, so it is imported when the operator is used, not when te is.
    def _topi(self, name: str, other, swap: bool = False):
        from .. import topi
        return getattr(topi, name)(other, self) if swap else getattr(topi, name)(self, other)

    def __add__(self, o): return self._topi("add", o)
    def __radd__(self, o): return self._topi("add", o, True)
    def __sub__(self, o): return self._topi("subtract", o)
    def __rsub__(self, o): return self._topi("subtract", o, True)
    def __mul__(self, o): return self._topi("multiply", o)
    def __rmul__(self, o): return self._topi("multiply", o, True)
    def __truediv__(self, o): return self._topi("divide", o)
    def __rtruediv__(self, o): return self._topi("divide", o, True)
    def __neg__(self): return self._topi("multiply", -1.0)


def placeholder(shape, dtype: str = "float32", name: str = "placeholder") -> Tensor:
    """An input tensor of the given shape and dtype."""
    shape = _shape(shape, f"placeholder {name!r}")
    return PlaceholderOp(name, shape, E.check_dtype(dtype)).output(0)


def _axis_names(fcompute, n: int) -> list:
    try:
        params = [p for p in inspect.signature(fcompute).parameters.values()
                  if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
        var_args = any(p.kind == p.VAR_POSITIONAL
                       for p in inspect.signature(fcompute).parameters.values())
    except (TypeError, ValueError):
        return [f"i{k}" for k in range(n)]
    if var_args:
        return [f"i{k}" for k in range(n)]
    if len(params) != n:
        raise ShapeError(f"compute: the lambda takes {len(params)} indices but the shape has "
                         f"{n} dimensions")
    return [p.name for p in params]


def compute(shape, fcompute, name: str = "compute", tag: str = "", attrs=None):
    """A tensor whose element at each index of `shape` is `fcompute(*index)`."""
    shape = _shape(shape, f"compute {name!r}")
    names = _axis_names(fcompute, len(shape))
    axis = [E.IterVar(d, n) for d, n in zip(shape, names)]
    body = fcompute(*axis)
    bodies = list(body) if isinstance(body, (list, tuple)) else [body]
    bodies = [E.convert(b) for b in bodies]
    _check_body(bodies, name)
    op = ComputeOp(name, axis, bodies, tag, attrs)
    return op.output(0) if len(bodies) == 1 else [op.output(i) for i in range(len(bodies))]


def _check_body(bodies, name: str) -> None:
    for b in bodies:
        for n in E.walk(b):
            if isinstance(n, E.Reduce) and n is not b:
                raise ExprError(f"compute {name!r}: a reduction must be the whole body, "
                                f"not nested inside {b}")
    reds = [b for b in bodies if isinstance(b, E.Reduce)]
    if reds and len(reds) != len(bodies):
        raise ExprError(f"compute {name!r}: cannot mix reductions and plain outputs")
    if any(r.axis != reds[0].axis or repr(r.condition) != repr(reds[0].condition)
           for r in reds):
        raise ExprError(f"compute {name!r}: the outputs' reductions must share their axes and "
                        "condition")
    tuples = [r for r in reds if len(r.sources) > 1]
    if tuples and (len(reds) != len(tuples[0].sources) or any(
            len(r.sources) != len(tuples[0].sources) or r.value_index != k
            or any(x is not y for x, y in zip(r.sources, tuples[0].sources))
            for k, r in enumerate(reds))):
        raise ExprError(f"compute {name!r}: a tuple reduction's outputs must be all of its "
                        f"{len(tuples[0].sources)} components, in order (T0, T1 = "
                        "te.compute(shape, lambda i: reducer((a, b), axis=k)))")


def reduce_axis(dom, name: str = "rv") -> E.IterVar:
    """A reduction axis over dom = (begin, end) (begin must be 0) or an extent."""
    if isinstance(dom, (tuple, list)):
        if len(dom) != 2:
            raise ShapeError(f"reduce_axis {name!r}: dom must be (begin, end), got {dom}")
        lo, hi = dom
        if not (isinstance(lo, int) and lo == 0):
            if isinstance(lo, int) and isinstance(hi, int):
                return _offset_axis(lo, hi, name)
            raise ShapeError(f"reduce_axis {name!r}: begin must be 0, got {lo}")
        ext = hi
    else:
        ext = dom
    if isinstance(ext, int) and ext <= 0:
        raise ShapeError(f"reduce_axis {name!r}: extent must be positive, got {ext}")
    return E.IterVar(ext, name, "reduce")


def _offset_axis(lo: int, hi: int, name: str):
    raise ShapeError(f"reduce_axis {name!r}: only ranges starting at 0 are supported, "
                     f"got ({lo}, {hi}); shift the index instead")


THREAD_TAGS = ("blockIdx.x", "blockIdx.y", "blockIdx.z", "threadIdx.x", "threadIdx.y",
               "threadIdx.z", "vthread")


class ThreadIndexVar(E.Var):
    """A thread index as an expression (te.thread_axis(...).var): knows its tag."""

    __slots__ = ("tag",)

    def __init__(self, name: str, tag: str):
        super().__init__(name, "int32")
        self.tag = tag


class ThreadAxis:
    """A GPU thread index to bind a loop to (TVM's te.thread_axis): `s[C].bind(i, tx)`."""

    def __init__(self, tag: str, name: str = ""):
        self.tag, self.name = tag, name or tag
        # the index as an expression, for s[T].set_store_predicate(tx.var.equal(0))
        self.var = ThreadIndexVar(self.name.replace(".", "_"), tag)

    def __repr__(self) -> str:
        return f"thread_axis({self.tag!r})"


def thread_axis(dom=None, tag: str = "", name: str = "", span=None) -> ThreadAxis:
    """A thread index: te.thread_axis("threadIdx.x"), or TVM's (dom, tag) form."""
    from ..errors import ScheduleError
    if isinstance(dom, str) and not tag:
        dom, tag = None, dom
    if tag.startswith("vthread") or tag == "cthread":
        tag = "vthread"
    if tag not in THREAD_TAGS:
        raise ScheduleError(f"thread_axis: unknown tag {tag!r}; known: {', '.join(THREAD_TAGS)}")
    return ThreadAxis(tag, name)


def make_reduce(combiner, expr, axis, where=None, init=None):
    """One Reduce node, or for a tuple of sources (a tuple reducer) one node per component."""
    axes = list(axis) if isinstance(axis, (list, tuple)) else [axis]
    for a in axes:
        if not isinstance(a, E.IterVar) or a.kind != "reduce":
            raise ExprError(f"{combiner.name}: axis {a!r} is not a te.reduce_axis")
    if not axes:
        raise ExprError(f"{combiner.name}: needs at least one reduce axis")
    if not isinstance(expr, (tuple, list)):
        return E.Reduce(combiner, E.convert(expr), axes, where, init)
    srcs = tuple(E.convert(x) for x in expr)
    inits = [None] * len(srcs) if init is None else list(init) \
        if isinstance(init, (tuple, list)) else None
    if inits is None or len(inits) != len(srcs):
        raise ExprError(f"{combiner.name}: init must be a tuple of {len(srcs)} values, one per "
                        f"source, got {init!r}")
    return tuple(E.Reduce(combiner, srcs, axes, where, i0, k) for k, i0 in enumerate(inits))


class CommReducer:
    """A commutative reduction: combine(lhs, rhs) and its identity element per dtype. A tuple
    reducer (TVM's argmax) combines tuples: fcombine((x0, x1), (y0, y1)) -> (z0, z1) and
    fidentity(dtype0, dtype1) -> (e0, e1)."""

    def __init__(self, name: str, fcombine, fidentity):
        self.name, self.fcombine, self.fidentity = name, fcombine, fidentity

    def combine(self, lhs: E.Expr, rhs: E.Expr) -> E.Expr:
        return E.convert(self.fcombine(lhs, rhs))

    def identity(self, dtype: str) -> E.Expr:
        return E.convert(self.fidentity(dtype), dtype)

    def combine_all(self, lhs: tuple, rhs: tuple) -> tuple:
        """Every component of combine(lhs, rhs); one-element tuples for a plain reducer."""
        if len(lhs) == 1:
            return (self.combine(lhs[0], rhs[0]),)
        out = self._tuple(self.fcombine(tuple(lhs), tuple(rhs)), len(lhs), "fcombine")
        return tuple(E.convert(o, a.dtype) for o, a in zip(out, lhs))

    def identities(self, dtypes) -> tuple:
        dtypes = list(dtypes)
        if len(dtypes) == 1:
            return (self.identity(dtypes[0]),)
        out = self._tuple(self.fidentity(*dtypes), len(dtypes), "fidentity")
        return tuple(E.convert(o, t) for o, t in zip(out, dtypes))

    def _tuple(self, out, n: int, what: str) -> tuple:
        if not isinstance(out, (tuple, list)) or len(out) != n:
            raise ExprError(f"comm_reducer {self.name!r}: {what} must return a tuple of {n} "
                            f"values for a {n}-tuple reduction, got {out!r}")
        return tuple(out)

    def __call__(self, expr, axis, where=None, init=None):
        first = axis[0] if isinstance(axis, (list, tuple)) and axis else axis
        if not isinstance(first, E.IterVar):
            return self.combine(E.convert(expr), E.convert(axis))  # te.max(a, b): elementwise
        return make_reduce(self, expr, axis, where, init)

    def __repr__(self):
        return f"CommReducer({self.name})"


def comm_reducer(fcombine, fidentity, name: str = "reduce") -> CommReducer:
    """A custom commutative reducer: fcombine(x, y) -> expr, fidentity(dtype) -> value."""
    return CommReducer(name, fcombine, fidentity)


sum = comm_reducer(lambda x, y: x + y, lambda t: E.const(0, t), name="sum")  # noqa: A001
max = comm_reducer(lambda x, y: E.max(x, y), E.min_value, name="max")  # noqa: A001
min = comm_reducer(lambda x, y: E.min(x, y), E.max_value, name="min")  # noqa: A001
prod = comm_reducer(lambda x, y: x * y, lambda t: E.const(1, t), name="prod")
