"""The simplify pass (graph/passes/simplify.py) on small hand-built graphs: no-op nodes,
reshape / transpose chains, neutral constants, constant masks, padding folded into
convolutions, int8 round trips, transposes pulled through elementwise trees, reductions
and depthwise convolutions; structure after the pass and interpreter equality."""

from __future__ import annotations

import numpy as np
import pytest
from graph_interp import assert_same_results as _same_results
from graph_interp import op_counts as _ops

from kiln.graph.frontend.common import GraphBuilder
from kiln.graph.passes import simplify

RNG = np.random.RandomState(1)


def _rand(*shape):
    return RNG.randn(*shape).astype(np.float32)


def _x(b: GraphBuilder, shape=(2, 4, 8)):
    return b.input("x", shape, "float32")


def test_simplify_reshape_and_transpose_chains():
    b = GraphBuilder("test")
    x = _x(b)
    r = b.op("reshape", [b.op("expand_dims", [x], axis=0, num_newaxis=1)], newshape=(8, 8))
    r = b.op("reshape", [b.op("flatten", [b.op("reshape", [r], newshape=(2, 4, 8))])],
             newshape=(64,))
    t = b.op("transpose", [b.op("transpose", [x], axes=[1, 2, 0])], axes=[2, 0, 1])
    t2 = b.op("transpose", [b.op("transpose", [x], axes=[1, 0, 2])], axes=[0, 2, 1])
    noop = b.op("cast", [b.op("reshape", [x], newshape=(2, 4, 8))], dtype="float32")
    g = b.finish([r, t, t2, noop])
    s = simplify(g)
    assert _ops(s) == {"reshape": 1, "transpose": 1}
    assert s.outputs[1] is s.inputs[0] and s.outputs[3] is s.inputs[0]
    assert s.outputs[2].attrs["axes"] == [1, 2, 0]
    _same_results(g, s, {"x": _rand(2, 4, 8)})


def test_simplify_neutral_constants_and_reassociation():
    b = GraphBuilder("test")
    x = _x(b)
    y = b.op("add", [b.const(np.zeros((4, 8), np.float32), "z"), x])
    y = b.op("multiply", [y, b.const(np.ones((1, 8), np.float32), "o")])
    widen = b.op("add", [x, b.const(np.zeros((3, 1, 1, 1), np.float32), "wide")])
    c = b.op("add", [b.op("add", [x, b.const(_rand(8), "c1")]), b.const(_rand(4, 8), "c2")])
    g = b.finish([y, widen, c])
    s = simplify(g)
    assert s.outputs[0] is s.inputs[0]
    assert s.outputs[1].op == "add" and s.outputs[1].shape == (3, 2, 4, 8)
    assert _ops(s) == {"add": 2}
    _same_results(g, s, {"x": _rand(2, 4, 8)})


def test_simplify_constant_where():
    b = GraphBuilder("test")
    x, y = _x(b), b.input("y", (4, 8), "float32")
    true = b.const(np.ones((1, 8), bool), "t")
    mixed = b.const(np.arange(8) % 2 == 0, "m")
    g = b.finish([b.op("where", [true, x, y]), b.op("where", [mixed, x, y]),
                  b.op("where", [b.const(np.zeros(1, bool), "f"), y, x])])
    s = simplify(g)
    assert s.outputs[0] is s.inputs[0] and s.outputs[2] is s.inputs[0]
    assert _ops(s) == {"where": 1}


def test_simplify_drops_int8_round_trips_after_a_clip():
    """cast(cast(clip(x) in int8 range, int8), int32) -> cast(clip(x), int32); a clip wider
    than int8 (the cast wraps) keeps both casts."""
    b = GraphBuilder("test")
    x = _x(b)
    def chain(lo, hi, narrow):
        clip = b.op("clip", [b.op("round", [x])], a_min=lo, a_max=hi)
        return b.op("cast", [b.op("cast", [clip], dtype=narrow)], dtype="int32")
    g = b.finish([chain(-128.0, 127.0, "int8"), chain(0.0, 255.0, "uint8"),
                  chain(-300.0, 300.0, "int8")])
    s = simplify(g)
    assert [o.inputs[0].op for o in s.outputs] == ["clip", "clip", "cast"]
    _same_results(g, s, {"x": _rand(2, 4, 8) * 200})


def test_simplify_pulls_transposes_through_elementwise_trees():
    """transpose(f(transpose(x))) -> f(x) for an elementwise f over constants and scalars
    (each node copied once however many pulls reach it); another operand of f is transposed
    by itself; a permutation that does not undo the inner one stays."""
    b = GraphBuilder("test")
    x = b.input("x", (2, 3, 4, 5), "float32")
    y = b.input("y", (2, 5, 3, 4), "float32")
    t = b.op("transpose", [x], axes=[0, 3, 1, 2])  # NHWC -> NCHW
    chan = b.const(_rand(5, 1, 1), "per_channel")
    shared = b.op("relu", [b.op("add", [b.op("multiply", [t, chan]),
                                        b.const(np.float32(0.5), "half")])])
    back1 = b.op("transpose", [b.op("exp", [shared])], axes=[0, 2, 3, 1])
    back2 = b.op("transpose", [b.op("negative", [shared])], axes=[0, 2, 3, 1])
    mixed = b.op("transpose", [b.op("add", [shared, y])], axes=[0, 2, 3, 1])
    wrong = b.op("transpose", [b.op("exp", [shared])], axes=[0, 3, 2, 1])
    # two operands to transpose for one transpose saved: not worth it, stays
    costly = b.op("transpose", [b.op("add", [b.op("add", [t, y]), b.op("exp", [y])])],
                  axes=[0, 2, 3, 1])
    g = b.finish([back1, back2, mixed, wrong, shared, costly])
    s = simplify(g)
    assert [o.op for o in s.outputs[:2]] == ["exp", "negative"]
    assert s.outputs[0].inputs[0] is s.outputs[1].inputs[0]  # one copy of the shared tree
    # y, read as is, is transposed by itself (the tree below it moves without a copy)
    assert s.outputs[2].op == "add" and s.outputs[2].inputs[1].op == "transpose"
    assert s.outputs[3].op == "transpose" and s.outputs[5].op == "transpose"
    _same_results(g, s, {"x": _rand(2, 3, 4, 5), "y": _rand(2, 5, 3, 4)})


@pytest.mark.parametrize("op, attrs", [("mean", {"axis": [2, 3], "keepdims": True}),
                                       ("sum", {"axis": [1], "keepdims": False}),
                                       ("max", {"axis": [3, 1], "keepdims": False}),
                                       ("global_avg_pool2d", {})])
def test_simplify_reduces_in_the_layout_below_a_transpose(op, attrs):
    b = GraphBuilder("test")
    x = b.input("x", (2, 3, 4, 5), "float32")
    t = b.op("relu", [b.op("transpose", [x], axes=[0, 3, 1, 2])])
    g = b.finish([b.op(op, [t], **attrs)])
    s = simplify(g)
    red = s.outputs[0] if s.outputs[0].op not in ("transpose", "reshape") else \
        s.outputs[0].inputs[0]  # [N, 1, 1, C] back to [N, C, 1, 1] is a reshape
    assert red.inputs[0].op == "relu" and red.inputs[0].inputs[0] is s.inputs[0]
    _same_results(g, s, {"x": _rand(2, 3, 4, 5)})


@pytest.mark.parametrize("stride", [1, 2])
def test_simplify_runs_a_depthwise_conv_channels_last_below_a_transpose(stride):
    """conv2d depthwise of relu(transpose(x NHWC)) -> depthwise_conv2d_nhwc of relu(x),
    transposed back; the same conv of a plain NCHW input stays."""
    b = GraphBuilder("test")
    x = b.input("x", (1, 6, 5, 16), "float32")
    y = b.input("y", (1, 16, 6, 5), "float32")
    w, bias = b.const(_rand(16, 1, 3, 3), "w"), b.const(_rand(16), "bias")
    attrs = {"strides": [stride, stride], "padding": [1, 1, 1, 1], "groups": 16}
    t = b.op("relu", [b.op("transpose", [x], axes=[0, 3, 1, 2])])
    g = b.finish([b.op("conv2d", [t, w, bias], **attrs), b.op("conv2d", [y, w], **attrs)])
    s = simplify(g)
    assert s.outputs[0].op == "transpose"
    dw = s.outputs[0].inputs[0]
    assert dw.op == "depthwise_conv2d_nhwc" and dw.inputs[0].op == "relu"
    assert dw.inputs[0].inputs[0] is s.inputs[0] and s.outputs[1].op == "conv2d"
    _same_results(g, s, {"x": _rand(1, 6, 5, 16), "y": _rand(1, 16, 6, 5)}, tol=1e-4)


def test_simplify_folds_zero_spatial_padding_into_convolutions():
    """pad(x, zeros around H and W) -> conv2d becomes one conv2d with the pad added to its
    own (asymmetric) padding; a non-zero fill stays a pad."""
    def graph(widths, value=0.0):
        b = GraphBuilder("test")
        x = b.input("x", (1, 4, 9, 9), "float32")
        p = b.op("pad", [x], pad_width=widths, pad_value=value)
        w = b.const(_rand(4 + sum(widths[1]), 1, 3, 3), "w")
        y = b.op("conv2d", [p, w], strides=[2, 2], padding=[1, 0, 0, 1], dilation=[1, 1],
                 groups=4 + sum(widths[1]))
        return b.finish([y])
    g = graph([[0, 0], [0, 0], [0, 1], [1, 1]])
    s = simplify(g)
    (conv,) = [n for n in s.nodes() if n.op == "conv2d"]
    assert "pad" not in _ops(s) and list(conv.attrs["padding"]) == [1, 1, 1, 2]
    _same_results(g, s, {"x": _rand(1, 4, 9, 9)})
    assert "pad" in _ops(simplify(graph([[0, 0], [0, 0], [1, 1], [1, 1]], value=1.0)))


def test_simplify_squeeze_excitation_scale_stays_channels_last():
    """A transpose that only moves unit dims is a reshape; a runtime broadcast operand whose
    transpose is such a view ([N, C, 1, 1], a squeeze-excitation scale) lets the transposes
    around a channels-last block cancel."""
    b = GraphBuilder("test")
    x = b.input("x", (1, 6, 5, 16), "float32")   # NHWC
    t = b.op("transpose", [x], axes=[0, 3, 1, 2])
    act = b.op("multiply", [t, b.op("sigmoid", [t])])
    pooled = b.op("global_avg_pool2d", [act])        # [1, 16, 1, 1]
    se = b.op("sigmoid", [b.op("transpose", [b.op("transpose", [pooled], axes=[0, 2, 3, 1])],
                                axes=[0, 3, 1, 2])])
    back = b.op("transpose", [b.op("multiply", [act, se])], axes=[0, 2, 3, 1])
    unit = b.op("transpose", [b.input("v", (1, 1, 1, 16), "float32")], axes=[0, 3, 1, 2])
    g = b.finish([back, unit])
    s = simplify(g)
    assert _ops(s).get("transpose", 0) == 0
    assert s.outputs[0].op == "multiply" and s.outputs[1].op == "reshape"
    _same_results(g, s, {"x": _rand(1, 6, 5, 16), "v": _rand(1, 1, 1, 16)})


def test_simplify_sinks_a_products_reshape_below_its_residual_sum():
    """add(reshape(dense(x)), r) -> reshape(add(dense(x), reshape(r))): the sum becomes the
    product's epilogue; between two products the reshape is not moved back and forth."""
    b = GraphBuilder("test")
    x = b.input("x", (8, 16), "float32")
    r = b.input("r", (1, 8, 16), "float32")
    d = b.op("dense", [x, b.const(_rand(16, 16), "w")])
    y = b.op("add", [b.op("reshape", [d], newshape=(1, 8, 16)), r])
    d2 = b.op("dense", [b.op("reshape", [y], newshape=(8, 16)), b.const(_rand(16, 16), "w2")])
    z = b.op("add", [b.op("reshape", [d2], newshape=(1, 8, 16)), y])
    g = b.finish([z])
    s = simplify(g)
    out = s.outputs[0]
    assert out.op == "reshape" and out.inputs[0].op == "add"
    assert {i.op for i in out.inputs[0].inputs} == {"dense", "add"}
    _same_results(g, s, {"x": _rand(8, 16), "r": _rand(1, 8, 16)})


def _random_tree(draw):
    """A random elementwise / view graph over a 4-d input: reshapes, transposes (some of
    them only moving unit dims), unary ops, diamonds (x * sigmoid(x)), sums with constants
    (full, per last axis, scalar), with a second input, and with runtime [N, C, 1, 1]-style
    broadcasts, a reduction now and then."""
    from hypothesis import strategies as st
    b = GraphBuilder("fuzz")
    x = b.input("x", (1, 4, 3, 8), "float32")
    y = b.input("y", (1, 4, 3, 8), "float32")
    v = x
    for _ in range(draw(st.integers(2, 9))):
        kind = draw(st.sampled_from(["reshape", "transpose", "unary", "diamond", "const",
                                     "input", "scale", "reduce"]))
        shape = tuple(int(d) for d in v.shape)
        if kind == "reshape":
            size = int(np.prod(shape))
            options = [(size // shape[-1], shape[-1]), (1, 4, 3, 8) if size == 96 else shape]
            if shape[-1] % 2 == 0:
                options.append(shape[:-1] + (2, shape[-1] // 2))
            v = b.op("reshape", [v], newshape=draw(st.sampled_from(options)))
        elif kind == "transpose":
            perm = draw(st.permutations(range(len(shape))))
            v = b.op("transpose", [v], axes=list(perm))
        elif kind == "unary":
            v = b.op(draw(st.sampled_from(["relu", "sigmoid", "tanh", "negative"])), [v])
        elif kind == "diamond":
            v = b.op("multiply", [v, b.op("sigmoid", [v])])
        elif kind == "const":
            c = draw(st.sampled_from(["full", "last", "scalar"]))
            val = {"full": _rand(*shape), "last": _rand(shape[-1]),
                   "scalar": np.float32(0.5)}[c]
            v = b.op(draw(st.sampled_from(["add", "multiply"])), [v, b.const(val, "c")])
        elif kind == "input" and int(np.prod(shape)) == 96:
            w = y if len(shape) == 4 and shape == (1, 4, 3, 8) else \
                b.op("reshape", [y], newshape=shape)
            v = b.op("add", [v, w])
        elif kind == "scale" and len(shape) == 4:
            pooled = b.op("mean", [v], axis=[2, 3], keepdims=True)
            v = b.op("multiply", [v, b.op("sigmoid", [pooled])])
        elif kind == "reduce" and len(shape) >= 2:
            v = b.op("sum", [v], axis=[len(shape) - 1], keepdims=True)
    return b.finish([v])


@pytest.mark.parametrize("seed", range(3))
def test_simplify_random_view_and_elementwise_graphs_keep_their_meaning(seed):
    """Property: simplify, and simplify_views after it, never change what a graph computes
    (random reshapes, transposes, diamonds, broadcasts; hypothesis draws the graphs)."""
    from hypothesis import given, settings
    from hypothesis import strategies as st

    from kiln.graph.passes import simplify_views

    @settings(max_examples=40, deadline=None, derandomize=False, database=None)
    @given(st.data())
    def check(data):
        g = _random_tree(data.draw)
        s = simplify(g)
        s2 = simplify_views(s)
        feeds = {"x": _rand(1, 4, 3, 8), "y": _rand(1, 4, 3, 8)}
        _same_results(g, s, feeds, tol=1e-5)
        _same_results(g, s2, feeds, tol=1e-5)
    check()
