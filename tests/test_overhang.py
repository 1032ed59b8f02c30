"""Tiles that overhang a tensor (197 rows in tiles of 8): a temporary's overhang is computed
from clamped rows (no test per point), an argument's stores stay guarded, a vectorized axis
keeps its edge guard; results against NumPy for every combination."""

import numpy as np
import pytest

import kiln
from kiln import te
from kiln.tir import stmt as S


def _dense(m, n, k):
    A = te.placeholder((m, k), name="A")
    W = te.placeholder((n, k), name="W")
    r = te.reduce_axis((0, k), "k")
    C = te.compute((m, n), lambda i, j: te.sum(A[i, r] * W[j, r], axis=r), name="C")
    return A, W, C


def _tiled(m, n, k, rows, cols, vec=True):
    A, W, C = _dense(m, n, k)
    s = te.create_schedule(C.op)
    CL = s.cache_write(C, "local")
    io, ii = s[C].split(C.op.axis[0], factor=rows)
    jo, ji = s[C].split(C.op.axis[1], factor=cols)
    s[C].reorder(io, jo, ii, ji)
    s[CL].compute_at(s[C], jo)
    i, j = s[CL].op.axis
    (kk,) = s[CL].op.reduce_axis
    s[CL].reorder(kk, i, j)
    if vec:
        s[CL].vectorize(j)
        s[C].vectorize(ji)
    s[C].parallel(io)
    return s, [A, W, C]


def _guards_in_reduction(func) -> int:
    """Ifs nested inside a loop that encloses a reduction update of C_local."""
    count = 0
    for st in S.walk_stmts(func.body):
        if isinstance(st, S.For) and st.var.name.startswith("k"):
            count += sum(isinstance(x, S.IfThenElse) for x in S.walk_stmts(st.body))
    return count


@pytest.mark.parametrize("m,n,rows,cols,vec", [(197, 64, 8, 16, True), (197, 64, 8, 16, False),
                                               (64, 197, 8, 16, True), (61, 45, 6, 8, True),
                                               (197, 197, 8, 16, True)])
def test_overhanging_tiles_match_numpy(m, n, rows, cols, vec):
    k = 40
    s, args = _tiled(m, n, k, rows, cols, vec)
    f = kiln.build(s, args)
    rng = np.random.default_rng(m * n)
    a = rng.standard_normal((m, k)).astype("float32")
    w = rng.standard_normal((n, k)).astype("float32")
    c = np.full((m, n), np.nan, "float32")
    f(a, w, c)
    np.testing.assert_allclose(c, a @ w.T, rtol=1e-4, atol=1e-4)


def test_row_overhang_has_no_test_per_point_but_a_vector_axis_keeps_its_guard():
    s, args = _tiled(197, 64, 40, 8, 16)
    func = kiln.lower(s, args)
    assert _guards_in_reduction(func) == 0
    assert "min(" in str(func)  # the last tile's rows are clamped
    s, args = _tiled(64, 197, 40, 8, 16)  # columns overhang: the vectorized axis
    func = kiln.lower(s, args)
    assert _guards_in_reduction(func) > 0
