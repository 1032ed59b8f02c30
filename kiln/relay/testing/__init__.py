"""relay.testing: the networks TVM's tutorials tune and run (resnet, mobilenet, mlp), built
as kiln graphs with seeded random weights. `get_workload(...)` returns (IRModule, params).
An NHWC workload takes NHWC input and is computed in kiln's own layouts (its weights are
OIHW); `layout` changes the input, not the result."""

from . import mlp, mobilenet, resnet

__all__ = ["mlp", "mobilenet", "resnet"]
