"""Statically quantized ONNX models (QuantizeLinear / DequantizeLinear pairs, QLinearMatMul,
QLinearConv) against ONNX Runtime.

MatMul / Gemm / Conv on dequantized operands run as uint8 x int8 products: they match the
float products ONNX Runtime computes on the dequantized values (u8 and s8 activations, per
tensor and per channel weights, padding, strides, dilation, 1x1 windows); the product kiln
imports is the 8-bit one (im2col rows for the convolutions); the operands it cannot take that
way (3 input channels, depthwise, a weight scale per K) stay float and correct. QLinear ops
agree with ONNX Runtime's integer kernels within one quantization step. Whole models from
onnxruntime.quantization.quantize_static (a small CNN, MobileNetV2's inverted residual
blocks, bert-tiny) match ONNX Runtime and run channels-last between their convolutions,
depthwise ones included.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import helper as h
from util import needs_exact_ort_u8s8, onnx_model, ort_run, tiny_cli_model

import kiln
from kiln.graph.frontend import from_onnx
from kiln.graph.passes import default_pipeline

RNG = np.random.RandomState(7)


def _weight(name: str, w: np.ndarray, axis: int | None) -> tuple[list, dict]:
    """A symmetric int8 weight (per tensor, or per index of `axis`) and its DequantizeLinear."""
    red = tuple(d for d in range(w.ndim) if d != axis) if axis is not None else None
    scale = (np.abs(w).max(axis=red) / 127).astype(np.float32)
    shaped = scale if axis is None else np.expand_dims(scale, [d for d in range(w.ndim)
                                                                if d != axis])
    q = np.clip(np.round(w / shaped), -127, 127).astype(np.int8)
    attrs = {} if axis is None else {"axis": axis}
    node = h.make_node("DequantizeLinear", [f"{name}_q", f"{name}_s", f"{name}_z"], [name],
                       **attrs)
    return [node], {f"{name}_q": q, f"{name}_s": scale, f"{name}_z": np.zeros_like(scale,
                                                                                np.int8)}


def _activation(name: str, dtype) -> tuple[list, dict]:
    """x -> QuantizeLinear -> DequantizeLinear (scale 0.05, a zero point off the middle)."""
    zero = np.array(20 if dtype == np.int8 else 140, dtype)
    nodes = [h.make_node("QuantizeLinear", [name, f"{name}_s", f"{name}_z"], [f"{name}_q"]),
             h.make_node("DequantizeLinear", [f"{name}_q", f"{name}_s", f"{name}_z"],
                         [f"{name}_dq"])]
    return nodes, {f"{name}_s": np.float32(0.05), f"{name}_z": zero}


def _qdq(op_node, x_shape, weight: np.ndarray, axis, act=np.uint8, extra=None):
    """A model: x quantized and dequantized, `op_node` on it and a dequantized weight."""
    xn, xi = _activation("x", act)
    wn, wi = _weight("w", weight, axis)
    return onnx_model(xn + wn + [op_node], {"x": np.zeros(x_shape, np.float32)}, ["y"],
                      {**xi, **wi, **(extra or {})}, opset=19)


def _int8_products(model) -> tuple[int, bool]:
    """(products with a uint8 operand, whether an im2col copy is there) after the pipeline."""
    g, _ = from_onnx(model)
    g = default_pipeline(g)
    nodes = list(g.nodes())
    return (sum(n.op in ("dense", "matmul", "batch_matmul") and n.inputs[0].dtype == "uint8"
                for n in nodes), any(n.op == "im2col" for n in nodes))


def _check(model, x: np.ndarray, uses_int8: bool, im2col: bool = False) -> None:
    graph, params = from_onnx(model)
    got = kiln.graph.build(graph, params, target="cpu").run(x=x)["y"]
    ref = ort_run(model, {"x": x})[0]
    np.testing.assert_allclose(got, ref, rtol=1e-4, atol=1e-4 * np.abs(ref).max())
    count, found = _int8_products(model)
    assert (count > 0) == uses_int8 and found == im2col


@pytest.mark.parametrize("act", [np.uint8, np.int8])
def test_qdq_matmul_and_gemm(act):
    x = RNG.randn(2, 16, 64).astype(np.float32) * 3
    _check(_qdq(h.make_node("MatMul", ["x_dq", "w"], ["y"]), x.shape,
                RNG.randn(64, 48).astype(np.float32), 1, act), x, True)
    gemm = h.make_node("Gemm", ["x_dq", "w", "b"], ["y"], transB=1, alpha=0.5, beta=2.0)
    x2 = x[0]
    _check(_qdq(gemm, x2.shape, RNG.randn(40, 64).astype(np.float32), 0, act,
                {"b": RNG.randn(40).astype(np.float32)}), x2, True)


CONVS = {  # name: (input channels, kernel, attributes)
    "3x3": (32, 3, {"pads": [1, 1, 1, 1]}),
    "3x3_stride2_dilation2": (32, 3, {"pads": [1, 2, 0, 1], "strides": [2, 2],
                                      "dilations": [2, 2]}),
    "same_upper": (16, 3, {"auto_pad": "SAME_UPPER", "strides": [2, 1]}),
    "1x1": (48, 1, {}),
    "1x1_stride2": (32, 1, {"strides": [2, 2]}),
    "patches_3_channels": (3, 2, {"strides": [2, 2]}),  # ViT's patch embedding
}


@pytest.mark.parametrize("act", [np.uint8, np.int8])
@pytest.mark.parametrize("case", sorted(CONVS))
def test_qdq_conv_runs_as_an_int8_product_over_windows(case, act):
    c, k, attrs = CONVS[case]
    x = RNG.randn(1, c, 8, 10).astype(np.float32) * 2
    conv = h.make_node("Conv", ["x_dq", "w", "b"], ["y"], **attrs)
    model = _qdq(conv, x.shape, RNG.randn(24, c, k, k).astype(np.float32), 0, act,
                 {"b": RNG.randn(24).astype(np.float32)})
    _check(model, x, True, im2col=case not in ("1x1", "patches_3_channels"))


@pytest.mark.parametrize("case", ["three_channels", "depthwise", "weight_scale_per_k"])
def test_qdq_products_kiln_keeps_in_float(case):
    if case == "weight_scale_per_k":
        x = RNG.randn(8, 64).astype(np.float32)
        model = _qdq(h.make_node("MatMul", ["x_dq", "w"], ["y"]), x.shape,
                     RNG.randn(64, 32).astype(np.float32), 0)
    else:
        c, group = (3, 1) if case == "three_channels" else (32, 32)
        x = RNG.randn(1, c, 8, 8).astype(np.float32)
        conv = h.make_node("Conv", ["x_dq", "w"], ["y"], pads=[1, 1, 1, 1], group=group)
        model = _qdq(conv, x.shape, RNG.randn(32, c // group, 3, 3).astype(np.float32), 0)
    _check(model, x, False)


def _qlinear_inits(w: np.ndarray, act_zero: int) -> dict:
    _, wi = _weight("w", w, 0)
    return {"xs": np.float32(0.04), "xz": np.uint8(act_zero), "wq": wi["w_q"],
            "ws": wi["w_s"], "wz": wi["w_z"], "ys": np.float32(0.2), "yz": np.uint8(128)}


def _qlinear(node, x_shape, inits) -> np.ndarray:
    model = onnx_model([node], {"x": np.zeros(x_shape, np.uint8)}, ["y"], inits, opset=19)
    x = RNG.randint(0, 256, x_shape).astype(np.uint8)
    graph, params = from_onnx(model)
    got = kiln.graph.build(graph, params, target="cpu").run(x=x)["y"]
    ref = ort_run(model, {"x": x})[0]
    assert got.dtype == ref.dtype == np.uint8
    diff = np.abs(got.astype(np.int32) - ref.astype(np.int32))
    assert diff.max() <= 1 and (diff == 0).mean() > 0.98  # ties of the requantization
    return got


@needs_exact_ort_u8s8
def test_qlinear_matmul_and_conv_match_onnxruntime():
    w = RNG.randn(32, 64).astype(np.float32)
    inits = _qlinear_inits(w, 120)
    inits["ws"] = np.float32(inits["ws"].max())  # QLinearMatMul: per tensor or per column
    inits["wz"] = np.int8(0)
    inits["wq"] = np.ascontiguousarray(inits["wq"].T)  # [K, N]
    _qlinear(h.make_node("QLinearMatMul", ["x", "xs", "xz", "wq", "ws", "wz", "ys", "yz"],
                         ["y"]), (16, 64), inits)
    wc = RNG.randn(24, 16, 3, 3).astype(np.float32)
    inits = _qlinear_inits(wc, 100)
    inits["b"] = RNG.randint(-2000, 2000, 24).astype(np.int32)
    _qlinear(h.make_node("QLinearConv", ["x", "xs", "xz", "wq", "ws", "wz", "ys", "yz", "b"],
                         ["y"], pads=[1, 1, 1, 1], strides=[2, 2]), (1, 16, 9, 9), inits)


def _cnn() -> onnx.ModelProto:
    """stem conv (3 channels) -> relu -> conv 3x3 stride 2 -> relu -> 1x1 conv + residual ->
    global average pool -> linear."""
    def w(*shape):
        return (RNG.randn(*shape) / np.sqrt(np.prod(shape[1:]))).astype(np.float32)
    nodes = [h.make_node("Conv", ["x", "w1", "b1"], ["c1"], pads=[1, 1, 1, 1]),
             h.make_node("Relu", ["c1"], ["r1"]),
             h.make_node("Conv", ["r1", "w2", "b2"], ["c2"], pads=[1, 1, 1, 1], strides=[2, 2]),
             h.make_node("Relu", ["c2"], ["r2"]),
             h.make_node("Conv", ["r2", "w3", "b3"], ["c3"]),
             h.make_node("Add", ["r2", "c3"], ["s"]),
             h.make_node("GlobalAveragePool", ["s"], ["p"]),
             h.make_node("Flatten", ["p"], ["f"]),
             h.make_node("Gemm", ["f", "w4", "b4"], ["y"], transB=1)]
    inits = {"w1": w(16, 3, 3, 3), "b1": w(16) * 0.1, "w2": w(32, 16, 3, 3), "b2": w(32) * 0.1,
             "w3": w(32, 32, 1, 1), "b3": w(32) * 0.1, "w4": w(10, 32), "b4": w(10) * 0.1}
    return onnx_model(nodes, {"x": np.zeros((1, 3, 16, 16), np.float32)}, ["y"], inits, 17)


def _quantize_static(model, feeds: list, act: str) -> onnx.ModelProto:
    """ORT's static recipe, as the benchmarks run it (benchmarks/peers.py)."""
    sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))
    import peers
    return onnx.load_from_string(peers.static_quantized_bytes(model, feeds, act))


def _close_to_onnxruntime(model, fp32, feeds: dict) -> None:
    graph, params = from_onnx(model)
    lib = kiln.graph.build(graph, params, target="cpu")
    name = model.graph.output[0].name
    got, ref = lib.run(**feeds)[name], ort_run(model, feeds)[0]
    exact = ort_run(fp32, feeds)[0]
    # the same integers; float rounding before a requantization may move a value by one
    # step now and then, far below the quantization error itself
    assert np.abs(got - ref).max() <= 0.25 * np.abs(exact - ref).max() + 1e-6
    if "avx512vnni" in kiln.target.Target("cpu").features:
        assert "_mm512_dpbusd_epi32" in lib.source


def _inverted_residual() -> onnx.ModelProto:
    """MobileNetV2's block: 1x1 expand -> ReLU6 -> 3x3 depthwise -> ReLU6 -> 1x1 project,
    plus the input; then the same block once more with a stride-2 depthwise."""
    def w(*shape):
        return (RNG.randn(*shape) / np.sqrt(np.prod(shape[1:]))).astype(np.float32)
    nodes, inits, x = [], {}, "x"
    for i, stride in enumerate((1, 2)):
        nodes += [h.make_node("Conv", [x, f"e{i}", f"eb{i}"], [f"e{i}o"]),
                  h.make_node("Clip", [f"e{i}o", "lo", "hi"], [f"e{i}r"]),
                  h.make_node("Conv", [f"e{i}r", f"d{i}", f"db{i}"], [f"d{i}o"], group=64,
                              pads=[1, 1, 1, 1], strides=[stride, stride]),
                  h.make_node("Clip", [f"d{i}o", "lo", "hi"], [f"d{i}r"]),
                  h.make_node("Conv", [f"d{i}r", f"p{i}", f"pb{i}"], [f"p{i}o"])]
        inits.update({f"e{i}": w(64, 16, 1, 1), f"eb{i}": w(64), f"d{i}": w(64, 1, 3, 3),
                      f"db{i}": w(64), f"p{i}": w(16, 64, 1, 1), f"pb{i}": w(16)})
        if stride == 1:
            nodes.append(h.make_node("Add", [x, f"p{i}o"], [f"s{i}"]))
            x = f"s{i}"
        else:
            x = f"p{i}o"
    nodes.append(h.make_node("GlobalAveragePool", [x], ["y"]))
    inits.update({"lo": np.float32(0), "hi": np.float32(6)})
    return onnx_model(nodes, {"x": np.zeros((1, 16, 12, 12), np.float32)}, ["y"], inits, 17)


@pytest.mark.parametrize("act", ["QInt8", "QUInt8"])
@pytest.mark.parametrize("net", ["cnn", "inverted_residual"])
def test_a_quantize_static_cnn_matches_onnxruntime_and_runs_channels_last(net, act):
    fp32, shape = (_cnn(), (1, 3, 16, 16)) if net == "cnn" else \
        (_inverted_residual(), (1, 16, 12, 12))
    feeds = [{"x": RNG.randn(*shape).astype(np.float32)} for _ in range(4)]
    model = _quantize_static(fp32, feeds, act)
    _close_to_onnxruntime(model, fp32, {"x": RNG.randn(*shape).astype(np.float32)})
    g, _ = from_onnx(model)
    g = default_pipeline(g)
    # NHWC after the float stem (the CNN) or of the model's input, the pooled [1, C, 1, 1]
    # back, and nothing between (depthwise convolutions run channels-last too)
    moved = [n for n in g.nodes() if n.op == "transpose" and int(np.prod(n.shape)) > 32]
    stem = [n for n in g.nodes() if n.op == "conv2d"] if net == "cnn" else g.inputs
    assert moved and all(_reads_only(t, stem) for t in moved)
    assert (net == "cnn") != any(n.op == "depthwise_conv2d_nhwc" for n in g.nodes())


def _reads_only(node, sources: list) -> bool:
    """Whether every non-constant value behind `node`'s elementwise producers is one of
    `sources`."""
    from kiln.graph.ops import OpPattern, pattern
    if any(node is s for s in sources):
        return True
    if node.op == "const":
        return True
    if node.op != "transpose" and (node.op == "input" or pattern(node) not in (
            OpPattern.ELEMWISE, OpPattern.BROADCAST)):
        return False
    return all(_reads_only(i, sources) for i in node.inputs)


def test_a_quantize_static_bert_matches_onnxruntime():
    m = tiny_cli_model()
    feeds = [{k: RNG.randint(0, 100, v.shape).astype(v.dtype) for k, v in m.inputs.items()}
             for _ in range(3)]
    model = _quantize_static(m.proto, feeds, "QInt8")
    assert _int8_products(model)[0] >= 6  # q, k, v, out, two FFN layers per block
    _close_to_onnxruntime(model, m.proto, feeds[0])
