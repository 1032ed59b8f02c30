"""softmax, log_softmax and layer_norm, as short chains of reductions and elementwise computes.

In: a te Tensor and the axis (axes for layer_norm) to normalise over. Out: the normalised
tensor. Every intermediate (row max, exp, row sum, mean, variance) is its own compute so the
scheduler can inline or tile it; softmax subtracts the row max before exp so it never
overflows, and layer_norm takes the variance of the centred values (two passes), which is
stable where E[x²] - E[x]² is not.
"""

from __future__ import annotations

from ... import te
from ...errors import ShapeError
from ...te.tensor import Tensor
from ..utils import Axis, check_tensor, const_shape, normalize_axes, normalize_axis, prod

__all__ = ["layer_norm", "log_softmax", "softmax"]


def _with(i: tuple, axes: list[int], rvars: list) -> tuple:
    """Full index from a reduced-shape index `i` with `rvars` placed at `axes` (sorted)."""
    it, fill = iter(i), dict(zip(axes, rvars, strict=True))
    return tuple(fill[a] if a in fill else next(it) for a in range(len(i) + len(axes)))


def _without(i: tuple, axes: list[int]) -> tuple:
    """The reduced-shape index of a full index `i` (drop the reduced axes)."""
    return tuple(v for a, v in enumerate(i) if a not in axes)


def _row_reduce(x: Tensor, axes: list[int], reducer, source, name: str) -> Tensor:
    """out[rest] = reducer(source(full_index)) over `axes`, tagged "comm_reduce"."""
    shape = const_shape(x, name)
    rvars = [te.reduce_axis(shape[a], name=f"k{a}") for a in axes]
    rshape = tuple(d for a, d in enumerate(shape) if a not in axes)
    return te.compute(rshape, lambda *i: reducer(source(_with(i, axes, rvars)), axis=rvars),
                      name=name, tag="comm_reduce")


def softmax(x: Tensor, axis: int = -1) -> Tensor:
    """exp(x - max) / sum(exp(x - max)) along `axis`: max, exp, sum, divide computes."""
    check_tensor(x, "softmax")
    ax = [normalize_axis(axis, x.ndim, "softmax")]
    mx = _row_reduce(x, ax, te.max, lambda i: x[i], "softmax_maxelem")
    ex = te.compute(x.shape, lambda *i: te.exp(x[i] - mx[_without(i, ax)]), name="softmax_exp",
                    tag="broadcast")
    sm = _row_reduce(x, ax, te.sum, lambda i: ex[i], "softmax_expsum")
    # one reciprocal per row, then multiplies: a vector division per element costs more
    # than the exp (and the result differs from the quotient by at most an ulp)
    return te.compute(x.shape, lambda *i: ex[i] * (1.0 / sm[_without(i, ax)]),
                      name="softmax_norm", tag="broadcast")


def log_softmax(x: Tensor, axis: int = -1) -> Tensor:
    """x - max - log(sum(exp(x - max))) along `axis`."""
    check_tensor(x, "log_softmax")
    ax = [normalize_axis(axis, x.ndim, "log_softmax")]
    mx = _row_reduce(x, ax, te.max, lambda i: x[i], "log_softmax_maxelem")
    sm = _row_reduce(x, ax, te.sum, lambda i: te.exp(x[i] - mx[_without(i, ax)]),
                     "log_softmax_expsum")
    return te.compute(
        x.shape, lambda *i: x[i] - mx[_without(i, ax)] - te.log(sm[_without(i, ax)]),
        name="log_softmax", tag="broadcast")


def _check_affine(p: Tensor | None, want: tuple, what: str) -> None:
    if p is None:
        return
    check_tensor(p, "layer_norm", what)
    if const_shape(p, "layer_norm") != want:
        raise ShapeError(f"layer_norm: {what} must have shape {want} (the normalised axes), "
                         f"got {const_shape(p, 'layer_norm')}")


def layer_norm(x: Tensor, gamma: Tensor | None, beta: Tensor | None, axis: Axis = -1,
               epsilon: float = 1e-5) -> Tensor:
    """(x - mean) / sqrt(var + eps) * gamma + beta over `axis` (int or tuple of axes).

    gamma and beta have the extents of the normalised axes (either may be None).
    """
    check_tensor(x, "layer_norm")
    shape = const_shape(x, "layer_norm")
    axes = normalize_axes(axis, len(shape), "layer_norm")
    pshape = tuple(shape[a] for a in axes)
    _check_affine(gamma, pshape, "gamma")
    _check_affine(beta, pshape, "beta")
    count = float(prod(pshape))
    s = _row_reduce(x, axes, te.sum, lambda i: x[i], "layer_norm_sum")

    def centred(i):
        return x[i] - s[_without(i, axes)] / count

    v = _row_reduce(x, axes, te.sum, lambda i: centred(i) * centred(i), "layer_norm_varsum")

    def body(*i):
        out = centred(i) * te.rsqrt(v[_without(i, axes)] / count + epsilon)
        pi = tuple(i[a] for a in axes)
        if gamma is not None:
            out = out * gamma[pi]
        if beta is not None:
            out = out + beta[pi]
        return out
    return te.compute(x.shape, body, name="layer_norm", tag="broadcast")
