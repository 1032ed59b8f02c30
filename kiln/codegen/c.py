"""PrimFunc -> one readable C11 translation unit (SIMD vector types + OpenMP).

In: a `tir.PrimFunc` and a `Target`.
Out: C source text with
  int32_t NAME(T* restrict A, ..., scalars)      the kernel; 0, or nonzero if a heap
                                                 allocation failed;
  int32_t NAME_packed(void** args)               the kernel called from an array of pointers
                                                 (buffers, then pointers to the scalars);
  int32_t NAME_time(void** args, int32_t number, int32_t repeat, double* out)
                                                 `repeat` averages of `number` calls, timed with
                                                 CLOCK_MONOTONIC (no Python overhead);
  const char* NAME__kiln_meta(void)              JSON: parameter names, shapes, dtypes, target;
  const char* kiln_module_entries(void)          JSON list of the kernels in the library.
Why: the one place loop IR becomes code; the runtime only needs these four symbols.
Loops print as written except: parallel -> `#pragma omp parallel for` (outermost level only),
unrolled -> expanded copies with constant indices (c_prep), vectorized -> vector blocks
(c_vector) or a scalar loop with the reason in a comment.
"""

from __future__ import annotations

import json
import re

from ..errors import CodegenError
from ..target import Target, as_target
from ..te import expr as E
from ..tir import stmt as S
from ..tir.lower_helpers import stmt_exprs
from .c_expr import ScalarPrinter, Scope
from .c_lib import BITS, VECTOR_DTYPES, CLib, ctype
from .c_prep import (
    LaneCombine,
    ScalarLoop,
    VecBlock,
    const_int,
    lane_combine,
    loop_range,
    prepare,
    steps,
)
from .c_vector import VectorPrinter

META_VERSION = 1
MAX_STACK_BYTES = 1 << 20  # larger "stack" buffers go to the heap (thread stacks are small)
_PRELUDE = """\
#define _POSIX_C_SOURCE 200112L
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
"""
_EXPORT = '__attribute__((visibility("default")))'


def render(func: S.PrimFunc, target: Target | str | None = None, module: bool = True) -> str:
    """The complete C source of `func` for `target`.

    With `module`, the text also defines `kiln_module_entries()` (a JSON list of the entry
    names) so the library is loadable on its own; leave it out when several rendered kernels
    are concatenated into one translation unit and add `module_entries(names)` once.
    """
    target = as_target(target)
    _check_params(func)
    body = prepare(func.body, target.vector_lanes("float32"))
    vregs = _vreg_candidates(body)
    imports = _imports(func)  # once: the printer may run again with fewer vector registers
    for _ in range(len(vregs) + 1):
        printer = FuncPrinter(func, target, body, vregs, imports)
        text = printer.render()
        if not printer.demoted:
            return text + (module_entries([c_name(func.name)]) if module else "")
        vregs = {k: w for k, w in vregs.items() if k not in printer.demoted}
    raise CodegenError("internal: vector-register planning did not converge")


def module_entries(names: list) -> str:
    """C text of `kiln_module_entries()`, the list of kernels a library holds."""
    lit = json.dumps(list(names)).replace("\\", "\\\\").replace('"', '\\"')
    return (f"\n{_EXPORT}\nconst char* kiln_module_entries(void) {{\n"
            f"  return \"{lit}\";\n}}\n")


def entry_symbols(name: str) -> dict:
    return {"kernel": name, "packed": f"{name}_packed", "time": f"{name}_time",
            "meta": f"{name}__kiln_meta"}


def c_name(name: str) -> str:
    """The C identifier a PrimFunc name becomes."""
    return Scope(CLib()).fresh(name)


def metadata(func: S.PrimFunc, target: Target) -> dict:
    written = _written(func.body)
    params = [{"name": b.name, "shape": [_dim(d) for d in b.shape], "dtype": b.dtype,
               "written": b.uid in written} for b in func.params]
    scalars = [{"name": v.name, "dtype": v.dtype} for v in func.scalar_params]
    meta = {"version": META_VERSION, "name": c_name(func.name), "target": str(target),
            "params": params, "scalar_params": scalars}
    calls = packed_calls(func.body)
    if calls:  # te.extern call sites, numbered in order: the runtime's callback reads these
        meta["packed_calls"] = [
            {"name": c.func_name,
             "args": [{"shape": [_dim(d) for d in a.shape], "dtype": a.dtype}
                      if isinstance(a, S.Buffer) else {"dtype": a.dtype} for a in c.args]}
            for c in calls]
    return meta


def packed_calls(body: S.Stmt) -> list:
    return [st for st in S.walk_stmts(body) if isinstance(st, S.CallPacked)]


# ---------------------------------------------------------------- checks and analyses

def _check_params(func: S.PrimFunc) -> None:
    for b in func.params:
        ctype(b.dtype)
    for v in func.scalar_params:
        ctype(v.dtype)
    names = [b.name for b in func.params] + [v.name for v in func.scalar_params]
    dup = {n for n in names if names.count(n) > 1}
    if dup:
        raise CodegenError(f"{func.name}: parameter names must be distinct, got {sorted(dup)}")


def _dim(d):
    n = const_int(E.convert(d))
    return n if n is not None else str(d)


def _written(body: S.Stmt) -> set:
    """Buffers the kernel may write (a packed call may write any buffer it is given)."""
    out = set()
    for st in S.walk_stmts(body):
        if isinstance(st, S.Store):
            out.add(st.buffer.uid)
        elif isinstance(st, S.CallPacked):
            out.update(a.uid for a in st.args if isinstance(a, S.Buffer))
        elif isinstance(st, S.Evaluate):  # an external call writes through its pointers
            out.update(n.buffer.uid for n in E.walk(st.value)
                       if isinstance(n, S.AccessPtr) and "w" in n.mask)
    return out


_LIBC = ("memcpy", "memmove", "memset")  # declared by the prelude's headers


def _imports(func: S.PrimFunc) -> str:
    """The C source of the schedule's pragma import_c, checked to define every function
    the kernel calls through tir.call_extern."""
    sources = func.attrs.get("import_c", [])
    calls = {n.name for st in S.walk_stmts(func.body) for e in stmt_exprs(st)
             for n in E.walk(e) if isinstance(n, S.CallExtern)}
    for name in sorted(calls):
        if name not in _LIBC and not any(re.search(rf"\b{name}\s*\(", c) for c in sources):
            raise CodegenError(f"{func.name}: tir.call_extern({name!r}) but no pragma "
                               "import_c defines it; give its C source with "
                               "s[C].pragma(axis, 'import_c', code)")
    return "\n".join(sources)


def walk_all(s: S.Stmt):
    """Every statement, including those inside VecBlock and ScalarLoop."""
    stack = [s]
    while stack:
        n = stack.pop()
        yield n
        if isinstance(n, VecBlock):
            stack.append(n.body)
        elif isinstance(n, ScalarLoop):
            stack.append(n.loop)
        else:
            stack.extend(reversed(S.stmt_children(n)))


def _vreg_candidates(body: S.Stmt) -> dict:
    """{buffer uid: lanes} for stack buffers that every vector block reads with one width."""
    widths: dict = {}
    for st in walk_all(body):
        if isinstance(st, VecBlock):
            for inner in walk_all(st.body):
                for buf in _buffers_touched(inner):
                    widths.setdefault(buf.uid, set()).add(st.width)
    out = {}
    for st in walk_all(body):
        if isinstance(st, S.Allocate) and st.buffer.scope == "stack":
            b = st.buffer
            w = widths.get(b.uid, set())
            if b.dtype in VECTOR_DTYPES and len(w) == 1 and b.size % next(iter(w)) == 0:
                out[b.uid] = next(iter(w))
    return out


def _buffers_touched(st: S.Stmt) -> list:
    exprs = []
    if isinstance(st, S.Store):
        exprs = [st.index, st.value]
    elif isinstance(st, S.LetStmt):
        exprs = [st.value]
    out = [st.buffer] if isinstance(st, S.Store) else []
    for e in exprs:
        out.extend(n.buffer for n in E.walk(e) if isinstance(n, S.BufferLoad))
    return out


# ---------------------------------------------------------------- printer

class FuncPrinter:
    """Prints one PrimFunc; `demoted` lists local buffers that could not be vector registers."""

    def __init__(self, func: S.PrimFunc, target: Target, body: S.Stmt, vregs: dict,
                 imports: str = ""):
        self.func, self.target, self.body, self.vregs = func, target, body, vregs
        self.imports = imports  # pragma import_c source, printed before the kernel
        self.lib = CLib()
        self.scope = Scope(self.lib)
        self.scope.on_scalar_access = self.scalar_access
        self.scalar = ScalarPrinter(self.scope)
        self.lines: list = []
        self.depth = 1
        self.in_parallel = False
        self.uses_heap = False
        self.calls = 0  # te.extern call sites printed so far
        self.demoted: set = set()
        self.bound: set = set()

    def scalar_access(self, buf: S.Buffer) -> None:
        if buf.uid in self.vregs:
            self.demoted.add(buf.uid)

    def line(self, text: str) -> None:
        self.lines.append("  " * self.depth + text)

    def render(self) -> str:
        name = self.fname = self.scope.fresh(self.func.name)
        for b in self.func.params:
            self.scope.name(b)
        for v in self.func.scalar_params:
            self.scope.name(v)
        self.stmt(self.body)
        meta = metadata(self.func, self.target)
        parts = [self.header(meta), _PRELUDE, self.lib.text(), self.imports,
                 self.kernel(name, meta),
                 self.packed(name), self.timer(name), self.meta_fn(name, meta)]
        return "\n".join(p for p in parts if p)

    # ------------------------------------------------------------ statements
    def stmt(self, s: S.Stmt) -> None:
        if isinstance(s, S.SeqStmt):
            for x in s.stmts:
                self.stmt(x)
        elif isinstance(s, S.For):
            self.loop(s)
        elif isinstance(s, VecBlock):
            self.vec_block(s)
        elif isinstance(s, ScalarLoop):
            self.line(f"/* {s.loop.var.name}: vectorized loop printed scalar: {s.reason} */")
            self.loop(s.loop, "#pragma GCC ivdep" if s.ivdep else None)
        elif isinstance(s, S.Store):
            self.store(s)
        elif isinstance(s, S.Allocate):
            self.allocate(s)
        elif isinstance(s, S.IfThenElse):
            self.if_(s)
        elif isinstance(s, S.LetStmt):
            self.let(s)
        elif isinstance(s, S.CallPacked):
            self.call_packed(s)
        elif isinstance(s, S.Evaluate):
            self.line(f"(void){self.scalar.wrap(s.value, 14)};")
        else:
            raise CodegenError(f"the C backend cannot print statement {type(s).__name__}")

    def call_packed(self, s: S.CallPacked) -> None:
        """A te.extern: the runtime's callback (set through NAME__kiln_set_hook) runs the
        Python function; a failure is kept in kiln_err and returned after the rest of the
        kernel has run and freed its memory (the outputs are then not used)."""
        site = self.calls
        self.calls += 1
        self.line("{")
        self.depth += 1
        ptrs = []
        for k, a in enumerate(s.args):
            if isinstance(a, S.Buffer):
                ptrs.append(f"(void*){self.scope.name(a)}")
                continue
            self.line(f"{ctype(a.dtype)} kiln_parg{k} = {self.scalar.expr(a)};")
            ptrs.append(f"(void*)&kiln_parg{k}")
        self.line(f"void* kiln_pargs[{max(len(ptrs), 1)}] = {{{', '.join(ptrs) or '0'}}};")
        hook = f"{self.fname}__kiln_hook"
        self.line(f"int32_t kiln_prc = {hook} ? {hook}({site}, kiln_pargs) : -7;")
        self.line("if (kiln_prc != 0) kiln_err = kiln_prc;")
        self.depth -= 1
        self.line("}")

    def loop(self, s: S.For, pragma: str | None = None) -> None:
        n = const_int(s.extent)
        if n is not None and n <= 0:
            return
        comb = lane_combine(s, self.scope.ranges) if pragma is None else None
        if comb is not None:
            self.lane_combine(comb)
            return
        name, t = self.scope.name(s.var), ctype(s.var.dtype)
        par = s.kind == "parallel" and not self.in_parallel
        if par:
            pragma = f"#pragma omp parallel for schedule(static) num_threads({self.target.cores})"
        elif s.kind == "parallel":
            self.line(f"/* {s.var.name}: nested parallel loop runs serially */")
        elif s.kind == "unrolled":
            # not expanded (too big): let GCC unroll only a bounded amount of code
            if n is None:
                pragma = "#pragma GCC unroll 8"
            else:
                pragma = f"#pragma GCC unroll {n if n * steps(s.body) <= 64 else 4}"
        if pragma:
            self.lines.append(pragma)
        ext = self.scalar.expr(s.extent)
        self.line(f"for ({t} {name} = 0; {name} < {ext}; ++{name}) {{")
        saved = self.scope.ranges
        self.scope.ranges = {**saved, s.var: loop_range(s.extent)}
        self.in_parallel, was = self.in_parallel or par, self.in_parallel
        self.block(s.body)
        self.in_parallel, self.scope.ranges = was, saved
        self.line("}")

    def lane_combine(self, c: LaneCombine) -> None:
        """dst = dst + (tree of src[base .. base+width)): one load, log2(width) steps."""
        dt, lib = c.store.buffer.dtype, self.scope.lib
        src = f"{lib.need('load', dt, c.width)}(&{self.scope.name(c.src)}[" \
              f"{self.scalar.expr(c.base)}])"
        dst = f"{self.scope.name(c.store.buffer)}[{self.scalar.expr(c.store.index)}]"
        self.line(f"{dst} = {dst} + {lib.need('hreduce', c.op, dt, c.width)}({src});")

    def block(self, s: S.Stmt) -> None:
        self.depth += 1
        self.stmt(s)
        self.depth -= 1

    def vec_block(self, s: VecBlock) -> None:
        self.line(f"{{  /* {s.source.name}: {s.width} lanes */")
        lines = VectorPrinter(self.scope, s, self.vregs, self.report).emit()
        self.depth += 1
        for text in lines:
            self.line(text)
        self.depth -= 1
        self.line("}")

    def report(self, buf: S.Buffer) -> None:
        self.demoted.add(buf.uid)

    def store(self, s: S.Store) -> None:
        self.scalar_access(s.buffer)
        name = self.scope.name(s.buffer)
        self.line(f"{name}[{self.scalar.expr(s.index)}] = {self.scalar.expr(s.value)};")

    def if_(self, s: S.IfThenElse) -> None:
        self.line(f"if ({self.scalar.expr(s.cond)}) {{")
        self.block(s.then)
        if s.else_ is not None:
            self.line("} else {")
            self.block(s.else_)
        self.line("}")

    def let(self, s: S.LetStmt) -> None:
        again = s.var.uid in self.bound
        self.bound.add(s.var.uid)
        if again:
            self.line("{")
            self.depth += 1
        name = self.scope.name(s.var)
        self.line(f"const {ctype(s.var.dtype)} {name} = {self.scalar.expr(s.value)};")
        saved = self.scope.ranges
        if E.is_int(s.var.dtype):
            r = self.scope.simplifier().range_of(s.value)
            if r is not None:
                self.scope.ranges = {**saved, s.var: r}
        self.stmt(s.body)
        self.scope.ranges = saved
        if again:
            self.depth -= 1
            self.line("}")

    def allocate(self, s: S.Allocate) -> None:
        """Declare the buffer (in its own block when unroll copies declare it again)."""
        again = ("buf", s.buffer.uid) in self.bound
        self.bound.add(("buf", s.buffer.uid))
        if again:
            self.line("{")
            self.depth += 1
        self.declare(s)
        if again:
            self.depth -= 1
            self.line("}")

    def declare(self, s: S.Allocate) -> None:
        b = s.buffer
        name, t = self.scope.name(b), ctype(b.dtype)
        nbytes = max(b.size, 1) * BITS[b.dtype] // 8 if b.dtype != "bool" else max(b.size, 1)
        if b.uid in self.vregs:
            w = self.vregs[b.uid]
            vt = self.lib.need("vtype", b.dtype, w)
            self.line(f"{vt} {name}[{b.size // w}];  /* {b.dtype}[{b.size}] in vector registers */")
            self.stmt(s.body)
        elif b.scope == "stack" and nbytes <= MAX_STACK_BYTES:
            self.line(f"{t} {name}[{max(b.size, 1)}] __attribute__((aligned(64)));")
            self.stmt(s.body)
        else:
            self.heap_allocate(s, name, t, nbytes)

    def heap_allocate(self, s: S.Allocate, name: str, t: str, nbytes: int) -> None:
        self.uses_heap = True
        size = (nbytes + 63) // 64 * 64
        self.line(f"{t}* restrict {name} = ({t}*)aligned_alloc(64, {size});")
        self.line(f"if ({name} == NULL) {{")
        if self.in_parallel:
            self.line("#pragma omp atomic write")
        self.line("  kiln_err = -1;")
        self.line("} else {")
        self.depth += 1
        self.stmt(s.body)
        self.line(f"free({name});")
        self.depth -= 1
        self.line("}")

    # ------------------------------------------------------------ function text
    def header(self, meta: dict) -> str:
        rows = [f" *   {p['name']}: {p['dtype']}{p['shape']}"
                f"{' (written)' if p['written'] else ''}" for p in meta["params"]]
        rows += [f" *   {p['name']}: {p['dtype']} (scalar)" for p in meta["scalar_params"]]
        return (f"/* Generated by kiln for target \"{meta['target']}\". Kernel "
                f"{meta['name']}, parameters:\n" + "\n".join(rows) + "\n */\n")

    def signature(self, name: str) -> str:
        written = _written(self.func.body)
        args = []
        for b in self.func.params:
            const = "" if b.uid in written else "const "
            args.append(f"{const}{ctype(b.dtype)}* restrict {self.scope.name(b)}")
        args += [f"{ctype(v.dtype)} {self.scope.name(v)}" for v in self.func.scalar_params]
        return f"int32_t {name}({', '.join(args) or 'void'})"

    def kernel(self, name: str, meta: dict) -> str:
        head = [_EXPORT, self.signature(name) + " {"]
        if self.calls:
            hook = f"{name}__kiln_hook"
            head = [f"static int32_t (*{hook})(int32_t, void**) = 0;", _EXPORT,
                    f"void {name}__kiln_set_hook(void* fp) {{",
                    f"  {hook} = (int32_t (*)(int32_t, void**))fp;", "}", ""] + head
        if self.uses_heap or self.calls:
            head.append("  int32_t kiln_err = 0;")
        tail = ["  return kiln_err;" if self.uses_heap or self.calls else "  return 0;",
                "}", ""]
        return "\n".join(head + self.lines + tail)

    def packed(self, name: str) -> str:
        args = []
        for i, b in enumerate(self.func.params):
            args.append(f"({ctype(b.dtype)}*)args[{i}]")
        for j, v in enumerate(self.func.scalar_params):
            args.append(f"*(const {ctype(v.dtype)}*)args[{len(self.func.params) + j}]")
        unused = "" if args else "  (void)args;\n"
        return (f"{_EXPORT}\nint32_t {name}_packed(void** args) {{\n{unused}"
                f"  return {name}({', '.join(args)});\n}}\n")

    def timer(self, name: str) -> str:
        return f"""{_EXPORT}
int32_t {name}_time(void** args, int32_t number, int32_t repeat, double* out_seconds_per_call) {{
  for (int32_t r = 0; r < repeat; ++r) {{
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    for (int32_t i = 0; i < number; ++i) {{
      int32_t rc = {name}_packed(args);
      if (rc != 0) {{
        return rc;
      }}
    }}
    clock_gettime(CLOCK_MONOTONIC, &t1);
    double sec = (double)(t1.tv_sec - t0.tv_sec) + 1e-9 * (double)(t1.tv_nsec - t0.tv_nsec);
    out_seconds_per_call[r] = sec / (double)number;
  }}
  return 0;
}}
"""

    def meta_fn(self, name: str, meta: dict) -> str:
        text = json.dumps(meta, separators=(",", ":"))
        lit = text.replace("\\", "\\\\").replace('"', '\\"')
        return (f"{_EXPORT}\nconst char* {name}__kiln_meta(void) {{\n"
                f"  return \"{lit}\";\n}}\n")


__all__ = ["render", "metadata", "module_entries", "entry_symbols", "c_name"]
