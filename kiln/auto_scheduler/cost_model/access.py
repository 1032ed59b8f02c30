"""Buffer-access features of one store: bytes, cache lines, strides, reuse, vector access kind.

In: a Store, the BufferLoads of its value and the enclosing loops (outermost first, with
extents). Out: one Access per buffer touched (the stored buffer first), and for each the
ACCESS_FIELDS values. Why: memory behaviour decides most of a CPU kernel's speed; the cost model
sees it through these estimates, computed from an affine reading of each flat index (the
coefficient of every loop var), never by enumerating iterations.
"""

from __future__ import annotations

import math

from ...te import expr as E
from ...tir.stmt import Store

TOP_LOADS = 5
LINE_BYTES = 64

ACCESS_FIELDS = [
    ("is_read", "1 if the buffer is only read"),
    ("is_write", "1 if the buffer is only written"),
    ("is_rw", "1 if the buffer is read and written by the store"),
    ("bytes", "log2(1+bytes touched by all executions)"),
    ("unique_bytes", "log2(1+distinct bytes touched, from index ranges over the loops)"),
    ("lines", "log2(1+64B cache lines touched, from the innermost index-changing loop)"),
    ("unique_lines", "log2(1+distinct 64B cache lines touched)"),
    ("reuse_loop", "1 if an enclosing loop (extent>1) leaves the index unchanged"),
    ("reuse_serial", "1 if no such loop but the buffer is accessed twice per iteration"),
    ("reuse_none", "1 if there is no reuse"),
    ("reuse_dis_iter", "log2(1+iterations between reuses: product of extents inside the loop)"),
    ("reuse_dis_bytes", "log2(1+bytes this store touches between reuses)"),
    ("reuse_ct", "log2(1+times each element is reused)"),
    ("bytes_d_reuse_ct", "log2(1+bytes / reuse count)"),
    ("unique_bytes_d_reuse_ct", "log2(1+unique bytes / reuse count)"),
    ("lines_d_reuse_ct", "log2(1+lines / reuse count)"),
    ("unique_lines_d_reuse_ct", "log2(1+unique lines / reuse count)"),
    ("stride", "signed log2(1+|stride|) in elements along the innermost index-changing loop"),
    ("inner_stride", "signed log2(1+|stride|) along the innermost loop (0: invariant there)"),
    ("vec_contig", "1 if the innermost vectorized loop walks the buffer with stride 1"),
    ("vec_bcast", "1 if the index is invariant in the innermost vectorized loop"),
    ("vec_gather", "1 if the innermost vectorized loop walks it with another stride"),
    ("is_temp", "1 if the buffer is a temporary (stack / heap), not a function parameter"),
]

_ELEM_BYTES = {"bool": 1, "int8": 1, "uint8": 1, "float16": 2, "bfloat16": 2, "int32": 4,
               "float32": 4, "int64": 8, "float64": 8}


def elem_bytes(dtype: str) -> int:
    return _ELEM_BYTES.get(dtype, 4)


def lg(x: float) -> float:
    """log2(1 + |x|), keeping the sign."""
    return math.log2(1.0 + x) if x >= 0 else -math.log2(1.0 - x)


def linear_form(e: E.Expr, lets: dict, memo: dict) -> dict:
    """{var uid: coefficient} of an index read as affine; div / mod / min / select approximated.

    x // c contributes coef / c per var of x; x % c and min / max / select keep their first
    operand's coefficients. Returned dicts are shared through `memo`: never mutate them.
    """
    key = id(e)
    hit = memo.get(key)
    if hit is not None:
        return hit[1]
    out = _linear(e, lets, memo)
    memo[key] = (e, out)  # keep e alive so its id stays unique
    return out


def _merge(a: dict, b: dict, sb: float = 1) -> dict:
    out = dict(a)
    for k, v in b.items():
        out[k] = out.get(k, 0) + sb * v
    return out


def _scale(a: dict, s: float) -> dict:
    return {k: v * s for k, v in a.items()}


def _linear(e: E.Expr, lets: dict, memo: dict) -> dict:
    t = type(e)
    if t is E.IntImm or t is E.FloatImm:
        return {}
    if isinstance(e, E.Var):
        return lets.get(e.uid) or {e.uid: 1}
    if t is E.BinOp:
        a, b, op = e.a, e.b, e.op
        if op in ("add", "sub"):
            return _merge(linear_form(a, lets, memo), linear_form(b, lets, memo),
                          1 if op == "add" else -1)
        if op == "mul":
            if type(b) is E.IntImm:
                return _scale(linear_form(a, lets, memo), b.value)
            if type(a) is E.IntImm:
                return _scale(linear_form(b, lets, memo), a.value)
            return _merge(linear_form(a, lets, memo), linear_form(b, lets, memo))
        if op == "floordiv" and type(b) is E.IntImm and b.value > 0:
            return _scale(linear_form(a, lets, memo), 1.0 / b.value)
        return linear_form(a, lets, memo)
    if t is E.Select:
        return linear_form(e.t, lets, memo)
    if t is E.Cast:
        return linear_form(e.value, lets, memo)
    return {}


class Access:
    """One buffer as the store sees it: per-loop index coefficients and footprints."""

    __slots__ = ("buf", "eb", "n_acc", "is_read", "is_write", "coefs", "footprint", "span")

    def __init__(self, buf, index, loops, lets: dict, memo: dict, is_write: bool):
        self.buf, self.eb = buf, elem_bytes(buf.dtype)
        self.n_acc, self.is_read, self.is_write = 1, not is_write, is_write
        lin = linear_form(index, lets, memo)
        self.coefs = [lin.get(lp.uid, 0) if lp.extent > 1 else 0 for lp in loops]
        d, size = len(loops), max(buf.size, 1)
        fp, span, prod = [1] * (d + 1), 0.0, 1
        for j in range(d - 1, -1, -1):
            c = self.coefs[j]
            if c:
                e = loops[j].extent
                span += abs(c) * (e - 1)
                prod *= e
            fp[j] = min(span + 1, prod, size)
        self.footprint, self.span = fp, min(span + 1, size)


def group_accesses(s: Store, loads: list, loops: list, lets: dict, memo: dict) -> list[Access]:
    """One Access per buffer: the stored buffer first, then loaded buffers in program order."""
    target = Access(s.buffer, s.index, loops, lets, memo, True)
    by_uid = {s.buffer.uid: target}
    out = [target]
    for ld in loads:
        acc = by_uid.get(ld.buffer.uid)
        if acc is None:
            acc = Access(ld.buffer, ld.index, loops, lets, memo, False)
            by_uid[ld.buffer.uid] = acc
            out.append(acc)
        elif acc is target:
            target.is_read = True
            target.n_acc += 1
        else:
            acc.n_acc += 1
    return out


def _lines(a: Access, loops: list, suffix: list) -> tuple:
    """(lines touched, unique lines, stride along the innermost index-changing loop)."""
    changing = [j for j, c in enumerate(a.coefs) if c]
    if not changing:
        return float(a.n_acc), 1.0, 0.0
    t = changing[-1]
    stride, ext = a.coefs[t], loops[t].extent
    step = abs(stride) * a.eb
    if step >= LINE_BYTES:
        per_sweep = ext
    else:
        per_sweep = min(ext, math.ceil(((ext - 1) * step + a.eb) / LINE_BYTES))
    lines = suffix[0] / suffix[t] * per_sweep * a.n_acc
    unique = min(a.footprint[0], math.ceil(a.span * a.eb / LINE_BYTES))
    return lines, max(unique, 1), stride


def _reuse(a: Access, accs: list, loops: list, suffix: list) -> tuple:
    """(kind one-hot, iterations between reuses, bytes between reuses, reuse count)."""
    d = len(loops)
    for j in range(d - 1, -1, -1):
        if loops[j].extent > 1 and not a.coefs[j]:
            nbytes = sum(b.footprint[j + 1] * b.eb for b in accs)
            return [1.0, 0.0, 0.0], suffix[j + 1], nbytes, loops[j].extent
    if a.n_acc > 1:
        return [0.0, 1.0, 0.0], 1, sum(b.eb for b in accs), a.n_acc
    return [0.0, 0.0, 1.0], 0, 0, 0


def _vec_kind(a: Access, loops: list) -> list:
    for j in range(len(loops) - 1, -1, -1):
        if loops[j].kind == "vectorized" and loops[j].extent > 1:
            c = a.coefs[j]
            return [float(abs(c) == 1), float(c == 0), float(c != 0 and abs(c) != 1)]
    return [0.0, 0.0, 0.0]


def access_features(a: Access, accs: list, loops: list, suffix: list) -> list:
    """The ACCESS_FIELDS values of `a` (accs: every access of the same store)."""
    rw = a.is_read and a.is_write
    kind = [float(a.is_read and not rw), float(a.is_write and not rw), float(rw)]
    nbytes = suffix[0] * a.n_acc * a.eb
    ubytes = a.footprint[0] * a.eb
    lines, ulines, stride = _lines(a, loops, suffix)
    rkind, dis_iter, dis_bytes, ct = _reuse(a, accs, loops, suffix)
    div = max(ct, 1)
    inner = next((a.coefs[j] for j in range(len(loops) - 1, -1, -1) if loops[j].extent > 1), 0)
    return (kind + [lg(nbytes), lg(ubytes), lg(lines), lg(ulines)] + rkind
            + [lg(dis_iter), lg(dis_bytes), lg(ct), lg(nbytes / div), lg(ubytes / div),
               lg(lines / div), lg(ulines / div), lg(stride), lg(inner)]
            + _vec_kind(a, loops) + [float(a.buf.scope != "global")])
