"""Rewrite narrow dot products to reduce a group of elements per step (the shape of the
CPU's dot-product instructions).

In: the tensors of a workload.
Out: the same tensors, where every compute of the form
    out[..] = sum_k acc(a[.., k]) * acc(b[.., k, ..])
with a, b bfloat16 and acc float32 (group g = 2, vdpbf16ps), or one of a, b uint8 and the
other int8 and acc int32 (g = 4, AVX512-VNNI's vpdpbusd), and an extent of k that g divides
(k read with coefficient 1 in the last index of one operand), becomes
    out[..] = sum_kk (acc(a[.., g*kk]) * acc(b[.., g*kk, ..]) + ...
                      + acc(a[.., g*kk+g-1]) * acc(b[.., g*kk+g-1, ..]))
and every compute downstream is rebuilt to read the new tensor. Nothing else changes.
Why: the instructions multiply g adjacent narrow elements and add all g products into one
wide lane; with the group written out in the compute, any schedule that vectorizes a spatial
axis hands the C printer exactly that shape (codegen/c_bf16 and codegen/c_int8 emit the
instruction, or plain vector code on targets without it), so hand schedules, sketches and
the evolutionary search all get it for free.
"""

from __future__ import annotations

from . import expr as E
from .tensor import ComputeOp, Tensor

BF16 = "bfloat16"
INT8 = ("uint8", "int8")


def group_dot_reductions(tensors: list) -> list:
    """`tensors` with their narrow dot products grouped (unchanged when there are none)."""
    from ..schedule.dag import topo_ops
    ops = topo_ops([t.op for t in tensors if isinstance(t, Tensor)])
    if not any(_group_axis(op) is not None for op in ops):
        return list(tensors)
    new_of: dict = {}
    for op in ops:
        if isinstance(op, ComputeOp):
            rebuilt = _rebuild(op, new_of)
            if rebuilt is not op:
                new_of[id(op)] = rebuilt
    return [new_of[id(t.op)].output(t.value_index) if id(t.op) in new_of else t
            for t in tensors]


def _rebuild(op: ComputeOp, new_of: dict) -> ComputeOp:
    body = [E.transform(b, lambda n: _reread(n, new_of)) for b in op.body]
    found = _group_axis(op)
    if found is not None:
        body = [_grouped(body[0], *found)]
    if all(a is b for a, b in zip(body, op.body)):
        return op
    return ComputeOp(op.name, op.axis, body, op.tag, dict(op.attrs or {}))


def _reread(n: E.Expr, new_of: dict):
    if isinstance(n, E.TensorLoad) and id(n.tensor.op) in new_of:
        return E.TensorLoad(new_of[id(n.tensor.op)].output(n.tensor.value_index), n.indices)
    return None


GROUP = {BF16: 2, "uint8": 4, "int8": 4}  # elements per step, by operand dtype


def group_size(dtypes) -> int | None:
    """Elements per step of a dot product of loads of these two dtypes (None: no group)."""
    dtypes = sorted(dtypes)
    return GROUP[BF16] if dtypes == [BF16, BF16] else \
        GROUP["int8"] if dtypes == sorted(INT8) else None


def _factors(src: E.Expr):
    """(the two loads, group size) when src = acc(load) * acc(load) of a narrow dot product."""
    if not (isinstance(src, E.BinOp) and src.op == "mul" and src.dtype in ("float32", "int32")):
        return None
    out = []
    for f in (src.a, src.b):
        if not (isinstance(f, E.Cast) and isinstance(f.value, E.TensorLoad)):
            return None
        out.append(f.value)
    g = group_size([ld.dtype for ld in out])
    want = "float32" if g == 2 else "int32"
    return (out, g) if g is not None and src.dtype == want else None


def _group_axis(op) -> tuple | None:
    """(reduce axis, group size), or None when op is not a narrow dot product."""
    if not isinstance(op, ComputeOp) or len(op.body) != 1:
        return None
    red = op.body[0]
    if not isinstance(red, E.Reduce) or red.combiner.name != "sum" or \
            red.condition is not None or red.init is not None:
        return None
    found = _factors(red.source)
    if found is None:
        return None
    loads, g = found
    for k in reversed(red.axis):
        ext = k.extent.value if isinstance(k.extent, E.IntImm) else None
        if ext and ext % g == 0 and \
                any(_is_var(ld.indices[-1], k) for ld in loads) and \
                all(_linear_once(ld, k) for ld in loads):
            return k, g
    return None


def _is_var(e: E.Expr, k: E.IterVar) -> bool:
    return isinstance(e, E.Var) and e.uid == k.uid


def _linear_once(ld: E.TensorLoad, k: E.IterVar) -> bool:
    """k appears in exactly one index of the load, as the whole index or in a sum."""
    uses = [i for i in ld.indices if k.uid in {v.uid for v in E.free_vars(i)}]
    return len(uses) == 1 and _affine_in(uses[0], k)


def _affine_in(e: E.Expr, k: E.IterVar) -> bool:
    if _is_var(e, k):
        return True
    return isinstance(e, E.BinOp) and e.op in ("add", "sub") and \
        (_affine_in(e.a, k) or _affine_in(e.b, k)) and \
        not (k.uid in {v.uid for v in E.free_vars(e.a)} and
             k.uid in {v.uid for v in E.free_vars(e.b)})


def _grouped(red: E.Reduce, k: E.IterVar, g: int) -> E.Reduce:
    """sum_k src(k) as sum_kk ((src(g*kk) + src(g*kk+1)) + ...): the group left-nested, as
    the C printer matches it."""
    kk = E.IterVar(k.extent.value // g, k.name, "reduce")
    base = E.binop("mul", kk, E.IntImm(g, "int32"))
    total = E.substitute(red.source, {k: base})
    for j in range(1, g):
        total = E.binop("add", total, E.substitute(red.source, {k: E.binop("add", base, j)}))
    axis = [kk if a is k else a for a in red.axis]
    return E.Reduce(red.combiner, total, axis)


__all__ = ["GROUP", "group_dot_reductions", "group_size"]
