"""Layer helpers for relay.testing's networks: a GraphBuilder plus seeded weights.

Networks are float32 or float16 (TVM's `dtype=`: float16 weights and input, computed in
float32 by kiln's build, graph/passes/float16.py). Weights are drawn as TVM's testing
workloads draw them (Xavier, gaussian, fan-in, magnitude 2 for convolutions and dense
layers; batch norm starts as the identity: gamma 1, beta 0, moving mean 0, moving variance
1), from a seeded generator so a workload is reproducible.
"""

from __future__ import annotations

import math

import numpy as np

from ...errors import ArgumentError
from ...graph.frontend.common import GraphBuilder
from ...graph.ir import Node

LAYOUTS = ("NCHW", "NHWC")
DTYPES = ("float32", "float16")


class Net:
    """A network under construction: nodes through the builder, weights by name."""

    def __init__(self, seed: int = 0, dtype: str = "float32"):
        self.b = GraphBuilder("relay.testing")
        self.rng = np.random.default_rng(seed)
        self.dtype = dtype  # of the weights and the input

    def weight(self, shape: tuple, name: str) -> Node:
        fan_in = math.prod(shape[1:])
        scale = math.sqrt(2.0 / fan_in)  # Xavier gaussian, fan-in, magnitude 2
        value = (self.rng.standard_normal(shape) * scale).astype(self.dtype)
        return self.b.const(value, name)

    def conv(self, x: Node, channels: int, kernel: int, stride: int, pad: int, name: str,
             groups: int = 1) -> Node:
        w = self.weight((channels, x.shape[1] // groups, kernel, kernel), f"{name}_weight")
        return self.b.op("conv2d", [x, w], name, strides=[stride, stride],
                         padding=[pad] * 4, dilation=[1, 1], groups=groups)

    def bn(self, x: Node, name: str, epsilon: float = 1e-5) -> Node:
        c = x.shape[1]
        parts = [self.b.const(np.full(c, v, self.dtype), f"{name}_{what}")
                 for what, v in (("gamma", 1.0), ("beta", 0.0), ("moving_mean", 0.0),
                                 ("moving_var", 1.0))]
        return self.b.op("batch_norm", [x, *parts], name, epsilon=epsilon)

    def relu(self, x: Node) -> Node:
        return self.b.op("relu", [x])

    def dense(self, x: Node, units: int, name: str) -> Node:
        w = self.weight((units, x.shape[1]), f"{name}_weight")
        bias = self.b.const(np.zeros(units, self.dtype), f"{name}_bias")
        return self.b.op("dense", [x, w, bias], name)

    def classifier(self, x: Node, num_classes: int) -> Node:
        """global average pool, flatten, dense, softmax (the head of TVM's CNN workloads)."""
        x = self.b.op("flatten", [self.b.op("global_avg_pool2d", [x])])
        return self.b.op("softmax", [self.dense(x, num_classes, "fc1")], axis=1)

    def data(self, batch_size: int, image_shape: tuple, layout: str, dtype: str) -> Node:
        """The "data" input in `layout`; NHWC is transposed to kiln's NCHW at the start."""
        check(layout, dtype)
        x = self.b.input("data", (batch_size, *image_shape), dtype)
        return self.b.op("transpose", [x], axes=[0, 3, 1, 2]) if layout == "NHWC" else x

    def finish(self, out: Node, name: str):
        from ..build_module import IRModule
        from ..frontend import _as_nd
        graph = self.b.finish([out], name)
        return IRModule(graph), _as_nd(graph.params)


def check(layout: str, dtype: str) -> None:
    if layout not in LAYOUTS:
        raise ArgumentError(f"layout {layout!r}: relay.testing builds {' or '.join(LAYOUTS)}")
    if dtype not in DTYPES:
        raise ArgumentError(f"dtype {dtype!r}: relay.testing builds float32 or float16 "
                            "networks (for bfloat16 or int8 products, build a float32 one "
                            "with kiln.graph.build(..., dtype=))")


def image_dims(image_shape: tuple, layout: str) -> tuple:
    """(channels, height, width) of an image shape given in `layout` order."""
    shape = tuple(int(d) for d in image_shape)
    if len(shape) != 3:
        raise ArgumentError(f"image_shape {image_shape!r}: expected 3 dims ({layout[1:]})")
    return (shape[2], shape[0], shape[1]) if layout == "NHWC" else shape
