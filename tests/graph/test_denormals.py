"""build(..., flush_denormals=True): FTZ + DAZ while the model runs, and only then."""

import numpy as np
import pytest
from onnx import TensorProto, helper, numpy_helper

import kiln
from kiln.errors import TargetError

TINY = np.float32(1e-39)  # a float32 denormal (the smallest normal is ~1.18e-38)
SHAPE = (64, 4096)  # large enough for the kernel to run on every thread of the team


def _scale(c: float):
    """An ONNX model y = x * c."""
    const = numpy_helper.from_array(np.array([c], np.float32), "c")
    g = helper.make_graph([helper.make_node("Mul", ["x", "c"], ["y"])], "scale",
                          [helper.make_tensor_value_info("x", TensorProto.FLOAT, SHAPE)],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, SHAPE)], [const])
    return kiln.frontend.from_onnx(helper.make_model(g))


def _build(c: float, flush: bool, **kw):
    mod, params = _scale(c)
    return kiln.graph.build(mod, params, target="cpu", flush_denormals=flush, **kw)


def test_denormal_results_are_flushed_only_when_asked():
    x = np.full(SHAPE, TINY)
    plain, flushed = _build(0.5, False), _build(0.5, True)
    assert not plain.flush_denormals and flushed.flush_denormals
    np.testing.assert_array_equal(plain.run(x=x)["y"], x * np.float32(0.5))
    assert (x * np.float32(0.5) != 0).all()
    np.testing.assert_array_equal(flushed.run(x=x)["y"], 0)
    # the calling thread and the team's threads got their mode back: the same process
    # computes denormals again, in NumPy and in a library built without the option
    assert (x * np.float32(0.5) != 0).all()
    np.testing.assert_array_equal(plain.run(x=x)["y"], x * np.float32(0.5))


def test_denormal_inputs_read_as_zero_and_normal_values_are_untouched():
    x = np.full(SHAPE, TINY)
    x[:, ::2] = np.float32(3e-38)  # normal
    scaled = x * np.float32(1e10)  # normal everywhere: only DAZ makes the denormals zero
    np.testing.assert_allclose(_build(1e10, False).run(x=x)["y"], scaled, rtol=1e-6)
    y = _build(1e10, True).run(x=x)["y"]
    np.testing.assert_array_equal(y[:, 1::2], 0)
    np.testing.assert_allclose(y[:, ::2], scaled[:, ::2], rtol=1e-6)


def test_the_profile_entry_and_an_exported_library_flush_too(tmp_path):
    lib = _build(0.5, True)
    x = np.full(SHAPE, TINY)
    lib.profile(2, x=x)
    np.testing.assert_array_equal(lib.get_output(0), 0)
    path = str(tmp_path / "scale.so")
    lib.export_library(path)
    again = kiln.graph.load(path)
    assert again.flush_denormals
    np.testing.assert_array_equal(again.run(x=x)["y"], 0)


def test_several_shapes_in_one_library_flush():
    lib = kiln.graph.build([_scale(0.5)], target="cpu", flush_denormals=True)
    np.testing.assert_array_equal(lib.run(x=np.full(SHAPE, TINY))["y"], 0)


def test_a_cuda_target_is_a_clear_error():
    mod, params = _scale(0.5)
    with pytest.raises(TargetError, match="flush_denormals.*CPU"):
        kiln.graph.build(mod, params, target="cuda -arch=sm_90", flush_denormals=True)
