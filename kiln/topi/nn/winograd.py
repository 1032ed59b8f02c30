"""Winograd minimal filtering for 3x3 convolutions: F(m x m, 3 x 3) (Lavin & Gray, 2015).

In: the tile size m, a 3x3 weight (NumPy, at build time), an input padded and viewed
channels-last [N, m*TH + 2, m*TW + 2, C], and the batched products of the transformed tiles.
Out: `winograd_matrices(m)` (A^T, G, B^T from the Cook-Toom interpolation points 0, 1, -1,
2, -2, ...); `winograd_weight(w, m)` = G g G^T per (OC, IC) as [a*a, IC, OC] (a = m + 2);
`winograd_input(xp, m)` = B^T d B of every m x m output tile's (m+2) x (m+2) input patch,
as V[a*a, N*TH*TW, C]; `winograd_output(M, m, (N, OC, H, W))` = A^T Y A of every tile,
written NCHW (the edge tiles of an H or W that m does not divide are cut).
Between them a product per transform position: M[e] = V[e] @ U[e] ([P, IC] @ [IC, OC]).
Every transform element is written out as its sum of the nonzero terms (the matrices are
constants), one branch of a Select chain per transform position: a schedule that unrolls the
position loops leaves straight-line sums of vector loads (graph.default_winograd).
Why: a 3x3 convolution costs 9 multiply-adds per output and input channel; F(4x4, 3x3)
costs 36 / 16 = 2.25 in its products, F(2x2, 3x3) 16 / 4 = 4, for a few adds per element in
the transforms.
"""

from __future__ import annotations

import numpy as np
from numpy.polynomial import polynomial as npoly

from ... import te
from ...errors import ShapeError
from ...te import expr as E
from ...te.tensor import Tensor
from ..utils import check_tensor, const_shape

__all__ = ["winograd_input", "winograd_matrices", "winograd_output", "winograd_weight"]

R = 3  # the filter size these transforms are for
_POINTS = (0.0, 1.0, -1.0, 2.0, -2.0, 0.5, -0.5)


def winograd_matrices(m: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(A^T [m, a], G [a, 3], B^T [a, a]) with y = A^T ((G g) * (B^T d)) the m outputs of a
    3-tap correlation of d (a = m + 2 inputs); points 0, +-1, +-2, ... and infinity."""
    a = m + R - 1
    if m < 1 or a - 1 > len(_POINTS):
        raise ShapeError(f"winograd: tile size m={m} is not supported (1..{len(_POINTS) - 1})")
    pts = np.array(_POINTS[:a - 1])
    at, g, bt = np.zeros((m, a)), np.zeros((a, R)), np.zeros((a, a))
    for j, p in enumerate(pts):
        others = npoly.polyfromroots(np.delete(pts, j))  # prod over l != j of (x - p_l)
        at[:, j] = p ** np.arange(m)
        g[j] = p ** np.arange(R) / npoly.polyval(p, others)
        bt[j, :a - 1] = others
    at[m - 1, a - 1] = g[a - 1, R - 1] = 1.0
    bt[a - 1] = npoly.polyfromroots(pts)
    return at, g, bt


def winograd_weight(w: np.ndarray, m: int) -> np.ndarray:
    """U[a*a, IC, OC] = G w[oc, ic] G^T of an OIHW 3x3 weight (float64 math, w's dtype)."""
    oc, ic, kh, kw = w.shape
    if (kh, kw) != (R, R):
        raise ShapeError(f"winograd_weight: a {kh}x{kw} kernel is not 3x3")
    _, g, _ = winograd_matrices(m)
    u = np.einsum("ak,oikl,bl->abio", g, w.astype(np.float64), g)
    return np.ascontiguousarray(u.reshape(-1, ic, oc).astype(w.dtype))


def _term_sum(terms: list):
    """sum of coef * value over (coef, value) terms, +-1 without a multiply."""
    out = None
    for c, v in terms:
        if c == 1.0:
            t, neg = v, False
        elif c == -1.0:
            t, neg = v, True
        else:
            t, neg = te.const(float(c), v.dtype) * v, False
        if out is None:
            out = -t if neg else t
        else:
            out = out - t if neg else out + t
    return out


def _select_chain(key, branches: list):
    """branches[k] where key == k (the last one also for any other key)."""
    out = branches[-1]
    for k in range(len(branches) - 2, -1, -1):
        out = E.Select(E.cmp("eq", key, k), branches[k], out)
    return out


def winograd_input(xp: Tensor, m: int, name: str = "winograd_input") -> Tensor:
    """V[a*a, N*TH*TW, C] = B^T d B of each tile's input patch (see the module docstring)."""
    check_tensor(xp, "winograd_input")
    n, hp, wp, c = const_shape(xp, "winograd_input")
    a = m + R - 1
    th, tw = (hp - R + 1) // m, (wp - R + 1) // m
    if th < 1 or tw < 1 or th * m + R - 1 != hp or tw * m + R - 1 != wp:
        raise ShapeError(f"winograd_input: padded input {hp}x{wp} is not m*T + 2 (m={m})")
    _, _, bt = winograd_matrices(m)

    def f(e, p, ch):
        b, y0, x0 = p // (th * tw), (p // tw) % th * m, p % tw * m
        sums = []
        for e1 in range(a):
            for e2 in range(a):
                terms = [(bt[e1, i] * bt[e2, j], xp[b, y0 + i, x0 + j, ch])
                         for i in range(a) if bt[e1, i] for j in range(a) if bt[e2, j]]
                sums.append(_term_sum(terms))
        return _select_chain(e, sums)
    return te.compute((a * a, n * th * tw, c), f, name=name, tag="winograd_input",
                      attrs={"tile": m})


def winograd_output(mt: Tensor, m: int, out_shape, name: str = "winograd_output") -> Tensor:
    """Y[N, OC, H, W] = A^T M A of each tile's transformed products (module docstring)."""
    check_tensor(mt, "winograd_output")
    aa, p, oc = const_shape(mt, "winograd_output")
    n, oc2, h, w = (int(d) for d in out_shape)
    a = m + R - 1
    th, tw = -(-h // m), -(-w // m)
    if aa != a * a or oc != oc2 or p != n * th * tw:
        raise ShapeError(f"winograd_output: products {[aa, p, oc]} do not give "
                         f"{[n, oc2, h, w]} with m={m}")
    at, _, _ = winograd_matrices(m)

    def f(b, o, y, x):
        tile = (b * th + y // m) * tw + x // m
        rows = []
        for i in range(m):
            cols = []
            for j in range(m):
                terms = [(at[i, e1] * at[j, e2], mt[e1 * a + e2, tile, o])
                         for e1 in range(a) if at[i, e1] for e2 in range(a) if at[j, e2]]
                cols.append(_term_sum(terms))
            rows.append(_select_chain(x % m, cols))
        return _select_chain(y % m, rows)
    return te.compute((n, oc, h, w), f, name=name, tag="winograd_output", attrs={"tile": m})
