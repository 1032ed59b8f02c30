"""Bad models and expressions give one clear KilnError, never a raw traceback: damaged or
empty ONNX files, weights in a missing external file, nodes out of topological order
(imported anyway), a graph output nothing produces, symbolic shapes, and very deep
expressions."""

import numpy as np
import pytest

import kiln
from kiln import te
from kiln.errors import KilnError

onnx = pytest.importorskip("onnx")
from onnx import TensorProto, helper  # noqa: E402


def _model(nodes, outputs=("y",)):
    g = helper.make_graph(
        nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 3])],
        [helper.make_tensor_value_info(o, TensorProto.FLOAT, [2, 3]) for o in outputs])
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])


def test_damaged_and_empty_onnx_files(tmp_path):
    empty = tmp_path / "empty.onnx"
    empty.write_bytes(b"")
    with pytest.raises(KilnError, match="empty"):
        kiln.frontend.from_onnx(str(empty))
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(b"\x08\x07garbage\xff\xff\xff")
    with pytest.raises(KilnError, match="not a valid ONNX model|empty"):
        kiln.frontend.from_onnx(str(bad))
    with pytest.raises(KilnError, match="cannot read"):
        kiln.frontend.from_onnx(str(tmp_path / "missing.onnx"))


def test_weights_in_an_external_file(tmp_path):
    """A model saved with its weights beside it (save_as_external_data, as large exports
    are) imports from its path; a missing weights file, or a proto loaded without them, is
    one ModelFileError naming the file."""
    from onnx import numpy_helper
    w = numpy_helper.from_array(np.arange(6, dtype=np.float32).reshape(2, 3), "w")
    model = _model([helper.make_node("Add", ["x", "w"], ["y"])])
    model.graph.initializer.append(w)
    path = tmp_path / "m.onnx"
    onnx.save_model(model, str(path), save_as_external_data=True, location="m.bin",
                    size_threshold=0)
    graph, params = kiln.frontend.from_onnx(str(path))
    lib = kiln.graph.build(graph, params, target="cpu")
    x = np.ones((2, 3), np.float32)
    np.testing.assert_array_equal(lib.run(x=x)["y"], x + np.arange(6).reshape(2, 3))
    with pytest.raises(KilnError, match="external file 'm.bin'.*load_external_data"):
        kiln.frontend.from_onnx(onnx.load(str(path), load_external_data=False))
    (tmp_path / "m.bin").unlink()
    with pytest.raises(KilnError, match="weights in m.bin beside it"):
        kiln.frontend.from_onnx(str(path))


def test_nodes_out_of_order_are_sorted_and_missing_outputs_named():
    nodes = [helper.make_node("Relu", ["t"], ["y"]), helper.make_node("Neg", ["x"], ["t"])]
    graph, params = kiln.frontend.from_onnx(_model(nodes))
    lib = kiln.graph.build(graph, params, target="cpu")
    x = np.array([[1, -2, 3], [-4, 5, -6]], "float32")
    np.testing.assert_array_equal(lib.run(x=x)["y"], np.maximum(-x, 0))
    with pytest.raises(KilnError, match="output 'z' is not produced"):
        kiln.frontend.from_onnx(_model([helper.make_node("Neg", ["x"], ["y"])], ("y", "z")))
    with pytest.raises(KilnError, match="reads \\['nowhere'\\]"):
        kiln.frontend.from_onnx(_model([helper.make_node("Add", ["x", "nowhere"], ["y"])]))


def test_symbolic_shapes_compile_per_shape_and_check_their_arguments():
    n = te.var("n")
    a = te.placeholder((n, 4), name="a")
    b = te.compute((n, 4), lambda i, j: a[i, j] * 2.0, name="b")
    f = kiln.build(te.create_schedule(b.op), [a, b], target="cpu")
    x = np.ones((3, 4), "float32")
    out = np.zeros((3, 4), "float32")
    f(x, out)
    np.testing.assert_array_equal(out, 2.0)
    with pytest.raises(KilnError, match="expects 2 dimensions"):
        f(np.ones(12, "float32"), out)
    with pytest.raises(KilnError, match="symbolic"):  # tuning needs constant shapes
        kiln.auto_scheduler.SearchTask(func=lambda: [a, b], args=(), target="cpu")


def test_very_deep_expressions_are_a_clear_error_or_work():
    x = te.placeholder((8,), name="x")
    def plus_one(src, k):
        return te.compute((8,), lambda i: src[i] + 1.0, name=f"s{k}")
    t = x
    for k in range(400):  # a 400-stage elementwise chain, all inlined into one expression
        t = plus_one(t, k)
    s = te.create_schedule(t.op)
    for stage in s.stages[1:-1]:
        stage.compute_inline()
    try:
        f = kiln.build(s, [x, t], target="cpu")
    except KilnError as err:
        assert "deep" in str(err)
        return
    out = np.empty(8, "float32")
    f(np.zeros(8, "float32"), out)
    np.testing.assert_allclose(out, 400.0)


def test_a_3000_term_expression_compiles():
    x = te.placeholder((3000,), name="x")

    def body(i):
        e = x[0]
        for k in range(1, 3000):
            e = e + x[k] * float(k % 7)
        return e
    y = te.compute((1,), body, name="y")
    f = kiln.build(te.create_schedule(y.op), [x, y], target="cpu")
    xn = np.random.default_rng(0).random(3000).astype("float32")
    out = np.empty(1, "float32")
    f(xn, out)
    np.testing.assert_allclose(out[0], xn[0] + (xn[1:] * (np.arange(1, 3000) % 7)).sum(),
                               rtol=1e-5)
