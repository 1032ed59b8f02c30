"""The tensor-expression language: placeholders, computes, reductions and math intrinsics."""

from .expr import (
    Cast,
    Expr,
    FloatImm,
    IntImm,
    IterVar,
    Reduce,
    Select,
    Var,
    all,
    any,
    const,
    floordiv,
    floormod,
    if_then_else,
    indexdiv,
    indexmod,
    max_value,
    min_value,
    select,
    size_var,
    var,
)
from .extern_op import ExternOp, call_packed, extern
from .intrin import (
    abs,
    call_extern,
    call_pure_extern,
    ceil,
    cos,
    erf,
    exp,
    exp2,
    floor,
    fmod,
    log,
    log2,
    pow,
    power,
    round,
    rsqrt,
    sigmoid,
    sin,
    sqrt,
    tanh,
    trunc,
)
from .scan_op import ScanOp, scan
from .tensor import (
    ComputeOp,
    Operation,
    PlaceholderOp,
    Tensor,
    comm_reducer,
    compute,
    max,
    min,
    placeholder,
    prod,
    reduce_axis,
    sum,
    thread_axis,
)
from .tensor_intrin import TensorIntrin, decl_tensor_intrin


def create_schedule(ops):
    """A TVM-style schedule over the ops (or tensors) given and everything they read."""
    from ..schedule.facade import create_schedule as _create
    return _create(ops)


__all__ = [
    "Cast", "ComputeOp", "Expr", "ExternOp", "FloatImm", "IntImm", "IterVar", "Operation",
    "PlaceholderOp", "Reduce", "ScanOp", "Select", "Tensor", "TensorIntrin", "Var", "abs", "all",
    "any", "decl_tensor_intrin",
    "call_extern", "call_packed", "call_pure_extern", "ceil", "comm_reducer", "compute",
    "const", "cos", "create_schedule", "erf", "exp", "exp2", "extern", "floor", "floordiv",
    "floormod", "fmod", "if_then_else", "indexdiv", "indexmod", "log", "log2", "max",
    "max_value", "min", "min_value", "placeholder", "pow", "power", "prod", "reduce_axis",
    "round", "rsqrt", "scan", "select", "sigmoid", "sin", "size_var", "sqrt", "sum", "tanh",
    "thread_axis", "trunc", "var",
]
