"""Loop and buffer arithmetic for lowering (lower.py): split extents, flat indices, padded
strides, GPU-bound split parts, value ranges and C-safe names.

In: loop summaries (Stage, Split), index expressions, shapes. Out: extents, expressions and
names. Why: kept beside the Lowerer so that lower.py holds the lowering walk itself.
"""

from __future__ import annotations

import re

from ..errors import LoweringError
from ..schedule.state import Fuse, Split, Stage
from ..te import expr as E
from ..te.tensor import THREAD_TAGS
from . import stmt as S
from .simplify import Simplifier


def dtype_bytes(dtype: str) -> int:
    return {"float64": 8, "int64": 8, "float16": 2, "bfloat16": 2, "int8": 1, "uint8": 1,
            "bool": 1}.get(dtype, 4)


def bound_ancestors(st: Stage) -> set:
    """Names of the loops (leaf or split / fused away) that a GPU-thread-bound loop derives
    from: their split parts keep the nominal length, so every block launches the same
    threads even where a tile is clipped by the edge of the tensor."""
    out = {it.name for it in st.iters if it.annotation in THREAD_TAGS
           and it.annotation != "vthread"}
    for rel in reversed(st.relations):
        if isinstance(rel, Split) and out.intersection(rel.outs):
            out.add(rel.parent)
            out.update(rel.outs[1:])
        elif isinstance(rel, Fuse) and rel.fused in out:
            out.update(rel.names)
    return out


def aligned_strides(shape: list, align: tuple) -> list:
    """Row-major strides where dim d's stride is padded up to factor * k + offset."""
    rule = {d: (f, o) for d, f, o in align}
    strides, acc = [], 1
    for d in reversed(range(len(shape))):
        if d in rule:
            f, o = rule[d]
            acc = acc + (o - acc) % f
        strides.append(acc)
        acc *= shape[d]
    return list(reversed(strides))


def split_extents(parent: int, rel: Split) -> dict:
    """Part extents, innermost first; a part never runs longer than what is left to cover,
    so a producer computed inside its consumer's tile has outer tile loops of extent 1."""
    out, rem = {}, parent
    for name, length in zip(reversed(rel.outs[1:]), reversed(rel.lengths)):
        out[name] = min(length, rem)
        rem = -(-rem // length)
    out[rel.outs[0]] = rem
    return out


def stmt_exprs(s: S.Stmt) -> list:
    if isinstance(s, S.Store):
        return [s.index, s.value]
    if isinstance(s, S.IfThenElse):
        return [s.cond]
    if isinstance(s, S.For):
        return [s.extent]
    if isinstance(s, S.LetStmt):
        return [s.value]
    if isinstance(s, S.LastBlock):
        return [s.index]
    if isinstance(s, S.CallPacked):
        return [a for a in s.args if isinstance(a, E.Expr)]
    if isinstance(s, S.Evaluate):
        return [s.value]
    return []


def flat_index(buf: S.Buffer, idx: list, dtype: str = "int32") -> E.Expr:
    out = None
    for i, stride in zip(idx, buf.strides):
        if dtype == "int64" and isinstance(i, E.Expr) and i.dtype != "int64":
            i = E.cast("int64", i)  # e.g. a gathered int32 row index times a wide stride
        t = i * stride if stride != 1 else i
        out = t if out is None else out + t
    return out if out is not None else E.IntImm(0)


def sum_exprs(items):
    out = None
    for x in items:
        out = x if out is None else out + x
    return out


def const_range(e: E.Expr, ranges: dict) -> tuple:
    """Inclusive bounds of e; an unknown bound counts as out of range (so it gets a guard)."""
    r = Simplifier(ranges).range_of(e)
    return (-1, 1 << 40) if r is None else r


def int_dim(d, name: str) -> int:
    if isinstance(d, E.IntImm):
        return d.value
    if isinstance(d, int):
        return d
    raise LoweringError(f"tensor {name} has a symbolic dimension {d}; kiln needs constant shapes")


def c_name(name: str, taken: set) -> str:
    base = re.sub(r"[^A-Za-z0-9_]", "_", name).strip("_") or "v"
    if base[0].isdigit():
        base = "v" + base
    cand, k = base, 1
    while cand in taken or cand in RESERVED:
        cand = f"{base}_{k}"
        k += 1
    taken.add(cand)
    return cand


RESERVED = {"int", "float", "double", "char", "for", "if", "else", "return", "void", "long",
             "short", "const", "static", "inline", "restrict", "main", "auto", "case", "default"}


def vector_minor_strides(st, shape: list) -> list | None:
    """Strides that make a temporary contiguous along the axis its innermost, vectorized
    loop walks, when that is not its last axis (a convolution's register tile vectorizes
    the output channels of an NCHW tile: the accumulators would sit a row apart, and every
    step of the reduction would gather and scatter them lane by lane, 3.7 GFLOPS for
    ResNet-50's 14x14 1x1 convolutions). None: row-major is right."""
    if not st.iters or st.iters[-1].annotation != "vectorize":
        return None
    name = st.iters[-1].name
    for rel in reversed(st.relations):
        if isinstance(rel, Split) and name == rel.outs[-1]:
            name = rel.parent
        elif isinstance(rel, Fuse) and name == rel.fused:
            return None
    dims = [a.name for a in st.compute.axis]
    if name not in dims or dims.index(name) == len(dims) - 1 or shape[dims.index(name)] <= 1:
        return None
    d = dims.index(name)
    order = [k for k in range(len(shape)) if k != d] + [d]
    strides, acc = [0] * len(shape), 1
    for k in reversed(order):
        strides[k] = acc
        acc *= int(shape[k])
    return strides


def index_dtype(stages) -> str:
    """int64 loop counters and index arithmetic when a tensor of the kernel has 2**31
    elements or more (an offset or a trip count could overflow int32), else int32, which
    keeps small kernels' address arithmetic cheap."""
    for st in stages:
        tensor = st.op.output(0)
        size = 1
        for d in tensor.shape:
            size *= int(d.value) if isinstance(d, E.IntImm) else int(d) if \
                isinstance(d, int) else 1
        for a in st.root_vars() if st.compute is not None else ():
            size = max(size, int(a.extent.value))
        if size > 2 ** 31 - 1:
            return "int64"
    return "int32"


def vector_roots(st) -> set:
    """Names of the root axes that the stage's vectorized loops are made of (through splits
    and fuses)."""
    todo = [it.name for it in st.iters if it.annotation == "vectorize"]
    out = set()
    while todo:
        name = todo.pop()
        rel = next((r for r in st.relations if name in (r.outs if isinstance(r, Split)
                                                           else (r.fused,))), None)
        if rel is None:
            out.add(name)
        else:
            todo.extend([rel.parent] if isinstance(rel, Split) else list(rel.names))
    return out

