"""PyTorch frontend: a torch.nn.Module (via torch.export) becomes a kiln Graph.

In: a module in inference mode (call model.eval() first) and example inputs whose shapes
become the graph's static shapes. Out: (Graph, params); the graph's inputs are named like the
forward's arguments and its `output_names` are the module's dict / ModelOutput keys (else the
program's output names). The program is first decomposed to core ATen (see core_aten). Its
parameters, buffers and lifted constants become const nodes; user inputs become input nodes;
each ATen call goes through the handler named after its op (torch_ops, torch_nn,
torch_index). After each handler the produced node is checked against the shape torch.export
recorded for it (and cast to the recorded dtype), so a conversion slip fails at import,
naming the FX node. A program using
ATen ops no handler covers raises ONE UnsupportedOpError listing every such node.
"""

from __future__ import annotations

import operator
import warnings

import numpy as np

from ..ir import Graph, GraphError, Node
from .common import ConversionError, GraphBuilder, UnsupportedOpError
from .torch_index import HANDLERS as _INDEX
from .torch_nn import HANDLERS as _NN
from .torch_ops import HANDLERS as _OPS

HANDLERS = {**_OPS, **_NN, **_INDEX}


def np_dtype(dtype) -> str:
    """A torch dtype as a NumPy dtype name."""
    import torch
    return str(torch.empty((), dtype=dtype).numpy().dtype)


def _op_key(target) -> str:
    if target is operator.getitem:
        return "getitem"
    packet = getattr(target, "overloadpacket", None)
    return packet.__name__ if packet is not None else str(target)


class TorchContext:
    """What a handler sees: the builder and the FX node being converted."""

    def __init__(self, builder: GraphBuilder):
        self.b = builder
        self.node = None

    @property
    def name(self) -> str:
        return self.node.name

    @property
    def overload(self) -> str:
        return getattr(self.node.target, "_overloadname", "")

    def out_dtype(self) -> str | None:
        val = self.node.meta.get("val")
        return np_dtype(val.dtype) if hasattr(val, "dtype") else None

    def fail(self, why: str) -> ConversionError:
        return ConversionError("PyTorch", str(self.node.target), self.name, why)

    def op(self, op: str, inputs: list, **attrs) -> Node:
        return self.b.op(op, inputs, self.name, **attrs)

    def need(self, node: Node, what: str) -> np.ndarray:
        return self.b.need(node, str(self.node.target), self.name, what)

    def tensor(self, v, dtype: str) -> Node:
        """A graph node for `v`: a node as is (cast to dtype), a Python number as a const."""
        if isinstance(v, Node):
            return self.b.cast(v, dtype, self.name)
        return self.b.const(np.array(v, dtype=dtype), f"{self.name}_scalar")


def _check_supported(gm) -> None:
    bad = [(str(n.target), n.name, "") for n in gm.graph.nodes
           if n.op == "call_function" and n.target is not operator.getitem
           and _op_key(n.target) not in HANDLERS]
    bad += [(n.op, n.name, "only call_function nodes are supported") for n in gm.graph.nodes
            if n.op in ("call_module", "call_method", "get_attr")]
    if bad:
        raise UnsupportedOpError("PyTorch", bad)


def _placeholders(ep, b: GraphBuilder) -> dict:
    from torch.export.graph_signature import InputKind
    env: dict = {}
    specs = {s.arg.name: s for s in ep.graph_signature.input_specs}
    for node in ep.graph.nodes:
        if node.op != "placeholder":
            continue
        spec = specs[node.name]
        if spec.kind == InputKind.USER_INPUT:
            val = node.meta["val"]
            env[node.name] = b.input(node.name, tuple(int(d) for d in val.shape),
                                     np_dtype(val.dtype))
        elif spec.kind in (InputKind.PARAMETER, InputKind.BUFFER, InputKind.CONSTANT_TENSOR):
            t = ep.state_dict.get(spec.target)
            t = ep.constants[spec.target] if t is None else t
            env[node.name] = b.const(t.detach().cpu().numpy(), spec.target)
        else:
            raise UnsupportedOpError("PyTorch", [(str(spec.kind), node.name, "input kind")])
    return env


def _arg(env: dict, a):
    import torch.fx
    if isinstance(a, torch.fx.Node):
        return env[a.name]
    if isinstance(a, (list, tuple)):
        return type(a)(_arg(env, x) for x in a)
    return a


def _check_result(cx: TorchContext, out):
    val = cx.node.meta.get("val")
    if not isinstance(out, Node) or not hasattr(val, "shape"):
        return out
    want = tuple(int(d) for d in val.shape)
    if tuple(out.shape) != want:
        raise GraphError(f"PyTorch import: FX node {cx.name!r} ({cx.node.target}) converted to "
                         f"shape {list(out.shape)}, torch.export recorded {list(want)}")
    return cx.b.cast(out, np_dtype(val.dtype), cx.name)


def _convert(ep, b: GraphBuilder) -> list:
    env = _placeholders(ep, b)
    cx = TorchContext(b)
    outputs = []
    for node in ep.graph.nodes:
        if node.op == "call_function":
            cx.node = node
            args, kwargs = _arg(env, node.args), _arg(env, dict(node.kwargs))
            if node.target is operator.getitem:
                env[node.name] = args[0][args[1]]
                continue
            env[node.name] = _check_result(cx, HANDLERS[_op_key(node.target)](cx, args, kwargs))
        elif node.op == "output":
            outputs = list(_arg(env, node.args[0]))
    return outputs


def core_aten(ep):
    """`ep` decomposed to core ATen (in-place ops functionalised, composites such as pad,
    diff or expand_as spelled out), keeping the composites kiln imports whole: linear
    (-> dense), scaled_dot_product_attention (-> one attention pattern), hardswish and
    hardsigmoid (kiln ops of their own)."""
    import torch
    aten = torch.ops.aten
    table = torch.export.default_decompositions()
    for op in (aten.linear.default, aten.scaled_dot_product_attention.default,
               aten.hardswish.default, aten.hardsigmoid.default):
        table.pop(op, None)
    with warnings.catch_warnings():  # torch's own deprecation notes while it copies specs
        warnings.simplefilter("ignore", FutureWarning)
        return ep.run_decompositions(table)


def _leaf_names(spec, prefix: str = "") -> list:
    """Names for the leaves of a pytree spec: dict / ModelOutput keys, joined with '.' when
    nested, '' where a leaf has no key (a bare tensor or a tuple element)."""
    children = list(spec.children()) if hasattr(spec, "children") else \
        list(getattr(spec, "children_specs", []))
    if not children:
        return [prefix] if getattr(spec, "num_leaves", 1) else []
    keys = spec.context if isinstance(spec.context, (list, tuple)) and \
        len(spec.context) == len(children) and all(isinstance(k, str) for k in spec.context) \
        else [""] * len(children)
    out = []
    for key, child in zip(keys, children):
        name = f"{prefix}.{key}" if prefix and key else (key or prefix)
        out.extend(_leaf_names(child, name if key else ""))
    return out


def _output_names(ep, user_specs: list) -> list:
    """The module's own output names (dict / ModelOutput keys), else the signature's."""
    spec = getattr(getattr(ep, "call_spec", None), "out_spec", None)
    keyed = _leaf_names(spec) if spec is not None else []
    if len(keyed) != len(user_specs):
        keyed = [""] * len(user_specs)
    return [k or getattr(s.arg, "name", "") for k, s in zip(keyed, user_specs)]


def from_exported_program(ep) -> tuple[Graph, dict]:
    """Import a torch.export ExportedProgram (decomposed to core ATen first)."""
    from torch.export.graph_signature import OutputKind
    ep = core_aten(ep)
    _check_supported(ep.graph_module)
    b = GraphBuilder("PyTorch")
    outputs = _convert(ep, b)
    specs = ep.graph_signature.output_specs
    user = [o for o, s in zip(outputs, specs) if s.kind == OutputKind.USER_OUTPUT]
    if any(not isinstance(o, Node) for o in user):
        raise ConversionError("PyTorch", "output", "output", "an output is not a tensor")
    g = b.finish(user)
    g.output_names = _output_names(ep, [s for s in specs if s.kind == OutputKind.USER_OUTPUT])
    return g, g.params


def from_pytorch(model, example_inputs: tuple) -> tuple[Graph, dict]:
    """torch.export the module with `example_inputs` and import the program."""
    import torch
    with torch.no_grad():
        ep = torch.export.export(model, tuple(example_inputs))
    return from_exported_program(ep)
