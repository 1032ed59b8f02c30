"""TVM's contrib modules kiln provides: graph_executor (running a built whole model),
debugger.debug_executor (the same with per-kernel times), utils
(tempdir), cc (linking saved object files) and cblas (matrix products as te.extern
calls of NumPy's BLAS)."""

from . import cblas, cc, debugger, graph_executor, utils

__all__ = ["cblas", "cc", "debugger", "graph_executor", "utils"]
