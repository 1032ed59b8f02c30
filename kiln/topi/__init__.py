"""Operators written in plain te (TVM's topi): math, reductions, data movement and topi.nn."""

from . import arrays, math, nn, reduction, transform
from .arrays import (
    arange,
    flip,
    full,
    full_like,
    gather,
    isinf,
    isnan,
    logical_and,
    logical_not,
    logical_or,
    logical_xor,
    one_hot,
    repeat,
    stack,
    tile,
)
from .math import (
    abs,
    add,
    cast,
    ceil,
    clip,
    cos,
    divide,
    elemwise_sum,
    equal,
    erf,
    exp,
    floor,
    floor_divide,
    floor_mod,
    fmod,
    gelu,
    gelu_tanh,
    greater,
    greater_equal,
    hard_sigmoid,
    hard_swish,
    leaky_relu,
    less,
    less_equal,
    log,
    maximum,
    minimum,
    multiply,
    negative,
    not_equal,
    power,
    relu,
    round,
    rsqrt,
    sigmoid,
    sign,
    silu,
    sin,
    sqrt,
    subtract,
    tanh,
    where,
)
from .nn import batch_matmul, conv2d_nchw, dense, layer_norm, log_softmax, matmul, pad, softmax
from .reduction import argmax, argmin, cumsum, max, mean, min, prod, sum
from .transform import (
    broadcast_to,
    concatenate,
    expand_dims,
    reshape,
    split,
    squeeze,
    strided_slice,
    take,
    transpose,
)


def __getattr__(name: str):
    """TVM's per-target schedule namespaces (topi.generic, topi.x86, topi.cuda), imported on
    first use: they reach the default-schedule chooser and the GPU schedules."""
    if name in ("generic", "x86", "cuda"):
        import importlib
        return importlib.import_module(f".{name}", __name__)
    raise AttributeError(f"module 'kiln.topi' has no attribute {name!r}")


__all__ = [
    "arange", "arrays", "flip", "full", "full_like", "gather", "isinf", "isnan", "logical_and",
    "logical_not", "logical_or", "logical_xor", "one_hot", "repeat", "stack", "tile",
    "abs", "add", "argmax", "argmin", "batch_matmul", "broadcast_to", "cast", "ceil", "clip",
    "concatenate", "conv2d_nchw", "cos", "cumsum", "dense", "divide", "elemwise_sum", "equal",
    "erf", "exp", "expand_dims", "floor", "floor_divide", "floor_mod", "fmod", "gelu", "gelu_tanh",
    "greater", "greater_equal", "hard_sigmoid", "hard_swish", "layer_norm", "leaky_relu", "less",
    "less_equal", "log", "log_softmax", "math", "matmul", "max", "maximum", "mean", "min",
    "minimum", "multiply", "negative", "nn", "not_equal", "pad", "power", "prod", "reduction",
    "relu", "reshape", "round", "rsqrt", "sigmoid", "sign", "silu", "sin", "softmax", "split",
    "sqrt", "squeeze", "strided_slice", "subtract", "sum", "take", "tanh", "transform",
    "transpose", "where",
]
