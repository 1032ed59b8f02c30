"""TVM's contrib modules kiln provides: graph_executor (running a built whole model), utils
(tempdir) and cc (linking saved object files)."""

from . import cc, graph_executor, utils

__all__ = ["cc", "graph_executor", "utils"]
