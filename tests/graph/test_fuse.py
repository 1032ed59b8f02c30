"""Operator fusion on small hand-built graphs (no compilation)."""

import numpy as np

from kiln.graph import Graph, Node
from kiln.graph.ops import OpPattern
from kiln.graph.passes.fuse import fuse, groups_str

F = "float32"


def inp(name, shape, dtype=F):
    return Node("input", [], {"name": name}, tuple(shape), dtype)


def const(params, name, shape):
    params[name] = np.ones(shape, np.float32)
    return Node("const", [], {"name": name}, tuple(shape), F)


def op(name, inputs, shape, **attrs):
    return Node(name, list(inputs), attrs, tuple(shape), F)


def ops_of(group):
    return [n.op for n in group.nodes]


def test_dense_bias_gelu_is_one_group():
    p = {}
    x = inp("x", (8, 16))
    d = op("dense", [x, const(p, "w", (32, 16))], (8, 32))
    b = op("add", [d, const(p, "b", (32,))], (8, 32))
    y = op("gelu", [b], (8, 32), approximate="none")
    (g,) = fuse(Graph([x], [y], p))
    assert ops_of(g) == ["dense", "add", "gelu"]
    assert g.anchor is d and g.output is y and g.pattern == OpPattern.OUT_ELEMWISE_FUSABLE
    assert [i.op for i in g.inputs] == ["input", "const", "const"]


def test_two_denses_never_share_a_group():
    p = {}
    x = inp("x", (8, 16))
    d1 = op("dense", [x, const(p, "w1", (16, 16))], (8, 16))
    d2 = op("dense", [d1, const(p, "w2", (16, 16))], (8, 16))
    d3 = op("dense", [x, const(p, "w3", (16, 16))], (8, 16))
    y = op("add", [d2, d3], (8, 16))
    groups = fuse(Graph([x], [y], p))
    for g in groups:
        assert sum(n.op == "dense" for n in g.nodes) <= 1
    assert len(groups) == 3
    assert sum(len(g.nodes) for g in groups) == 4


def test_reshape_transpose_chain_fuses_into_elementwise():
    x = inp("x", (2, 8, 12))
    r = op("reshape", [x], (2, 8, 3, 4), newshape=[2, 8, 3, 4])
    t = op("transpose", [r], (2, 3, 8, 4), axes=[0, 2, 1, 3])
    r2 = op("reshape", [t], (6, 32), newshape=[6, 32])
    e = op("exp", [r2], (6, 32))
    (g,) = fuse(Graph([x], [e], {}))
    assert ops_of(g) == ["reshape", "transpose", "reshape", "exp"]
    assert g.pattern == OpPattern.INJECTIVE


def test_softmax_takes_the_preceding_scale():
    p = {"s": np.array(0.125, np.float32)}
    x = inp("x", (2, 4, 16, 16))
    s = Node("const", [], {"name": "s"}, (), F)
    m = op("multiply", [x, s], (2, 4, 16, 16))
    y = op("softmax", [m], (2, 4, 16, 16), axis=-1)
    (g,) = fuse(Graph([x], [y], p))
    assert ops_of(g) == ["multiply", "softmax"] and g.pattern == OpPattern.COMM_REDUCE


def test_anchor_takes_no_producers_and_a_fanout_that_meets_again():
    """The epilogue goes on through readers that meet again in one node (a swish, x *
    sigmoid(x)); a fan-out with two exits stops it."""
    p = {}
    x = inp("x", (8, 16))
    t = op("relu", [x], (8, 16))
    d = op("dense", [t, const(p, "w", (16, 16))], (8, 16))
    g1 = op("gelu", [d], (8, 16), approximate="none")
    a = op("exp", [g1], (8, 16))
    b = op("tanh", [g1], (8, 16))
    y = op("add", [a, b], (8, 16))
    groups = fuse(Graph([x], [y], p))
    names = [ops_of(g) for g in groups]
    assert names == [["relu"], ["dense", "gelu", "exp", "tanh", "add"]]
    assert groups[1].output is y and [g.index for g in groups] == [0, 1]
    d2 = op("dense", [x, const(p, "w2", (16, 16))], (8, 16))
    sw = op("multiply", [d2, op("sigmoid", [d2], (8, 16))], (8, 16))
    out1, out2 = op("exp", [sw], (8, 16)), op("tanh", [sw], (8, 16))  # two exits
    groups = fuse(Graph([x], [out1, out2], p))
    assert [ops_of(g) for g in groups] == [["dense", "sigmoid", "multiply"], ["exp"],
                                           ["tanh"]]
    d3 = op("dense", [x, const(p, "w3", (16, 16))], (8, 16))
    e3, t3 = op("exp", [d3], (8, 16)), op("tanh", [d3], (8, 16))  # they never meet
    groups = fuse(Graph([x], [e3, t3], p))
    assert [ops_of(g) for g in groups] == [["dense"], ["exp"], ["tanh"]]


def test_epilogue_stops_at_graph_output_and_shape_change():
    p = {}
    x = inp("x", (8, 16))
    d = op("dense", [x, const(p, "w", (4, 16))], (8, 4))
    r = op("relu", [d], (8, 4))
    big = op("add", [r, inp("z", (3, 8, 4))], (3, 8, 4))
    groups = fuse(Graph([x], [r, big], p))
    assert [ops_of(g) for g in groups] == [["dense", "relu"], ["add"]]
    assert groups[0].output is r  # relu is a graph output: the chain ends there
    x2 = inp("x2", (8, 16))
    d2 = op("dense", [x2, const(p, "w2", (4, 16))], (8, 4))
    wide = op("add", [d2, inp("z2", (3, 8, 4))], (3, 8, 4))
    assert [ops_of(g) for g in fuse(Graph([x2], [wide], p))] == [["dense"], ["add"]]


def test_groups_are_convex_ordered_and_printed():
    p = {}
    x = inp("x", (4, 8))
    h = x
    for k in range(3):
        h = op("dense", [h, const(p, f"w{k}", (8, 8))], (4, 8))
        h = op("add", [h, const(p, f"b{k}", (8,))], (4, 8))
        h = op("relu", [h], (4, 8))
    y = op("softmax", [h], (4, 8), axis=-1)
    groups = fuse(Graph([x], [y], p))
    done = set()
    for g in groups:
        for i in g.inputs:
            assert i.op in ("input", "const") or i.uid in done
        done.add(g.output.uid)
    text = groups_str(groups)
    assert "group 0 fused_dense_add_relu [out_elemwise_fusable" in text
    assert "softmax" in text.splitlines()[-1]


def _heads(x, s, h, d, axes):
    """BERT's head split of x[1, s, h*d]: reshape to [1, s, h, d], then transpose."""
    r = op("reshape", [x], (1, s, h, d), newshape=[1, s, h, d])
    return op("transpose", [r], tuple((1, s, h, d)[a] for a in axes), axes=list(axes))


def test_head_split_views_fold_into_the_batch_matmul():
    """A view whose innermost axis stays contiguous joins the anchor that reads it (no copy
    kernel); the B operand read transposed (transpose_b) keeps its copy."""
    q, k = inp("q", (1, 16, 64)), inp("k", (1, 16, 64))
    qh, kh = _heads(q, 16, 2, 32, (0, 2, 1, 3)), _heads(k, 16, 2, 32, (0, 2, 1, 3))
    s = op("batch_matmul", [qh, kh], (1, 2, 16, 16), transpose_a=False, transpose_b=True)
    groups = fuse(Graph([q, k], [s], {}))
    assert [ops_of(g) for g in groups] == [["reshape", "transpose"],
                                           ["reshape", "transpose", "batch_matmul"]]
    assert groups[1].anchor is s and groups[1].inputs[0] is q
    staged = fuse(Graph([q, k], [s], {}), staged_operands=True)  # the CUDA build's fusion
    assert [ops_of(g) for g in staged] == [["reshape", "transpose", "reshape", "transpose",
                                            "batch_matmul"]]
    assert {i.uid for i in staged[0].inputs} == {q.uid, k.uid}


def test_views_that_scatter_the_innermost_axis_stay_copies():
    """Kᵀ as a view ([1, h, d, s]: the innermost axis walks k's rows) is not folded; the
    head merge after attention (transpose + reshape into a dense) is."""
    p = {}
    k, v = inp("k", (1, 16, 64)), inp("v", (1, 2, 16, 32))
    kt = _heads(k, 16, 2, 32, (0, 2, 3, 1))
    s = op("batch_matmul", [v, kt], (1, 2, 16, 16), transpose_a=False, transpose_b=False)
    merged = op("transpose", [v], (1, 16, 2, 32), axes=[0, 2, 1, 3])
    flat = op("reshape", [merged], (1, 16, 64), newshape=[1, 16, 64])
    d = op("dense", [flat, const(p, "w", (8, 64))], (1, 16, 8))
    groups = fuse(Graph([k, v], [s, d], p))
    assert [ops_of(g) for g in groups] == [["reshape", "transpose"], ["batch_matmul"],
                                           ["transpose", "reshape", "dense"]]


def test_a_view_read_twice_or_with_a_tiny_innermost_run_is_not_folded():
    x = inp("x", (1, 16, 64))
    xh = _heads(x, 16, 8, 8, (0, 2, 1, 3))  # runs of 8 elements: below a vector
    s = op("batch_matmul", [xh, xh], (1, 8, 16, 16), transpose_a=False, transpose_b=True)
    groups = fuse(Graph([x], [s], {}))
    assert [ops_of(g) for g in groups] == [["reshape", "transpose"], ["batch_matmul"]]


def test_slices_of_a_combined_product_fold_like_views():
    """The slices of one wide Q|K|V product (the GPU build combines the three dense ops) are
    views too: a slice of whole rows folds into the batch_matmul reading it, one taking
    every other column (innermost runs of 1) stays a copy."""
    qkv = inp("qkv", (1, 16, 192))

    def part(at, width, step=1):
        sl = op("strided_slice", [qkv], (1, 16, width // step), begin=[at],
                end=[at + width], strides=[step], axes=[2])
        return _heads(sl, 16, 2, width // step // 2, (0, 2, 1, 3))
    q, v = part(0, 64), part(128, 64)
    s = op("batch_matmul", [q, v], (1, 2, 16, 16), transpose_a=False, transpose_b=True)
    odd = op("batch_matmul", [part(64, 64, 2), part(0, 64, 2)], (1, 2, 16, 16),
             transpose_a=False, transpose_b=True)
    groups = fuse(Graph([qkv], [s, odd], {}))
    folded = [g for g in groups if g.anchor is s][0]
    assert ops_of(folded) == ["strided_slice", "reshape", "transpose", "batch_matmul"]
    assert [g for g in groups if g.anchor is odd][0].inputs != [qkv]  # copies feed it


def test_softmax_takes_the_cast_after_it_layer_norm_with_two_readers_does_not():
    x = inp("x", (4, 16))
    sm = op("softmax", [x], (4, 16), axis=-1)
    c = Node("cast", [sm], {"dtype": "bfloat16"}, (4, 16), "bfloat16")
    ln = op("layer_norm", [x], (4, 16), axis=-1, epsilon=1e-5)
    c2 = Node("cast", [ln], {"dtype": "bfloat16"}, (4, 16), "bfloat16")
    res = op("add", [ln, x], (4, 16))
    groups = fuse(Graph([x], [c, c2, res], {}))
    assert [ops_of(g) for g in groups] == [["softmax", "cast"], ["layer_norm"], ["cast"],
                                           ["add"]]
    assert groups[0].output is c and groups[0].pattern == OpPattern.COMM_REDUCE


def test_a_softmax_read_as_a_products_a_operand_joins_it_on_the_gpu():
    """Attention's softmax(S) . V: the CUDA build's fusion puts the softmax in the product's
    kernel (its rows' statistics first, the panel normalized as it is fetched); the CPU's
    keeps two kernels, as it does for a softmax another op reads or one over another axis."""
    s_in, v = inp("s", (1, 2, 16, 16)), inp("v", (1, 2, 16, 8))
    p = op("softmax", [s_in], (1, 2, 16, 16), axis=-1)
    o = op("batch_matmul", [p, v], (1, 2, 16, 8), transpose_a=False, transpose_b=False)
    assert [ops_of(g) for g in fuse(Graph([s_in, v], [o], {}))] == [["softmax"],
                                                                     ["batch_matmul"]]
    (g,) = fuse(Graph([s_in, v], [o], {}), staged_operands=True)
    assert ops_of(g) == ["softmax", "batch_matmul"] and g.anchor is o
    q = op("softmax", [s_in], (1, 2, 16, 16), axis=2)  # over another axis: stays
    o2 = op("batch_matmul", [q, v], (1, 2, 16, 8), transpose_a=False, transpose_b=False)
    assert len(fuse(Graph([s_in, v], [o2], {}), staged_operands=True)) == 2


def _attention(s, scale_shape=(1,)):
    """softmax(q kᵀ * scale) v over heads split from [1, s, 64] activations (Whisper's)."""
    p = {}
    q, k, v = inp("q", (1, s, 64)), inp("k", (1, s, 64)), inp("v", (1, s, 64))
    qh, kh, vh = (_heads(x, s, 2, 32, (0, 2, 1, 3)) for x in (q, k, v))
    sc = op("batch_matmul", [qh, kh], (1, 2, s, s), transpose_a=False, transpose_b=True)
    sc = op("multiply", [sc, const(p, "scale", scale_shape)], (1, 2, s, s))
    pr = op("softmax", [sc], (1, 2, s, s), axis=-1)
    o = op("batch_matmul", [pr, vh], (1, 2, s, 32), transpose_a=False, transpose_b=False)
    return Graph([q, k, v], [o], p), o


def test_attention_with_a_big_score_matrix_is_one_group_on_the_cpu():
    """Rule 4: q kᵀ (its scale epilogue, its head-split views), the softmax and p v become
    one kernel when a head's score matrix is larger than attention_bytes; not when it fits,
    not in the CUDA build, not when the probabilities are read by another op too."""
    graph, o = _attention(64)  # 16 KB of scores per head
    fused = fuse(graph, attention_bytes=8 << 10)
    assert len(fused) == 2 and fused[-1].anchor is o  # k's transposed view stays a copy
    assert ops_of(fused[-1]).count("batch_matmul") == 2 and "softmax" in ops_of(fused[-1])
    assert len(fuse(graph, attention_bytes=16 << 10)) == 4  # fits: q kᵀ, softmax, p v
    assert len(fuse(graph, attention_bytes=8 << 10, attention_dim=16)) == 4  # head dim 32
    assert len(fuse(graph)) == 4  # attention_bytes=0: the rule is off
    staged = fuse(graph, staged_operands=True)
    assert all(ops_of(g).count("batch_matmul") < 2 for g in staged)
    pr = o.inputs[0]
    other = op("add", [pr, pr], pr.shape)  # the probabilities are an output too
    g2 = Graph(graph.inputs, [o, other], graph.params)
    assert all(ops_of(g).count("batch_matmul") < 2 for g in fuse(g2, attention_bytes=1))
