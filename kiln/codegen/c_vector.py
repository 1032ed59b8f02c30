"""SIMD C for one VecBlock: straight-line stores over `width` lanes, with GCC vector types.

In: a `VecBlock` (lane variable, width, body of Stores and LetStmts), the function's `Scope`
and the set of stack buffers currently held as arrays of vectors ("vector registers").
Out: C lines. Each subexpression is classified against the lane variable:
  invariant         -> scalar C, broadcast explicitly with kiln_splat_*;
  stride-1 load     -> one unaligned vector load (or a vector register of a local tile);
  stride-2 load     -> two vector loads ending at the last element read, one shuffle;
  a loaded index    -> the index computed as one vector, then read lane by lane (a table
                       lookup: the index expression is not evaluated once per lane);
  anything else     -> built lane by lane from scalar expressions (gather);
comparisons give integer masks, Select blends masks (lane by lane with scalar ternaries when
a branch may read out of its buffer, so out-of-range padding reads never happen), float32
transcendentals call the polynomial approximations of c_math. Stores are vector stores or
lane-by-lane scatters.
Why: explicit vectors make the SIMD code independent of the auto-vectorizer's mood, and a local
accumulator tile becomes named vector registers that GCC keeps in ymm/zmm registers.
"""

from __future__ import annotations

from ..errors import CodegenError
from ..te import expr as E
from ..tir import stmt as S
from ..tir.simplify import Lin, simplify, var_stride
from .c_bf16 import dot2_operands, split_dot2
from .c_expr import ScalarPrinter, Scope
from .c_int8 import dot4_operands, split_dot4
from .c_lib import BITS, MASK_DTYPE, VECTOR_DTYPES, ctype, mask_dtype, vtype_name
from .c_math import VECTOR_CALLS
from .c_prep import VecBlock

_OPS = {"add": "+", "sub": "-", "mul": "*", "div": "/", "lt": "<", "le": "<=", "gt": ">",
        "ge": ">=", "eq": "==", "ne": "!="}
_SPECIAL_F32 = ("exp", "log", "tanh", "erf", "sigmoid", "log2")


class VVal:
    """A value in vector code: scalar C text (vec=False) or vector C text; bool = mask."""

    __slots__ = ("code", "dtype", "vec", "bits")

    def __init__(self, code: str, dtype: str, vec: bool, bits: int = 0):
        self.code, self.dtype, self.vec, self.bits = code, dtype, vec, bits


class VectorPrinter:
    """Prints one VecBlock; reports accesses that keep a buffer out of vector registers."""

    def __init__(self, scope: Scope, block: VecBlock, vregs: dict, report):
        self.scope, self.block, self.vregs, self.report = scope, block, vregs, report
        self.lane, self.w = block.lane, block.width
        self.scalar = ScalarPrinter(scope)
        self.lines: list = []
        self.inline = 0
        self.temps: dict = {}
        self._varies: dict = {}
        self.ranges = {**scope.ranges, self.lane: (0, self.w - 1)}

    def emit(self) -> list:
        self.stmt(self.block.body)
        return self.lines

    # ------------------------------------------------------------ statements
    def stmt(self, s: S.Stmt) -> None:
        if isinstance(s, S.SeqStmt):
            for x in s.stmts:
                self.stmt(x)
        elif isinstance(s, S.LetStmt):
            self.let(s)
        elif isinstance(s, S.Store):
            self.store(s)
        else:
            raise CodegenError(f"internal: {type(s).__name__} inside a vector block")

    def let(self, s: S.LetStmt) -> None:
        if self.varies(s.value):
            body = S.map_exprs(s.body, lambda e: E.substitute(e, {s.var: s.value}))
            self.stmt(body)
            return
        name = self.scope.name(s.var)
        self.lines.append(f"const {ctype(s.var.dtype)} {name} = {self.scalar.expr(s.value)};")
        self.stmt(s.body)

    def store(self, s: S.Store) -> None:
        buf, dt = s.buffer, s.buffer.dtype
        val = self.as_storage(self.expr(s.value), dt)
        name = self.scope.name(buf)
        kind, info = self.access(buf, s.index)
        self.temps.clear()  # later loads may see this store
        if kind == "vreg":
            self.lines.append(f"{name}[{info}] = {val};")
        elif kind == "contig":
            fn = self.scope.lib.need("store", _storage(dt), self.w)
            self.lines.append(f"{fn}(&{name}[{info}], {val});")
        else:
            t = self.tmp(val, vtype_name(_storage(dt), self.w), force=True)
            self.lines.extend(f"{name}[{idx}] = {t}[{lane}];" for lane, idx in enumerate(info))

    # ------------------------------------------------------------ memory access
    def access(self, buf: S.Buffer, index: E.Expr, load: bool = False):
        """('vreg', k) | ('contig', base text) | ('pairs', (first, second) load texts of
        every second element) | ('lanes', [index text per lane])."""
        sim = self.simplifier()
        stride, rest = var_stride(sim.to_lin(index), self.lane, self.varies)
        if stride == 1:
            if buf.uid in self.vregs:
                return self.vreg_index(buf, rest)
            return "contig", self.scalar.expr(sim.from_lin(rest))
        if buf.uid in self.vregs:
            self.report(buf)
        elif stride == 2 and load and self.w >= 4 and BITS.get(buf.dtype) == 32:
            second = rest.copy()
            second.const += self.w - 1
            return "pairs", tuple(self.scalar.expr(sim.from_lin(b)) for b in (rest, second))
        return "lanes", [self.scalar.expr(self.at_lane(index, i)) for i in range(self.w)]

    def vreg_index(self, buf: S.Buffer, base: Lin):
        w = self.w
        ok = self.vregs[buf.uid] == w and base.const % w == 0 and \
            all(c % w == 0 for _, c in base.terms.values())
        if not ok:
            self.report(buf)
            return "vreg", "0"
        scaled = Lin({k: [a, c // w] for k, (a, c) in base.terms.items()}, base.const // w,
                     base.dtype)
        return "vreg", self.scalar.expr(self.simplifier().from_lin(scaled))

    def load(self, e: S.BufferLoad) -> VVal:
        dt = e.buffer.dtype
        name = self.scope.name(e.buffer)
        vt = vtype_name(_storage(dt), self.w)
        kind, info = ("lookup", None) if e.buffer.uid not in self.vregs and \
            self.loads_index(e.index) else \
            self.access(e.buffer, e.index, load=True)
        if kind == "lookup":
            code = self.lookup(name, e.index, _storage(dt), vt)
        elif kind == "vreg":
            code = f"{name}[{info}]"
        elif kind == "contig":
            fn = self.scope.lib.need("load", _storage(dt), self.w)
            code = self.tmp(f"{fn}(&{name}[{info}])", vt)
        elif kind == "pairs":
            code = self.tmp(self.pairs(name, *info, dt), vt)
        else:
            self.scope.lib.need("vtype", _storage(dt), self.w)
            elems = ", ".join(f"{name}[{idx}]" for idx in info)
            code = self.tmp(f"({vt}){{{elems}}}", vt)
        if dt == "bool":
            return VVal(f"({code} != 0)", "bool", True, 8)
        return VVal(code, dt, True)

    def lookup(self, name: str, index: E.Expr, dt: str, vt: str) -> str:
        """Lanes name[index] where the index reads memory (a table lookup): the index is
        computed once as a vector, then one hardware gather (32-bit elements) or lane reads."""
        iv = self.tmp(self.vec(self.expr(index), "int32"), vtype_name("int32", self.w),
                      force=True)
        if BITS.get(dt) == 32:
            return self.tmp(f"{self.scope.lib.need('gather', dt, self.w)}({name}, {iv})", vt)
        self.scope.lib.need("vtype", dt, self.w)
        elems = ", ".join(f"{name}[{iv}[{lane}]]" for lane in range(self.w))
        return self.tmp(f"({vt}){{{elems}}}", vt)

    def pairs(self, name: str, first: str, second: str, dt: str) -> str:
        """Lanes base[0], base[2], ..., base[2w - 2] (a stride-2 window: pooling, a stride-2
        convolution): two vector loads at `first` = base and `second` = base + w - 1, which
        end exactly at the last element read, so nothing
        outside what the lanes read is touched, and one two-source shuffle (vpermt2ps).
        Lane i < w/2 is element 2i of the first load, lane i >= w/2 element 2i - (w - 1) of
        the second (element 2i + 1 of the pair)."""
        w = self.w
        fn = self.scope.lib.need("load", _storage(dt), w)
        mt = self.scope.lib.need("vtype", MASK_DTYPE[32], w)
        idx = ", ".join(str(2 * i if i < w // 2 else 2 * i + 1) for i in range(w))
        return (f"__builtin_shuffle({fn}(&{name}[{first}]), {fn}(&{name}[{second}]), "
                f"({mt}){{{idx}}})")

    # ------------------------------------------------------------ expressions
    def expr(self, e: E.Expr) -> VVal:
        if not self.varies(e):
            return VVal(self.scalar.expr(e), e.dtype, False)
        if e.dtype not in VECTOR_DTYPES and e.dtype != "bool":
            raise CodegenError(f"the C backend cannot vectorize dtype {e.dtype}")
        if isinstance(e, E.Var):
            return self.iota(e)
        if isinstance(e, S.BufferLoad):
            return self.load(e)
        if isinstance(e, E.BinOp):
            return self.binop(e)
        if isinstance(e, E.Cmp) and e.a.dtype != "bool":
            a, b = self.expr(e.a), self.expr(e.b)
            code = f"({self.vec(a, e.a.dtype)} {_OPS[e.op]} {self.vec(b, e.a.dtype)})"
            return VVal(code, "bool", True, BITS[e.a.dtype])
        if isinstance(e, E.Not):
            a = self.expr(e.a)
            return VVal(f"(~{self.mask(a, a.bits)})", "bool", True, a.bits)
        if isinstance(e, E.Select):
            return self.select(e)
        if isinstance(e, E.Cast):
            return self.cast(e)
        if isinstance(e, E.Call) and e.name in VECTOR_CALLS and \
                e.dtype in ("float32", "float64", "int32", "int64"):
            return self.call(e)
        return self.lanes(e)

    def iota(self, v: E.Var) -> VVal:
        if v is not self.lane:
            raise CodegenError(f"internal: variable {v.name} varies inside a vector block")
        vt = self.scope.lib.need("vtype", v.dtype, self.w)
        return VVal(f"(({vt}){{{', '.join(str(i) for i in range(self.w))}}})", v.dtype, True)

    def binop(self, e: E.BinOp) -> VVal:
        dt, op = e.dtype, e.op
        if op in ("and", "or"):
            a, b = self.expr(e.a), self.expr(e.b)
            bits = max(a.bits, b.bits, 8)
            sym = "&" if op == "and" else "|"
            return VVal(f"({self.mask(a, bits)} {sym} {self.mask(b, bits)})", "bool", True, bits)
        if dt == "bool":
            return self.lanes(e)
        if op == "add":
            dot = self.dot2(e) if dt == "float32" else self.dot4(e)
            if dot is not None:
                return dot
        a, b = self.vec(self.expr(e.a), dt), self.vec(self.expr(e.b), dt)
        if op in _OPS:
            return VVal(f"({a} {_OPS[op]} {b})", dt, True)
        if op in ("min", "max"):
            fn = self.scope.lib.need(f"v{op}_nan", dt, self.w)  # NaN in, NaN out (NumPy)
            return VVal(f"{fn}({a}, {b})", dt, True)
        if E.is_float(dt):  # floormod (float floordiv arrives as floor(a / b))
            a, b = self.tmp(a, vtype_name(dt, self.w)), self.tmp(b, vtype_name(dt, self.w))
            fl = self.scope.lib.need("vcall", "floor", dt, self.w)
            return VVal(f"({a} - {fl}({a} / {b}) * {b})", dt, True)
        plain = isinstance(e.b, E.IntImm) and e.b.value > 0 and self.nonneg(e.a)
        if plain:
            return VVal(f"({a} {'/' if op == 'floordiv' else '%'} {b})", dt, True)
        return VVal(f"{self.scope.lib.need('v' + op, dt, self.w)}({a}, {b})", dt, True)

    def dot2(self, e: E.BinOp) -> VVal | None:
        """acc + a0*b0 + a1*b1 over bfloat16 pairs as one pair dot product (vdpbf16ps)."""
        return self._dot(e, split_dot2, dot2_operands, "dot2_bf16", "float32")

    def dot4(self, e: E.BinOp) -> VVal | None:
        """acc + four uint8 x int8 products as one byte dot product (vpdpbusd)."""
        return self._dot(e, split_dot4, dot4_operands, "dot4_u8i8", "int32")

    def _dot(self, e: E.BinOp, split, operands, helper: str, acc_dtype: str) -> VVal | None:
        hit = split(e)
        if hit is None:
            return None
        ops = operands(self, hit[1])
        if ops is None:
            return None
        acc = self.vec(self.expr(hit[0]), acc_dtype)
        fn = self.scope.lib.need(helper, self.w)
        return VVal(f"{fn}({acc}, {ops[0]}, {ops[1]})", acc_dtype, True)

    def select(self, e: E.Select) -> VVal:
        dt = e.dtype
        if dt == "bool":
            return self.lanes(e)
        if not self.varies(e.cond):
            cond = self.scalar.expr(e.cond)
            self.inline += 1
            t, f = self.vec(self.expr(e.t), dt), self.vec(self.expr(e.f), dt)
            self.inline -= 1
            return VVal(f"({cond} ? {t} : {f})", dt, True)
        if not (self.in_bounds(e.t) and self.in_bounds(e.f)):
            return self.lanes(e)
        c = self.mask(self.expr(e.cond), BITS[dt])
        t, f = self.vec(self.expr(e.t), dt), self.vec(self.expr(e.f), dt)
        return VVal(f"{self.scope.lib.need('sel', dt, self.w)}({c}, {t}, {f})", dt, True)

    def cast(self, e: E.Cast) -> VVal:
        src, dt = self.expr(e.value), e.dtype
        if dt == "bool":
            if src.dtype == "bool":
                return src
            zero = self.vec(VVal("0", src.dtype, False), src.dtype)
            return VVal(f"({self.vec(src, src.dtype)} != {zero})", "bool", True,
                        BITS[src.dtype])
        if src.dtype == "bool":
            one, zero = (self.vec(VVal(x, dt, False), dt) for x in ("1", "0"))
            sel = self.scope.lib.need("sel", dt, self.w)
            return VVal(f"{sel}({self.mask(src, BITS[dt])}, {one}, {zero})", dt, True)
        if "bfloat16" in (dt, src.dtype):
            return self.cast_bf16(src, dt)
        vt = self.scope.lib.need("vtype", dt, self.w)
        code = self.vec(src, src.dtype)
        if E.is_float(src.dtype) and dt in ("int8", "uint8"):
            # through int32: GCC 12 converts float vectors to narrow integers lane by lane
            # (16 scalar cvttss2si); to int32 and then narrowed it is two instructions
            i32 = self.scope.lib.need("vtype", "int32", self.w)
            code = f"__builtin_convertvector({code}, {i32})"
        return VVal(f"__builtin_convertvector({code}, {vt})", dt, True)

    def cast_bf16(self, src: VVal, dt: str) -> VVal:
        """Conversions to and from bfloat16 go through float32 (c_bf16 helpers)."""
        code = self.vec(src, src.dtype)
        if src.dtype == "bfloat16":
            code = f"{self.scope.lib.need('vcvt_from_bf16', self.w)}({code})"
        elif src.dtype != "float32":
            code = f"__builtin_convertvector({code}, {vtype_name('float32', self.w)})"
        if dt == "bfloat16":
            return VVal(f"{self.scope.lib.need('vcvt_to_bf16', self.w)}({code})", dt, True)
        if dt != "float32":
            vt = self.scope.lib.need("vtype", dt, self.w)
            code = f"__builtin_convertvector({code}, {vt})"
        return VVal(code, dt, True)

    def call(self, e: E.Call) -> VVal:
        if e.dtype in ("int32", "int64") and e.name != "abs":
            return self.lanes(e)
        fn = self.scope.lib.need("vcall", e.name, e.dtype, self.w)
        args = ", ".join(self.vec(self.expr(a), e.dtype) for a in e.args)
        code = f"{fn}({args})"
        if e.dtype == "float32" and e.name in _SPECIAL_F32:
            code = self.tmp(code, vtype_name(e.dtype, self.w))
        return VVal(code, e.dtype, True)

    def lanes(self, e: E.Expr) -> VVal:
        """Build the vector lane by lane from scalar C (correct for anything)."""
        parts = [self.scalar.expr(self.at_lane(e, i)) for i in range(self.w)]
        if e.dtype == "bool":
            vt = self.scope.lib.need("vtype", "int32", self.w)
            elems = ", ".join(f"({p}) ? -1 : 0" for p in parts)
            return VVal(self.tmp(f"({vt}){{{elems}}}", vt), "bool", True, 32)
        vt = self.scope.lib.need("vtype", _storage(e.dtype), self.w)
        return VVal(self.tmp(f"({vt}){{{', '.join(parts)}}}", vt), e.dtype, True)

    # ------------------------------------------------------------ conversions
    def vec(self, v: VVal, dtype: str) -> str:
        """Vector C text of v (scalars broadcast explicitly)."""
        if v.vec:
            return v.code
        if v.dtype == "bool":
            raise CodegenError("internal: scalar bool used as a vector value")
        fn = self.scope.lib.need("splat", dtype, self.w)
        return self.tmp(f"{fn}({v.code})", vtype_name(dtype, self.w))

    def mask(self, v: VVal, bits: int) -> str:
        mt = MASK_DTYPE[bits]
        vt = self.scope.lib.need("vtype", mt, self.w)
        if not v.vec:
            fn = self.scope.lib.need("splat", mt, self.w)
            return self.tmp(f"{fn}(({v.code}) ? -1 : 0)", vt)
        if v.bits == bits:
            return v.code
        return f"__builtin_convertvector({v.code}, {vt})"

    def as_storage(self, v: VVal, dtype: str) -> str:
        if dtype != "bool":
            return self.vec(v, dtype)
        vt = self.scope.lib.need("vtype", "uint8", self.w)
        if v.dtype == "bool":
            return f"(__builtin_convertvector({self.mask(v, v.bits or 8)}, {vt}) & 1)"
        return f"__builtin_convertvector({self.vec(v, v.dtype)} != 0, {vt}) & 1"

    # ------------------------------------------------------------ utilities
    def tmp(self, code: str, vt: str, force: bool = False) -> str:
        """Name `code` as a const temporary (reused while no store intervenes)."""
        if self.inline and not force:
            return code
        if (code, vt) in self.temps:
            return self.temps[(code, vt)]
        name = self.scope.fresh("vt")
        self.lines.append(f"const {vt} {name} = {code};")
        self.temps[(code, vt)] = name
        return name

    def varies(self, e: E.Expr) -> bool:
        hit = self._varies.get(id(e))
        if hit is not None and hit[0] is e:
            return hit[1]
        out = self.lane in E.free_vars(e)
        self._varies[id(e)] = (e, out)
        return out

    def loads_index(self, index: E.Expr) -> bool:
        """Whether a lane-varying index reads memory itself (a table lookup's index)."""
        return index.dtype == "int32" and any(
            isinstance(n, S.BufferLoad) and self.varies(n) for n in E.walk(index))

    def in_bounds(self, e: E.Expr) -> bool:
        """Whether every load in e stays inside its buffer on every lane, whatever a select's
        condition says (then both branches load as vectors and blend; otherwise a branch may
        guard a read out of range, as a convolution's padding does, and runs lane by lane).
        A causal mask's `where(mask, scores * scale, -inf)` reads the register tile: a blend."""
        sim = self.simplifier()
        for n in E.walk(e):
            if isinstance(n, S.BufferLoad):
                r = sim.range_of(n.index)
                if r is None or r[0] < 0 or r[1] >= n.buffer.size:
                    return False
        return True

    def simplifier(self):
        from ..tir.simplify import Simplifier
        return Simplifier(self.ranges)

    def nonneg(self, e: E.Expr) -> bool:
        r = self.simplifier().range_of(e)
        return r is not None and r[0] >= 0

    def at_lane(self, e: E.Expr, i: int) -> E.Expr:
        return simplify(E.substitute(e, {self.lane: E.IntImm(i, self.lane.dtype)}),
                        self.scope.ranges)


def _storage(dtype: str) -> str:
    return "uint8" if dtype == "bool" else dtype


__all__ = ["VectorPrinter", "mask_dtype"]
