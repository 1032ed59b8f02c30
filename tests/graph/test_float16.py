"""float16 models (`.half()` exports): float16 in and out, computed in float32 inside."""

import copy
import importlib.util
import warnings

import numpy as np
import pytest

import kiln
from kiln.errors import ArgumentError
from kiln.graph.passes.float16 import has_float16, widen_float16

torch = pytest.importorskip("torch")
onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")


def _ort(path: str, feeds: dict) -> np.ndarray:
    sess = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
    return sess.run(None, feeds)[0]


def _half_and_float(model):
    """(float16 copy, float32 copy with the float16 copy's weights): the float32 reference
    of what kiln computes from the float16 model."""
    half = copy.deepcopy(model).half().eval()
    wide = copy.deepcopy(half).float().eval()
    return half, wide


def test_a_half_mlp_through_onnx_is_float16_outside_and_float32_inside(tmp_path):
    from graph.models import export_onnx
    torch.manual_seed(0)
    mlp = torch.nn.Sequential(torch.nn.Linear(32, 64), torch.nn.GELU(), torch.nn.LayerNorm(64),
                              torch.nn.Linear(64, 8))
    half, wide = _half_and_float(mlp)
    x = torch.randn(4, 32).half()
    path = export_onnx(half, (x,), str(tmp_path / "mlp16.onnx"))
    mod, params = kiln.frontend.from_onnx(onnx.load(path))
    lib = kiln.graph.build(mod, params, target="cpu")
    assert [d["dtype"] for d in lib.meta["inputs"]] == ["float16"]
    assert lib.meta["outputs"][0]["carried"] == "float32"
    (out,) = lib.run(**{lib.input_names[0]: x.numpy()}).values()
    assert out.dtype == np.float16 and out.shape == (4, 8)
    with torch.no_grad():
        ref32 = wide(x.float()).numpy()
    # float32 arithmetic, rounded once to float16 at the output (one float16 step apart at
    # most: another summation order can round the other way)
    np.testing.assert_allclose(out.astype(np.float32), ref32, rtol=1e-3, atol=1e-3)
    # ONNX Runtime computes in float16 here and there: its rounding, no more
    np.testing.assert_allclose(out.astype(np.float32), _ort(path, {lib.input_names[0]:
                                                                   x.numpy()}),
                               rtol=2e-2, atol=2e-2)
    with pytest.raises(ArgumentError, match="float16"):
        lib.run(**{lib.input_names[0]: x.float().numpy()})


def test_a_half_bert_through_every_import_route(tmp_path):
    from graph.models import export_onnx, tiny_bert
    model, (ids,) = tiny_bert()
    half, wide = _half_and_float(model)
    with torch.no_grad():
        ref32 = wide(ids).numpy()
    path = export_onnx(half, (ids,), str(tmp_path / "bert16.onnx"))
    routes = {"onnx": kiln.frontend.from_onnx(onnx.load(path)),
              "torch": kiln.frontend.from_pytorch(half, (ids,))}
    if importlib.util.find_spec("onnxscript") is not None:  # the dynamo exporter's need
        dynamo = str(tmp_path / "bert16_dynamo.onnx")
        with warnings.catch_warnings(), torch.no_grad():
            warnings.simplefilter("ignore")
            torch.onnx.export(half, (ids,), dynamo, dynamo=True, input_names=["input_ids"])
        routes["dynamo"] = kiln.frontend.from_onnx(onnx.load(dynamo))
    for route, (mod, params) in routes.items():
        lib = kiln.graph.build(mod, params, target="cpu")
        (out,) = lib.run(**{lib.input_names[0]: ids.numpy()}).values()
        assert out.dtype == np.float16, route
        np.testing.assert_allclose(out.astype(np.float32), ref32, atol=4e-3, rtol=4e-3,
                                   err_msg=route)
    np.testing.assert_allclose(out.astype(np.float32), _ort(path, {"input_ids": ids.numpy()}),
                               atol=5e-2, rtol=5e-2)


def test_float16_inside_a_float32_model_and_an_exported_library(tmp_path):
    """Casts to float16 and back inside a float32 model: the boundary stays float32 (no
    conversion), the casts compute in float32; float16 io survives export_library / load."""
    class Mixed(torch.nn.Module):
        def forward(self, x):
            return (x.half() * 2).float() + 1

    x = torch.randn(3, 5)
    mod, params = kiln.frontend.from_pytorch(Mixed(), (x,))
    assert has_float16(mod) and not has_float16(widen_float16(mod))
    lib = kiln.graph.build(mod, params, target="cpu")
    assert "carried" not in lib.meta["inputs"][0] and lib.meta["inputs"][0]["dtype"] == "float32"
    (out,) = lib.run(**{lib.input_names[0]: x.numpy()}).values()
    np.testing.assert_allclose(out, x.numpy() * 2 + 1, rtol=1e-6)

    lin = torch.nn.Linear(4, 3).half().eval()
    xh = torch.randn(2, 4).half()
    mod, params = kiln.frontend.from_pytorch(lin, (xh,))
    path = str(tmp_path / "lin16.so")
    kiln.graph.build(mod, params, target="cpu").export_library(path)
    again = kiln.graph.load(path)
    (out,) = again.run(**{again.input_names[0]: xh.numpy()}).values()
    with torch.no_grad():
        ref = torch.nn.functional.linear(xh.float(), lin.weight.float(), lin.bias.float())
    assert out.dtype == np.float16
    np.testing.assert_allclose(out.astype(np.float32), ref.numpy(), rtol=1e-3, atol=1e-3)


def test_widening_is_exact_and_the_cuda_build_converts_on_the_host():
    lin = torch.nn.Linear(4, 3).half().eval()
    mod, params = kiln.frontend.from_pytorch(lin, (torch.randn(2, 4).half(),))
    wide = widen_float16(kiln.graph.tasks.with_params(mod, params))
    assert all(np.asarray(v).dtype != np.float16 for v in wide.params.values())
    for name, v in params.items():
        if np.asarray(v).dtype == np.float16:
            np.testing.assert_array_equal(wide.params[name], np.asarray(v).astype(np.float32))
    import gpu_emulate
    lib = kiln.graph.build(mod, params, target="cuda -arch=sm_90")
    assert lib.meta["inputs"][0]["carried"] == lib.meta["outputs"][0]["carried"] == "float32"
    x = torch.randn(2, 4).half()
    (out,) = gpu_emulate.emulate(lib, {lib.input_names[0]: x.numpy()}).values()
    with torch.no_grad():
        ref = torch.nn.functional.linear(x.float(), lin.weight.float(), lin.bias.float())
    assert out.dtype == np.float16
    np.testing.assert_allclose(out.astype(np.float32), ref.numpy(), rtol=1e-3, atol=1e-3)
    stored = lib._check(lib.input_names[0], x.numpy())  # what is uploaded: float32
    assert stored.dtype == np.float32 and stored.flags.c_contiguous


    class DeviceArray:  # what a CuPy / torch CUDA array shows (no GPU needed to refuse one)
        __cuda_array_interface__ = {"shape": (2, 4), "typestr": "<f2", "data": (0, False),
                                    "version": 3}
    with pytest.raises(ArgumentError, match="NumPy array"):
        lib._check(lib.input_names[0], DeviceArray())


def test_mixed_float16_and_float32_operands_promote_to_float32():
    """torch.onnx.export of a .half() DistilBERT writes LayerNormalization over a float32 x
    with float16 scale and bias (ONNX Runtime refuses it): kiln computes it in float32."""
    from onnx import TensorProto, helper, numpy_helper
    rng = np.random.default_rng(0)
    scale, bias = rng.random(8).astype(np.float16), rng.random(8).astype(np.float16)
    g = helper.make_graph(
        [helper.make_node("LayerNormalization", ["x", "s", "b"], ["y"], axis=-1,
                          epsilon=1e-5)], "ln",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, (2, 8))],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, (2, 8))],
        [numpy_helper.from_array(scale, "s"), numpy_helper.from_array(bias, "b")])
    mod, params = kiln.frontend.from_onnx(helper.make_model(g))
    lib = kiln.graph.build(mod, params, target="cpu")
    x = rng.standard_normal((2, 8)).astype(np.float32)
    (y,) = lib.run(x=x).values()
    mean, var = x.mean(-1, keepdims=True), x.var(-1, keepdims=True)
    ref = (x - mean) / np.sqrt(var + 1e-5) * scale.astype(np.float32) + bias.astype(np.float32)
    assert y.dtype == np.float32
    np.testing.assert_allclose(y, ref, rtol=1e-5, atol=1e-5)
