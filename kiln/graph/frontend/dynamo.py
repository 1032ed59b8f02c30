"""A torch.compile backend: `torch.compile(model, backend="kiln")`.

In: each torch.fx.GraphModule that Dynamo hands over, with its example inputs; options from
`torch.compile(..., options={...})`: "log" (tuning records applied with ApplyHistoryBest),
"target" (default: "cuda" when the inputs are CUDA tensors, else "cpu"), "flush_denormals"
(build's option of that name).
Out: a callable with the graph's calling convention (positional tensors in, a tuple or list
of tensors out, on the inputs' device) that runs a kiln library built from the graph through
the PyTorch frontend (torch.export); or, when kiln cannot compile the graph (an unsupported
op, training, symbolic shapes), the graph's own forward with one warning naming the reason.
Why: PyTorch users keep their model code and get kiln's kernels where kiln can build them,
eager PyTorch elsewhere. Registered through the `torch_dynamo_backends` entry point
(pyproject.toml), so the name "kiln" works once the package is installed.
Parameters are compiled in as constants (inference): after changing weights, compile again.
"""

from __future__ import annotations

import logging
import warnings
from contextlib import nullcontext

import numpy as np

from ...errors import KilnError

__all__ = ["kiln_backend"]

log = logging.getLogger("kiln.graph")


def kiln_backend(gm, example_inputs, options: dict | None = None):
    """Dynamo backend entry: compile `gm` with kiln, or return its eager forward."""
    options = dict(options or {})
    reason = _unsupported_reason(gm, example_inputs)
    if reason is None:
        try:
            return _compile(gm, list(example_inputs), options)
        except KilnError as err:
            reason = str(err).splitlines()[0]
    warnings.warn(f"kiln backend: running this graph in eager PyTorch ({reason})",
                  stacklevel=2)
    return gm.forward


def _unsupported_reason(gm, example_inputs) -> str | None:
    import torch
    if torch.is_grad_enabled() and (any(p.requires_grad for p in gm.parameters()) or any(
            getattr(x, "requires_grad", False) for x in example_inputs)):
        return "gradients are required; kiln compiles inference only (use torch.no_grad())"
    for x in example_inputs:
        if not isinstance(x, torch.Tensor):
            return f"an input is a {type(x).__name__}, not a tensor (dynamic shapes?)"
        if any(not isinstance(d, int) for d in x.shape):
            return "symbolic shapes; compile with dynamic=False"
    return None


def _compile(gm, example_inputs: list, options: dict):
    import torch

    from ... import graph as kgraph
    from .torch import from_pytorch
    on_cuda = any(x.is_cuda for x in example_inputs)
    target = options.get("target", "cuda" if on_cuda else "cpu")
    cpu_inputs = tuple(x.detach().cpu() for x in example_inputs)
    graph, params = from_pytorch(_Wrapped(gm).cpu() if on_cuda else _Wrapped(gm), cpu_inputs)
    from ...auto_scheduler import ApplyHistoryBest
    records = ApplyHistoryBest(options["log"]) if options.get("log") else nullcontext()
    with records:
        lib = kgraph.build(graph, params, target=target,
                           flush_denormals=bool(options.get("flush_denormals", False)))
    names = lib.input_names
    device = example_inputs[0].device if example_inputs else torch.device("cpu")
    returns_list = _returns_list(gm)

    def run(*args):
        feeds = {n: _feed(a) for n, a in zip(names, args)}
        outs = [torch.from_numpy(np.ascontiguousarray(o)).to(device)
                for o in lib.run(**feeds).values()]
        return outs if returns_list else tuple(outs)
    run.kiln_module = lib
    log.info("kiln backend: compiled a graph of %d nodes for %s", len(gm.graph.nodes), target)
    return run


def _feed(a):
    return a if a.is_cuda else a.detach().numpy()


def _returns_list(gm) -> bool:
    out = [n for n in gm.graph.nodes if n.op == "output"]
    return bool(out) and isinstance(out[0].args[0], list)


class _Wrapped:
    """Calls a Dynamo GraphModule as an nn.Module whose forward returns a tuple, so that
    torch.export sees an ordinary module (Dynamo graphs may return lists)."""

    def __new__(cls, gm):
        import torch

        class Graph(torch.nn.Module):
            def __init__(self, inner):
                super().__init__()
                self.inner = inner

            def forward(self, *args):
                return tuple(self.inner(*args))
        return Graph(gm).eval()
