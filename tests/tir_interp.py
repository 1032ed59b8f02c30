"""A slow, obviously-correct interpreter of the loop IR, used by tests as an oracle for lowering
independently of the C and CUDA code generators.

GPU functions (loops bound to blockIdx / threadIdx) run with SIMT semantics: per kernel and
block, every thread runs the kernel body as a generator that stops at each barrier; the block
advances all threads to the next barrier one thread after another, so a missing barrier shows
up as a read of a shared element nobody wrote yet (NaN) or one overwritten too early. Shared
buffers are per block, local buffers per thread, both filled with NaN when allocated."""

from __future__ import annotations

import itertools
import math
from collections import ChainMap

import numpy as np

from kiln.te import expr as E
from kiln.tir import gpu
from kiln.tir import stmt as S

_NP = {"float32": np.float32, "float64": np.float64, "int32": np.int32, "int64": np.int64,
       "bool": np.bool_, "int8": np.int8, "uint8": np.uint8}
_CALL = {"exp": math.exp, "log": math.log, "sqrt": math.sqrt, "tanh": math.tanh, "erf": math.erf,
         "floor": math.floor, "ceil": math.ceil, "abs": abs, "sin": math.sin, "cos": math.cos,
         "sigmoid": lambda x: 1 / (1 + math.exp(-x)), "rsqrt": lambda x: 1 / math.sqrt(x),
         "pow": math.pow, "round": round, "trunc": math.trunc, "log2": math.log2,
         "exp2": lambda x: 2.0 ** x}


def np_dtype(dtype: str):
    return _NP[dtype]


def itemsize(dtype: str) -> int:
    return np.dtype(_NP[dtype]).itemsize


def run(func: S.PrimFunc, *arrays, scalars=()):
    mem = {b.uid: a.reshape(-1) for b, a in zip(func.params, arrays)}
    env = {v: s for v, s in zip(func.scalar_params, scalars)}
    if gpu.is_gpu_func(func):
        _run_gpu(func, mem, env)
    else:
        _exec(func.body, mem, env)


def _fresh(buf: S.Buffer) -> np.ndarray:
    return np.full(max(buf.size, 1), np.nan if buf.dtype.startswith("float") else 0,
                   dtype=_NP[buf.dtype])


def _run_gpu(func, mem, env):
    kernels, workspace = gpu.split_kernels(func, None)
    for b in workspace:
        mem[b.uid] = _fresh(b)
    for k in kernels:
        run_kernel(k, mem, env)


def run_kernel(k, mem, env=None):
    """Run one gpu.Kernel over `mem` ({buffer uid: flat array}) with SIMT semantics."""
    env = env or {}
    for bz, by, bx in itertools.product(*(range(n) for n in reversed(k.grid))):
        shared = {}
        gens = []
        for tz, ty, tx in itertools.product(*(range(n) for n in reversed(k.block))):
            idx = {"blockIdx.x": bx, "blockIdx.y": by, "blockIdx.z": bz,
                   "threadIdx.x": tx, "threadIdx.y": ty, "threadIdx.z": tz}
            local = {}
            gens.append(_simt(k.body, ChainMap(local, shared, mem), dict(env), idx, shared))
        _lockstep(gens, k.name)


def _lockstep(gens, name):
    alive = gens
    while alive:
        waiting = []
        for g in alive:
            try:
                next(g)
                waiting.append(g)
            except StopIteration:
                pass
        assert not waiting or len(waiting) == len(alive), \
            f"{name}: some threads wait at a barrier while others have finished"
        alive = waiting


def _simt(s, mem, env, idx, shared):
    """Run statement s as one GPU thread; yields at every barrier."""
    if isinstance(s, S.SeqStmt):
        for x in s.stmts:
            yield from _simt(x, mem, env, idx, shared)
    elif isinstance(s, S.For) and s.kind == "thread":
        env[s.var] = idx[s.thread_tag]
        if env[s.var] < _ev(s.extent, mem, env):
            yield from _simt(s.body, mem, env, idx, shared)
    elif isinstance(s, S.For):
        for i in range(_ev(s.extent, mem, env)):
            env[s.var] = i
            yield from _simt(s.body, mem, env, idx, shared)
    elif isinstance(s, S.Allocate):
        if s.buffer.scope == "shared":  # one copy per block: the first thread allocates it
            if s.buffer.uid not in shared:
                shared[s.buffer.uid] = _fresh(s.buffer)
        else:
            mem.maps[0][s.buffer.uid] = _fresh(s.buffer)
        yield from _simt(s.body, mem, env, idx, shared)
    elif isinstance(s, S.IfThenElse):
        if _ev(s.cond, mem, env):
            yield from _simt(s.then, mem, env, idx, shared)
        elif s.else_ is not None:
            yield from _simt(s.else_, mem, env, idx, shared)
    elif isinstance(s, S.LetStmt):
        env[s.var] = _ev(s.value, mem, env)
        yield from _simt(s.body, mem, env, idx, shared)
    elif isinstance(s, S.Barrier):
        yield
    elif isinstance(s, S.AllReduce):  # every thread posts its value, waits, then combines
        seen = env.setdefault(("all_reduce", id(s)), 0)
        env[("all_reduce", id(s))] = seen + 1
        key = ("all_reduce", id(s), seen, idx["threadIdx.y"], idx["threadIdx.z"])
        shared.setdefault(key, {})[idx["threadIdx.x"]] = mem[s.src.uid][0].item()
        yield
        vals = shared[key]
        assert sorted(vals) == list(range(s.extent)), \
            f"all_reduce over {s.extent} threads reached by threads {sorted(vals)}"
        acc = vals[0]
        for lane in range(1, s.extent):
            acc = _ev(s.combined, mem, {**env, s.lhs: acc, s.rhs: vals[lane]})
        mem[s.dst.uid][0] = acc
    elif isinstance(s, S.LastBlock):
        yield  # all threads of the block arrive; blocks run one after another here
        key = ("last", id(s))
        if key not in shared:  # the block's first thread counts its arrival
            glob = mem.maps[-1]
            arrivals = glob.setdefault(("arrivals", id(s)), np.zeros(s.slots, np.int64))
            i = _ev(s.index, mem, env)
            assert 0 <= i < s.slots, f"arrival slot {i} out of range {s.slots}"
            arrivals[i] += 1
            shared[key] = arrivals[i] == s.count
            if shared[key]:
                arrivals[i] = 0
        if shared[key]:
            yield from _simt(s.body, mem, env, idx, shared)
    else:
        _exec(s, mem, env)


def _exec(s, mem, env):
    if isinstance(s, S.SeqStmt):
        for x in s.stmts:
            _exec(x, mem, env)
    elif isinstance(s, S.For):
        for i in range(_ev(s.extent, mem, env)):
            env[s.var] = i
            _exec(s.body, mem, env)
    elif isinstance(s, S.Store):
        buf = mem[s.buffer.uid]
        idx = _ev(s.index, mem, env)
        assert 0 <= idx < buf.size, f"store {s.buffer.name}[{idx}] out of bounds {buf.size}"
        buf[idx] = _ev(s.value, mem, env)
    elif isinstance(s, S.Allocate):
        mem[s.buffer.uid] = np.full(s.buffer.size, np.nan if s.buffer.dtype.startswith("float")
                                    else 0, dtype=_NP[s.buffer.dtype])
        _exec(s.body, mem, env)
    elif isinstance(s, S.IfThenElse):
        if _ev(s.cond, mem, env):
            _exec(s.then, mem, env)
        elif s.else_ is not None:
            _exec(s.else_, mem, env)
    elif isinstance(s, S.LetStmt):
        env[s.var] = _ev(s.value, mem, env)
        _exec(s.body, mem, env)
    else:
        raise TypeError(type(s))


def _ev(e, mem, env):
    if isinstance(e, E.Var):
        return env[e]
    if isinstance(e, (E.IntImm, E.FloatImm)):
        return e.value
    if isinstance(e, S.BufferLoad):
        buf = mem[e.buffer.uid]
        idx = _ev(e.index, mem, env)
        assert 0 <= idx < buf.size, f"load {e.buffer.name}[{idx}] out of bounds {buf.size}"
        return buf[idx].item()
    if isinstance(e, E.BinOp):
        a, b = _ev(e.a, mem, env), _ev(e.b, mem, env)
        f = E.is_float(e.dtype)
        return {"add": lambda: a + b, "sub": lambda: a - b, "mul": lambda: a * b,
                "div": lambda: a / b if f else a // b, "floordiv": lambda: a // b,
                "floormod": lambda: a % b, "min": lambda: min(a, b), "max": lambda: max(a, b),
                "and": lambda: bool(a) and bool(b), "or": lambda: bool(a) or bool(b)}[e.op]()
    if isinstance(e, E.Cmp):
        a, b = _ev(e.a, mem, env), _ev(e.b, mem, env)
        return {"lt": a < b, "le": a <= b, "gt": a > b, "ge": a >= b, "eq": a == b,
                "ne": a != b}[e.op]
    if isinstance(e, E.Not):
        return not _ev(e.a, mem, env)
    if isinstance(e, E.Select):
        return _ev(e.t, mem, env) if _ev(e.cond, mem, env) else _ev(e.f, mem, env)
    if isinstance(e, E.Cast):
        v = _ev(e.value, mem, env)
        return float(v) if E.is_float(e.dtype) else (bool(v) if e.dtype == "bool" else int(v))
    if isinstance(e, E.Call):
        return _CALL[e.name](*[_ev(a, mem, env) for a in e.args])
    raise TypeError(type(e))
