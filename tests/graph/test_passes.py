"""Graph passes on small hand-built graphs: structure before/after and interpreter equality."""

from __future__ import annotations

import math

import numpy as np
import pytest
from graph_interp import assert_same_results as _same_results
from graph_interp import op_counts as _ops

from kiln.graph import GraphError, structural_hash
from kiln.graph.frontend.common import GraphBuilder
from kiln.graph.ir import Node
from kiln.graph.passes import (
    combine_parallel_dense,
    default_pipeline,
    evaluate,
    fold,
    fold_constants,
    infer_node,
    infer_types,
    recognize_linear,
    recognize_norm_act,
    simplify,
)

RNG = np.random.RandomState(0)


def _rand(*shape):
    return RNG.randn(*shape).astype(np.float32)


def _x(b: GraphBuilder, shape=(2, 4, 8)):
    return b.input("x", shape, "float32")


# ------------------------------------------------------------------------------ infer

def test_infer_names_the_node_on_shape_mismatch():
    b = GraphBuilder("test")
    x, y = b.input("x", (2, 3), "float32"), b.input("y", (4, 3), "float32")
    with pytest.raises(GraphError, match=r"add 'bad_add'.*do not broadcast"):
        b.op("add", [x, y], "bad_add")
    w = b.const(_rand(5, 4), "w")
    with pytest.raises(GraphError, match=r"dense 'fc'.*weight \[N, K\]"):
        b.op("dense", [x, w], "fc")
    with pytest.raises(GraphError, match=r"reshape 'r'.*size 6"):
        b.op("reshape", [x], "r", newshape=(4, 2))
    bad = Node("multiply", [x, b.input("z", (2, 3), "int64")], name="mixed")
    with pytest.raises(GraphError, match=r"%\d+ \(multiply 'mixed'\).*dtypes differ"):
        infer_node(bad)


@pytest.mark.parametrize("op, attrs, shape", [
    ("sum", {"axis": [1], "keepdims": False}, (2, 8)),
    ("mean", {"axis": [0, 2], "keepdims": True}, (1, 4, 1)),
    ("argmax", {"axis": [2], "keepdims": False}, (2, 4)),
    ("transpose", {"axes": [2, 0, 1]}, (8, 2, 4)),
    ("strided_slice", {"begin": [1], "end": [8], "strides": [3], "axes": [2]}, (2, 4, 3)),
    ("expand_dims", {"axis": 1, "num_newaxis": 2}, (2, 1, 1, 4, 8)),
    ("pad", {"pad_width": [[0, 0], [1, 2], [0, 0]], "pad_value": 0.0}, (2, 7, 8)),
    ("flatten", {}, (2, 32)),
])
def test_infer_shapes(op, attrs, shape):
    b = GraphBuilder("test")
    n = b.op(op, [_x(b)], **attrs)
    assert n.shape == shape
    assert n.dtype == ("int64" if op == "argmax" else "float32")


def test_infer_conv_pool_and_matmul_shapes():
    b = GraphBuilder("test")
    img = b.input("img", (1, 4, 9, 9), "float32")
    conv = b.op("conv2d", [img, b.const(_rand(6, 2, 3, 3), "w")], strides=[2, 2],
                padding=[1, 1, 1, 1], dilation=[1, 1], groups=2)
    assert conv.shape == (1, 6, 5, 5)
    pool = b.op("max_pool2d", [conv], pool_size=[2, 2], strides=[2, 2], padding=[0, 0, 0, 0],
                ceil_mode=True)
    assert pool.shape == (1, 6, 3, 3)
    a, c = b.input("a", (3, 1, 5, 4), "float32"), b.input("c", (2, 6, 4), "float32")
    assert b.op("matmul", [a, b.op("transpose", [c], axes=[0, 2, 1])]).shape == (3, 2, 5, 6)
    assert b.op("batch_matmul", [c, c], transpose_a=False, transpose_b=True).shape == (2, 6, 6)


def test_infer_types_reinfers_a_copy():
    b = GraphBuilder("test")
    x = _x(b)
    y = b.op("relu", [x])
    g = b.finish([y])
    g2 = infer_types(g)
    assert g2.outputs[0] is not y and g2.outputs[0].shape == y.shape


# ------------------------------------------------------------------------------- fold

def _shape_chain_graph():
    """x + (a value computed from constants through take / expand_dims / concat / cast)."""
    b = GraphBuilder("test")
    x = b.input("x", (2, 3), "float32")
    shape = b.const(np.array([2, 3], np.int64), "shape")
    dim = b.op("take", [shape, b.const(np.array(1, np.int64), "i")], axis=0)
    vec = b.op("concatenate", [b.op("expand_dims", [dim], axis=0, num_newaxis=1),
                               b.const(np.array([4, 5], np.int64), "rest")], axis=0)
    vec = b.op("cast", [b.op("strided_slice", [vec], begin=[0], end=[3], strides=[1],
                             axes=[0])], dtype="float32")
    unused = b.op("exp", [b.const(_rand(3), "dead")])  # noqa: F841 - must vanish
    return b.finish([b.op("add", [x, vec])]), x


def test_fold_shape_chain_and_dead_code():
    g, _ = _shape_chain_graph()
    assert _ops(g) == {"take": 1, "expand_dims": 1, "concatenate": 1, "strided_slice": 1,
                       "cast": 1, "add": 1}
    folded = fold_constants(g)
    assert _ops(folded) == {"add": 1}
    assert len(folded.params) == 1
    np.testing.assert_array_equal(next(iter(folded.params.values())), [3.0, 4.0, 5.0])
    _same_results(g, folded, {"x": _rand(2, 3)})


def test_evaluate_reads_constants_only():
    g, x = _shape_chain_graph()
    add = g.outputs[0]
    assert evaluate(add.inputs[1], g.params).tolist() == [3.0, 4.0, 5.0]
    assert evaluate(add, g.params) is None


def test_fold_leaves_huge_broadcasts(monkeypatch):
    b = GraphBuilder("test")
    x = b.input("x", (64, 64), "float32")
    big = b.op("broadcast_to", [b.const(np.ones(1, np.float32), "one")], shape=(64, 64))
    g = b.finish([b.op("add", [x, big])])
    monkeypatch.setattr(fold, "MAX_FOLD_ELEMS", 100)
    assert "broadcast_to" in _ops(fold_constants(g))
    monkeypatch.setattr(fold, "MAX_FOLD_ELEMS", 1 << 22)
    assert "broadcast_to" not in _ops(fold_constants(g))


# --------------------------------------------------------------------------- patterns

def _layer_norm_graph(style: str):
    b = GraphBuilder("test")
    x = _x(b)
    mean = b.op("mean", [x], axis=[2], keepdims=True)
    d = b.op("subtract", [x, mean])
    if style == "onnx":
        sq = b.op("power", [d, b.const(np.array(2.0, np.float32), "two")])
    else:
        sq = b.op("multiply", [d, d])
    var = b.op("mean", [sq], axis=[2], keepdims=True)
    s = b.op("add", [var, b.const(np.array(1e-5, np.float32), "eps")])
    if style == "onnx":
        norm = b.op("divide", [d, b.op("sqrt", [s])])
    else:
        norm = b.op("multiply", [b.op("rsqrt", [s]), d])
    y = b.op("multiply", [b.const(_rand(8), "gamma"), norm])
    y = b.op("add", [y, b.const(_rand(1, 1, 8), "beta")])
    return b.finish([b.op("relu", [y])])


@pytest.mark.parametrize("style", ["onnx", "torch"])
def test_layer_norm_pattern(style):
    g = _layer_norm_graph(style)
    r = recognize_norm_act(g)
    assert _ops(r) == {"layer_norm": 1, "relu": 1}
    ln = r.outputs[0].inputs[0]
    assert ln.attrs == {"axis": 2, "epsilon": pytest.approx(1e-5)}
    assert [i.shape for i in ln.inputs] == [(2, 4, 8), (8,), (8,)]
    _same_results(g, r, {"x": _rand(2, 4, 8)}, tol=1e-4)


def test_layer_norm_pattern_needs_matching_axes():
    b = GraphBuilder("test")
    x = _x(b)
    d = b.op("subtract", [x, b.op("mean", [x], axis=[1], keepdims=True)])
    var = b.op("mean", [b.op("multiply", [d, d])], axis=[2], keepdims=True)
    s = b.op("add", [var, b.const(np.array(1e-5, np.float32), "eps")])
    g = b.finish([b.op("divide", [d, b.op("sqrt", [s])])])
    assert "layer_norm" not in _ops(recognize_norm_act(g))


def _gelu_graph(form: str, half: float = 0.5):
    b = GraphBuilder("test")
    x = _x(b)

    def c(v):
        return b.const(np.array(v, np.float32), "c")
    if form == "erf":  # BERT's ONNX export: (x * (erf(x / sqrt2) + 1)) * 0.5
        e = b.op("add", [b.op("erf", [b.op("divide", [x, c(math.sqrt(2))])]), c(1.0)])
        y = b.op("multiply", [b.op("multiply", [x, e]), c(half)])
    elif form == "erf_div":  # x * 0.5 * (1 + erf(x * 0.7071)) written as (x * (..)) / 2
        e = b.op("add", [c(1.0), b.op("erf", [b.op("multiply", [c(0.70710678), x])])])
        y = b.op("divide", [b.op("multiply", [e, x]), c(1 / half)])
    else:  # GPT-2: 0.5 * x * (1 + tanh(sqrt(2/pi) * (x + 0.044715 * pow(x, 3))))
        cube = b.op("multiply", [c(0.044715), b.op("power", [x, c(3.0)])])
        inner = b.op("multiply", [b.op("add", [x, cube]), c(math.sqrt(2 / math.pi))])
        t = b.op("add", [b.op("tanh", [inner]), c(1.0)])
        y = b.op("multiply", [b.op("multiply", [c(half), x]), t])
    return b.finish([y])


@pytest.mark.parametrize("form", ["erf", "erf_div", "tanh"])
def test_gelu_pattern(form):
    g = _gelu_graph(form)
    r = recognize_norm_act(g)
    assert _ops(r) == {"gelu": 1}
    assert r.outputs[0].attrs["approximate"] == ("tanh" if form == "tanh" else "none")
    _same_results(g, r, {"x": _rand(2, 4, 8)}, tol=1e-5)


@pytest.mark.parametrize("form", ["hard_sigmoid", "clip"])
def test_hard_swish_pattern(form):
    b = GraphBuilder("test")
    x = _x(b)
    if form == "hard_sigmoid":  # ONNX opset < 14 export of nn.Hardswish
        y = b.op("multiply", [x, b.op("hard_sigmoid", [x], alpha=1 / 6, beta=0.5)])
    else:  # x * relu6(x + 3) / 6
        s = b.op("clip", [b.op("add", [x, b.const(np.array(3.0, np.float32), "three")])],
                 a_min=0.0, a_max=6.0)
        y = b.op("divide", [b.op("multiply", [s, x]), b.const(np.array(6.0, np.float32), "6")])
    g = b.finish([y])
    r = recognize_norm_act(g)
    assert _ops(r) == {"hard_swish": 1}
    _same_results(g, r, {"x": _rand(2, 4, 8) * 4})


def test_gelu_pattern_rejects_wrong_constants():
    assert "gelu" not in _ops(recognize_norm_act(_gelu_graph("erf", half=0.6)))


def test_dense_pattern_transposes_weight_once_and_takes_bias():
    b = GraphBuilder("test")
    x = _x(b)
    w = b.const(_rand(8, 6), "W")
    y1 = b.op("add", [b.const(_rand(6), "bias"), b.op("matmul", [x, w])])
    y2 = b.op("matmul", [b.op("relu", [x]), w])
    g = b.finish([y1, y2])
    r = recognize_linear(g)
    assert _ops(r) == {"dense": 2, "relu": 1}
    d1, d2 = r.outputs
    assert len(d1.inputs) == 3 and len(d2.inputs) == 2
    assert d1.inputs[1] is d2.inputs[1] and d1.inputs[1].shape == (6, 8)
    np.testing.assert_array_equal(r.params[d1.inputs[1].attrs["name"]], g.params["W"].T)
    _same_results(g, r, {"x": _rand(2, 4, 8)})


def test_dense_moves_through_leading_axis_reshape():
    b = GraphBuilder("test")
    x = _x(b)
    flat = b.op("reshape", [x], newshape=(8, 8))
    d = b.op("dense", [flat, b.const(_rand(12, 8), "w"), b.const(_rand(12), "bias")])
    g = b.finish([b.op("reshape", [d], newshape=(2, 4, 12))])
    r = simplify(recognize_linear(g))
    assert _ops(r) == {"dense": 1}
    assert r.outputs[0].op == "dense" and r.outputs[0].inputs[0] is r.inputs[0]
    _same_results(g, r, {"x": _rand(2, 4, 8)})


def test_batch_matmul_absorbs_key_transpose():
    b = GraphBuilder("test")
    q, k = b.input("q", (1, 5, 2, 4), "float32"), b.input("k", (1, 5, 2, 4), "float32")
    qt = b.op("transpose", [q], axes=[0, 2, 1, 3])
    kt = b.op("transpose", [k], axes=[0, 2, 3, 1])  # BERT's K^T: [b, h, d, s]
    g = b.finish([b.op("matmul", [qt, kt])])
    r = recognize_linear(g)
    bmm = r.outputs[0]
    assert bmm.op == "batch_matmul" and bmm.attrs == {"transpose_a": False, "transpose_b": True}
    assert bmm.inputs[1].attrs["axes"] == [0, 2, 1, 3]
    _same_results(g, r, {"q": _rand(1, 5, 2, 4), "k": _rand(1, 5, 2, 4)})


def test_batch_norm_folds_into_conv():
    b = GraphBuilder("test")
    img = b.input("img", (1, 3, 6, 6), "float32")
    conv = b.op("conv2d", [img, b.const(_rand(4, 3, 3, 3), "w"), b.const(_rand(4), "cb")],
                strides=[1, 1], padding=[1, 1, 1, 1], dilation=[1, 1], groups=1)
    stats = [b.const(v, n) for v, n in ((_rand(4), "g"), (_rand(4), "b"), (_rand(4), "m"),
                                        (np.abs(_rand(4)) + 0.5, "v"))]
    g = b.finish([b.op("batch_norm", [conv, *stats], epsilon=1e-5)])
    r = recognize_linear(g)
    assert _ops(r) == {"conv2d": 1}
    _same_results(g, r, {"img": _rand(1, 3, 6, 6)}, tol=1e-4)


# ---------------------------------------------------------------------------- combine

def _qkv_graph(bias=(True, True, True)):
    b = GraphBuilder("test")
    x = _x(b)
    outs = []
    for k, has_bias in enumerate(bias):
        ins = [x, b.const(_rand(6 + k, 8), f"w{k}")] + ([b.const(_rand(6 + k), f"b{k}")]
                                                         if has_bias else [])
        outs.append(b.op("relu", [b.op("dense", ins)]))
    return b.finish(outs)


def test_combine_parallel_dense():
    g = _qkv_graph()
    c = combine_parallel_dense(g)
    assert _ops(c) == {"dense": 1, "strided_slice": 3, "relu": 3}
    wide = c.outputs[0].inputs[0].inputs[0]
    assert wide.shape == (2, 4, 21)
    assert [o.inputs[0].attrs["begin"] for o in c.outputs] == [[0], [6], [13]]
    _same_results(g, c, {"x": _rand(2, 4, 8)})


def test_combine_needs_matching_bias_and_is_off_by_default():
    assert _ops(combine_parallel_dense(_qkv_graph((True, False, True))))["dense"] == 2
    assert _ops(default_pipeline(_qkv_graph()))["dense"] == 3
    assert _ops(default_pipeline(_qkv_graph(), combine_dense=True))["dense"] == 1


# --------------------------------------------------------------------------- pipeline

def test_pipeline_never_mutates_its_input():
    g = _layer_norm_graph("onnx")
    before = structural_hash(g.outputs)
    out = default_pipeline(g)
    assert structural_hash(g.outputs) == before
    assert _ops(out) == {"layer_norm": 1, "relu": 1}


# ---------------------------------------------------------------------------- conv_gemm

def _bottleneck(hw: int, stride: int = 1, wide_bias=False):
    """relu(conv1x1(x) + bias + x_residual) then a 3x3 conv and a global pool reading it."""
    b = GraphBuilder("test")
    x = b.input("x", (1, 8, hw, hw), "float32")
    conv = b.op("conv2d", [x, b.const(_rand(8, 8, 1, 1), "w"), b.const(_rand(8), "cb")],
                strides=[stride, stride], padding=[0, 0, 0, 0], dilation=[1, 1], groups=1)
    res = x if stride == 1 else b.op("max_pool2d", [x], pool_size=[1, 1], strides=[2, 2])
    y = b.op("add", [conv, res])
    if wide_bias:  # broadcast along W: no pixel-axis equivalent, stays 4-d
        y = b.op("multiply", [y, b.const(_rand(1, 1, 1, conv.shape[3]), "sw")])
    y = b.op("relu", [y])
    z = b.op("conv2d", [y, b.const(_rand(4, 8, 3, 3), "w3")], strides=[1, 1],
             padding=[1, 1, 1, 1], dilation=[1, 1], groups=1)
    return b.finish([b.op("relu", [z]), y])


def test_pointwise_conv_becomes_a_product_over_pixels_with_its_epilogue():
    """A 1x1 conv over 64 pixels is a product over [N, C, H*W] whose bias, residual add
    and ReLU stay in 3-d (one fused epilogue), the NCHW view made once at the end; the
    results are the same. 49 pixels, a stride or a W-broadcast operand leave it alone."""
    src = _bottleneck(8)
    g, r = default_pipeline(src), default_pipeline(src, conv_gemm_lanes=16)
    ops = _ops(r)
    # x viewed as [N, C, H*W] for the product and for the residual, the output viewed as NCHW
    assert ops["batch_matmul"] == 1 and ops["conv2d"] == 1 and ops["reshape"] == 3
    relu = next(n for n in r.outputs[1].inputs if n.op == "relu")  # the NCHW view's source
    assert len(relu.shape) == 3 and relu.inputs[0].op == "add"
    _same_results(g, r, {"x": _rand(1, 8, 8, 8)})
    for case in (_bottleneck(7), _bottleneck(8, stride=2), _bottleneck(8, wide_bias=True)):
        before = default_pipeline(case)
        after = default_pipeline(case, conv_gemm_lanes=16)
        if "multiply" in _ops(before):  # the product is made, the epilogue stays 4-d
            assert "multiply" in _ops(after)
            _same_results(before, after, {"x": _rand(*case.inputs[0].shape)})
        else:
            assert _ops(after) == _ops(before)


def _inverted_residual(c: int = 16, hw: int = 8):
    """MobileNetV2's block in float32: 1x1 expand, ReLU6, 3x3 depthwise, ReLU6, 1x1 project
    plus the input, then a global pool."""
    b = GraphBuilder("test")
    x = b.input("x", (1, c, hw, hw), "float32")

    def conv(v, w, **attrs):
        return b.op("conv2d", [v, b.const(w, "w"), b.const(_rand(w.shape[0]), "bias")],
                    **{"strides": [1, 1], "padding": [0, 0, 0, 0], "dilation": [1, 1],
                       "groups": 1, **attrs})
    e = b.op("clip", [conv(x, _rand(4 * c, c, 1, 1))], a_min=0.0, a_max=6.0)
    d = b.op("clip", [conv(e, _rand(4 * c, 1, 3, 3), padding=[1, 1, 1, 1], groups=4 * c)],
             a_min=0.0, a_max=6.0)
    y = b.op("add", [conv(d, _rand(c, 4 * c, 1, 1)), x])
    return b.finish([b.op("global_avg_pool2d", [y])])


def test_a_network_with_depthwise_convs_runs_its_blocks_channels_last():
    """With a depthwise convolution in the graph, 1x1 convolutions become channels-last
    products, the depthwise one runs channels-last, and the only transposes left are the
    input's and the pooled result's; a network without one keeps the NCHW products."""
    src = _inverted_residual()
    g, r = default_pipeline(src), default_pipeline(src, conv_gemm_lanes=16)
    ops = _ops(r)
    assert ops["dense"] == 2 and ops["depthwise_conv2d_nhwc"] == 1 and "conv2d" not in ops
    moved = [n for n in r.nodes() if n.op == "transpose"]
    assert all(t.inputs[0] is r.inputs[0] or int(np.prod(t.shape)) == 16 for t in moved)
    _same_results(g, r, {"x": _rand(1, 16, 8, 8)}, tol=1e-4)
    assert "batch_matmul" in _ops(default_pipeline(_bottleneck(8), conv_gemm_lanes=16))
