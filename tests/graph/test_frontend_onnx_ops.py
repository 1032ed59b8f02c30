"""ONNX ops the exported model zoo needs, one node at a time, against ONNX Runtime.

Logic (And / Or / Xor / Not with broadcasting), IsNaN / IsInf, CumSum (exclusive, reverse),
GatherND / GatherElements with constant and run-time indices, ScatterND on constants, Range,
Expand, Pad (negative pads), 1-d and transposed convolutions, Resize (nearest, linear and
cubic, coordinate modes, opset 18 axes), PRelu, ReduceL2 and friends, Einsum patterns, Sin /
Cos / Sign, Mod (both kinds), Tile, InstanceNormalization, GroupNormalization (opsets 18
and 21), global pools of any rank and an
average pool window larger than its input. Each model
is imported, checked with the NumPy graph interpreter before and after the pass pipeline,
and a few are built by kiln; plus the model's own output names and the shape= check.
"""

from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from graph_interp import run_graph
from onnx import TensorProto, helper

import kiln
from kiln.errors import ShapeError
from kiln.graph import verify
from kiln.graph.frontend import UnsupportedOpError, from_onnx
from kiln.graph.passes import default_pipeline

RNG = np.random.RandomState(1)


def _r(*shape):
    return RNG.randn(*shape).astype(np.float32)


def _i(*values):
    return np.array(values, np.int64)


def _b(*shape):
    return RNG.rand(*shape) > 0.5


def _model(op: str, inputs: dict, attrs: dict, inits: dict, opset: int):
    names = [k if not k.startswith("_") else "" for k in list(inputs) + list(inits)]
    node = helper.make_node(op, names, ["y"], **attrs)
    g = helper.make_graph(
        [node], "single",
        [helper.make_tensor_value_info(k, helper.np_dtype_to_tensor_dtype(v.dtype), v.shape)
         for k, v in inputs.items()],
        [helper.make_empty_tensor_value_info("y")],
        [onnx.numpy_helper.from_array(v, k) for k, v in inits.items() if not k.startswith("_")])
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", opset)])


def _ort(model, feeds: dict) -> list:
    sess = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    return sess.run(None, feeds)


X = _r(2, 3, 4)
SPECIAL = np.array([[0.0, np.nan, np.inf, -np.inf, 2.5, -1.0]], np.float32)
IMG = _r(1, 4, 5, 6)
SEQ = _r(1, 4, 9)
EMPTY = np.zeros(0, np.float32)
# (id, op, graph inputs, attrs, initializers, opset); an initializer named "_..." is omitted
CASES = [
    ("and", "And", {"a": _b(2, 3, 4), "b": _b(4)}, {}, {}, 17),
    ("or", "Or", {"a": _b(3, 1), "b": _b(2, 1, 4)}, {}, {}, 17),
    ("xor", "Xor", {"a": _b(2, 3, 4), "b": _b(3, 4)}, {}, {}, 17),
    ("not", "Not", {"a": _b(2, 3)}, {}, {}, 17),
    ("where_bool", "Where", {"c": _b(3, 4), "x": X}, {}, {"other": _r(2, 1, 1)}, 17),
    ("isnan", "IsNaN", {"x": SPECIAL}, {}, {}, 17),
    ("isinf", "IsInf", {"x": SPECIAL}, {}, {}, 17),
    ("isinf_pos", "IsInf", {"x": SPECIAL}, {"detect_negative": 0}, {}, 17),
    ("isinf_neg", "IsInf", {"x": SPECIAL}, {"detect_positive": 0}, {}, 17),
    ("cumsum", "CumSum", {"x": X}, {}, {"ax": _i(-1)}, 17),
    ("cumsum_excl_rev", "CumSum", {"x": X}, {"exclusive": 1, "reverse": 1},
     {"ax": np.array(1, np.int32)}, 17),
    ("cumsum_int", "CumSum", {"x": _i(1, 1, 0, 1, 0)}, {"exclusive": 1}, {"ax": _i(0)}, 14),
    ("gather_nd", "GatherND", {"x": X}, {}, {"i": _i(1, 2, 0, -1).reshape(2, 2)}, 17),
    ("gather_nd_input", "GatherND", {"x": X, "i": _i(1, 2, 0, 0, 1, 1).reshape(3, 2)}, {}, {},
     17),
    ("gather_nd_batch", "GatherND", {"x": X, "i": _i(2, 0, 1, 1).reshape(2, 2, 1)},
     {"batch_dims": 1}, {}, 17),
    ("gather_elements", "GatherElements", {"x": _r(3, 4), "i": _i(0, 3, -1, 2, 1, 1)
                                           .reshape(3, 2)}, {"axis": 1}, {}, 17),
    ("scatter_nd", "ScatterND", {}, {}, {"d": _r(4, 3), "i": _i(2, 0).reshape(2, 1),
                                         "u": _r(2, 3)}, 17),
    ("range", "Range", {}, {}, {"s": np.array(0.5, np.float32), "l": np.array(3, np.float32),
                                "d": np.array(0.7, np.float32)}, 17),
    ("expand", "Expand", {"x": _r(2, 1, 4)}, {}, {"s": _i(3, 1)}, 17),
    ("pad_negative", "Pad", {"x": X}, {}, {"p": _i(0, -1, 1, 1, 0, -2)}, 17),
    ("pad_axes", "Pad", {"x": X}, {}, {"p": _i(2, 1), "_v": EMPTY, "a": _i(-1)}, 18),
    ("conv1d", "Conv", {"x": SEQ}, {"group": 2, "strides": [2], "pads": [1, 2],
                                    "dilations": [2]}, {"w": _r(6, 2, 3), "b": _r(6)}, 17),
    ("conv_transpose", "ConvTranspose", {"x": IMG}, {"strides": [2, 2], "pads": [1, 0, 1, 1],
                                                     "output_padding": [1, 0]},
     {"w": _r(4, 3, 3, 3), "b": _r(3)}, 17),
    ("conv_transpose_group", "ConvTranspose", {"x": IMG},
     {"group": 2, "dilations": [2, 1], "strides": [1, 3]}, {"w": _r(4, 2, 2, 3)}, 17),
    ("conv_transpose_shape", "ConvTranspose", {"x": IMG},
     {"strides": [2, 2], "output_shape": [10, 13]}, {"w": _r(4, 2, 3, 3)}, 17),
    ("conv_transpose_1d", "ConvTranspose", {"x": SEQ}, {"strides": [3], "pads": [2, 1]},
     {"w": _r(4, 5, 4)}, 17),
    ("resize_nearest", "Resize", {"x": IMG},
     {"mode": "nearest", "coordinate_transformation_mode": "asymmetric",
      "nearest_mode": "floor"}, {"_roi": EMPTY, "s": np.array([1, 1, 2, 2], np.float32)}, 13),
    ("resize_nearest_half", "Resize", {"x": IMG}, {"mode": "nearest"},
     {"_roi": EMPTY, "s": np.array([1, 1, 1.5, 0.5], np.float32)}, 13),
    ("resize_linear", "Resize", {"x": IMG}, {"mode": "linear"},
     {"_roi": EMPTY, "_s": EMPTY, "z": _i(1, 4, 8, 3)}, 13),
    ("resize_linear_corners", "Resize", {"x": IMG},
     {"mode": "linear", "coordinate_transformation_mode": "align_corners"},
     {"_roi": EMPTY, "s": np.array([1, 1, 2, 2], np.float32)}, 13),
    ("resize_pytorch_half", "Resize", {"x": IMG},
     {"mode": "linear", "coordinate_transformation_mode": "pytorch_half_pixel"},
     {"_roi": EMPTY, "_s": EMPTY, "z": _i(1, 4, 1, 9)}, 13),
    ("resize_axes", "Resize", {"x": IMG}, {"mode": "nearest", "axes": [3],
                                           "nearest_mode": "round_prefer_ceil"},
     {"_roi": EMPTY, "s": np.array([1.75], np.float32)}, 18),
    ("upsample_9", "Upsample", {"x": IMG}, {}, {"s": np.array([1, 1, 2, 1.5], np.float32)}, 9),
    ("resize_10", "Resize", {"x": IMG}, {}, {"s": np.array([1, 1, 1.5, 2], np.float32)}, 10),
    ("prelu", "PRelu", {"x": X}, {}, {"s": _r(4)}, 17),
    ("prelu_channel", "PRelu", {"x": IMG}, {}, {"s": _r(4, 1, 1)}, 17),
    ("reduce_l2", "ReduceL2", {"x": X}, {"axes": [-1], "keepdims": 0}, {}, 13),
    ("reduce_l2_18", "ReduceL2", {"x": X}, {}, {"a": _i(0, 2)}, 18),
    ("reduce_l1", "ReduceL1", {"x": X}, {"keepdims": 0}, {}, 13),
    ("reduce_sum_square", "ReduceSumSquare", {"x": X}, {"axes": [1]}, {}, 13),
    ("reduce_log_sum_exp", "ReduceLogSumExp", {"x": X}, {"axes": [2]}, {}, 13),
    ("einsum_transpose", "Einsum", {"a": _r(2, 3)}, {"equation": "ij->ji"}, {}, 17),
    ("einsum_attention", "Einsum", {"q": _r(1, 2, 5, 4), "k": _r(1, 2, 6, 4)},
     {"equation": "bhqd,bhkd->bhqk"}, {}, 17),
    ("einsum_bmm", "Einsum", {"a": _r(2, 3, 4), "b": _r(2, 4, 5)}, {"equation": "bij,bjk->bik"},
     {}, 17),
    ("einsum_implicit", "Einsum", {"a": _r(3, 4), "b": _r(4, 5)}, {"equation": "ij,jk"}, {}, 17),
    ("einsum_dot", "Einsum", {"a": _r(6), "b": _r(6)}, {"equation": "i,i->"}, {}, 17),
    ("einsum_rowdot", "Einsum", {"a": _r(3, 6), "b": _r(3, 6)}, {"equation": "bi,bi->b"}, {},
     17),
    ("einsum_ellipsis", "Einsum", {"a": _r(2, 2, 3, 4), "b": _r(2, 2, 4, 3)},
     {"equation": "...ij,...jk->...ik"}, {}, 17),
    ("einsum_sum", "Einsum", {"a": _r(3, 4)}, {"equation": "ij->"}, {}, 17),
    ("einsum_outer", "Einsum", {"a": _r(3), "b": _r(4)}, {"equation": "i,j->ij"}, {}, 17),
    ("einsum_matvec", "Einsum", {"a": _r(3, 4), "b": _r(4)}, {"equation": "ij,j->i"}, {}, 17),
    ("sin", "Sin", {"x": X}, {}, {}, 17),
    ("cos", "Cos", {"x": X * 4}, {}, {}, 17),
    ("sign", "Sign", {"x": np.concatenate([SPECIAL, -SPECIAL, [[0, 0, -0.0, 1, 3, -2]]],
                                          0).astype(np.float32)}, {}, {}, 17),
    ("mod_int", "Mod", {"a": _i(7, -7, 7, -7, 0, 5), "b": _i(3, 3, -3, -3, 2, 5)}, {}, {}, 17),
    ("fmod_float", "Mod", {"a": X * 3}, {"fmod": 1}, {"b": np.float32([1.3, -0.7, 2.1, -1.9])},
     17),
    ("tile", "Tile", {"x": X}, {}, {"r": _i(2, 1, 3)}, 17),
    ("instance_norm", "InstanceNormalization", {"x": IMG}, {"epsilon": 1e-3},
     {"s": _r(4), "b": _r(4)}, 17),
    ("instance_norm_1d", "InstanceNormalization", {"x": SEQ}, {}, {"s": _r(4), "b": _r(4)}, 17),
    ("group_norm_18", "GroupNormalization", {"x": IMG}, {"num_groups": 2, "epsilon": 1e-3},
     {"s": _r(2), "b": _r(2)}, 18),
    ("group_norm_21", "GroupNormalization", {"x": IMG}, {"num_groups": 2},
     {"s": _r(4), "b": _r(4)}, 21),
    ("resize_cubic", "Resize", {"x": IMG}, {"mode": "cubic"},
     {"_roi": EMPTY, "s": np.array([1, 1, 2, 1.5], np.float32)}, 13),
    ("resize_cubic_down_excl", "Resize", {"x": IMG},
     {"mode": "cubic", "exclude_outside": 1, "cubic_coeff_a": -0.5},
     {"_roi": EMPTY, "_s": EMPTY, "z": _i(1, 4, 3, 4)}, 13),
    ("resize_cubic_corners", "Resize", {"x": IMG},
     {"mode": "cubic", "coordinate_transformation_mode": "align_corners"},
     {"_roi": EMPTY, "_s": EMPTY, "z": _i(1, 4, 9, 7)}, 13),
    ("global_avg_1d", "GlobalAveragePool", {"x": SEQ}, {}, {}, 17),
    ("global_max_3d", "GlobalMaxPool", {"x": _r(1, 2, 3, 4, 5)}, {}, {}, 17),
    ("avg_pool_window_past_input", "AveragePool", {"x": IMG},
     {"kernel_shape": [7, 7], "strides": [7, 7], "ceil_mode": 1}, {}, 17),
]
BUILT = {"gather_nd_input", "gather_elements", "cumsum_excl_rev", "conv_transpose",
         "conv_transpose_1d", "resize_linear", "einsum_attention", "xor", "isinf_pos", "conv1d",
         "sin", "sign", "mod_int", "fmod_float", "tile", "instance_norm", "resize_cubic",
         "global_avg_1d", "avg_pool_window_past_input"}


@pytest.mark.parametrize("cid, op, inputs, attrs, inits, opset", CASES,
                         ids=[c[0] for c in CASES])
def test_op_matches_onnxruntime(cid, op, inputs, attrs, inits, opset):
    model = _model(op, inputs, attrs, inits, opset)
    (ref,) = _ort(model, inputs)
    g, params = from_onnx(model)
    for graph in (g, default_pipeline(g)):
        verify(graph)
        (got,) = run_graph(graph, inputs)
        assert got.shape == ref.shape and got.dtype == ref.dtype
        np.testing.assert_allclose(got, ref, rtol=1e-5, atol=1e-5)
    if cid in BUILT:
        out = kiln.graph.build(g, params, target="cpu").run(**inputs)
        assert list(out) == ["y"]
        np.testing.assert_allclose(out["y"], ref, rtol=1e-5, atol=1e-5)


def test_unsupported_configurations_are_named():
    for op, attrs, inits, words in [
            ("Resize", {"mode": "linear", "antialias": 1},
             {"_roi": EMPTY, "s": np.full(4, 0.5, np.float32)}, "antialias"),
            ("Einsum", {"equation": "ii->i"}, {}, "repeated")]:
        x = {"x": IMG} if op == "Resize" else {"x": _r(3, 3)}
        with pytest.raises(UnsupportedOpError, match=words):
            from_onnx(_model(op, x, attrs, inits, 18 if op == "Resize" else 17))


def test_outputs_keep_the_models_names_and_shape_is_checked():
    x = helper.make_tensor_value_info("pixels", TensorProto.FLOAT, ["n", 3])
    nodes = [helper.make_node("Relu", ["pixels"], ["first.out"], name="relu_node"),
             helper.make_node("Neg", ["first.out"], ["logits"], name="neg_node")]
    outs = [helper.make_empty_tensor_value_info("logits"),
            helper.make_empty_tensor_value_info("first.out")]
    model = helper.make_model(helper.make_graph(nodes, "g", [x], outs),
                              opset_imports=[helper.make_opsetid("", 17)])
    g, params = from_onnx(model, shape={"pixels": (2, 3)})
    assert g.output_names == ["logits", "first.out"]
    lib = kiln.graph.build(g, params, target="cpu")
    data = _r(2, 3)
    out = lib.run(pixels=data)
    assert list(out) == ["logits", "first.out"]
    np.testing.assert_allclose(out["logits"], -np.maximum(data, 0))
    with pytest.raises(ShapeError, match=r"'pixels'.*static size 3 at axis 1"):
        from_onnx(model, shape={"pixels": (2, 4)})
    with pytest.raises(ShapeError, match=r"'pixels' has rank 2"):
        from_onnx(model, shape={"pixels": (2, 3, 1)})
