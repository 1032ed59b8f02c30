"""Edge tiles in generated C (codegen/c_edges.py and the peel in c_prep): a tile that does not
divide its axis keeps vector code for its full tiles, the edge is split off its loop or its
guard hoisted out of the reduction loop, and the copies this makes stay bounded; unroll
expansion keeps only the Select branches its index decides (c_prep.specialize)."""

from __future__ import annotations

import numpy as np
import pytest
from util import F32, buf, ld, loop

from kiln.build_module import build
from kiln.codegen.c import render
from kiln.te import expr as E
from kiln.tir import stmt as S


@pytest.fixture(scope="module")
def rng():
    return np.random.default_rng(0)


@pytest.mark.parametrize("row_guard", [False, True])
def test_edge_guarded_vector_loop_is_peeled(row_guard, rng):
    """A 16-lane tile over 197 columns (ViT's tokens): the guard `jo * 16 + j < 197` is
    linear in the lane and the tile loop, so the full tiles' loop (jo < 12) runs the vector
    code with no guard and the edge tile, split off after it, runs its five lanes as a
    4-lane vector and one scalar (constant indices). A guard on the row alone (192 columns,
    4-row tiles over 3 rows) is tested once around the vector code."""
    rows, n = (3, 192) if row_guard else (3, 197)
    A, B = buf("A", (rows, n)), buf("B", (rows, n))
    i, jo, j = E.Var("i"), E.Var("jo"), E.Var("j")
    col = jo * 16 + j
    store = S.Store(B, i * n + col, ld(A, i * n + col) * 2.0 + 1.0)
    body = loop(i, 4 if row_guard else rows, "serial", loop(jo, -(-n // 16), "serial", loop(
        j, 16, "vectorized", S.IfThenElse((i < rows) if row_guard else (col < n), store))))
    f = S.PrimFunc("edge", [A, B], body)
    # the golden text: 16-lane registers (only printed)
    src = render(f, "cpu -mattr=+avx,+avx2,+avx512bw,+avx512f,+avx512vl,+fma,+sse4.2")
    assert "printed scalar" not in src and "kiln_store_f32x16" in src
    if not row_guard:  # full tiles unguarded, then the edge tile's five lanes: 4 + 1
        assert "jo < 12; ++jo" in src and "197)" not in src  # no guard left
        assert "kiln_store_f32x4(&B[i * 197 + 192]" in src
        assert "B[i * 197 + 196] = " in src and "B[i * 197 + 197]" not in src
    a = rng.standard_normal((rows, n)).astype(F32)
    b = np.full_like(a, np.nan)
    build(f)(a, b)
    np.testing.assert_array_equal(b, a * 2 + 1)


def test_invariant_edge_guard_is_hoisted_out_of_the_reduction_loop(rng):
    """A tile loop fused into the parallel loop (no loop to split the edge tile off): the
    edge guard, the same for every k, is tested once outside the k loop, so each copy of
    the loop holds only the vector code or only the lanes (ViT's q @ k^T over 197 keys)."""
    n = 197
    A, C = buf("A", (8, n)), buf("C", n)
    t, k, j = E.Var("t"), E.Var("k"), E.Var("j")
    col = t * 16 + j
    acc = S.Store(C, col, ld(C, col) + ld(A, k * n + col))
    body = loop(t, -(-n // 16), "parallel", loop(k, 8, "serial", loop(
        j, 16, "vectorized", S.IfThenElse(col < n, acc))))
    src = render(S.PrimFunc("hoist", [A, C], body))
    guard = src.index("if (t * 16 + 15 < 197) {")
    assert src.count("t * 16 + 15 < 197") == 1 and guard < src.index("for (int32_t k")
    a = rng.standard_normal((8, n)).astype(F32)
    c = rng.standard_normal(n).astype(F32)
    want = c + a.sum(axis=0)
    build(S.PrimFunc("hoist", [A, C], body))(a, c)
    np.testing.assert_allclose(c, want, rtol=1e-5, atol=1e-5)


def test_edge_splits_are_bounded_per_nest(rng):
    """Three tile loops, each with an edge guard: only two of them are split (each split
    copies the loop body; a tuning candidate with every loop split grew to 2.5 MB of C and
    timed out in the compiler), and the result is still right."""
    n = 9
    A, B = buf("A", (n, n, n)), buf("B", (n, n, n))
    outer = [E.Var(x) for x in ("ao", "bo", "co")]
    inner = [E.Var(x) for x in ("a1", "b1", "c1")]
    idx = [o * 2 + i for o, i in zip(outer, inner)]
    flat = (idx[0] * n + idx[1]) * n + idx[2]
    guard = E.binop("and", E.binop("and", idx[0] < n, idx[1] < n), idx[2] < n)
    body = S.IfThenElse(guard, S.Store(B, flat, ld(A, flat) + 1.0))
    for v in reversed(inner):
        body = loop(v, 2, "serial", body)
    for v in reversed(outer):
        body = loop(v, 5, "serial", body)
    f = S.PrimFunc("edges3", [A, B], body)
    src = render(f)
    assert src.count("for (int32_t co = 0; co < 5") == 4 and "co < 4" not in src
    a = rng.standard_normal((n, n, n)).astype(F32)
    b = np.zeros_like(a)
    build(f)(a, b)
    np.testing.assert_array_equal(b, a + 1)


def test_edge_tile_keeps_the_full_tiles_accumulators_in_vector_registers(rng):
    """q @ k^T over 264 keys: 32-column register tiles and an 8-column edge tile. The edge
    copy allocates its own accumulator, so the full tiles' one (read only as 16-lane
    vectors) is still declared as vector registers; the 8-lane edge keeps a plain array."""
    import kiln
    from kiln import te
    from kiln.graph.default_schedule import default_schedule
    from kiln.schedule import ComputeDAG
    q = te.placeholder((2, 24, 16), name="q")
    k = te.placeholder((2, 264, 16), name="k")
    r = te.reduce_axis((0, 16), name="r")
    s = te.compute((2, 24, 264), lambda h, i, j: te.sum(q[h, i, r] * k[h, j, r], axis=r),
                   name="scores")
    f = kiln.build(default_schedule(ComputeDAG([q, k, s]), (), "cpu"), [q, k, s], target="cpu")
    lanes = kiln.target.Target("cpu").vector_lanes("float32")
    assert f"kiln_f32x{lanes} scores_local[" in f.source  # in vector registers
    qn, kn = rng.standard_normal((2, 24, 16), "float32"), rng.standard_normal((2, 264, 16),
                                                                               "float32")
    out = np.empty((2, 24, 264), "float32")
    f(qn, kn, out)
    np.testing.assert_allclose(out, qn @ kn.transpose(0, 2, 1), rtol=1e-5, atol=1e-5)


def test_unroll_specialization_keeps_only_decided_select_branches():
    """Expanding an unrolled loop substitutes its index and keeps just the taken branch of
    each Select the index decides (c_prep.specialize); the value is what plain substitution
    gives for every value of the other, free variable."""
    from kiln.codegen.c_prep import specialize
    from kiln.tir.simplify import simplify
    x, y = E.Var("x"), E.Var("y")
    e = E.Select(x == 0, y * 3, E.Select(x == 1, y + 7, E.Select(
        x % 2 == 0, y // 2, E.Select(y < 4, y - x, y * x))))
    for xv in range(6):
        got = simplify(specialize(e, {x: E.IntImm(xv)}, {}), {})
        selects = sum(isinstance(n, E.Select) for n in E.walk(got))
        assert selects == (0 if xv in (0, 1) or xv % 2 == 0 else 1)
        for yv in range(-3, 9):
            want = simplify(E.substitute(e, {x: E.IntImm(xv), y: E.IntImm(yv)}), {})
            val = simplify(E.substitute(got, {y: E.IntImm(yv)}), {})
            assert isinstance(val, E.IntImm) and val.value == want.value, (xv, yv)
