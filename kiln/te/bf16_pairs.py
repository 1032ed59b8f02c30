"""Rewrite bfloat16 dot products to reduce two elements per step (the vdpbf16ps shape).

In: the tensors of a workload.
Out: the same tensors, where every compute of the form
    out[..] = sum_k float32(a[.., k]) * float32(b[.., k, ..])      (a, b bfloat16)
with an even extent of k (read with coefficient 1 in the last index of one operand) becomes
    out[..] = sum_kk (float32(a[.., 2kk]) * float32(b[.., 2kk, ..])
                      + float32(a[.., 2kk+1]) * float32(b[.., 2kk+1, ..]))
and every compute downstream is rebuilt to read the new tensor. Nothing else changes.
Why: AVX512-BF16 multiplies bfloat16 pairs and adds both products into one float32 lane; with
the pair written out in the compute, any schedule that vectorizes a spatial axis hands the
C printer exactly that shape (codegen/c_bf16 emits the instruction, or plain FMAs on targets
without it), so hand schedules, sketches and the evolutionary search all get it for free.
"""

from __future__ import annotations

from . import expr as E
from .tensor import ComputeOp, Tensor

BF16 = "bfloat16"


def pair_bf16_reductions(tensors: list) -> list:
    """`tensors` with their bfloat16 dot products paired (unchanged when there are none)."""
    from ..schedule.dag import topo_ops
    ops = topo_ops([t.op for t in tensors if isinstance(t, Tensor)])
    if not any(_pair_axis(op) is not None for op in ops):
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
    k = _pair_axis(op)
    if k is not None:
        body = [_paired(body[0], k)]
    if all(a is b for a, b in zip(body, op.body)):
        return op
    return ComputeOp(op.name, op.axis, body, op.tag, dict(op.attrs or {}))


def _reread(n: E.Expr, new_of: dict):
    if isinstance(n, E.TensorLoad) and id(n.tensor.op) in new_of:
        return E.TensorLoad(new_of[id(n.tensor.op)].output(n.tensor.value_index), n.indices)
    return None


def _factors(src: E.Expr):
    if not (isinstance(src, E.BinOp) and src.op == "mul" and src.dtype == "float32"):
        return None
    out = []
    for f in (src.a, src.b):
        if not (isinstance(f, E.Cast) and isinstance(f.value, E.TensorLoad)
                and f.value.dtype == BF16):
            return None
        out.append(f.value)
    return out


def _pair_axis(op) -> E.IterVar | None:
    """The reduce axis to pair, or None when op is not a bfloat16 dot product."""
    if not isinstance(op, ComputeOp) or len(op.body) != 1:
        return None
    red = op.body[0]
    if not isinstance(red, E.Reduce) or red.combiner.name != "sum" or \
            red.condition is not None or red.init is not None:
        return None
    loads = _factors(red.source)
    if loads is None:
        return None
    for k in reversed(red.axis):
        ext = k.extent.value if isinstance(k.extent, E.IntImm) else None
        if ext and ext % 2 == 0 and ext >= 2 and \
                any(_is_var(ld.indices[-1], k) for ld in loads) and \
                all(_linear_once(ld, k) for ld in loads):
            return k
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


def _paired(red: E.Reduce, k: E.IterVar) -> E.Reduce:
    kk = E.IterVar(k.extent.value // 2, k.name, "reduce")
    two = E.IntImm(2, "int32")
    even = E.substitute(red.source, {k: E.binop("mul", kk, two)})
    odd = E.substitute(red.source, {k: E.binop("add", E.binop("mul", kk, two), 1)})
    axis = [kk if a is k else a for a in red.axis]
    return E.Reduce(red.combiner, E.binop("add", even, odd), axis)


__all__ = ["pair_bf16_reductions"]
