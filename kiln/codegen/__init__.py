"""Code generators: loop IR (PrimFunc) -> source text, and the toolchain that compiles it."""

from .c import render
from .toolchain import compile

__all__ = ["render", "compile"]
