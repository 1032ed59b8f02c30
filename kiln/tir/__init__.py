"""The loop IR (PrimFunc, Buffer, For, Store...), lowering from schedules, and its passes.

TVM's `tvm.tir` also holds the scalar expression language; its names that TVM programs use
inside te.compute (Select, const, call_pure_extern, floordiv, exp...) are the te ones,
re-exported here so that `tvm.tir.X` works after changing the import.
"""

from ..te.expr import (
    Cast,
    FloatImm,
    IntImm,
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
)
from ..te.extern_op import call_packed
from ..te.intrin import (
    call_pure_extern,
    ceil,
    cos,
    erf,
    exp,
    exp2,
    floor,
    log,
    log2,
    power,
    round,
    rsqrt,
    sigmoid,
    sin,
    sqrt,
    tanh,
    trunc,
)
from . import ir_builder
from .decl import DeclBuffer, call_extern, decl_buffer
from .lower import lower
from .simplify import simplify
from .stmt import (
    AccessPtr,
    Allocate,
    Buffer,
    BufferLoad,
    CallExtern,
    CallPacked,
    Evaluate,
    For,
    IfThenElse,
    LetStmt,
    PrimFunc,
    SeqStmt,
    Stmt,
    Store,
)

__all__ = ["AccessPtr", "Allocate", "Buffer", "BufferLoad", "CallExtern", "CallPacked", "Cast",
           "DeclBuffer", "Evaluate", "FloatImm", "For", "decl_buffer", "ir_builder",
           "IfThenElse", "IntImm", "LetStmt", "PrimFunc", "Select", "SeqStmt", "Stmt", "Store",
           "Var", "all", "any", "call_extern", "call_packed", "call_pure_extern", "ceil", "const",
           "cos", "erf", "exp", "exp2", "floor", "floordiv", "floormod", "if_then_else",
           "indexdiv", "indexmod", "log", "log2", "lower", "max_value", "min_value", "power",
           "round", "rsqrt", "sigmoid", "simplify", "sin", "sqrt", "tanh", "trunc"]
