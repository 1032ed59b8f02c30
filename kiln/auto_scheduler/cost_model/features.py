"""Per-store features of a lowered program: the input of the learned cost model.

In: a tir.PrimFunc (or States plus their task args, lowered here). Out: a float32 array of
shape (n_stores, N_FEATURES), one row per Store statement in program order, columns named by
FEATURE_NAMES. Why: the cost model (xgb.py) scores a program as the sum of per-store scores, so
each row describes one store site: its arithmetic, its loop context (vectorize / unroll /
parallel), its buffer accesses (bytes, cache lines, strides, reuse), the allocations around it
and its arithmetic intensity, in the spirit of Ansor's feature set (reimplemented here).

One walk of the statement tree; loop extents and index strides (an affine reading of each
flat index) are computed once per store; large magnitudes are scaled by log2(1 + x).
Deterministic: rows and columns depend only on the program.
"""

from __future__ import annotations

import math

import numpy as np

from ...tir import stmt as S
from .access import (
    ACCESS_FIELDS,
    TOP_LOADS,
    Access,
    access_features,
    elem_bytes,
    group_accesses,
    lg,
    linear_form,
)
from .opcount import OP_FIELDS, OP_SLOTS, count_ops, flops_of

# ---------------------------------------------------------------- feature names, beside the code

LOOP_FIELDS = [
    ("outer_prod", "log2(1+product of all enclosing loop extents): executions of the store"),
    ("num_loops", "number of enclosing loops"),
    ("innermost_extent", "log2(1+extent of the innermost enclosing loop)"),
    ("num_guards", "number of enclosing if-conditions (imperfect tiling, padding)"),
    ("reduce_loops", "enclosing loops (extent>1) whose var is absent from the store index"),
    ("reduce_prod", "log2(1+product of those loops' extents)"),
    ("is_init", "1 if the stored value reads no buffer (an initialisation)"),
]
_KINDS = (("vec", "vectorized"), ("unroll", "unrolled"), ("par", "parallel"))
for _short, _kind in _KINDS:
    LOOP_FIELDS += [
        (f"{_short}_len", f"log2(1+extent of the innermost {_kind} loop)"),
        (f"{_short}_prod", f"log2(1+product of the extents of all {_kind} loops)"),
        (f"{_short}_num", f"number of enclosing {_kind} loops"),
        (f"{_short}_depth", f"1-based depth from outside of the innermost {_kind} loop; 0: none"),
        (f"{_short}_inner_loops", f"loops nested inside the innermost {_kind} loop"),
    ]
LOOP_FIELDS += [
    ("autovec_len", "log2(1+extent) of the innermost of the 3 innermost serial loops along "
     "which the store has unit stride, outside any vectorized loop: one the C compiler may "
     "vectorize by itself (it does, and such nests can be fast); 0: none"),
    ("autovec_inner", "loops nested inside that loop"),
    ("par_launches", "log2(1+product of extents outside the outermost parallel loop)"),
    ("has_auto_unroll", "1 if an enclosing loop carries an auto_unroll_max_step pragma"),
    ("auto_unroll_max_step", "log2(1+largest auto_unroll_max_step value around the store)"),
    ("auto_unroll_full", "1 if the nest under that pragma has <= max_step iterations"),
]

ALLOC_FIELDS = [
    ("alloc_bytes", "log2(1+bytes of the stored buffer when it is a temporary)"),
    ("alloc_stack", "1 if the stored buffer is a stack temporary"),
    ("alloc_heap", "1 if the stored buffer is a heap temporary"),
    ("alloc_outer_prod", "log2(1+times that temporary is allocated: loops around its scope)"),
    ("scope_allocs", "number of allocations whose scope encloses the store"),
    ("scope_allocs_in_loops", "how many of those allocations sit inside a loop"),
    ("scope_alloc_bytes", "log2(1+total bytes of those allocations)"),
]

N_CURVE = 10
INTENSITY_FIELDS = [
    ("ai_whole", "log2(1+flops/unique bytes) over the whole nest"),
    ("ai_par", "log2(1+flops/unique bytes) of one iteration of the innermost parallel loop"),
] + [(f"ai_curve_{i}", f"intensity at nest level {i}/{N_CURVE - 1} (0: whole, 9: body)")
     for i in range(N_CURVE)]

_ACCESS_PREFIXES = ["store"] + [f"load{k}" for k in range(1, TOP_LOADS + 1)]
ACCESS_NAMES = [(f"{p}_{n}", d) for p in _ACCESS_PREFIXES for n, d in ACCESS_FIELDS]

FEATURE_DOCS: dict[str, str] = dict(
    [(f"op_{n}", d) for n, d in OP_FIELDS] + LOOP_FIELDS + ALLOC_FIELDS + INTENSITY_FIELDS
    + ACCESS_NAMES)
FEATURE_NAMES: list[str] = list(FEATURE_DOCS)
N_FEATURES: int = len(FEATURE_NAMES)


# ---------------------------------------------------------------- extraction

class _Loop:
    __slots__ = ("uid", "extent", "kind", "pragmas")

    def __init__(self, f: S.For):
        self.uid, self.kind, self.pragmas = f.var.uid, f.kind, f.pragmas
        self.extent = _extent(f.extent)


def _extent(e) -> int:
    v = getattr(e, "value", None)
    if isinstance(v, int):
        return max(v, 1)
    from ...tir.simplify import const_value
    v = const_value(e)
    return max(int(v), 1) if v is not None else 1


class _Extractor:
    """Walks a PrimFunc once, keeping the loop / guard / allocation stacks, one row per Store."""

    def __init__(self):
        self.loops: list[_Loop] = []
        self.guards: list[list] = []
        self.allocs: list[tuple] = []  # (buffer, loops around it, product of their extents)
        self.lets: dict = {}
        self.memo: dict = {}
        self.rows: list[list] = []
        self.n_exec: list[int] = []

    def visit(self, s: S.Stmt) -> None:
        t = type(s)
        if t is S.For:
            self.loops.append(_Loop(s))
            self.visit(s.body)
            self.loops.pop()
        elif t is S.SeqStmt:
            for x in s.stmts:
                self.visit(x)
        elif t is S.IfThenElse:
            counts = [0] * len(OP_SLOTS)
            count_ops(s.cond, counts, [])
            self.guards.append(counts)
            self.visit(s.then)
            if s.else_ is not None:
                self.visit(s.else_)
            self.guards.pop()
        elif t is S.Allocate:
            self.allocs.append((s.buffer, len(self.loops), _prod(lp.extent for lp in self.loops)))
            self.visit(s.body)
            self.allocs.pop()
        elif t is S.LetStmt:
            self.lets[s.var.uid] = linear_form(s.value, self.lets, self.memo)
            self.visit(s.body)
        elif t is S.Store:
            self.store(s)

    def store(self, s: S.Store) -> None:
        loops = self.loops
        suffix = [1] * (len(loops) + 1)
        for j in range(len(loops) - 1, -1, -1):
            suffix[j] = suffix[j + 1] * loops[j].extent
        counts, loads = [0] * len(OP_SLOTS), []
        count_ops(s.value, counts, loads)
        count_ops(s.index, counts, [])
        for g in self.guards:
            counts = [a + b for a, b in zip(counts, g, strict=True)]
        accs = group_accesses(s, loads, loops, self.lets, self.memo)
        store_coefs = accs[0].coefs
        row = [lg(c * suffix[0]) for c in counts]
        row += self.loop_features(loops, suffix, store_coefs, bool(loads))
        row += self.alloc_features(s.buffer)
        row += intensity_features(flops_of(counts), accs, loops, suffix)
        row += access_rows(accs, loops, suffix)
        self.rows.append(row)
        self.n_exec.append(suffix[0])

    def loop_features(self, loops, suffix, store_coefs, has_loads: bool) -> list:
        d = len(loops)
        red = [lp.extent for j, lp in enumerate(loops) if lp.extent > 1 and not store_coefs[j]]
        out = [lg(suffix[0]), d, lg(loops[-1].extent) if loops else 0.0, len(self.guards),
               len(red), lg(_prod(red)) if red else 0.0, 0.0 if has_loads else 1.0]
        for _, kind in _KINDS:
            pos = [j for j, lp in enumerate(loops) if lp.kind == kind]
            if pos:
                j = pos[-1]
                out += [lg(loops[j].extent), lg(_prod(loops[p].extent for p in pos)), len(pos),
                        j + 1, d - 1 - j]
            else:
                out += [0.0] * 5
        out += _autovec(loops, store_coefs)
        par = [j for j, lp in enumerate(loops) if lp.kind == "parallel"]
        out.append(lg(suffix[0] // suffix[par[0]]) if par else 0.0)
        steps = [(j, int(lp.pragmas["auto_unroll_max_step"])) for j, lp in enumerate(loops)
                 if lp.pragmas and "auto_unroll_max_step" in lp.pragmas]
        if steps:
            mx = max(v for _, v in steps)
            full = any(suffix[j] <= v for j, v in steps)
            out += [1.0, lg(mx), 1.0 if full else 0.0]
        else:
            out += [0.0, 0.0, 0.0]
        return out

    def alloc_features(self, buf: S.Buffer) -> list:
        own = next((a for a in reversed(self.allocs) if a[0] is buf), None)
        total = sum(a[0].size * elem_bytes(a[0].dtype) for a in self.allocs)
        in_loops = sum(1 for a in self.allocs if a[1] > 0)
        if own is not None:
            head = [lg(buf.size * elem_bytes(buf.dtype)), float(buf.scope == "stack"),
                    float(buf.scope == "heap"), lg(own[2])]
        elif buf.scope != "global":
            head = [lg(buf.size * elem_bytes(buf.dtype)), float(buf.scope == "stack"),
                    float(buf.scope == "heap"), 0.0]
        else:
            head = [0.0] * 4
        return head + [len(self.allocs), in_loops, lg(total)]


def _autovec(loops, store_coefs) -> list:
    if any(lp.kind == "vectorized" for lp in loops):
        return [0.0, 0.0]
    d = len(loops)
    cand = [j for j in range(max(0, d - 3), d) if store_coefs[j] == 1
            and loops[j].kind != "parallel" and loops[j].extent >= 4]
    return [lg(loops[cand[-1]].extent), d - 1 - cand[-1]] if cand else [0.0, 0.0]


def _prod(xs) -> int:
    out = 1
    for x in xs:
        out *= x
    return out


def intensity_features(flops: int, accs: list[Access], loops: list, suffix: list) -> list:
    """flops / unique bytes at each nest level, the whole nest first, sampled into a curve."""
    d = len(loops)

    def at(level: int) -> float:
        nbytes = sum(a.footprint[level] * a.eb for a in accs)
        return lg(flops * suffix[level] / nbytes) if nbytes and flops else 0.0

    par = [j for j, lp in enumerate(loops) if lp.kind == "parallel"]
    out = [at(0), at(par[-1] + 1) if par else 0.0]
    for i in range(N_CURVE):
        out.append(at(int(round(i * d / (N_CURVE - 1)))))
    return out


def access_rows(accs: list[Access], loops: list, suffix: list) -> list:
    """Features of the stored buffer, then of the TOP_LOADS loaded buffers by bytes touched."""
    loads = sorted(accs[1:], key=lambda a: -a.n_acc * a.eb)  # stable: ties keep program order
    out = access_features(accs[0], accs, loops, suffix)
    for a in loads[:TOP_LOADS]:
        out += access_features(a, accs, loops, suffix)
    out += [0.0] * (len(ACCESS_FIELDS) * (TOP_LOADS - min(len(loads), TOP_LOADS)))
    return out


def get_per_store_features(func: S.PrimFunc, max_stores: int | None = None) -> np.ndarray:
    """(n_stores, N_FEATURES) float32 features of `func`, one row per Store in program order.

    With `max_stores`, only the stores executed most often are kept (program order preserved).
    """
    ex = _Extractor()
    ex.visit(func.body)
    rows = ex.rows
    if max_stores is not None and len(rows) > max_stores:
        order = sorted(range(len(rows)), key=lambda i: -ex.n_exec[i])[:max_stores]
        rows = [rows[i] for i in sorted(order)]
    if not rows:
        return np.zeros((0, N_FEATURES), np.float32)
    out = np.asarray(rows, dtype=np.float64)
    np.nan_to_num(out, copy=False, posinf=0.0, neginf=0.0)
    return out.astype(np.float32)


def _features_of_state(state, task_args, max_stores: int | None) -> np.ndarray:
    from ...tir.lower import lower
    try:
        return get_per_store_features(lower(state, task_args), max_stores)
    except Exception:  # noqa: BLE001 - an unlowerable candidate just has no features
        return np.zeros((0, N_FEATURES), np.float32)


_FORK_JOB: tuple = ()


def _fork_worker(i: int) -> np.ndarray:
    states, args, max_stores = _FORK_JOB
    return _features_of_state(states[i], args, max_stores)


def get_per_store_features_from_states(states, task_args, n_jobs: int = 1,
                                       max_stores: int | None = None) -> list[np.ndarray]:
    """Lower each State with `task_args` and extract its features; a failure gives (0, N).

    n_jobs > 1 forks worker processes (Linux): states reach them through fork, never pickled.
    """
    states = list(states)
    if n_jobs <= 1 or len(states) < 4 * n_jobs:
        return [_features_of_state(s, task_args, max_stores) for s in states]
    global _FORK_JOB
    import multiprocessing as mp
    _FORK_JOB = (states, task_args, max_stores)
    try:
        with mp.get_context("fork").Pool(n_jobs) as pool:
            chunk = max(1, math.ceil(len(states) / (4 * n_jobs)))
            return pool.map(_fork_worker, range(len(states)), chunksize=chunk)
    except (OSError, ValueError):
        return [_features_of_state(s, task_args, max_stores) for s in states]
    finally:
        _FORK_JOB = ()
