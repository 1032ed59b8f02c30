"""TVM's contrib modules kiln provides: graph_executor (running a built whole model) and
utils (tempdir)."""

from . import graph_executor, utils

__all__ = ["graph_executor", "utils"]
