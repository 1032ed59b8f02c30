"""Matrix products: dense (x·Wᵀ), matmul and batch_matmul, each ONE reduction compute.

In: te Tensors (and an optional bias for dense), transpose flags, an optional accumulation
dtype. Out: the product as a single compute tagged "dense" / "matmul" / "batch_matmul"
whose body is one te.sum over k; dense's bias is a separate "broadcast" compute after it so
the scheduler can tile the product and fuse the bias into its epilogue.
"""

from __future__ import annotations

from ... import te
from ...errors import ShapeError
from ...te.tensor import Tensor
from ..utils import broadcast_shape, check_tensor, const_shape

__all__ = ["batch_matmul", "dense", "matmul"]


def dense(data: Tensor, weight: Tensor, bias: Tensor | None = None,
          out_dtype: str | None = None) -> Tensor:
    """out[..., n] = sum_k data[..., k] * weight[n, k] (+ bias[n]); weight is [N, K]."""
    check_tensor(data, "dense", "data")
    check_tensor(weight, "dense", "weight")
    dshape, wshape = const_shape(data, "dense"), const_shape(weight, "dense")
    if len(wshape) != 2 or not dshape:
        raise ShapeError(f"dense: weight must be 2-d [N, K] and data at least 1-d, got data "
                         f"{dshape} and weight {wshape}")
    if dshape[-1] != wshape[1]:
        raise ShapeError(f"dense: inner dimensions differ: data {dshape} has K={dshape[-1]}, "
                         f"weight {wshape} (layout [N, K]) has K={wshape[1]}")
    od = out_dtype or data.dtype
    k = te.reduce_axis(dshape[-1], name="k")
    out = te.compute(
        dshape[:-1] + (wshape[0],),
        lambda *i: te.sum(data[i[:-1] + (k,)].astype(od) * weight[i[-1], k].astype(od), axis=k),
        name="dense", tag="dense")
    if bias is None:
        return out
    check_tensor(bias, "dense", "bias")
    if const_shape(bias, "dense") != (wshape[0],):
        raise ShapeError(f"dense: bias must have shape ({wshape[0]},) for weight {wshape}, "
                         f"got {const_shape(bias, 'dense')}")
    return te.compute(out.shape, lambda *i: out[i] + bias[i[-1]].astype(od), name="bias_add",
                      tag="broadcast")


def _batch_index(i: tuple, bshape: tuple, out_batch: tuple) -> tuple:
    lead = len(out_batch) - len(bshape)
    return tuple(0 if d == 1 else i[lead + j] for j, d in enumerate(bshape))


def _product(a: Tensor, b: Tensor, ta: bool, tb: bool, od: str | None, name: str) -> Tensor:
    """One compute for a (batched, broadcast) matrix product of the last two axes."""
    ashape, bshape = const_shape(a, name), const_shape(b, name)
    m, ka = (ashape[-1], ashape[-2]) if ta else (ashape[-2], ashape[-1])
    kb, n = (bshape[-1], bshape[-2]) if tb else (bshape[-2], bshape[-1])
    if ka != kb:
        raise ShapeError(f"{name}: inner dimensions differ: a {ashape} (transpose_a={ta}) has "
                         f"K={ka}, b {bshape} (transpose_b={tb}) has K={kb}")
    batch = broadcast_shape(ashape[:-2], bshape[:-2], name)
    od = od or a.dtype
    k = te.reduce_axis(ka, name="k")

    def body(*i):
        bi, r, c = i[:-2], i[-2], i[-1]
        ia = _batch_index(bi, ashape[:-2], batch) + ((k, r) if ta else (r, k))
        ib = _batch_index(bi, bshape[:-2], batch) + ((c, k) if tb else (k, c))
        return te.sum(a[ia].astype(od) * b[ib].astype(od), axis=k)
    return te.compute(batch + (m, n), body, name=name, tag=name)


def matmul(a: Tensor, b: Tensor, transpose_a: bool = False, transpose_b: bool = False,
           out_dtype: str | None = None) -> Tensor:
    """a @ b over the last two axes; leading (batch) axes broadcast like NumPy's matmul."""
    check_tensor(a, "matmul", "a")
    check_tensor(b, "matmul", "b")
    if a.ndim < 2 or b.ndim < 2:
        raise ShapeError(f"matmul: operands must be at least 2-d, got "
                         f"{const_shape(a, 'matmul')} and {const_shape(b, 'matmul')}")
    return _product(a, b, transpose_a, transpose_b, out_dtype, "matmul")


def batch_matmul(x: Tensor, y: Tensor, transpose_a: bool = False, transpose_b: bool = True,
                 out_dtype: str | None = None) -> Tensor:
    """out[b] = x[b] @ y[b]ᵀ by default (TVM layout: y is [B, N, K]); a batch of 1 broadcasts."""
    check_tensor(x, "batch_matmul", "x")
    check_tensor(y, "batch_matmul", "y")
    xs, ys = const_shape(x, "batch_matmul"), const_shape(y, "batch_matmul")
    if len(xs) != 3 or len(ys) != 3:
        raise ShapeError(f"batch_matmul: operands must be 3-d, got {xs} and {ys}")
    return _product(x, y, transpose_a, transpose_b, out_dtype, "batch_matmul")
