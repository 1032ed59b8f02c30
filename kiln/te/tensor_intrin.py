"""Tensor intrinsics for `s[C].tensorize(axis, intrin)` (TVM's te.decl_tensor_intrin).

A TensorIntrin pairs a small compute (what the intrinsic calculates, over placeholders) with
a function that emits the code doing it: `fcompute(ins, outs)` receives one buffer per input
and output of that compute, bound by lowering to the region of the real tensors that the
tensorized loop nest covers, and returns a statement (a `tir.ir_builder` result or a
`tir.call_extern` expression), or for a reduction a triple (body, reset, update): `body`
computes the whole reduction, `reset` initializes the outputs and `update` accumulates one
slice (used when reduction loops stay outside the tensorized nest).

Intrinsics are kept in a process-wide table by a unique key, so that a schedule step that
names one replays within the process (records of tensorized schedules are not portable
across processes: the code-emitting function is Python).
"""

from __future__ import annotations

import itertools
import weakref

from ..errors import ScheduleError
from .tensor import ComputeOp, PlaceholderOp, Tensor

_ids = itertools.count()
_TABLE: weakref.WeakValueDictionary = weakref.WeakValueDictionary()


class TensorIntrin:
    """What `te.decl_tensor_intrin` returns: the intrinsic's compute, its code, its buffers."""

    def __init__(self, op: ComputeOp, fcompute, name: str, binds: dict):
        self.op, self.fcompute, self.name, self.binds = op, fcompute, name, binds
        self.inputs = list(op.input_tensors)
        self.outputs = [op.output(0)]
        self.key = f"{name}#{next(_ids)}"
        _TABLE[self.key] = self

    def bind_of(self, t: Tensor):
        """The buffer declared for tensor `t` in binds, or None."""
        for k, v in self.binds.items():
            if k is t or (k.op is t.op and k.value_index == t.value_index):
                return v
        return None

    def __repr__(self) -> str:
        return f"TensorIntrin({self.name})"


def decl_tensor_intrin(op, fcompute, name: str = "tensor_intrin", binds: dict | None = None,
                       scalar_params=None, default_buffer_params=None) -> TensorIntrin:
    """Declare a tensor intrinsic: `op` computes what it does over placeholders; `fcompute`
    emits the code (see the module docstring); `binds` maps the op's tensors to buffers
    made with `tvm.tir.decl_buffer` (strides, offsets the code may assume)."""
    if isinstance(op, Tensor):
        op = op.op
    if not isinstance(op, ComputeOp) or getattr(op, "is_scan", False):
        raise ScheduleError(f"decl_tensor_intrin {name!r}: expected the op of a te.compute, got "
                            f"{type(op).__name__}")
    if op.num_outputs != 1:
        raise ScheduleError(f"decl_tensor_intrin {name!r}: the compute has {op.num_outputs} "
                            "outputs; kiln takes intrinsics of one output")
    if not callable(fcompute):
        raise ScheduleError(f"decl_tensor_intrin {name!r}: fcompute must be a function "
                            "(ins, outs) -> statement")
    if scalar_params:
        raise ScheduleError(f"decl_tensor_intrin {name!r}: scalar_params are not supported")
    for t in op.input_tensors:
        if not isinstance(t.op, PlaceholderOp):
            raise ScheduleError(f"decl_tensor_intrin {name!r}: input {t.name} must be a "
                                "te.placeholder, not a computed tensor")
    binds = dict(binds or {})
    ours = list(op.input_tensors) + [op.output(0)]
    for t, buf in binds.items():
        if not any(t is x for x in ours):
            raise ScheduleError(f"decl_tensor_intrin {name!r}: binds names {t!r}, which is "
                                "not an input or the output of the intrinsic's compute")
        _check_bind(name, t, buf)
    return TensorIntrin(op, fcompute, str(name), binds)


def _check_bind(name: str, t: Tensor, buf) -> None:
    shape = tuple(int(d) for d in t.shape)
    got = tuple(int(getattr(d, "value", d)) for d in getattr(buf, "shape", ()))
    if got != shape or getattr(buf, "dtype", None) != t.dtype:
        raise ScheduleError(f"decl_tensor_intrin {name!r}: the buffer bound to {t.name} is "
                            f"{getattr(buf, 'dtype', '?')}{list(got)}, the tensor is "
                            f"{t.dtype}{list(shape)}")


def lookup(key: str) -> TensorIntrin:
    """The intrinsic a recorded tensorize step names (declared in this process)."""
    intrin = _TABLE.get(key)
    if intrin is None:
        raise ScheduleError(f"tensorize step names intrinsic {key!r}, which is not declared in "
                            "this process (tensorized schedules replay only where their "
                            "intrinsic was declared)")
    return intrin
