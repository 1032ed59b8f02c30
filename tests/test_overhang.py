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


def test_producer_of_a_clamped_temporary_covers_its_clamped_rows():
    """A temporary C at an overhanging tile (rows 7..11 of 7 are clamped to row 6) with its
    producer P attached inside it: P's region follows the clamped rows C reads, so nothing
    reads outside P's buffer (a random schedule of conv2d found the case)."""
    import tir_interp
    X = te.placeholder((9, 8), name="X")
    P = te.compute((9, 8), lambda i, j: X[i, j] * 2.0, name="P")
    r = te.reduce_axis((0, 3), "r")
    C = te.compute((7, 8), lambda i, j: te.sum(P[i + r, j], axis=r), name="C")
    D = te.compute((7, 8), lambda i, j: C[i, j] + 1.0, name="D")
    s = te.create_schedule(D.op)
    yo, yi = s[D].split(D.op.axis[0], factor=6)
    s[C].compute_at(s[D], yi)
    s[P].compute_at(s[C], s[C].op.axis[0])
    x = np.random.default_rng(3).standard_normal((9, 8)).astype("float32")
    want = sum(x[k:k + 7] * 2 for k in range(3)) + 1
    out = np.zeros((7, 8), "float32")
    tir_interp.run(kiln.lower(s, [X, D]), x, out)   # bounds-checked loads
    np.testing.assert_allclose(out, want, rtol=1e-5)
    out = np.zeros((7, 8), "float32")
    kiln.build(s, [X, D])(x, out)
    np.testing.assert_allclose(out, want, rtol=1e-5)
