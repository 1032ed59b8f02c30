"""Sketch rules and random annotation: the expected structures, and every annotated
candidate computes the reference result (through the loop-IR interpreter)."""

import random

import numpy as np
import pytest
import tir_interp
import workloads

from kiln.auto_scheduler.annotate import SketchInfo, materialize, random_genome
from kiln.auto_scheduler.evolve import crossover, mutate
from kiln.auto_scheduler.sketch import generate_sketches, is_whole_pack
from kiln.schedule import ComputeDAG
from kiln.target import Target
from kiln.tir.lower import lower


def _sketches(name):
    inputs, outputs, ref = workloads.ALL[name]()
    dag = ComputeDAG(inputs + outputs)
    return dag, generate_sketches(dag), inputs + outputs, ref


def test_matmul_sketches_have_cache_write_and_ssrsrs():
    dag, sk, *_ = _sketches("matmul")
    base = [s for s in sk if not any(st.code == "CH" for st in s.steps)]
    texts = [str(s) for s in base]
    assert len(base) == 3
    assert sum("c.local [at c." in t for t in texts) == 2  # fused at level 1 and 2
    tiled = [s for s in base if not any(st.code == "CW" for st in s.steps)][0]
    names = [it.name for it in tiled.stages[-1].iters]
    kinds = "".join("R" if it.kind == "reduce" else "S" for it in tiled.stages[-1].iters)
    assert kinds == "SSSSRSSRSS"  # S S R S R S with two spatial axes
    assert names[-1] == "j.3"


def test_packed_read_variant_for_transposed_input():
    dag, sk, *_ = _sketches("matmul")
    packed = [s for s in sk if any(st.code == "CH" for st in s.steps)]
    assert len(packed) == 6  # per panel and whole, for each of the three plain sketches
    for s in packed:
        assert any(st.code == "LR" for st in s.steps)
    panel = [s for s in packed if not is_whole_pack(s)]
    assert len(panel) == 3 and all("b.local [at c." in str(s) for s in panel)
    for s in [s for s in packed if is_whole_pack(s)]:  # packed once, row tiles stay outer
        assert "b.local [root]" in str(s)
        root = s.stage(s.stages[-1].op)
        assert root.iters[0].name.startswith("i.")


def test_whole_pack_default_when_the_slice_fits_l2():
    """The default schedule packs attention's keys whole (each head's slice fits the L2) and
    keeps row-major order; the seed mm's 9 MB b goes per panel, panel loop outermost."""
    from kiln import te
    from kiln.graph.default_schedule import default_schedule
    from kiln.target import as_target
    tgt = as_target("cpu")
    q = te.placeholder((64, 2 * 16), name="q")
    k = te.placeholder((2, 100, 16), name="k")
    d = te.reduce_axis((0, 16), name="d")
    s = te.compute((2, 64, 100), lambda h, i, j: te.sum(q[i, h * 16 + d] * k[h, j, d], axis=d),
                   name="s")
    state = default_schedule(ComputeDAG([q, k, s]), (), tgt)
    assert "k.local [root]" in str(state) or tgt.l2_bytes == 0
    a = te.placeholder((128, 768), name="a")
    b = te.placeholder((3072, 768), name="b")
    r = te.reduce_axis((0, 768), name="r")
    c = te.compute((128, 3072), lambda i, j: te.sum(a[i, r] * b[j, r], axis=r), name="c")
    state = default_schedule(ComputeDAG([a, b, c]), (), tgt)
    assert "b.local [at c." in str(state) or tgt.l2_bytes == 0
    # nor does the search get a whole-copy sketch for it (only for the keys above)
    assert not any(is_whole_pack(x) for x in generate_sketches(ComputeDAG([a, b, c]),
                                                                target=tgt))
    assert any(is_whole_pack(x) for x in generate_sketches(ComputeDAG([q, k, s]),
                                                            target=tgt)) or tgt.l2_bytes == 0


def test_epilogue_fuses_into_consumer():
    dag, sk, *_ = _sketches("swish_mm")
    for s in sk:
        text = str(s)
        assert "relu6: inlined" in text and "c [at d." in text


def test_reduction_without_reuse_is_not_tiled():
    dag, sk, *_ = _sketches("softmax")
    assert not any(st.relations for s in sk for st in s.stages)
    texts = [str(s) for s in sk]
    assert any("ex: inlined" in t and "sm [root]" in t for t in texts)  # the plain one stays
    # RuleComputeAtRow / RuleMaterializeAtRow: the whole softmax inside its row loop
    assert any(all(f"{n} [at softmax.i]" in t for n in ("mx", "ex", "sm")) for t in texts)


def test_conv_sketches_vectorize_output_channels_first():
    """An NCHW convolution's first sketches put the output-channel tile innermost (it is the
    one vectorized: weights packed along it, each input value broadcast); the plain order
    (columns innermost) follows. The default schedule takes the first and packs the weights
    along output channels when they are constant."""
    from kiln import te, topi
    from kiln.graph.default_schedule import default_schedule
    dag, sk, *_ = _sketches("conv2d")
    tiled = [[st.iters[-1].name for st in s.stages if st.relations and
              st.op.name in ("conv", "conv.local")][0] for s in sk]
    assert tiled[:2] == ["f.3", "f.3"] and "x.3" in tiled  # local accumulator at 2 levels
    data = te.placeholder((1, 16, 14, 14), name="data")
    kern = te.placeholder((32, 16, 3, 3), name="kern")
    conv = topi.conv2d_nchw(data, kern, 1, 1)
    out = te.compute(conv.shape, lambda n, f, y, x: te.max(conv[n, f, y, x], 0.0),
                     name="relu", attrs={"layout_free_placeholders": [kern]})
    state = default_schedule(ComputeDAG([data, kern, out]), ("kern",), "cpu")
    cst = state.stage(conv.op)
    assert cst.iters[-1].name.startswith("oc.") and cst.iters[-1].annotation == "vectorize"
    assert any(st.code == "LR" for st in state.steps)
    # no epilogue: the tiled stage is the local accumulator (a cache_write), same tile
    bare = default_schedule(ComputeDAG([data, kern, conv]), ("kern",), "cpu")
    local = [st for st in bare.stages if st.name.endswith(".local")][0]
    lanes = Target("cpu").vector_lanes("float32")  # at least one full register of channels
    assert local.iters[-1].name.startswith("oc.") and local.iters[-1].extent >= lanes


def test_rfactor_sketch_for_small_spatial_large_reduce():
    from kiln import te
    x = te.placeholder((2, 4096), name="x")
    k = te.reduce_axis((0, 4096), name="k")
    y = te.compute((2,), lambda i: te.sum(x[i, k], axis=k), name="y")
    sk = generate_sketches(ComputeDAG([x, y]))
    assert any(any(st.code == "RF" for st in s.steps) for s in sk)
    assert any(not any(st.code == "RF" for st in s.steps) for s in sk)


@pytest.mark.parametrize("name", sorted(workloads.ALL))
def test_annotated_and_mutated_candidates_are_correct(name):
    dag, sk, args, ref = _sketches(name)
    rng = random.Random(1)
    inputs = args[:-1]
    arrays = workloads.random_inputs(inputs)
    for sid, s in enumerate(sk):
        info = SketchInfo(dag, s, sid)
        g = random_genome(info, rng)
        genomes = [g, mutate(info, g, rng), crossover(g, random_genome(info, rng), rng)]
        for gg in genomes:
            state = materialize(info, gg)
            out = np.zeros([int(d) for d in args[-1].shape], "float32")
            tir_interp.run(lower(state, args), *arrays, out)
            np.testing.assert_allclose(out, ref(*arrays), rtol=1e-4, atol=1e-5,
                                       err_msg=str(state))


def test_parallel_never_fuses_through_an_attach_point():
    """InitParallel stops at the loop a cache-write stage is computed at: fusing through it
    shrinks the local tile to one point (the conv2d search used to stall there)."""
    import math
    dag, sk, *_ = _sketches("matmul")
    rng = random.Random(0)
    checked = 0
    for i, s in enumerate(sk):
        info = SketchInfo(dag, s, i)
        for _ in range(20):
            g = random_genome(info, rng)
            serial = materialize(info, g.__class__(
                g.sketch_id, g.tiles, tuple((si, 0) for si, _ in g.parallel), g.vectorize,
                g.unroll, g.location))
            wide = materialize(info, g.__class__(
                g.sketch_id, g.tiles, tuple((si, 99) for si, _ in g.parallel), g.vectorize,
                g.unroll, g.location))
            for other in serial.stages:
                if other.attach[0] != "at":
                    continue
                host = serial.stage(other.attach[1])
                a = [it.name for it in host.iters].index(other.attach[2])
                limit = math.prod(it.extent for it in host.iters[:a + 1])
                par = [it for it in wide.stage(other.attach[1]).iters
                       if it.annotation == "parallel"]
                assert all(it.extent <= limit for it in par)
                checked += 1
    assert checked


def test_diversify_caps_one_signature_per_round():
    from kiln.auto_scheduler.annotate import Genome
    from kiln.auto_scheduler.policy import diversify
    same = [Genome(0, ((k,),), ((1, 2),), ((1, True),), ((1, 16),)) for k in range(10)]
    other = [Genome(0, ((k,),), ((1, 2),), ((1, True),), ((1, 512),)) for k in range(2)]
    picked = diversify(same + other, 8, 0.25)
    assert len(picked) == 8 and set(other) <= set(picked)
    assert picked[:2] == same[:2]  # the best of each signature first, then by rank
    assert diversify(same, 8, 0.25) == same[:8]  # one signature only: plain ranking


class _L2:
    """A target as the sketch rules see it: its L2 size."""

    def __init__(self, l2_bytes: int):
        self.l2_bytes = l2_bytes


@pytest.mark.parametrize("m,k,n,l2,outer", [
    (197, 768, 3072, 1 << 20, "j"),   # a 9.4 MB weight: its panels stay, the rows stream
    (1500, 1536, 384, 1 << 20, "j"),  # Whisper's 2.4 MB weight, 9 MB of rows: still columns
    (3136, 64, 64, 1 << 20, "i"),     # a 1x1 convolution's 16 KB weight stays in cache
    (197, 768, 3072, 0, "j"),         # no target: the weight outweighs the rows
    (3136, 64, 64, 0, "i"),
])
def test_products_with_a_large_constant_weight_put_column_tiles_outermost(m, k, n, l2, outer):
    from kiln import te
    a = te.placeholder((m, k), name="A")
    w = te.placeholder((n, k), name="W")
    r = te.reduce_axis((0, k), "k")
    c = te.compute((m, n), lambda i, j: te.sum(a[i, r] * w[j, r], axis=r), name="C")
    sk = generate_sketches(ComputeDAG([a, w, c]), layout_free=("W",),
                           target=_L2(l2) if l2 else None)
    fused = [s for s in sk if "C.local [at C." in str(s)]
    assert fused and all(s.stage(c.op).iters[0].name.startswith(outer + ".") for s in fused)
    plain = [s for s in generate_sketches(ComputeDAG([a, w, c]))  # W not constant
             if not any(st.code == "CH" for st in s.steps) and "C.local [at C." in str(s)]
    assert plain and all(s.stage(c.op).iters[0].name.startswith("i.") for s in plain)
