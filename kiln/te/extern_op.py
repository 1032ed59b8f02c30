"""External tensor functions: te.extern and tir.call_packed (TVM's "External Tensor Functions").

In: output shapes, input tensors and `fcompute(ins, outs)` returning `call_packed(name, *args)`
or loop IR built with tir.ir_builder over ins / outs.
Out: an ExternOp whose tensors other computes read like any tensor. Lowering turns it into a
`CallPacked` statement at the root of the kernel (the C code calls back into the Python
function registered under `name`, kiln.runtime.registry, with the buffers as arrays), or
into the loop IR itself, fcompute called again over the real buffers.
Why a callback: kiln's kernels are C, and a packed function is a Python callable (or one of
kiln's built-ins such as tvm.contrib.cblas.matmul, which runs NumPy's BLAS); the kernel's own
loops stay compiled around it.
"""

from __future__ import annotations

from ..errors import ExprError, ShapeError
from . import expr as E
from .tensor import Operation, Tensor, _shape


class DeferredBody(Exception):
    """Raised when fcompute builds loop IR over its buffers (ib.buffer_ptr, vload, ...):
    the body is built again at lowering, over the real buffers."""


class ExternBuffer:
    """A tensor as fcompute's `ins[k]` / `outs[k]` see it: something to pass to a call.
    Building loop IR over one (tir.ir_builder) defers the body to lowering, which calls
    fcompute again with buffers bound to memory (tir.decl.DeclBuffer)."""

    def __init__(self, tensor: Tensor | None, name: str, shape, dtype: str):
        self.tensor, self.name, self.shape, self.dtype = tensor, name, tuple(shape), dtype

    def _data(self, *args, **kwargs):
        raise DeferredBody(self.name)

    vload = vstore = access_ptr = offset_of = __getitem__ = _data
    strides = elem_offset = base = property(_data)

    def __repr__(self) -> str:
        return f"ExternBuffer({self.name}, {list(self.shape)}, {self.dtype})"


class PackedCall(E.Expr):
    """call_packed(name, *args): buffers and scalar expressions; its value is a status code."""

    __slots__ = ("func_name", "args")

    def __init__(self, func_name: str, args):
        self.func_name, self.args, self.dtype = func_name, tuple(args), "int32"

    def expr_children(self) -> tuple:
        return tuple(a for a in self.args if isinstance(a, E.Expr))

    def expr_rebuild(self, children) -> PackedCall:
        it = iter(children)
        return PackedCall(self.func_name, [next(it) if isinstance(a, E.Expr) else a
                                           for a in self.args])

    def expr_str(self, fmt) -> str:
        parts = [repr(self.func_name)] + [a.name if isinstance(a, ExternBuffer) else fmt(a)
                                          for a in self.args]
        return f"call_packed({', '.join(parts)})"


def call_packed(func_name: str, *args) -> PackedCall:
    """A call of the packed function registered as `func_name` (tvm.register_func) with
    buffers (fcompute's ins / outs) and scalars (numbers, te.var)."""
    if not isinstance(func_name, str):
        raise ExprError(f"call_packed: the first argument is the function's name, got "
                        f"{func_name!r}")
    out = []
    for a in args:
        if isinstance(a, ExternBuffer):
            out.append(a)
        elif isinstance(a, Tensor):
            raise ExprError(f"call_packed({func_name!r}): pass fcompute's ins[k] / outs[k], "
                            f"not the tensor {a.name}")
        else:
            out.append(E.convert(a))
    return PackedCall(func_name, out)


class ExternOp(Operation):
    """Outputs computed by one packed call over whole input tensors."""

    is_extern = True

    def __init__(self, name: str, inputs: list, shapes: list, dtypes: list, fcompute,
                 tag: str = "", attrs=None):
        super().__init__(name, tag, attrs)
        self.inputs = list(inputs)
        self._outputs = [Tensor(self, k, s, d) for k, (s, d) in enumerate(zip(shapes, dtypes))]
        ins = [ExternBuffer(t, t.name, t.shape, t.dtype) for t in self.inputs]
        outs = [ExternBuffer(t, t.name, t.shape, t.dtype) for t in self._outputs]
        self.fcompute = fcompute
        try:
            call = fcompute(ins, outs)
        except DeferredBody:
            call = None
        if isinstance(call, (int, float, str)):
            raise ExprError(f"extern {name!r}: fcompute must return tvm.tir.call_packed(...) "
                            f"or loop IR (tvm.tir.ir_builder), got {type(call).__name__}")
        if not isinstance(call, PackedCall):  # loop IR (tir.ir_builder): built at lowering
            self.call = None
            return
        known = {id(b) for b in ins + outs}
        for a in call.args:
            if isinstance(a, ExternBuffer) and id(a) not in known:
                raise ExprError(f"extern {name!r}: buffer {a.name} is not one of its ins / outs")
        self.call = call

    @property
    def input_tensors(self) -> list:
        return list(self.inputs)


def extern(shape, inputs, fcompute, name: str = "extern", dtype=None, tag: str = "",
           attrs=None):
    """Tensor(s) of `shape` (or a list of shapes) computed by the packed call that
    `fcompute(ins, outs)` returns; `dtype` defaults to the first input's."""
    many = isinstance(shape, (list, tuple)) and shape and isinstance(shape[0], (list, tuple))
    shapes = [_shape(s, f"extern {name!r}") for s in (shape if many else [shape])]
    inputs = list(inputs)
    for t in inputs:
        if not isinstance(t, Tensor):
            raise ShapeError(f"extern {name!r}: inputs must be te tensors, got {t!r}")
    default = inputs[0].dtype if inputs else "float32"
    dtypes = dtype if isinstance(dtype, (list, tuple)) else [dtype or default] * len(shapes)
    if len(dtypes) != len(shapes):
        raise ShapeError(f"extern {name!r}: {len(shapes)} shapes but {len(dtypes)} dtypes")
    op = ExternOp(name, inputs, shapes, [E.check_dtype(d) for d in dtypes], fcompute, tag,
                  attrs)
    return op.output(0) if len(shapes) == 1 else [op.output(k) for k in range(len(shapes))]


__all__ = ["DeferredBody", "ExternBuffer", "ExternOp", "PackedCall", "call_packed", "extern"]
