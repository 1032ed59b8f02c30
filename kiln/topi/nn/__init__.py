"""Neural-network operators in te (TVM's topi.nn): dense, conv2d, pooling, softmax, norms."""

from ...te.tensor import Tensor
from ..math import gelu, gelu_tanh, hard_sigmoid, hard_swish, leaky_relu, relu, silu
from .conv2d import (
    conv2d_nchw,
    depthwise_conv2d_nchw,
    depthwise_conv2d_nhwc,
    group_conv2d_nchw,
)
from .dense import batch_matmul, dense, matmul
from .im2col import im2col
from .pad import dilate, pad
from .pooling import avg_pool2d, global_pool, max_pool2d, pool2d
from .softmax import layer_norm, log_softmax, softmax
from .winograd import winograd_input, winograd_matrices, winograd_output, winograd_weight


def flatten(data: Tensor) -> Tensor:
    """[N, ...] -> [N, prod(...)] (TVM's topi.nn.flatten)."""
    from ..transform import reshape
    return reshape(data, (int(data.shape[0]), -1))


__all__ = [
    "avg_pool2d", "batch_matmul", "conv2d_nchw", "dense", "depthwise_conv2d_nchw",
    "depthwise_conv2d_nhwc", "dilate",
    "flatten",
    "gelu", "gelu_tanh", "global_pool", "group_conv2d_nchw", "hard_sigmoid", "hard_swish", "im2col",
    "layer_norm", "leaky_relu", "log_softmax", "matmul", "max_pool2d", "pad", "pool2d", "relu",
    "silu", "softmax", "winograd_input", "winograd_matrices", "winograd_output",
    "winograd_weight",
]
