"""Whole models: graph IR, frontends (ONNX, PyTorch), passes, fusion, tasks and the executable."""

from .. import auto_scheduler as _auto_scheduler  # noqa: F401  (loads before .tasks: no cycle)
from .build import build
from .executable import GraphModule, load
from .ir import OP_SPECS, Graph, GraphError, Node, graph_str, structural_hash, verify
from .record_check import build_checked
from .tasks import extract_tasks

__all__ = ["OP_SPECS", "Graph", "GraphError", "GraphModule", "Node", "build", "build_checked",
           "extract_tasks", "graph_str", "load", "structural_hash", "verify"]
