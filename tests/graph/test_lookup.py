"""Elementwise chains of one 8-bit value become table lookups (graph/passes/lookup.py).

The chains are what onnxruntime.quantization writes for GELU in a statically quantized
model (a QuantizeLinear / DequantizeLinear pair after every op): after the pipeline they are
one `lookup`, and kiln's results match ONNX Runtime running every op as written. Chains that
are cheaper than a lookup (a requantize) or that read a second run-time tensor stay
arithmetic; a lookup after a quantized product runs in the product's kernel.
"""

from __future__ import annotations

import numpy as np
import pytest
from onnx import helper as h
from util import onnx_model, ort_run

import kiln
from kiln.graph.frontend import from_onnx
from kiln.graph.passes import default_pipeline, op_histogram
from kiln.graph.passes.fuse import fuse

RNG = np.random.default_rng(3)
# GELU as exported models write it, one op at a time: (op, operand) where the operand is a
# constant, "x" (the chain's quantized input) or None (a unary op)
GELU_TANH = [("Pow", 3.0), ("Mul", 0.044715), ("Add", "x"), ("Mul", 0.7978846),
             ("Tanh", None), ("Add", 1.0), ("Mul", "x"), ("Mul", 0.5)]
GELU_ERF = [("Div", 1.4142135), ("Erf", None), ("Add", 1.0), ("Mul", "x"), ("Mul", 0.5)]
NUMPY = {"Pow": np.power, "Mul": np.multiply, "Add": np.add, "Div": np.divide,
         "Tanh": np.tanh, "Erf": np.vectorize(__import__("math").erf, otypes=[np.float32])}


def _qparams(v: np.ndarray) -> tuple:
    """int8 scale and zero point covering v's range (what calibration would choose)."""
    lo, hi = min(float(v.min()), 0.0), max(float(v.max()), 0.0)
    scale = np.float32((hi - lo) / 255 or 1.0)
    return scale, np.int8(np.clip(round(-128 - lo / scale), -128, 127))


def _qdq(name: str, v: np.ndarray, nodes: list, inits: dict) -> str:
    s, z = _qparams(v)
    inits[f"{name}_s"], inits[f"{name}_z"] = s, z
    nodes += [h.make_node("QuantizeLinear", [name, f"{name}_s", f"{name}_z"], [f"{name}_q"]),
              h.make_node("DequantizeLinear", [f"{name}_q", f"{name}_s", f"{name}_z"],
                          [f"{name}_dq"])]
    return f"{name}_dq"


def _chain_model(steps: list, x: np.ndarray, second: bool = False, head=None):
    """x -> QDQ -> steps (each followed by a QDQ pair) -> QuantizeLinear -> y (int8). With
    `second`, the first Mul multiplies by another input z instead; `head` (nodes, inits,
    name of its output, NumPy function) runs before the chain."""
    nodes, inits, feeds = [], {}, {"x": x}
    cur, val = "x", x
    if head is not None:
        hn, hi, cur, fn = head
        nodes += hn
        inits.update(hi)
        val = fn(x)
    xq = _qdq(cur, val, nodes, inits)
    xv = val
    for k, (op, arg) in enumerate(steps):
        ins = [xq if k == 0 else cur]
        if arg == "x":
            ins.append(xq)
            b = xv
        elif arg is not None:
            if second and op == "Mul":
                ins.append("z")
                feeds["z"] = RNG.standard_normal(x.shape[-1:]).astype(np.float32)
                b, second = feeds["z"], False
            else:
                inits[f"c{k}"] = np.float32(arg)
                ins.append(f"c{k}")
                b = np.float32(arg)
        val = NUMPY[op](val, b).astype(np.float32) if arg is not None else \
            NUMPY[op](val).astype(np.float32)
        nodes.append(h.make_node(op, ins, [f"t{k}"]))
        cur = _qdq(f"t{k}", val, nodes, inits)
    s, z = _qparams(val)
    inits["ys"], inits["yz"] = s, z
    nodes.append(h.make_node("QuantizeLinear", [cur, "ys", "yz"], ["y"]))
    return onnx_model(nodes, dict(feeds), ["y"], inits), feeds


def _run(model, feeds: dict) -> np.ndarray:
    graph, params = from_onnx(model)
    return kiln.graph.build(graph, params, target="cpu").run(**feeds)["y"]


def _ops(model) -> dict:
    return op_histogram(default_pipeline(from_onnx(model)[0]))


def _close_to_ort(got: np.ndarray, model, feeds: dict) -> None:
    """Equal to ONNX Runtime but where a value sits on a rounding edge (tanh / erf are not
    bit-equal across libraries): at most one step, on at most 1% of the elements."""
    ref = ort_run(model, feeds)[0]
    diff = np.abs(got.astype(np.int32) - ref.astype(np.int32))
    assert got.dtype == ref.dtype and diff.max() <= 1 and (diff > 0).mean() <= 0.01


@pytest.mark.parametrize("steps", [GELU_TANH, GELU_ERF], ids=["tanh", "erf"])
def test_a_quantized_gelu_chain_is_one_lookup_and_matches_onnxruntime(steps):
    x = (RNG.standard_normal((8, 96)) * 2).astype(np.float32)
    model, feeds = _chain_model(steps, x)
    ops = _ops(model)
    assert ops["lookup"] == 1 and not ops["tanh"] and not ops["erf"] and ops["divide"] <= 1
    _close_to_ort(_run(model, feeds), model, feeds)


def test_a_requantize_stays_arithmetic_and_a_second_input_splits_the_chain():
    x = RNG.standard_normal((4, 32)).astype(np.float32)
    cheap, feeds = _chain_model([("Mul", 0.5)], x)
    assert not _ops(cheap)["lookup"]
    _close_to_ort(_run(cheap, feeds), cheap, feeds)
    # GELU whose 0.044715 is a run-time tensor z: x^3 is a table, the product with z is
    # computed, and the rest (a function of that product's quantized value) a second table
    two, feeds = _chain_model(GELU_TANH, x, second=True)
    g = default_pipeline(from_onnx(two)[0])
    assert op_histogram(g)["lookup"] == 2 and any(
        n.op == "multiply" and any(i.op == "input" and i.attrs["name"] == "z"
                                   for i in n.inputs) for n in g.nodes())
    _close_to_ort(_run(two, feeds), two, feeds)


def _product_head(k: int = 64, n: int = 48) -> tuple:
    """x -> QDQ -> MatMul with a dequantized int8 weight: an int8 product in kiln."""
    w = RNG.integers(-127, 128, (k, n)).astype(np.int8)
    nodes = [h.make_node("QuantizeLinear", ["x", "xs", "xz"], ["xq"]),
             h.make_node("DequantizeLinear", ["xq", "xs", "xz"], ["xdq"]),
             h.make_node("DequantizeLinear", ["wq", "ws"], ["wdq"]),
             h.make_node("MatMul", ["xdq", "wdq"], ["mm"])]
    inits = {"xs": np.float32(0.03), "xz": np.int8(0), "wq": w, "ws": np.float32(0.01)}

    def fn(x):
        xq = np.clip(np.round(x / np.float32(0.03)), -128, 127) * np.float32(0.03)
        return (xq.astype(np.float32) @ (w.astype(np.float32) * np.float32(0.01))
                ).astype(np.float32)
    return nodes, inits, "mm", fn


def test_the_lookup_after_a_quantized_product_runs_in_its_kernel():
    x = RNG.standard_normal((16, 64)).astype(np.float32)
    model, feeds = _chain_model(GELU_ERF, x, head=_product_head())
    g = default_pipeline(from_onnx(model)[0])
    groups = fuse(g)
    with_lookup = [grp for grp in groups if any(n.op == "lookup" for n in grp.nodes)]
    assert len(with_lookup) == 1 and with_lookup[0].anchor is not None
    assert with_lookup[0].anchor.inputs[0].dtype == "uint8"  # the int8 product
    graph, params = from_onnx(model)
    lib = kiln.graph.build(graph, params, target="cpu")
    _close_to_ort(lib.run(**feeds)["y"], model, feeds)
    assert "kiln_gather_i32x" in lib.source  # a 32-bit table: one hardware gather
