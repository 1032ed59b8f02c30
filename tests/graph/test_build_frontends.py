"""Both frontends end to end through kiln.graph.build (generated code only at run time):
tiny BERT and a small CNN from PyTorch (vs torch) and the CNN from ONNX (vs ONNX Runtime)."""

import numpy as np
import pytest

import kiln

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")

from models import export_onnx, se_cnn, small_cnn, tiny_bert  # noqa: E402


def _run(lib, args):
    names = lib.input_names
    (out,) = lib.run(**{n: a.numpy() for n, a in zip(names, args)}).values()
    return out


@pytest.mark.parametrize("builder", [tiny_bert, small_cnn, se_cnn])
def test_from_pytorch_builds_and_matches_torch(builder):
    model, args = builder()
    with torch.no_grad():
        ref = model(*args).numpy()
    graph, params = kiln.frontend.from_pytorch(model, args)
    lib = kiln.graph.build(graph, params, target="cpu")
    np.testing.assert_allclose(_run(lib, args), ref, atol=1e-4, rtol=1e-4)


def _built_from_onnx(builder, path: str):
    """The model exported to ONNX, built by kiln, checked against ONNX Runtime."""
    import onnx
    import onnxruntime as ort
    model, args = builder()
    export_onnx(model, args, path)
    ref = ort.InferenceSession(path, providers=["CPUExecutionProvider"]).run(
        None, {"image": args[0].numpy()})[0]
    graph, params = kiln.frontend.from_onnx(onnx.load(path))
    lib = kiln.graph.build(graph, params, target="cpu")
    np.testing.assert_allclose(_run(lib, args), ref, atol=1e-4, rtol=1e-4)
    return lib


def test_cnn_from_onnx_builds_and_matches_onnxruntime(tmp_path):
    _built_from_onnx(small_cnn, str(tmp_path / "cnn.onnx"))


def test_squeeze_excitation_blocks_run_channels_last(tmp_path):
    """EfficientNet-style blocks from ONNX: only where the stem's NCHW output enters the
    first block (its 1x1 convolution, its residual sum) is anything transposed; the
    depthwise convolutions take their SiLU (x read twice) as their epilogue, the final
    pooling reads channels-last, and reshapes between kernels are views, not copies."""
    steps = _built_from_onnx(se_cnn, str(tmp_path / "se.onnx")).meta["steps"]
    assert sum("transpose" in s for s in steps) == 2, steps
    assert sum("depthwise_conv2d_nhwc_sigmoid_multiply" in s for s in steps) == 2, steps
    assert not any(s.endswith("fused_reshape") for s in steps[:-1]), steps  # last: output
    assert not any(s.endswith("fused_sigmoid_multiply") for s in steps), steps


@pytest.mark.parametrize("route", ["onnx", "pytorch"])
def test_out_of_range_token_ids_are_an_error_naming_the_input(route, tmp_path):
    import onnx

    from kiln.errors import KilnError
    model, (ids,) = tiny_bert()
    if route == "onnx":
        path = export_onnx(model, (ids,), str(tmp_path / "bert.onnx"))
        graph, params = kiln.frontend.from_onnx(onnx.load(path))
    else:
        graph, params = kiln.frontend.from_pytorch(model, (ids,))
    lib = kiln.graph.build(graph, params, target="cpu")
    name = lib.input_names[0]
    vocab = model.m.config.vocab_size
    ok = ids.numpy().copy()
    ok[0, 0] = -vocab  # negative ids count from the end, as in ONNX Gather and PyTorch
    lib.run(**{name: ok})
    for bad in (vocab, -vocab - 1):
        x = ids.numpy().copy()
        x[0, 3] = bad
        with pytest.raises(KilnError, match=rf"input '{name}' holds {bad} at position \(0, 3\)"):
            lib.run(**{name: x})
