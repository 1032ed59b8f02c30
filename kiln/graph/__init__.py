"""Whole models: graph IR, frontends (ONNX, PyTorch), passes, fusion, tasks and the executable."""

from .ir import OP_SPECS, Graph, GraphError, Node, graph_str, structural_hash, verify

__all__ = ["OP_SPECS", "Graph", "GraphError", "Node", "graph_str", "structural_hash", "verify"]
