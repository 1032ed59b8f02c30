"""A slow, obviously-correct interpreter of the loop IR, used by tests as an oracle for lowering
independently of the C code generator."""

from __future__ import annotations

import math

import numpy as np

from kiln.te import expr as E
from kiln.tir import stmt as S

_NP = {"float32": np.float32, "float64": np.float64, "int32": np.int32, "int64": np.int64,
       "bool": np.bool_, "int8": np.int8, "uint8": np.uint8}
_CALL = {"exp": math.exp, "log": math.log, "sqrt": math.sqrt, "tanh": math.tanh, "erf": math.erf,
         "floor": math.floor, "ceil": math.ceil, "abs": abs, "sin": math.sin, "cos": math.cos,
         "sigmoid": lambda x: 1 / (1 + math.exp(-x)), "rsqrt": lambda x: 1 / math.sqrt(x),
         "pow": math.pow, "round": round, "trunc": math.trunc, "log2": math.log2,
         "exp2": lambda x: 2.0 ** x}


def run(func: S.PrimFunc, *arrays, scalars=()):
    mem = {b.uid: a.reshape(-1) for b, a in zip(func.params, arrays)}
    env = {v: s for v, s in zip(func.scalar_params, scalars)}
    _exec(func.body, mem, env)


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
