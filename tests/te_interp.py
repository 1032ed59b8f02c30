"""A reference interpreter of the te language, vectorised with NumPy; a second test oracle.

In: output te Tensors and NumPy arrays for the placeholders they read. Out: NumPy arrays of
the outputs. Each ComputeOp is evaluated over its whole index space at once: every axis var
is an np.arange shaped to broadcast along its own dimension, reductions add their axes as
trailing dimensions, and a TensorLoad is fancy indexing. It knows nothing of schedules, loops
or C, so it checks topi (and the compiler) independently of lowering and codegen.

Semantics follow te exactly: integer `/`, floordiv and floormod use floor rounding; Select
evaluates only the chosen branch (the other branch's reads may be out of range: they are
clipped, and masked out by np.where); a read out of range where it is actually used raises
IndexError, which catches operator bugs instead of hiding them.
"""

from __future__ import annotations

import math

import numpy as np

from kiln.te import expr as E
from kiln.te import tensor as T

_CMP = {"lt": np.less, "le": np.less_equal, "gt": np.greater, "ge": np.greater_equal,
        "eq": np.equal, "ne": np.not_equal}
_BUILTIN_REDUCE = {"sum": np.sum, "max": np.max, "min": np.min, "prod": np.prod}
_erf = np.vectorize(math.erf, otypes=[np.float64])


def np_dtype(dtype: str) -> np.dtype:
    """The NumPy dtype for a te dtype (bfloat16 is evaluated as float32)."""
    return np.dtype("float32" if dtype == "bfloat16" else dtype)


def _as(x, dtype: str) -> np.ndarray:
    return np.asarray(x).astype(np_dtype(dtype), copy=False)


def _round_half_away(x):
    t = np.trunc(x)
    return np.where(np.abs(x - t) >= 0.5, t + np.sign(x), t)


_CALL = {
    "exp": np.exp, "log": np.log, "sqrt": np.sqrt, "rsqrt": lambda x: 1 / np.sqrt(x),
    "tanh": np.tanh, "erf": _erf, "sigmoid": lambda x: 1 / (1 + np.exp(-x)),
    "floor": np.floor, "ceil": np.ceil, "round": _round_half_away, "trunc": np.trunc,
    "sin": np.sin, "cos": np.cos, "log2": np.log2, "exp2": np.exp2, "abs": np.abs,
    "pow": np.power,
}


def _binop(op: str, a, b, dtype: str):
    flt = E.is_float(dtype)
    if op == "add":
        return a + b
    if op == "sub":
        return a - b
    if op == "mul":
        return a * b
    if op == "div":
        return np.true_divide(a, b) if flt else np.floor_divide(a, b)
    if op == "floordiv":
        return np.floor(np.true_divide(a, b)) if flt else np.floor_divide(a, b)
    if op == "floormod":
        return np.mod(a, b)
    if op in ("min", "max"):
        return (np.minimum if op == "min" else np.maximum)(a, b)
    if op in ("and", "or"):
        return (np.logical_and if op == "and" else np.logical_or)(a, b)
    raise NotImplementedError(f"te_interp: binary op {op!r}")


class Evaluator:
    """Evaluates expressions with Vars bound to (broadcastable) arrays."""

    def __init__(self, env: dict, values: dict):
        self.env, self.values = env, values

    def ev(self, e: E.Expr, active=None) -> np.ndarray:
        """Value of `e`; `active` masks the positions whose value is actually used."""
        if isinstance(e, E.Var):
            if e not in self.env:
                raise KeyError(f"te_interp: unbound variable {e.name}")
            return self.env[e]
        if isinstance(e, (E.IntImm, E.FloatImm)):
            return np.array(e.value, dtype=np_dtype(e.dtype))
        if isinstance(e, E.BinOp):
            a, b = self.ev(e.a, active), self.ev(e.b, active)
            return _as(_binop(e.op, a, b, e.dtype), e.dtype)
        if isinstance(e, E.Cmp):
            return _CMP[e.op](self.ev(e.a, active), self.ev(e.b, active))
        if isinstance(e, E.Not):
            return np.logical_not(self.ev(e.a, active))
        if isinstance(e, E.Select):
            return self._select(e, active)
        if isinstance(e, E.Cast):
            return _as(self.ev(e.value, active), e.dtype)
        if isinstance(e, E.Call):
            if e.name not in _CALL:
                raise NotImplementedError(f"te_interp: intrinsic {e.name!r}")
            return _as(_CALL[e.name](*[self.ev(a, active) for a in e.args]), e.dtype)
        if isinstance(e, E.TensorLoad):
            return self._load(e, active)
        if isinstance(e, E.Reduce):
            raise NotImplementedError("te_interp: a Reduce must be the whole body of a compute")
        raise NotImplementedError(f"te_interp: node {type(e).__name__}")

    def _select(self, e: E.Select, active):
        c = self.ev(e.cond, active)
        on = c if active is None else np.logical_and(active, c)
        off = np.logical_not(c) if active is None else np.logical_and(active, np.logical_not(c))
        return np.where(c, self.ev(e.t, on), self.ev(e.f, off))

    def _load(self, e: E.TensorLoad, active):
        arr = self.values[_key(e.tensor)]
        idx = []
        for k, (i, n) in enumerate(zip(e.indices, arr.shape, strict=True)):
            v = np.asarray(self.ev(i, active)).astype(np.int64)
            bad = (v < 0) | (v >= n)
            if active is not None:
                bad = np.logical_and(bad, active)
            if np.any(bad):
                vals, mask = np.broadcast_arrays(v, bad)
                raise IndexError(f"te_interp: {e.tensor.name} read at index {vals[mask][0]} "
                                 f"on axis {k}, outside [0, {n})")
            idx.append(np.clip(v, 0, n - 1))
        return arr[tuple(idx)]


def _key(t: T.Tensor) -> tuple:
    return (id(t.op), t.value_index)


def _topo(outs: list) -> list:
    order, seen = [], set()

    def visit(op):
        if id(op) in seen:
            return
        seen.add(id(op))
        for t in op.input_tensors:
            visit(t.op)
        order.append(op)
    for t in outs:
        visit(t.op)
    return order


def _axis_env(axes: list, extents: list, ndim: int, first: int, base: dict) -> dict:
    env = dict(base)
    for k, (a, n) in enumerate(zip(axes, extents, strict=True)):
        shape = [1] * ndim
        shape[first + k] = n
        env[a] = np.arange(n, dtype=np_dtype(a.dtype)).reshape(shape)
    return env


def _extent(e, scalars: dict) -> int:
    return int(Evaluator(scalars, {}).ev(E.convert(e)))


def _reduce(body: E.Reduce, ev: Evaluator, spatial: list, rext: list):
    """Reduce `body` over its trailing axes (spatial dims first)."""
    full = tuple(spatial) + tuple(rext)
    cond = None if body.condition is None else np.broadcast_to(ev.ev(body.condition), full)
    src = np.broadcast_to(_as(ev.ev(body.source, cond), body.dtype), full)
    comb = body.combiner
    ident = ev.ev(comb.identity(body.dtype))
    if cond is not None:
        src = np.where(cond, src, ident)
    raxes = tuple(range(len(spatial), len(full)))
    builtin = getattr(T, comb.name, None) is comb and comb.name in _BUILTIN_REDUCE
    if builtin:
        res = _as(_BUILTIN_REDUCE[comb.name](src, axis=raxes), body.dtype)
    else:
        res = _fold(comb, src.reshape(tuple(spatial) + (-1,)), ident, body.dtype)
    if body.init is not None:
        res = _combine(comb, ev.ev(body.init), res, body.dtype)
    return res


def _combine(comb, lhs, rhs, dtype: str):
    a, b = E.Var("lhs", dtype), E.Var("rhs", dtype)
    return _as(Evaluator({a: lhs, b: rhs}, {}).ev(comb.combine(a, b)), dtype)


def _fold(comb, src, ident, dtype: str):
    a, b = E.Var("lhs", dtype), E.Var("rhs", dtype)
    expr = comb.combine(a, b)
    acc = np.broadcast_to(ident, src.shape[:-1])
    for j in range(src.shape[-1]):
        acc = _as(Evaluator({a: acc, b: src[..., j]}, {}).ev(expr), dtype)
    return acc


def _compute(op: T.ComputeOp, values: dict, scalars: dict) -> list:
    spatial = [_extent(a.extent, scalars) for a in op.axis]
    out = []
    for body in op.body:
        if isinstance(body, E.Reduce):
            rext = [_extent(a.extent, scalars) for a in body.axis]
            ndim = len(spatial) + len(rext)
            env = _axis_env(op.axis, spatial, ndim, 0, scalars)
            env = _axis_env(list(body.axis), rext, ndim, len(spatial), env)
            val = _reduce(body, Evaluator(env, values), spatial, rext)
        else:
            env = _axis_env(op.axis, spatial, len(spatial), 0, scalars)
            val = Evaluator(env, values).ev(body)
        out.append(np.array(np.broadcast_to(_as(val, body.dtype), spatial), order="C"))
    return out


def _feed(t: T.Tensor, inputs: dict, scalars: dict) -> np.ndarray:
    if t not in inputs:
        raise KeyError(f"te_interp: no input array for placeholder {t.name}")
    arr = np.asarray(inputs[t])
    shape = tuple(_extent(d, scalars) for d in t.shape)
    if arr.shape != shape or arr.dtype != np_dtype(t.dtype):
        raise ValueError(f"te_interp: placeholder {t.name} wants {shape} {t.dtype}, got "
                         f"{arr.shape} {arr.dtype}")
    return arr


def evaluate(outputs, inputs: dict, var_values: dict | None = None):
    """Arrays of `outputs` (a Tensor or a list) given {placeholder Tensor: array}.

    var_values binds symbolic sizes (te.var) to ints. Returns an array, or a list of them
    when `outputs` is a list.
    """
    single = isinstance(outputs, T.Tensor)
    outs = [outputs] if single else list(outputs)
    scalars = {v: np.array(int(n), dtype=np_dtype(v.dtype))
               for v, n in (var_values or {}).items()}
    values: dict = {}
    with np.errstate(all="ignore"):
        for op in _topo(outs):
            if isinstance(op, T.PlaceholderOp):
                values[_key(op.output(0))] = _feed(op.output(0), inputs, scalars)
                continue
            for i, arr in enumerate(_compute(op, values, scalars)):
                values[(id(op), i)] = arr
    res = [values[_key(t)] for t in outs]
    return res[0] if single else res
