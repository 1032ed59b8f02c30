"""ONNX frontend: an onnx.ModelProto becomes a kiln Graph (static shapes, params as consts).

In: a loaded ModelProto (opsets 13-21 are the target; older attribute forms are read too) and
optional concrete shapes for inputs with symbolic dims, e.g. `shape={"input_ids": (1, 128)}`.
Out: (Graph, params). Initializers become const nodes, graph inputs become input nodes, and
each ONNX node goes through the handler named like its op type (onnx_math, onnx_logic,
onnx_nn, onnx_tensor). Every node's shape is inferred as it is made, so `Shape` is a constant
and the shape arithmetic around reshapes is read with NumPy. A model with op types no handler
covers raises ONE UnsupportedOpError listing every such node before anything is converted.
The graph's `output_names` are the model's own output names (what `lib.run` returns), and
a static input dim that contradicts `shape=` is a ShapeError naming the input.
"""

from __future__ import annotations

import os

import numpy as np

from ...errors import KilnError, ShapeError
from ..ir import Graph, Node
from .common import ConversionError, GraphBuilder, UnsupportedOpError
from .onnx_logic import HANDLERS as _LOGIC
from .onnx_math import HANDLERS as _MATH
from .onnx_math import onnx_dtype
from .onnx_nn import HANDLERS as _NN
from .onnx_quant import HANDLERS as _QUANT
from .onnx_quant import QDQ_PRODUCTS
from .onnx_tensor import HANDLERS as _TENSOR

HANDLERS = {**_MATH, **_LOGIC, **_NN, **_TENSOR, **_QUANT}


class ModelFileError(KilnError, ValueError):
    """An ONNX model that is damaged, empty or inconsistent (names what is wrong)."""


def _attrs(node) -> dict:
    import onnx
    out = {}
    for a in node.attribute:
        if a.type == onnx.AttributeProto.GRAPH or a.type == onnx.AttributeProto.GRAPHS:
            out[a.name] = a  # subgraphs: no handler supports them; kept for the message
            continue
        v = onnx.helper.get_attribute_value(a)
        if isinstance(v, onnx.TensorProto):
            v = onnx.numpy_helper.to_array(v)
        elif isinstance(v, bytes):
            v = v.decode()
        elif isinstance(v, list):
            v = [x.decode() if isinstance(x, bytes) else x for x in v]
        out[a.name] = v
    return out


class OnnxContext:
    """What a handler sees: the builder, the opset, and the node being converted."""

    def __init__(self, builder: GraphBuilder, opset: int):
        self.b = builder
        self.opset = opset
        self.node = None
        self.dequantized: dict = {}  # node uid -> onnx_quant.Dequantized (QDQ products)

    @property
    def name(self) -> str:
        n = self.node
        return n.name or (n.output[0] if n.output else n.op_type)

    def fail(self, why: str) -> ConversionError:
        return ConversionError("ONNX", self.node.op_type, self.name, why)

    def need(self, node: Node | None, what: str) -> np.ndarray:
        if node is None:
            raise self.fail(f"{what} is missing")
        return self.b.need(node, self.node.op_type, self.name, what)

    def op(self, op: str, inputs: list, **attrs) -> Node:
        return self.b.op(op, inputs, self.name, **attrs)


def _opset(model) -> int:
    for imp in model.opset_import:
        if imp.domain in ("", "ai.onnx"):
            return int(imp.version)
    return 13


def _check_supported(graph) -> None:
    bad = [(n.op_type if n.domain in ("", "ai.onnx") else f"{n.domain}.{n.op_type}",
            n.name or (n.output[0] if n.output else "?"), "")
           for n in graph.node
           if n.domain not in ("", "ai.onnx") or n.op_type not in HANDLERS]
    if bad:
        raise UnsupportedOpError("ONNX", bad)


def _check_given(vi, given: tuple) -> tuple:
    """`given` for input `vi`, or a ShapeError where it contradicts the model's static dims."""
    dims = vi.type.tensor_type.shape.dim
    if vi.type.tensor_type.HasField("shape") and len(dims) != len(given):
        raise ShapeError(f"ONNX input {vi.name!r} has rank {len(dims)}, but shape= gives "
                         f"{list(given)}")
    for k, (d, g) in enumerate(zip(dims, given)):
        if d.HasField("dim_value") and d.dim_value > 0 and d.dim_value != g:
            raise ShapeError(f"ONNX input {vi.name!r} has static size {d.dim_value} at axis {k},"
                             f" but shape= gives {list(given)}")
    return given


def _input_shape(vi, given: dict) -> tuple:
    if vi.name in given:
        return _check_given(vi, tuple(int(d) for d in given[vi.name]))
    dims = []
    for k, d in enumerate(vi.type.tensor_type.shape.dim):
        if d.HasField("dim_value") and d.dim_value > 0:
            dims.append(int(d.dim_value))
            continue
        sym = d.dim_param or "?"
        raise ShapeError(f"ONNX input {vi.name!r} has a symbolic dimension {sym!r} at axis {k};"
                         f" give concrete shapes, e.g. from_onnx(model, shape={{{vi.name!r}: "
                         f"(1, 128)}})")
    return tuple(dims)


def _make_inputs(b: GraphBuilder, graph, shape: dict, env: dict) -> None:
    inits = {t.name for t in graph.initializer}
    names = [vi.name for vi in graph.input if vi.name not in inits]
    unknown = sorted(set(shape) - set(names))
    if unknown:
        raise ShapeError(f"shape= names {unknown} are not graph inputs; inputs are {names}")
    for vi in graph.input:
        if vi.name in inits:
            continue
        env[vi.name] = b.input(vi.name, _input_shape(vi, shape),
                               onnx_dtype(vi.type.tensor_type.elem_type))


def _convert_node(cx: OnnxContext, node, env: dict) -> None:
    cx.node = node
    ins = [env[i] if i else None for i in node.input]
    attrs = _attrs(node)
    fused = QDQ_PRODUCTS.get(node.op_type)
    out = fused(cx, ins, attrs) if fused is not None else None
    if out is None:
        out = HANDLERS[node.op_type](cx, ins, attrs)
    outs = out if isinstance(out, (list, tuple)) else [out]
    for k, name in enumerate(node.output):
        if not name:
            continue
        if k >= len(outs) or outs[k] is None:
            env[name] = _Missing(node.op_type, cx.name, k)
        else:
            env[name] = outs[k]


class _Missing:
    """Placeholder for an optional output kiln does not produce (error only if it is used)."""

    def __init__(self, op: str, name: str, k: int):
        self.op, self.name, self.k = op, name, k


def _check_used(node, env: dict) -> None:
    for i in node.input:
        v = env.get(i)
        if isinstance(v, _Missing):
            raise ConversionError("ONNX", v.op, v.name,
                                  f"output {v.k} is used by {node.op_type} but not supported")


def _load(model):
    """A ModelProto from a ModelProto, a path or bytes; a damaged file is a KilnError."""
    import onnx
    where, path = "the ONNX model", None
    if isinstance(model, (str, bytes)) or hasattr(model, "__fspath__"):
        path = None if isinstance(model, bytes) else os.fspath(model)
        where = f"ONNX file {path}" if path is not None else "the ONNX bytes"
        try:
            model = onnx.load_from_string(model) if path is None else \
                onnx.load(path, load_external_data=False)
        except OSError as err:
            raise ModelFileError(f"cannot read {where}: {err}") from None
        except Exception as err:  # noqa: BLE001 - protobuf's DecodeError and friends
            raise ModelFileError(f"{where} is not a valid ONNX model (damaged or not ONNX): "
                                 f"{str(err).splitlines()[0] if str(err) else type(err).__name__}"
                                 ) from None
        if path is not None:
            _external_data(model, os.path.dirname(path))
    if not hasattr(model, "graph"):
        raise ModelFileError(f"from_onnx expects an onnx.ModelProto or a path, got "
                             f"{type(model).__name__}")
    if not model.graph.output or not model.graph.node and not model.graph.input:
        raise ModelFileError(f"{where} is empty (no graph outputs): a 0-byte or truncated file?")
    return model


def _external_data(model, folder: str) -> None:
    """Load the initializers kept in external files beside the model (large models); a
    missing or short file is a ModelFileError naming it, not a "damaged model"."""
    from onnx import TensorProto
    from onnx.external_data_helper import load_external_data_for_model
    external = [t for t in model.graph.initializer if t.data_location == TensorProto.EXTERNAL]
    if not external:
        return
    try:
        load_external_data_for_model(model, folder)
    except Exception as err:  # noqa: BLE001 - onnx's ValidationError, OSError
        files = sorted({e.value for t in external for e in t.external_data
                        if e.key == "location"})
        raise ModelFileError(f"the ONNX model keeps weights in {', '.join(files)} beside it, "
                             f"which could not be read from {folder or '.'}: "
                             f"{str(err).splitlines()[0]}") from None


def _check_structure(graph) -> None:
    """Every graph output is produced, and the nodes are put in topological order (some
    tools write them unsorted; ONNX Runtime accepts that too)."""
    known = {t.name for t in graph.initializer} | {i.name for i in graph.input} | {""}
    pending, ordered = list(graph.node), []
    while pending:
        ready = [n for n in pending if all(i in known for i in n.input)]
        if not ready:
            n = pending[0]
            missing = [i for i in n.input if i not in known]
            raise ModelFileError(f"ONNX node {n.name or n.op_type!r} ({n.op_type}) reads "
                                 f"{missing}, which no node, input or initializer produces "
                                 "(or the graph has a cycle)")
        for n in ready:
            known.update(n.output)
            ordered.append(n)
        pending = [n for n in pending if n not in ready]
    if [id(n) for n in ordered] != [id(n) for n in graph.node]:
        del graph.node[:]
        graph.node.extend(ordered)
    for vi in graph.output:
        if vi.name not in known:
            raise ModelFileError(f"ONNX graph output {vi.name!r} is not produced by any node, "
                                 "input or initializer")


def _initializer(t):
    """An initializer's values; one whose data lives in an external file that was not
    loaded with the proto is a ModelFileError saying how to load it."""
    from onnx import TensorProto, numpy_helper
    if t.data_location == TensorProto.EXTERNAL:
        where = {e.key: e.value for e in t.external_data}.get("location", "?")
        raise ModelFileError(f"ONNX initializer {t.name!r} keeps its data in the external file "
                             f"{where!r}, which was not loaded with the model: pass the .onnx "
                             "path to from_onnx (the file beside it), or onnx.load(path) "
                             "with load_external_data=True")
    return numpy_helper.to_array(t)


def from_onnx(model, shape: dict | None = None) -> tuple[Graph, dict]:
    """Import an ONNX model; returns (graph, params) with every shape static."""
    model = _load(model)
    graph = model.graph
    _check_structure(graph)
    _check_supported(graph)
    b = GraphBuilder("ONNX")
    env: dict = {}
    for t in graph.initializer:
        env[t.name] = b.const(_initializer(t), t.name)
    _make_inputs(b, graph, dict(shape or {}), env)
    cx = OnnxContext(b, _opset(model))
    for node in graph.node:
        _check_used(node, env)
        _convert_node(cx, node, env)
    outputs = []
    for vi in graph.output:
        out = env[vi.name]
        if isinstance(out, _Missing):
            raise ConversionError("ONNX", out.op, out.name, "unsupported optional output used")
        outputs.append(out)
    g = b.finish(outputs, graph.name or "main")
    g.output_names = [vi.name for vi in graph.output]
    return g, g.params
