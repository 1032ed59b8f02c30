"""The loop IR (PrimFunc, Buffer, For, Store...), lowering from schedules, and its passes."""

from .lower import lower
from .simplify import simplify
from .stmt import (
                   Allocate,
                   Buffer,
                   BufferLoad,
                   For,
                   IfThenElse,
                   LetStmt,
                   PrimFunc,
                   SeqStmt,
                   Stmt,
                   Store,
)

__all__ = ["Allocate", "Buffer", "BufferLoad", "For", "IfThenElse", "LetStmt", "PrimFunc",
           "SeqStmt", "Stmt", "Store", "lower", "simplify"]
