"""Frontends: ONNX models and torch.nn.Modules become kiln Graphs with static shapes."""

from .common import ConversionError, UnsupportedOpError
from .onnx import from_onnx


def from_pytorch(model, example_inputs: tuple):
    """Import a torch.nn.Module through torch.export; see kiln.graph.frontend.torch."""
    from .torch import from_pytorch as _impl
    return _impl(model, example_inputs)


__all__ = ["ConversionError", "UnsupportedOpError", "from_onnx", "from_pytorch"]
