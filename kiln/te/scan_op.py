"""te.scan: a recurrence over the first axis (TVM's "Scan and Recurrent Kernel" tutorial).

In: `init` tensors (the first rows), `update` tensors (row t, reading the state placeholders
at earlier rows) and the state placeholders. Out: a ScanOp, a compute whose row t is
update[t] for t >= len(init) and init[t] before; its tensors are the whole sequences.
Why a ComputeOp: the scan's stage is the loop over time; the stages of its update are
computed inside that loop (their default attach point), so bound inference, compute_at and
the rest of the schedule work on them unchanged. Lowering (tir/lower_multi.py) starts the
time loop after the init rows, copies the init rows first, and reads the states from the
scan's own output buffers.
"""

from __future__ import annotations

from ..errors import ShapeError
from . import expr as E
from .tensor import ComputeOp, PlaceholderOp, Tensor, _ints


class ScanOp(ComputeOp):
    """out_k[t, ...] = init_k[t, ...] for t < init_len, else update_k[t, ...]."""

    is_scan = True

    def __init__(self, name: str, init: list, update: list, state: list, tag="", attrs=None):
        shape = state[0].shape
        axis = [E.IterVar(shape[0], f"{name}_idx")] + \
            [E.IterVar(d, f"ax{k}") for k, d in enumerate(shape[1:])]
        super().__init__(name, axis, [u[tuple(axis)] for u in update], tag, attrs)
        self.init, self.update, self.state = list(init), list(update), list(state)
        self.init_len = int(init[0].shape[0].value)

    @property
    def input_tensors(self) -> list:
        out = super().input_tensors
        return out + [t for t in self.init if t not in out]

    @property
    def time_axis(self) -> E.IterVar:
        return self.axis[0]


def _listed(x) -> list:
    return list(x) if isinstance(x, (list, tuple)) else [x]


def scan(init, update, state_placeholder, inputs=None, name: str = "scan", tag: str = "",
         attrs=None):
    """The sequences defined by rows `init` followed by rows `update` (each reading
    `state_placeholder` at earlier rows); lists for several states. `inputs` is accepted for
    TVM compatibility (kiln finds the inputs from the update's body)."""
    init, update, state = _listed(init), _listed(update), _listed(state_placeholder)
    where = f"scan {name!r}"
    if not (len(init) == len(update) == len(state)) or not state:
        raise ShapeError(f"{where}: give as many init, update and state tensors "
                         f"({len(init)}, {len(update)}, {len(state)})")
    for k, (i, u, s) in enumerate(zip(init, update, state)):
        for t, what in ((i, "init"), (u, "update"), (s, "state")):
            if not isinstance(t, Tensor):
                raise ShapeError(f"{where}: {what} {k} must be a te tensor, got {t!r}")
        if not isinstance(s.op, PlaceholderOp):
            raise ShapeError(f"{where}: state {k} must be a te.placeholder, got {s.name}")
        if _ints(u.shape) != _ints(s.shape) or _ints(i.shape[1:]) != _ints(s.shape[1:]):
            raise ShapeError(f"{where}: update {k} {_ints(u.shape)} must have the state's "
                             f"shape {_ints(s.shape)}, and init {k} {_ints(i.shape)} its "
                             "shape after the first axis")
        if len({i.dtype, u.dtype, s.dtype}) != 1:
            raise ShapeError(f"{where}: init, update and state {k} must share a dtype, got "
                             f"{i.dtype}, {u.dtype}, {s.dtype}")
        if not isinstance(i.shape[0], E.IntImm):
            raise ShapeError(f"{where}: the number of init rows must be a constant")
    if len({_ints(s.shape) for s in state}) != 1:
        raise ShapeError(f"{where}: the states must share one shape, got "
                         f"{[_ints(s.shape) for s in state]}")
    if len({int(i.shape[0].value) for i in init}) != 1:
        raise ShapeError(f"{where}: the inits must have the same number of rows")
    op = ScanOp(name, init, update, state, tag, attrs)
    return op.output(0) if len(state) == 1 else [op.output(k) for k in range(len(state))]


__all__ = ["ScanOp", "scan"]
