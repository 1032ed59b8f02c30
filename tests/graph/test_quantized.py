"""Quantized ONNX models as onnxruntime.quantization writes them, against ONNX Runtime.

DynamicQuantizeLinear + MatMulInteger chains are bit-exact (quantized activations, scale,
zero point, int32 products and the float result), over many input ranges; QuantizeLinear /
DequantizeLinear per tensor and per axis; MatMulInteger with weight zero points (shifted into
int8 at import), with run-time weights (the plain int32 product) and with int8 activations
(moved to uint8);
ConvInteger with zero points, strides and groups;
a model quantized by quantize_dynamic matches ONNX Runtime within quantization noise and
its products print as AVX512-VNNI dot products; the byte dot product is exact with and
without VNNI; whole-tensor reductions (the range DynamicQuantizeLinear needs) run in
parallel SIMD chunks and match NumPy.
"""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import TensorProto as T
from onnx import helper as h
from util import cosine, needs_exact_ort_u8s8, tiny_cli_model
from util import onnx_model as _model
from util import ort_run as _ort

import kiln
from kiln import te, topi
from kiln.graph.default_schedule import default_schedule
from kiln.graph.frontend import ConversionError, from_onnx
from kiln.graph.passes import default_pipeline
from kiln.schedule import ComputeDAG
from kiln.schedule.layout import pack_inputs

RNG = np.random.RandomState(3)
HAS_VNNI = kiln.target.Target("cpu").has("avx512vnni")


def _kiln(model):
    graph, params = from_onnx(model)
    return kiln.graph.build(graph, params, target="cpu")


def _dynamic_mm(k: int = 64, n: int = 32, weights: np.ndarray | None = None):
    w = RNG.randint(-128, 128, (k, n)).astype(np.int8) if weights is None else weights
    nodes = [h.make_node("DynamicQuantizeLinear", ["x"], ["xq", "xs", "xz"]),
             h.make_node("MatMulInteger", ["xq", "W", "xz", "wz"], ["acc"]),
             h.make_node("Cast", ["acc"], ["accf"], to=T.FLOAT),
             h.make_node("Mul", ["xs", "ws"], ["s"]),
             h.make_node("Mul", ["accf", "s"], ["y"])]
    inits = {"W": w, "wz": np.array(0, w.dtype), "ws": np.array(0.0123, np.float32)}
    return _model(nodes, {"x": np.zeros((16, k), np.float32)},
                  ["y", "xq", "xs", "xz", "acc"], inits)


def _exact_mm(a, za, w, zw) -> np.ndarray:
    """MatMulInteger in int64 NumPy. The reference for integer products: ONNX Runtime's
    u8 x s8 kernel on a CPU without VNNI (AVX2's vpmaddubsw) saturates pairs of products at
    int16, so its results there differ from the operator's definition."""
    a64, w64 = a.astype(np.int64) - np.int64(za), w.astype(np.int64) - zw.astype(np.int64)
    return (a64 @ w64).astype(np.int32)


def test_dynamic_quantized_matmul_is_bit_exact():
    weights = RNG.randint(-128, 128, (64, 32)).astype(np.int8)
    model = _dynamic_mm(weights=weights)
    lib = _kiln(model)
    names = ["y", "xq", "xs", "xz", "acc"]
    for trial in range(60):
        scale, shift = RNG.uniform(0.01, 20), RNG.uniform(-3, 3)
        x = (RNG.randn(16, 64) * scale + shift).astype(np.float32)
        if trial == 0:
            x[:] = 0  # an all-zero input: the range is empty
        if trial == 1:
            x = np.abs(x)  # no negative value: zero point 0
        ref = _ort(model, {"x": x})
        ref[4] = _exact_mm(ref[1], ref[3], weights, np.int8(0))  # ORT saturates on AVX2
        ref[0] = ref[4].astype(np.float32) * (ref[2] * np.float32(0.0123))
        out = lib.run(x=x)
        for name, want in zip(names, ref):
            got = np.asarray(out[name]).reshape(np.shape(want))
            assert got.dtype == want.dtype, name
            np.testing.assert_array_equal(got, want, err_msg=f"{name}, trial {trial}")


@pytest.mark.parametrize("dtype", [np.uint8, np.int8])
@pytest.mark.parametrize("per_axis", [False, True])
def test_quantize_dequantize_linear(dtype, per_axis):
    x = (RNG.randn(3, 4, 5) * 40).astype(np.float32)
    x[0, 0, :3] = [0.5, 1.5, -2.5]  # ties round to even
    if per_axis:
        scale = RNG.uniform(0.1, 1.0, 4).astype(np.float32)
        zp = RNG.randint(-20, 20, 4).astype(dtype) if dtype == np.int8 else \
            RNG.randint(100, 150, 4).astype(dtype)
    else:
        scale, zp = np.array(0.37, np.float32), np.array(3 if dtype == np.int8 else 128, dtype)
    nodes = [h.make_node("QuantizeLinear", ["x", "s", "z"], ["q"], axis=1),
             h.make_node("DequantizeLinear", ["q", "s", "z"], ["y"], axis=1)]
    model = _model(nodes, {"x": x}, ["q", "y"], {"s": scale, "z": zp})
    ref = _ort(model, {"x": x})
    out = _kiln(model).run(x=x)
    np.testing.assert_array_equal(out["q"], ref[0])
    np.testing.assert_array_equal(out["y"], ref[1])


@pytest.mark.parametrize("case", ["uint8_weights_zp", "runtime_weights", "int8_activations",
                                  "int8_activations_int32", "per_column_zp"])
def test_matmul_integer_variants(case):
    a = RNG.randint(0, 256, (8, 24)).astype(np.uint8)
    za = np.array(7, np.uint8)
    if case == "uint8_weights_zp":  # QUInt8 weights: shifted into int8 at import
        w, zw = RNG.randint(0, 256, (24, 12)).astype(np.uint8), np.array(128, np.uint8)
    elif case == "per_column_zp":
        w = RNG.randint(-100, 100, (24, 12)).astype(np.int8)
        zw = RNG.randint(-20, 20, 12).astype(np.int8)
    elif case == "int8_activations":  # moved to uint8 (+128): the uint8 x int8 product
        w, zw = RNG.randint(-128, 128, (24, 12)).astype(np.int8), np.array(0, np.int8)
    else:  # shifted by their zero point the weights leave int8: the int32 product
        w, zw = RNG.randint(-128, 128, (24, 12)).astype(np.int8), np.array(3, np.int8)
    if case.startswith("int8_activations"):
        a, za = RNG.randint(-128, 128, (8, 24)).astype(np.int8), np.array(-5, np.int8)
    inputs = {"a": a}
    inits = {"za": za, "zw": zw}
    if case == "runtime_weights":
        inputs["w"] = w
    else:
        inits["w"] = w
    node = h.make_node("MatMulInteger", ["a", "w", "za", "zw"], ["y"])
    model = _model([node], inputs, ["y"], inits)
    np.testing.assert_array_equal(_kiln(model).run(**inputs)["y"], _exact_mm(a, za, w, zw))
    g, _ = from_onnx(model)
    u8 = [n for n in default_pipeline(g).nodes() if n.op in ("dense", "matmul")
          and n.inputs[0].dtype == "uint8"]
    assert bool(u8) == (case in ("uint8_weights_zp", "int8_activations", "per_column_zp"))


@pytest.mark.parametrize("group,stride,pad,k", [(1, 1, 1, 3), (1, 2, 1, 3), (4, 1, 1, 3),
                                                (1, 4, 0, 4), (1, 1, 0, 1)])
def test_conv_integer(group, stride, pad, k):
    """The int32 convolution of the shifted operands; a patchify (stride = kernel) as a
    uint8 x int8 product over patches (ORT takes only a scalar weight zero point here)."""
    x = RNG.randint(0, 256, (1, 8, 12, 12)).astype(np.uint8)
    w = RNG.randint(-120, 120, (16, 8 // group, k, k)).astype(np.int8)
    inits = {"w": w, "zx": np.array(9, np.uint8), "zw": np.array(-3, np.int8)}
    node = h.make_node("ConvInteger", ["x", "w", "zx", "zw"], ["y"], pads=[pad] * 4,
                       strides=[stride, stride], group=group)
    model = _model([node], {"x": x}, ["y"], inits)
    np.testing.assert_array_equal(_kiln(model).run(x=x)["y"], _ort(model, {"x": x})[0])


@pytest.mark.parametrize("runtime_zero", [False, True])
@pytest.mark.parametrize("stride,pad,k", [(1, 1, 3), (2, 1, 3), (1, 0, 1)])
def test_conv_integer_over_16_channels_runs_on_windows(runtime_zero, stride, pad, k):
    """16 input channels: the channels-last uint8 x int8 product over the windows, padded
    with the zero point, a constant or DynamicQuantizeLinear's (known at run time only)."""
    w = RNG.randint(-120, 120, (24, 16, k, k)).astype(np.int8)
    conv = h.make_node("ConvInteger", ["q", "w", "z"], ["y"], pads=[pad] * 4,
                       strides=[stride, stride])
    if runtime_zero:
        x = (RNG.randn(1, 16, 9, 9) * 3 + 1).astype(np.float32)
        nodes, inits = [h.make_node("DynamicQuantizeLinear", ["x"], ["q", "s", "z"]), conv], {}
    else:
        x = RNG.randint(0, 256, (1, 16, 9, 9)).astype(np.uint8)
        nodes = [h.make_node("Identity", ["x"], ["q"]), conv]
        inits = {"z": np.array(131, np.uint8)}
    model = _model(nodes, {"x": x}, ["y"], {"w": w, **inits})
    np.testing.assert_array_equal(_kiln(model).run(x=x)["y"], _ort(model, {"x": x})[0])
    g, _ = from_onnx(model)
    assert any(n.op == "im2col" for n in default_pipeline(g).nodes()) == (k > 1)


def test_dynamic_depthwise_conv_integer_runs_channels_last_after_a_window_product():
    """quantize_dynamic's MobileNet shape: a 1x1 ConvInteger (channels-last product), its
    float result quantized again, then a depthwise ConvInteger: that one runs channels-last
    too (int32, depthwise_conv2d_nhwc), exact against ONNX Runtime."""
    nodes = [h.make_node("DynamicQuantizeLinear", ["x"], ["q0", "s0", "z0"]),
             h.make_node("ConvInteger", ["q0", "w0", "z0"], ["a0"]),
             h.make_node("Cast", ["a0"], ["f0"], to=T.FLOAT),
             h.make_node("Mul", ["f0", "s0"], ["y0"]),
             h.make_node("DynamicQuantizeLinear", ["y0"], ["q1", "s1", "z1"]),
             h.make_node("ConvInteger", ["q1", "w1", "z1"], ["y"], group=32, pads=[1, 1, 1, 1])]
    inits = {"w0": RNG.randint(-100, 100, (32, 16, 1, 1)).astype(np.int8),
             "w1": RNG.randint(-100, 100, (32, 1, 3, 3)).astype(np.int8)}
    x = RNG.randn(1, 16, 8, 8).astype(np.float32)
    model = _model(nodes, {"x": x}, ["y"], inits)
    np.testing.assert_array_equal(_kiln(model).run(x=x)["y"], _ort(model, {"x": x})[0])
    g, _ = from_onnx(model)
    assert any(n.op == "depthwise_conv2d_nhwc" for n in default_pipeline(g).nodes())


@needs_exact_ort_u8s8
def test_layers_with_their_own_weight_scales_share_one_task():
    """Each layer multiplies its activation scale by its own constant weight scale (a scalar
    times a scalar): kept a parameter, not an immediate, so the layers are one workload."""
    nodes, inits, x = [], {}, "x"
    for i in range(3):
        nodes += [h.make_node("DynamicQuantizeLinear", [x], [f"q{i}", f"s{i}", f"z{i}"]),
                  h.make_node("MatMulInteger", [f"q{i}", f"W{i}", f"z{i}"], [f"a{i}"]),
                  h.make_node("Cast", [f"a{i}"], [f"f{i}"], to=T.FLOAT),
                  h.make_node("Mul", [f"s{i}", f"ws{i}"], [f"m{i}"]),
                  h.make_node("Mul", [f"f{i}", f"m{i}"], [f"y{i}"])]
        inits[f"W{i}"] = RNG.randint(-128, 128, (32, 32)).astype(np.int8)
        inits[f"ws{i}"] = np.array(0.01 * (i + 1), np.float32)
        x = f"y{i}"
    model = _model(nodes, {"x": np.zeros((4, 32), np.float32)}, [x], inits)
    graph, params = from_onnx(model)
    tasks, weights = kiln.auto_scheduler.extract_tasks(graph, params, target="cpu")
    dense = [w for t, w in zip(tasks, weights) if "dense" in t.desc or "matmul" in t.desc]
    assert dense == [3]
    xv = RNG.randn(4, 32).astype(np.float32)
    np.testing.assert_array_equal(kiln.graph.build(graph, params, target="cpu").run(x=xv)[x],
                                  _ort(model, {"x": xv})[0])


def test_blocked_quantization_is_refused_by_name():
    node = h.make_node("DequantizeLinear", ["q", "s"], ["y"], axis=1, block_size=2)
    model = _model([node], {"q": np.zeros((2, 4), np.uint8)}, ["y"],
                   {"s": np.ones((2, 2), np.float32)}, opset=21)
    with pytest.raises(ConversionError, match="block_size"):
        from_onnx(model)


def _mlp(path: str) -> None:
    rng = np.random.RandomState(0)
    w1, w2 = (rng.randn(64, 128) * 0.2).astype(np.float32), \
        (rng.randn(128, 32) * 0.2).astype(np.float32)
    nodes = [h.make_node("MatMul", ["x", "w1"], ["h0"]), h.make_node("Add", ["h0", "b1"], ["h1"]),
             h.make_node("Relu", ["h1"], ["h2"]), h.make_node("MatMul", ["h2", "w2"], ["y"])]
    model = _model(nodes, {"x": np.zeros((1, 16, 64), np.float32)}, ["y"],
                   {"w1": w1, "w2": w2, "b1": (rng.randn(128) * 0.1).astype(np.float32)},
                   opset=17)
    onnx.save(model, path)


@needs_exact_ort_u8s8
def test_a_quantize_dynamic_model_matches_onnxruntime(tmp_path):
    from onnxruntime.quantization import QuantType, quantize_dynamic
    fp32, int8 = str(tmp_path / "mlp.onnx"), str(tmp_path / "mlp-int8.onnx")
    _mlp(fp32)
    quantize_dynamic(fp32, int8, weight_type=QuantType.QInt8)
    model = onnx.load(int8)
    assert {"DynamicQuantizeLinear", "MatMulInteger"} <= {n.op_type for n in model.graph.node}
    x = RNG.randn(1, 16, 64).astype(np.float32)
    lib = _kiln(model)
    got = lib.run(x=x)["y"]
    ref = _ort(model, {"x": x})[0]
    exact = _ort(onnx.load(fp32), {"x": x})[0]
    # the same integer arithmetic; float rounding in the epilogue may move an element of the
    # second layer's quantized input by one step, far below the quantization error itself
    assert np.abs(got - ref).max() <= 0.05 * np.abs(exact - ref).max() + 1e-5
    if "avx512vnni" in kiln.target.Target("cpu").features:
        assert "kiln_dot4_u8i8_i32x16" in lib.source and "_mm512_dpbusd_epi32" in lib.source


@pytest.mark.parametrize("mattr", [None, "-avx512vnni"])
def test_byte_dot_products_are_exact_with_and_without_vnni(mattr):
    m, k, n = 8, 64, 48
    a = te.placeholder((m, k), "uint8", name="a")
    b = te.placeholder((n, k), "int8", name="b")
    out = topi.dense(a, b, out_dtype="int32")
    target = "cpu" if mattr is None else f"cpu -mattr={mattr}"
    dag = ComputeDAG([a, b, out])  # the product regrouped by four (te/dot_groups.py)
    assert dag.flop_ct == 2 * m * k * n  # integer multiply-adds count (tuner's throughput)
    args = dag.tensors
    state = default_schedule(dag, ("b",), target)
    f = kiln.build(state, args, target=target)
    assert "kiln_dot4_u8i8" in f.source  # vpdpbusd where __AVX512VNNI__, else lane sums
    av = RNG.randint(0, 256, (m, k)).astype(np.uint8)
    bv = RNG.randint(-128, 128, (n, k)).astype(np.int8)
    c = np.zeros((m, n), np.int32)
    f(*pack_inputs(state, args, [av, bv, c]))
    np.testing.assert_array_equal(c, av.astype(np.int32) @ bv.astype(np.int32).T)


@pytest.mark.parametrize("shape,op", [((1, 128, 3072), "max"), ((128, 768), "min"),
                                      ((64, 96), "sum"), ((2, 3, 5), "max"),
                                      ((1, 197, 3072), "min"), ((12288,), "max")])
def test_whole_tensor_reductions_run_in_parallel_chunks(shape, op):
    x = te.placeholder(shape, name="x")
    y = getattr(topi, op)(x)
    state = default_schedule(ComputeDAG([x, y]), (), "cpu")
    f = kiln.build(state, [x, y], target="cpu")
    xv = RNG.randn(*shape).astype(np.float32)
    yv = np.zeros((), np.float32)
    f(xv, yv)
    np.testing.assert_allclose(yv, getattr(np, op)(xv), rtol=1e-5)
    if np.prod(shape) >= 4096:  # big enough to share: chunks in parallel, lanes vectorized
        lanes = kiln.target.Target("cpu").vector_lanes("float32")
        assert "#pragma omp parallel" in f.source and f"kiln_load_f32x{lanes}(&x[" in f.source
        assert f"(kiln_f32x{lanes}){{x[" not in f.source  # contiguous lanes, not a gather


@pytest.mark.skipif(not HAS_VNNI, reason="needs AVX512-VNNI")
def test_int8_build_of_a_float_model():
    m = tiny_cli_model()
    lib32 = kiln.graph.build(m.graph, m.params, "cpu")
    lib8 = kiln.graph.build(m.graph, m.params, "cpu", dtype="int8")
    o32 = list(lib32.run(**m.inputs).values())[0]
    o8 = list(lib8.run(**m.inputs).values())[0]
    cos = cosine(o32, o8)
    assert o8.dtype == np.float32 and cos > 0.999
    assert "_mm512_dpbusd_epi32" in lib8.source and "kiln_dot4" not in lib32.source
    tasks, _ = kiln.auto_scheduler.extract_tasks(m.graph, m.params, "cpu", dtype="int8")
    dense = [t for t in tasks if "dense" in t.desc]
    assert dense and all("uint8" in str(t.compute_dag) and "int8" in str(t.compute_dag)
                         for t in dense)


def test_int8_pass_quantizes_each_activation_once_per_row():
    from kiln.graph.passes.int8 import to_int8_graph
    from kiln.graph.tasks import prepare_graph
    m = tiny_cli_model()
    g, _ = prepare_graph(m.graph, m.params)
    n_dense = sum(n.op == "dense" for n in g.nodes())
    g8 = to_int8_graph(g)
    dense = [n for n in g8.nodes() if n.op == "dense"]
    assert len(dense) == n_dense
    assert all(n.inputs[0].dtype == "uint8" and n.inputs[1].dtype == "int8" for n in dense)
    # Q, K and V read one quantized activation: fewer quantizations than products
    quantized = {n.inputs[0].uid for n in dense}
    assert len(quantized) < len(dense)
    rows = [n for n in g8.nodes() if n.op in ("min", "max")]
    assert rows and all(n.attrs["keepdims"] and n.shape[-1] == 1 for n in rows)


def test_int8_errors():
    from kiln.errors import DTypeError, TargetError
    m = tiny_cli_model()
    with pytest.raises(TargetError, match="AVX512-VNNI"):
        kiln.graph.build(m.graph, m.params, "cpu -mattr=-avx512vnni", dtype="int8")
    with pytest.raises(DTypeError, match="int8"):
        kiln.graph.build(m.graph, m.params, "cuda -arch=sm_90", dtype="int8")
