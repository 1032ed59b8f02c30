"""relay.frontend: TVM's model importers, as kiln's frontends with TVM's signatures.

In: an ONNX ModelProto (from_onnx) or a traced / scripted torch module (from_pytorch) with
TVM's `input_infos` list. Out: (IRModule, params), params a dict of kiln NDArrays, as TVM's.

from_pytorch: TVM takes a TorchScript module (`torch.jit.trace(model, x)`); kiln imports it
through the TorchScript ONNX exporter and its ONNX frontend (the traced graph is already
fixed, so the export only re-runs it on zeros of the given shapes). A plain nn.Module is
imported by kiln's own torch.export route instead, and its inputs renamed to the given names.
"""

from __future__ import annotations

import io

import numpy as np

from ..errors import ArgumentError
from .build_module import IRModule

__all__ = ["from_onnx", "from_pytorch"]


def _as_nd(params: dict) -> dict:
    from ..runtime.ndarray import NDArray
    return {name: NDArray(np.asarray(v)) for name, v in params.items()}


def from_onnx(model, shape: dict | None = None, dtype="float32", opset=None,
              freeze_params: bool = True, convert_config=None, **_ignored) -> tuple:
    """(IRModule, params) of an ONNX model; `shape` maps input names to static shapes (needed
    for symbolic dimensions). Input dtypes come from the model itself; `dtype`, `opset` and
    `freeze_params` are accepted for TVM's signature (weights are always constants)."""
    from ..graph.frontend import from_onnx as _from_onnx
    graph, params = _from_onnx(model, shape=dict(shape or {}))
    return IRModule(graph), _as_nd(params)


def _infos(input_infos, default_dtype: str) -> list:
    """[(name, shape tuple, dtype or None)] from TVM's [(name, shape)] / [(name, (shape,
    dtype))] list (a dict works too)."""
    items = list(input_infos.items()) if isinstance(input_infos, dict) else list(input_infos)
    out = []
    for item in items:
        if not isinstance(item, (tuple, list)) or len(item) != 2:
            raise ArgumentError(f"input_infos entries are (name, shape) or (name, (shape, "
                                f"dtype)); got {item!r}")
        name, spec = item
        dtype = None
        if isinstance(spec, (tuple, list)) and len(spec) == 2 and isinstance(spec[1], str):
            spec, dtype = spec
        try:
            shape = tuple(int(d) for d in spec)
        except (TypeError, ValueError):
            raise ArgumentError(f"input {name!r}: shape {spec!r} is not a list of integers "
                                "(kiln needs static shapes)") from None
        out.append((str(name), shape, dtype))
    return out


def _traced_dtypes(script_module) -> list:
    """The dtypes a traced module's graph recorded for its inputs (None where unknown)."""
    out = []
    for value in list(script_module.graph.inputs())[1:]:  # [0] is self
        try:
            scalar = value.type().scalarType()
        except (RuntimeError, AttributeError):
            scalar = None
        out.append({"Float": "float32", "Double": "float64", "Long": "int64", "Int": "int32",
                    "Bool": "bool", "Half": "float16", "BFloat16": "bfloat16"}.get(scalar))
    return out


def _examples(infos: list, dtypes: list) -> tuple:
    import torch
    return tuple(torch.from_numpy(np.zeros(shape, dtype=dtype))
                 for (_, shape, _), dtype in zip(infos, dtypes))


def from_pytorch(script_module, input_infos, custom_convert_map=None,
                 default_dtype: str = "float32", use_parser_friendly_name: bool = False,
                 keep_quantized_weight: bool = False, **_ignored) -> tuple:
    """(IRModule, params) of a torch module; `input_infos` is TVM's [(name, shape)] or
    [(name, (shape, dtype))] list, in the forward's argument order. A dtype not given is the
    traced graph's (a TorchScript module records it), else `default_dtype`."""
    import torch
    if custom_convert_map:
        raise ArgumentError("custom_convert_map is not supported: kiln converts ops through "
                            "its own handlers (kiln.graph.frontend.torch)")
    infos = _infos(input_infos, default_dtype)
    scripted = isinstance(script_module, torch.jit.ScriptModule)
    traced = _traced_dtypes(script_module) if scripted else [None] * len(infos)
    traced += [None] * (len(infos) - len(traced))
    dtypes = [d or t or default_dtype for (_, _, d), t in zip(infos, traced)]
    examples = _examples(infos, dtypes)
    if scripted:
        return _via_onnx(script_module, infos, examples)
    from ..graph.frontend import from_pytorch as _from_pytorch
    graph, params = _from_pytorch(script_module, examples)
    if len(graph.inputs) != len(infos):
        raise ArgumentError(f"the module takes {len(graph.inputs)} tensor inputs, input_infos "
                            f"names {len(infos)}")
    for node, (name, _, _) in zip(graph.inputs, infos):
        node.name = name
        node.attrs["name"] = name
    return IRModule(graph), _as_nd(params)


def _via_onnx(script_module, infos: list, examples: tuple) -> tuple:
    import warnings

    import onnx
    import torch
    buf = io.BytesIO()
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")  # the TorchScript exporter's deprecation notices
        torch.onnx.export(script_module, examples, buf, dynamo=False,
                          input_names=[name for name, _, _ in infos], do_constant_folding=True)
    return from_onnx(onnx.load_from_string(buf.getvalue()),
                     shape={name: shape for name, shape, _ in infos})
