"""tvm.contrib.cblas: matrix products as external tensor functions (te.extern).

`cblas.matmul(A, B)` is a tensor computed by the packed function tvm.contrib.cblas.matmul,
which runs NumPy's matmul (its BLAS: OpenBLAS in the NumPy wheels) on the kernel's buffers.
Other computes of the same schedule read its result like any tensor.
"""

from __future__ import annotations

import numpy as np

from ..runtime.registry import register_func
from ..te import extern
from ..te.extern_op import call_packed


def matmul(lhs, rhs, transa: bool = False, transb: bool = False, **_):
    """lhs @ rhs (each optionally transposed) as a te.extern tensor."""
    n = lhs.shape[1] if transa else lhs.shape[0]
    m = rhs.shape[0] if transb else rhs.shape[1]
    return extern((n, m), [lhs, rhs], lambda ins, outs: call_packed(
        "tvm.contrib.cblas.matmul", ins[0], ins[1], outs[0], transa, transb),
        name="C", tag="matmul")


def batch_matmul(lhs, rhs, transa: bool = False, transb: bool = False, **_):
    """A batch of products: lhs[b] @ rhs[b] as a te.extern tensor."""
    b = lhs.shape[0]
    n = lhs.shape[2] if transa else lhs.shape[1]
    m = rhs.shape[1] if transb else rhs.shape[2]
    return extern((b, n, m), [lhs, rhs], lambda ins, outs: call_packed(
        "tvm.contrib.cblas.batch_matmul", ins[0], ins[1], outs[0], transa, transb),
        name="C", tag="batch_matmul")


def _matmul(a, b, c, transa, transb) -> None:
    x, y = a.numpy(), b.numpy()
    x = np.swapaxes(x, -1, -2) if transa else x
    y = np.swapaxes(y, -1, -2) if transb else y
    c.copyfrom(np.matmul(x, y))


register_func("tvm.contrib.cblas.matmul", _matmul, override=True)
register_func("tvm.contrib.cblas.batch_matmul", _matmul, override=True)

__all__ = ["batch_matmul", "matmul"]
