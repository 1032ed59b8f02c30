"""TVM Relay's model-level API over kiln.graph, so TVM's model tutorials run after
`import kiln as tvm; from kiln import relay`: relay.frontend.from_onnx / from_pytorch,
relay.build, relay.create_executor (with kiln.contrib.graph_executor, kiln.transform's
PassContext and kiln.auto_scheduler for tuning). See build_module for where it differs."""

from . import build_module, frontend, testing
from .build_module import IRModule, build, create_executor

__all__ = ["IRModule", "build", "build_module", "create_executor", "frontend", "testing"]
