"""Declared buffers (TVM's tir.decl_buffer) and external calls (tir.call_extern).

A DeclBuffer describes memory a tensor intrinsic works on: shape, dtype, and optionally
strides and an element offset, either fixed numbers or `te.var`s that lowering fills in.
Lowering binds each one to a region of a real buffer; the bound copy (`data` set) is what an
intrinsic's function receives, and its `access_ptr`, `vload`, `vstore` and indexing make
loop-IR expressions and statements over that region.
"""

from __future__ import annotations

import re

from ..errors import LoweringError
from ..te import expr as E
from ..te.intrin import call_pure_extern, extern_intrinsic
from . import stmt as S


def _expr(x) -> E.Expr:
    return x if isinstance(x, E.Expr) else E.convert(int(x))


class DeclBuffer:
    """A buffer description; bound by lowering to a region of a real buffer (`data`)."""

    def __init__(self, shape, dtype: str, name: str, strides=None, elem_offset=None,
                 offset_factor: int = 0, scope: str = "", data: S.Buffer | None = None):
        self.shape = tuple(_expr(d) for d in shape)
        self.dtype, self.name, self.scope = E.check_dtype(dtype), name, scope
        self.strides = [_expr(s) for s in strides] if strides else []
        self.elem_offset = None if elem_offset is None else _expr(elem_offset)
        self.offset_factor = int(offset_factor)
        self.data = data

    def bound(self, data: S.Buffer, elem_offset: E.Expr, strides: list) -> DeclBuffer:
        """A copy bound to `data` at `elem_offset` with the real strides."""
        return DeclBuffer(self.shape, self.dtype, self.name, strides, elem_offset,
                          self.offset_factor, self.scope, data)

    @property
    def base(self) -> E.Expr:
        """The flat offset of the first element in the underlying buffer."""
        return self.elem_offset if self.elem_offset is not None else E.IntImm(0)

    def _data(self, what: str) -> S.Buffer:
        if self.data is None:
            raise LoweringError(f"buffer {self.name}: {what} works on the buffers a tensor "
                                "intrinsic's function receives (ins, outs), not on a "
                                "declaration")
        return self.data

    def offset_of(self, indices) -> E.Expr:
        """The flat element offset of `indices` in the underlying buffer."""
        idx = list(indices) if isinstance(indices, (list, tuple)) else [indices]
        if len(idx) != len(self.shape):
            raise LoweringError(f"buffer {self.name}: {len(idx)} indices for "
                                f"{len(self.shape)} dimensions")
        out = self.base
        for i, st in zip(idx, self.strides):
            out = out + _expr(i) * st
        return out

    def access_ptr(self, access_mask="rw", ptr_type: str = "handle", content_lanes: int = 1,
                   offset=0, extent=None) -> S.AccessPtr:
        """The address of the buffer's first element (plus `offset` elements), for an
        external function; `access_mask` ("r", "w", "rw", or TVM's 1 / 2 / 3) says whether
        it reads or writes through it."""
        data = self._data("access_ptr")
        if isinstance(access_mask, int):
            access_mask = ("r" if access_mask & 1 else "") + ("w" if access_mask & 2 else "")
        if not access_mask or set(access_mask) - {"r", "w"}:
            raise LoweringError(f"buffer {self.name}: access mask {access_mask!r}; use 'r', "
                                "'w' or 'rw'")
        return S.AccessPtr(data, self.base + _expr(offset), access_mask)

    def vload(self, begin, dtype: str | None = None) -> E.Expr:
        self._check_dtype(dtype)
        return S.BufferLoad(self._data("vload"), self.offset_of(begin))

    def vstore(self, begin, value) -> S.Store:
        value = E.convert(value, self.dtype)
        if value.dtype != self.dtype:
            value = E.cast(self.dtype, value)
        return S.Store(self._data("vstore"), self.offset_of(begin), value)

    def __getitem__(self, indices) -> E.Expr:
        return self.vload(indices)

    def _check_dtype(self, dtype) -> None:
        if dtype is not None and dtype != self.dtype:
            raise LoweringError(f"buffer {self.name}: vload as {dtype!r}; kiln's loop IR has "
                                f"no vector values: load {self.dtype} elements in a loop "
                                "(ib.for_range(..., kind='vectorize'))")

    def __repr__(self) -> str:
        where = f" -> {self.data.name}" if self.data is not None else ""
        return f"DeclBuffer({self.name}, {self.dtype}{[str(d) for d in self.shape]}{where})"


def decl_buffer(shape, dtype: str = "float32", name: str = "buffer", data=None, strides=None,
                elem_offset=None, scope: str = "", data_alignment: int = -1,
                offset_factor: int = 0, buffer_type: str = "", axis_separators=None,
                span=None) -> DeclBuffer:
    """TVM's tir.decl_buffer, for the `binds` of a tensor intrinsic: strides and
    elem_offset may be numbers (the region must have them) or te.vars (lowering sets them)."""
    if data is not None:
        raise LoweringError(f"decl_buffer {name}: data= is not supported; lowering binds the "
                            "buffer to the tensorized region")
    return DeclBuffer(shape, dtype, name, strides, elem_offset, offset_factor, scope)


def call_extern(dtype: str, func_name: str, *args) -> E.Expr:
    """TVM's tir.call_extern: a math library name ("expf", "sqrtf", ...) becomes kiln's
    intrinsic; any other name is a call of an external C function, defined by a pragma
    "import_c" of the schedule (the usual use: the code of a tensorize intrinsic)."""
    if extern_intrinsic(func_name) is not None:
        return call_pure_extern(dtype, func_name, *args)
    if not re.fullmatch(r"[A-Za-z_]\w*", str(func_name)):
        raise LoweringError(f"call_extern: {func_name!r} is not a C function name")
    dtype = dtype if dtype in E.DTYPES else "int32"  # "handle", "void": the value is unused
    vals = [a if isinstance(a, E.Expr) else E.convert(a) for a in args]
    return S.CallExtern(str(func_name), vals, dtype)
