"""TVM's contrib modules kiln provides: graph_executor (running a built whole model)."""

from . import graph_executor

__all__ = ["graph_executor"]
