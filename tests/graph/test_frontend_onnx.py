"""ONNX frontend: tiny BERT and a small CNN against ONNX Runtime, op handlers, and errors."""

from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from graph_interp import run_graph
from models import export_onnx, small_cnn, tiny_bert
from onnx import TensorProto, helper

from kiln.errors import KilnError, ShapeError
from kiln.graph import GraphError, verify
from kiln.graph.frontend import UnsupportedOpError, from_onnx
from kiln.graph.passes import default_pipeline, op_histogram

RNG = np.random.RandomState(0)


def _ort(model_or_path, feeds: dict) -> list:
    src = model_or_path if isinstance(model_or_path, str) else model_or_path.SerializeToString()
    return ort.InferenceSession(src, providers=["CPUExecutionProvider"]).run(None, feeds)


def _check(g, feeds: dict, refs: list, tol: float = 1e-4) -> None:
    verify(g)
    for out, ref in zip(run_graph(g, feeds), refs):
        assert out.shape == ref.shape and out.dtype == ref.dtype
        np.testing.assert_allclose(out, ref, atol=tol, rtol=tol)


# ------------------------------------------------------------------------ whole models

@pytest.fixture(scope="module")
def bert_files(tmp_path_factory):
    model, args = tiny_bert()
    d = tmp_path_factory.mktemp("bert")
    return {"static17": export_onnx(model, args, str(d / "b17.onnx"), opset=17),
            "dynamic14": export_onnx(model, args, str(d / "b14.onnx"), opset=14,
                                     dynamic=True)}, args[0].numpy()


@pytest.mark.parametrize("kind", ["static17", "dynamic14"])
def test_tiny_bert_matches_onnxruntime(bert_files, kind):
    files, ids = bert_files
    feeds = {"input_ids": ids}
    ref = _ort(files[kind], feeds)
    g, params = from_onnx(onnx.load(files[kind]), shape={"input_ids": ids.shape})
    assert params is g.params
    _check(g, feeds, ref)
    opt = default_pipeline(g)
    _check(opt, feeds, ref)
    h = op_histogram(opt)
    assert {k: h[k] for k in ("dense", "batch_matmul", "layer_norm", "gelu", "softmax")} == \
        {"dense": 12, "batch_matmul": 4, "layer_norm": 5, "gelu": 2, "softmax": 2}
    assert not {"matmul", "mean", "erf", "power", "sqrt", "divide", "take"} & \
        {k for k, v in h.items() if v and k != "take"}
    assert h["take"] == 1  # the word embedding lookup with the int64 token ids


def test_symbolic_input_needs_a_shape(bert_files):
    files, _ = bert_files
    with pytest.raises(ShapeError, match=r"'input_ids'.*symbolic.*shape="):
        from_onnx(onnx.load(files["dynamic14"]))
    with pytest.raises(ShapeError, match="not graph inputs"):
        from_onnx(onnx.load(files["dynamic14"]), shape={"ids": (1, 4)})


@pytest.mark.parametrize("opset, fold", [(13, False), (17, True)])
def test_small_cnn_matches_onnxruntime(tmp_path, opset, fold):
    model, args = small_cnn()
    path = export_onnx(model, args, str(tmp_path / "cnn.onnx"), opset=opset, fold=fold)
    feeds = {"image": args[0].numpy()}
    ref = _ort(path, feeds)
    g, _ = from_onnx(onnx.load(path))
    assert ("batch_norm" in op_histogram(g)) == (not fold)
    _check(g, feeds, ref)
    opt = default_pipeline(g)
    _check(opt, feeds, ref)
    assert {k: v for k, v in op_histogram(opt).items() if k not in ("input", "const")} == {
        "conv2d": 2, "hard_swish": 1, "max_pool2d": 1, "relu": 1, "avg_pool2d": 1,
        "flatten": 1, "dense": 1}


# ---------------------------------------------------------------------- single ops

def _single(op: str, inputs: dict, attrs: dict | None = None, inits: dict | None = None,
            opset: int = 17, n_out: int = 1):
    """A one-node model: `inputs` are graph inputs (name -> array), `inits` initializers."""
    inits = inits or {}
    names = list(inputs) + list(inits)
    node = helper.make_node(op, names, [f"y{k}" for k in range(n_out)], **(attrs or {}))
    g = helper.make_graph(
        [node], "single",
        [helper.make_tensor_value_info(k, helper.np_dtype_to_tensor_dtype(v.dtype), v.shape)
         for k, v in inputs.items()],
        [helper.make_empty_tensor_value_info(f"y{k}")
         for k in range(n_out)],
        [onnx.numpy_helper.from_array(v, k) for k, v in inits.items()])
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", opset)])


def _r(*shape):
    return RNG.randn(*shape).astype(np.float32)


def _i(*values):
    return np.array(values, np.int64)


X = _r(2, 3, 4)
IMG = _r(1, 4, 7, 7)
CASES = [
    ("Add", {"x": X}, {}, {"b": _r(4)}, 17),
    ("Pow", {"x": np.abs(X)}, {}, {"e": np.array(1.5, np.float32)}, 17),
    ("Reciprocal", {"x": X + 5}, {}, {}, 17),
    ("Greater", {"x": X}, {}, {"t": np.zeros(1, np.float32)}, 17),
    ("LessOrEqual", {"x": X}, {}, {"t": np.zeros(1, np.float32)}, 17),
    ("Where", {"c": X > 0, "x": X}, {}, {"y": _r(4)}, 17),
    ("Clip", {"x": X}, {}, {"lo": np.array(-0.5, np.float32), "hi": np.array(.5, np.float32)},
     17),
    ("Clip", {"x": X}, {"min": -0.3, "max": 0.2}, {}, 9),
    ("LeakyRelu", {"x": X}, {"alpha": 0.2}, {}, 17),
    ("HardSigmoid", {"x": X}, {}, {}, 17),
    ("HardSwish", {"x": X}, {}, {}, 17),
    ("Gelu", {"x": X}, {"approximate": "tanh"}, {}, 20),
    ("Cast", {"x": X * 3}, {"to": TensorProto.INT32}, {}, 17),
    ("Mean", {"a": X, "b": _r(3, 4), "c": _r(4)}, {}, {}, 17),
    ("Max", {"a": X, "b": _r(3, 4)}, {}, {}, 17),
    ("ReduceMean", {"x": X}, {"axes": [-1], "keepdims": 1}, {}, 13),
    ("ReduceSum", {"x": X}, {"keepdims": 0}, {"axes": _i(0, 2)}, 13),
    ("ReduceMax", {"x": X}, {"keepdims": 0}, {"axes": _i(1)}, 18),
    ("ReduceMin", {"x": X}, {}, {}, 18),
    ("ArgMax", {"x": X}, {"axis": 1, "keepdims": 0}, {}, 17),
    ("Softmax", {"x": X}, {"axis": 1}, {}, 11),
    ("LogSoftmax", {"x": X}, {"axis": 1}, {}, 13),
    ("MatMul", {"x": X}, {}, {"w": _r(4, 5)}, 17),
    ("Gemm", {"a": _r(3, 4)}, {"transB": 1, "alpha": 0.5, "beta": 2.0},
     {"b": _r(5, 4), "c": _r(5)}, 17),
    ("Gemm", {"a": _r(4, 3), "b": _r(4, 5)}, {"transA": 1}, {"c": _r(3, 5)}, 17),
    ("Conv", {"x": IMG}, {"group": 2, "strides": [2, 2], "pads": [1, 0, 1, 2],
                          "dilations": [1, 2]}, {"w": _r(6, 2, 3, 3), "b": _r(6)}, 17),
    ("Conv", {"x": IMG}, {"auto_pad": "SAME_UPPER", "strides": [2, 2]},
     {"w": _r(3, 4, 2, 2)}, 17),
    ("MaxPool", {"x": IMG}, {"kernel_shape": [3, 3], "strides": [2, 2], "ceil_mode": 1}, {}, 17),
    ("AveragePool", {"x": IMG}, {"kernel_shape": [3, 3], "pads": [1, 1, 1, 1],
                                 "count_include_pad": 1}, {}, 17),
    ("AveragePool", {"x": IMG}, {"kernel_shape": [2, 2], "strides": [2, 2], "pads": [1, 1, 0, 0]},
     {}, 17),
    ("GlobalAveragePool", {"x": IMG}, {}, {}, 17),
    ("BatchNormalization", {"x": IMG}, {"epsilon": 1e-3},
     {"g": _r(4), "b": _r(4), "m": _r(4), "v": np.abs(_r(4)) + .5}, 15),
    ("LayerNormalization", {"x": X}, {"axis": 1}, {"g": _r(3, 4), "b": _r(3, 4)}, 17),
    ("Reshape", {"x": X}, {}, {"s": _i(0, -1)}, 17),
    ("Transpose", {"x": X}, {"perm": [2, 0, 1]}, {}, 17),
    ("Gather", {"x": X}, {"axis": 1}, {"i": _i(-1, 0, 2)}, 17),
    ("Gather", {"table": _r(5, 4), "i": _i(3, 0, 1)}, {}, {}, 17),
    ("Concat", {"a": X, "b": _r(2, 1, 4)}, {"axis": -2}, {}, 17),
    ("Slice", {"x": X}, {}, {"s": _i(1, -3), "e": _i(99, -1), "a": _i(2, 1), "st": _i(2, 1)},
     17),
    ("Unsqueeze", {"x": X}, {}, {"a": _i(0, 4)}, 17),
    ("Unsqueeze", {"x": X}, {"axes": [1]}, {}, 11),
    ("Squeeze", {"x": _r(2, 1, 4, 1)}, {}, {"a": _i(-1)}, 17),
    ("Expand", {"x": _r(3, 1)}, {}, {"s": _i(2, 1, 4)}, 17),
    ("Split", {"x": X}, {"axis": 2}, {"s": _i(1, 3)}, 17),
    ("Pad", {"x": X}, {}, {"p": _i(0, 1, 0, 0, 2, 1), "v": np.array(0.5, np.float32)}, 17),
    ("Flatten", {"x": X}, {"axis": 2}, {}, 17),
    ("Einsum", {"a": _r(2, 3)}, {"equation": "ij->ji"}, {}, 17),
]


@pytest.mark.parametrize("op, inputs, attrs, inits, opset", CASES,
                         ids=[f"{c[0]}-{k}" for k, c in enumerate(CASES)])
def test_single_op_matches_onnxruntime(op, inputs, attrs, inits, opset):
    n_out = 2 if op == "Split" else 1
    model = _single(op, inputs, attrs, inits, opset, n_out)
    ref = _ort(model, inputs)
    g, _ = from_onnx(model)
    _check(g, inputs, ref, tol=1e-5)
    _check(default_pipeline(g), inputs, ref, tol=1e-5)


def test_shape_ops_become_constants():
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 6])
    nodes = [helper.make_node("Shape", ["x"], ["s"]),
             helper.make_node("ConstantOfShape", ["s"], ["z"],
                              value=helper.make_tensor("v", TensorProto.FLOAT, [1], [2.0])),
             helper.make_node("Constant", [], ["lim"], value_int=7),
             helper.make_node("Constant", [], ["one"], value=onnx.numpy_helper.from_array(
                 np.array(1, np.int64))),
             helper.make_node("Range", ["one", "lim", "one"], ["r"]),
             helper.make_node("Cast", ["r"], ["rf"], to=TensorProto.FLOAT),
             helper.make_node("Mul", ["z", "rf"], ["zr"]),
             helper.make_node("Add", ["x", "zr"], ["y"])]
    y = helper.make_empty_tensor_value_info("y")
    model = helper.make_model(helper.make_graph(nodes, "g", [x], [y]),
                              opset_imports=[helper.make_opsetid("", 17)])
    feeds = {"x": _r(2, 6)}
    g, _ = from_onnx(model)
    opt = default_pipeline(g)
    assert {k for k, v in op_histogram(opt).items() if v} == {"input", "const", "add"}
    _check(opt, feeds, _ort(model, feeds))


# ----------------------------------------------------------------------------- errors

def test_unsupported_ops_are_listed_all_at_once():
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 3])
    nodes = [helper.make_node("Relu", ["x"], ["a"], name="ok"),
             helper.make_node("Hardmax", ["a"], ["b"], name="hm1"),
             helper.make_node("Det", ["b"], ["c"], name="det"),
             helper.make_node("Hardmax", ["c"], ["d"], name="hm2"),
             helper.make_node("FusedGemm", ["d"], ["e"], name="ms", domain="com.microsoft")]
    y = helper.make_empty_tensor_value_info("e")
    model = helper.make_model(
        helper.make_graph(nodes, "g", [x], [y],
                          [onnx.numpy_helper.from_array(np.array(0, np.int64), "ax")]),
        opset_imports=[helper.make_opsetid("", 17)])
    with pytest.raises(UnsupportedOpError) as info:
        from_onnx(model)
    err = info.value
    assert isinstance(err, KilnError)
    assert [(op, name) for op, name, _ in err.ops] == [
        ("Hardmax", "hm1"), ("Det", "det"), ("Hardmax", "hm2"), ("com.microsoft.FusedGemm",
                                                                   "ms")]
    assert "3 unsupported op type(s)" in str(err) and "'hm2'" in str(err)


def test_unsupported_attribute_and_non_constant_inputs():
    model = _single("Pad", {"x": X}, {"mode": "reflect"}, {"p": _i(0, 1, 0, 0, 1, 0)})
    with pytest.raises(UnsupportedOpError, match="reflect"):
        from_onnx(model)
    model = _single("Reshape", {"x": X, "s": _i(4, 6)}, {}, {})
    with pytest.raises(UnsupportedOpError, match="shape must be a constant"):
        from_onnx(model)


def test_shape_mismatch_names_the_node():
    model = _single("MatMul", {"x": X}, {}, {"w": _r(5, 4)})
    with pytest.raises(GraphError, match=r"matmul 'y0'.*inner dimensions"):
        from_onnx(model)
