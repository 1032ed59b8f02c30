"""PrimFunc -> CUDA C++ source (one __global__ function per kernel) and its launch plan.

In: a `tir.PrimFunc` lowered from a GPU schedule (loops bound to blockIdx / threadIdx) and a
CUDA `Target`.
Out: `render(func, target)` -> source text that NVRTC compiles (no headers needed: the few
types and constants it uses are defined in the prelude); `launch_plan(func, target)` -> the
JSON-able description the runtime launches from (kernels with grid, block and arguments;
workspace sizes; parameter shapes and dtypes; the target string).
Why: the CUDA half of the one code-generation seam. Expressions print through the C printer's
`ScalarPrinter` (C and CUDA agree on scalar syntax), and the C printer's helper library is
reused as is: NVRTC's -default-device makes its plain `static inline` functions device code.
Every kernel starts with KILN_GRID_DEPENDENCY() (sm_90: griddepcontrol.wait, then
launch_dependents), so a model's graph may launch each kernel while the one before it drains
(programmatic dependent launch, runtime.cuda.Function.launch(overlap=True)).
What differs from C is here: a loop bound to a thread index is not a loop but the index itself
(`const int tx = threadIdx.x;`), shared and local buffers are `__shared__` / per-thread arrays,
barriers print as `__syncthreads()`, unrolled and vectorized loops are `#pragma unroll` loops
(NVRTC keeps fully unrolled local arrays in registers), and a vectorized copy of 2 or 4
float32s whose both ends are provably aligned becomes one float2 / float4 access.
"""

from __future__ import annotations

from ..errors import CodegenError
from ..target import Target, as_target
from ..te import expr as E
from ..tir import gpu
from ..tir import stmt as S
from ..tir.simplify import simplify
from .c import FuncPrinter, metadata
from .c_expr import ScalarPrinter, Scope
from .c_lib import CLib, ctype
from .c_prep import _normalize, const_int, loop_range
from .cuda_mma import mma_tiles
from .cuda_pipeline import pipeline_fetches

PLAN_VERSION = 1
_PRELUDE = """\
typedef signed char int8_t;
typedef unsigned char uint8_t;
typedef int int32_t;
typedef long long int64_t;
#define INT64_C(c) c##LL
#define INFINITY __int_as_float(0x7f800000)
#define NAN __int_as_float(0x7fffffff)
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
#define KILN_GRID_DEPENDENCY() asm volatile("griddepcontrol.wait;" ::: "memory"); \
  asm volatile("griddepcontrol.launch_dependents;" :::)
#else
#define KILN_GRID_DEPENDENCY()
#endif
"""
_VEC = {("float32", 4): "float4", ("float32", 2): "float2", ("int32", 4): "int4",
        ("int32", 2): "int2"}


_MMA_HELPERS = """\
#ifndef KILN_MMA_TF32
#define KILN_MMA_TF32
// x ~ hi + lo in TF32: hi its first 10 mantissa bits, lo those of the rest (exact in float32);
// what lo drops is ~2^-21 of x. Truncation, not rounding: one instruction each (rounding hi
// costs one more per value, 20% of the loop, for 1e-7 instead of 3.5e-7 relative error)
#define KILN_TF32_SPLIT(x, hi, lo) const unsigned int hi = __float_as_uint(x) & 0xffffe000u; \\
  const unsigned int lo = __float_as_uint((x) - __uint_as_float(hi)) & 0xffffe000u
static __device__ __forceinline__ void kiln_mma_tf32(float &c0, float &c1, float &c2, float &c3,
                                                     unsigned int a0, unsigned int a1,
                                                     unsigned int a2, unsigned int a3,
                                                     unsigned int b0, unsigned int b1) {
  asm volatile("mma.sync.aligned.m16n8k8.row.col.f32.tf32.tf32.f32 "
               "{%0, %1, %2, %3}, {%4, %5, %6, %7}, {%8, %9}, {%0, %1, %2, %3};"
               : "+f"(c0), "+f"(c1), "+f"(c2), "+f"(c3)
               : "r"(a0), "r"(a1), "r"(a2), "r"(a3), "r"(b0), "r"(b1));
}
#endif"""


def device_body(body: S.Stmt) -> S.Stmt:
    """A kernel body as the printer prints it (and the emulated GPU runs it): cooperative
    fetches pipelined, tensor-core nests as MmaTiles."""
    return mma_tiles(pipeline_fetches(body))


def render(func: S.PrimFunc, target: Target | str | None = None) -> str:
    """The CUDA source of every kernel of `func`, each `extern "C" __global__`."""
    return render_many([func], target)


def render_many(funcs: list, target: Target | str | None = None) -> str:
    """One translation unit with the kernels of several functions (names must differ):
    the prelude and the helper library appear once, so a whole model is one NVRTC call."""
    target = as_target(target)
    if target.kind != "cuda":
        raise CodegenError(f"cuda.render needs a cuda target, got {target}")
    lib, texts, count = CLib(), [], 0
    for func in funcs:
        if func.scalar_params:
            raise CodegenError(f"{func.name}: scalar parameters "
                               f"({', '.join(v.name for v in func.scalar_params)}) are not "
                               "supported by the CUDA backend yet; use constant shapes")
        kernels, _ = gpu.split_kernels(func, target)
        texts += [KernelPrinter(k, lib, target).render() for k in kernels]
        count += len(kernels)
    names = ", ".join(f.name for f in funcs[:3]) + (", ..." if len(funcs) > 3 else "")
    head = f"// Generated by kiln for target \"{target}\": {names}; {count} kernel(s)\n"
    return "\n".join([head + _PRELUDE, lib.text(), *texts])


def launch_plan(func: S.PrimFunc, target: Target | str | None = None) -> dict:
    """What the runtime needs to run `func`: parameters, workspace, kernels in launch order."""
    target = as_target(target)
    kernels, workspace = gpu.split_kernels(func, target)
    param_idx = {b.uid: i for i, b in enumerate(func.params)}
    ws_idx = {b.uid: j for j, b in enumerate(workspace)}
    meta = metadata(func, target)
    meta["version"] = PLAN_VERSION
    meta["workspace"] = [{"name": b.name, "nbytes": gpu.nbytes(b)} for b in workspace]
    meta["kernels"] = [{
        "name": k.name, "grid": list(k.grid), "block": list(k.block), "shared_bytes": 0,
        "static_shared_bytes": k.shared_bytes,
        "args": [["param", param_idx[b.uid]] if b.uid in param_idx else ["workspace",
                                                                          ws_idx[b.uid]]
                 for b in k.buffers]} for k in kernels]
    return meta


class KernelPrinter(FuncPrinter):
    """Prints one gpu.Kernel as an `extern "C" __global__` function. The statement walk,
    stores, conditions and lets are the C printer's; loops (thread indices, #pragma unroll,
    vector copies), allocations (__shared__, per-thread arrays), barriers and the function
    text are CUDA's."""

    def __init__(self, kern: gpu.Kernel, lib: CLib, target: Target):
        super().__init__(None, target, kern.body, {})
        self.kern, self.lib = kern, lib  # one helper library for all kernels of a module
        self.scope = Scope(lib)
        self.scope.on_scalar_access = self.scalar_access
        self.scalar = ScalarPrinter(self.scope)
        self.thread_vars: set = set()  # thread indices and the lets computed from them
        self.divergent: list = []      # enclosing control flow that depends on them

    def render(self) -> str:
        k = self.kern
        written = {s.buffer.uid for s in S.walk_stmts(k.body) if isinstance(s, S.Store)}
        args = []
        for b in k.buffers:
            const = "" if b.uid in written else "const "
            args.append(f"{const}{ctype(b.dtype)}* __restrict__ {self.scope.name(b)}")
        self.globals: list = []  # module-scope declarations this kernel needs
        # launched after the kernel before it with programmatic dependent launch (sm_90):
        # wait until that grid has finished and its writes are visible, then let the next
        # grid be scheduled; a no-op for ordinary launches
        self.line("KILN_GRID_DEPENDENCY();")
        self.stmt(S.map_exprs(device_body(k.body), _normalize))
        head = self.globals + [f"// grid ({', '.join(map(str, k.grid))}), block "
                f"({', '.join(map(str, k.block))}), {k.shared_bytes} bytes of shared memory",
                f'extern "C" __global__ void __launch_bounds__({k.threads}) '
                f"{k.name}({', '.join(args)}) {{"]
        return "\n".join(head + self.lines + ["}", ""])

    # ------------------------------------------------------------ statements
    def stmt(self, s: S.Stmt) -> None:
        if isinstance(s, S.Barrier):
            self.block_wide("__syncthreads()")
            self.line("__syncthreads();")
        elif isinstance(s, S.LastBlock):
            self.last_block(s)
        elif isinstance(s, S.AllReduce):
            self.block_wide(f"the cross-thread reduction {s.name}")
            self.all_reduce(s)
        elif isinstance(s, S.MmaTile):
            self.block_wide("a tensor-core product (mma.sync)")
            self.mma_tile(s)
        elif isinstance(s, S.CallPacked):
            raise CodegenError(f"te.extern call of {s.func_name!r}: packed functions run on "
                               "the host; build this schedule for a CPU target")
        else:
            super().stmt(s)

    def mma_tile(self, s: S.MmaTile) -> None:
        """Fragments of every A and B tile split once into two TF32 parts (KILN_TF32_SPLIT),
        then the three products of each tile pair, small parts first (the smallest terms)."""
        if not self.target.tf32_tensor_cores:
            raise CodegenError(f"{self.kern.name}: TF32 tensor-core products need sm_80 or "
                               f"newer, the target is {self.target}")
        if _MMA_HELPERS not in self.globals:
            self.globals.append(_MMA_HELPERS)
        fm, fn = len(s.a), len(s.b)
        self.line(f"{{  // tensor cores: {fm} x {fn} m16n8k8 products, float32 operands as "
                  "two TF32 parts each")
        self.depth += 1
        for name, frags in (("a", s.a), ("b", s.b)):
            for f, vals in enumerate(frags):
                for r, v in enumerate(vals):
                    x = f"{name}{f}_{r}"
                    self.line(f"const float {x} = {self.scalar.expr(v)};")
                    self.line(f"KILN_TF32_SPLIT({x}, {x}h, {x}l);")
        acc = self.scope.name(s.acc)
        for fa in range(fm):
            for fb in range(fn):
                c = ", ".join(f"{acc}[{self.scalar.expr(x)}]" for x in s.c[fa][fb])
                for pa, pb in (("l", "h"), ("h", "l"), ("h", "h")):
                    a = ", ".join(f"a{fa}_{r}{pa}" for r in range(4))
                    b = ", ".join(f"b{fb}_{r}{pb}" for r in range(2))
                    self.line(f"kiln_mma_tf32({c}, {a}, {b});")
        self.depth -= 1
        self.line("}")

    # ------------------------------------------------------------ block-wide statements
    # A barrier, or shuffles over the whole warp, hang or read lanes that never arrived when
    # some threads of the block skip them: such a statement under control flow that depends
    # on the thread index is refused at build time (no GPU shows it as a hang later).
    def per_thread(self, e: E.Expr) -> bool:
        return bool(E.free_vars(e) & self.thread_vars)

    def block_wide(self, what: str) -> None:
        if self.divergent:
            raise CodegenError(f"{self.kern.name}: {what} is inside {self.divergent[-1]}, "
                               "which depends on the thread index: threads of a block that "
                               "skip it would hang or read lanes that never arrived")

    def diverging(self, why: str | None, emit, s) -> None:
        if why:
            self.divergent.append(why)
        try:
            emit(s)
        finally:
            if why:
                self.divergent.pop()

    def if_(self, s: S.IfThenElse) -> None:
        why = f"`if ({self.scalar.expr(s.cond)})`" if self.per_thread(s.cond) else None
        self.diverging(why, super().if_, s)

    def let(self, s: S.LetStmt) -> None:
        if self.per_thread(s.value):
            self.thread_vars.add(s.var)
        super().let(s)

    def all_reduce(self, s: S.AllReduce) -> None:
        """Butterfly shuffles within each warp (the lanes of a reduction are consecutive
        threadIdx.x, aligned on their count); over several warps, each warp's value goes
        through shared memory and every thread combines them (a barrier before reading, one
        after so that the next reduction may reuse the slots)."""
        t = ctype(s.dst.dtype)
        acc, other = E.Var("acc", s.dst.dtype), E.Var("other", s.dst.dtype)
        a, o = self.scalar.expr(acc), self.scalar.expr(other)
        both = self.scalar.expr(E.substitute(s.combined, {s.lhs: acc, s.rhs: other}))
        self.line(f"{{  // {s.name} over the {s.extent} threads along threadIdx.x")
        self.depth += 1
        self.line(f"{t} {a} = {self.scope.name(s.src)}[0];")
        lanes = self.scope.fresh("lanes")
        self.line(f"const unsigned int {lanes} = {self._warp_mask()};")
        off = min(s.extent, 32) // 2
        while off:
            self.line(f"{{ const {t} {o} = __shfl_xor_sync({lanes}, {a}, {off}); {a} = {both}; }}")
            off //= 2
        if s.extent > 32:
            warps, groups = s.extent // 32, self.kern.block[1] * self.kern.block[2]
            slots = self.scope.fresh("warp_values")
            row = f"(threadIdx.y + threadIdx.z * {self.kern.block[1]}) * {warps}"
            self.line(f"__shared__ {t} {slots}[{groups * warps}];")
            self.line(f"if (threadIdx.x % 32 == 0) {slots}[{row} + threadIdx.x / 32] = {a};")
            self.line("__syncthreads();")
            self.line(f"{a} = {slots}[{row}];")
            for w in range(1, warps):
                self.line(f"{{ const {t} {o} = {slots}[{row} + {w}]; {a} = {both}; }}")
            self.line("__syncthreads();")
        self.line(f"{self.scope.name(s.dst)}[0] = {a};")
        self.depth -= 1
        self.line("}")

    def _warp_mask(self) -> str:
        """The shuffles' member mask: every lane of the warp that exists. Lowering places a
        cross-thread reduction where the whole block reaches it, so these are the lanes that
        take part; __activemask() would name only the lanes that happen to be converged at
        that instant, which independent thread scheduling does not promise."""
        threads = self.kern.block[0] * self.kern.block[1] * self.kern.block[2]
        if threads % 32 == 0:
            return "0xffffffffu"
        tail = f"0x{(1 << threads % 32) - 1:x}u"
        if threads < 32:
            return tail
        tid = f"(threadIdx.x + {self.kern.block[0]} * (threadIdx.y + {self.kern.block[1]} * " \
              "threadIdx.z))"
        return f"{tid} / 32 < {threads // 32} ? 0xffffffffu : {tail}"

    def last_block(self, s: S.LastBlock) -> None:
        """The threadFenceReduction pattern: each block publishes its global writes
        (__threadfence) and counts its arrival; the one that arrives last fences again
        (acquire), resets the count
        (zero again for the next launch: module globals start at zero) and runs the body,
        reading the other blocks' results from L2 (L1 is not coherent)."""
        arr, last = self.scope.fresh(f"{self.kern.name}_arrivals"), self.scope.fresh("is_last")
        self.globals.append(f"__device__ unsigned int {arr}[{s.slots}];  // zero at load; "
                            "reset by each tile's last block")
        idx = self.scalar.expr(s.index)
        self.line(f"{{  // the last of the {s.count} blocks that share {arr}[{idx}] runs this")
        self.depth += 1
        self.line(f"__shared__ int {last};")
        self.line("__threadfence();")
        self.line("__syncthreads();")
        self.line("if (threadIdx.x == 0 && threadIdx.y == 0 && threadIdx.z == 0) {")
        self.line(f"  {last} = atomicAdd(&{arr}[{idx}], 1u) == {s.count - 1}u;")
        # the fence after the atomic orders this block's reads after the others' writes
        # (acquire; the barrier below carries it to every thread of the block)
        self.line(f"  if ({last}) {{ {arr}[{idx}] = 0u; __threadfence(); }}")
        self.line("}")
        self.line("__syncthreads();")
        self.line(f"if ({last}) {{")
        saved = self.scope.l2_loads
        self.scope.l2_loads = saved | set(s.l2)
        self.block(s.body)
        self.scope.l2_loads = saved
        self.line("}")
        self.depth -= 1
        self.line("}")

    def with_range(self, var: E.Var, rng: tuple, body: S.Stmt) -> None:
        saved = self.scope.ranges
        self.scope.ranges = {**saved, var: rng}
        self.block(body)
        self.scope.ranges = saved

    def loop(self, s: S.For, pragma: str | None = None) -> None:
        n = const_int(s.extent)
        if n is not None and n <= 0:
            return
        name, t = self.scope.name(s.var), ctype(s.var.dtype)
        if s.kind == "thread":
            if s.thread_tag.startswith("threadIdx"):
                self.thread_vars.add(s.var)
            self.line(f"{{  // {s.var.name}: {s.thread_tag}, extent {n}")
            self.depth += 1
            self.line(f"const {t} {name} = {s.thread_tag};")
            self.depth -= 1
            self.with_range(s.var, loop_range(s.extent), s.body)
            self.line("}")
            return
        if s.kind == "parallel":
            raise CodegenError(f"loop {s.var.name} is parallel inside a GPU kernel")
        if s.kind == "vectorized" and self.vector_copy(s):
            return
        if s.kind in ("unrolled", "vectorized"):
            self.lines.append("#pragma unroll")
        ext = self.scalar.expr(s.extent)
        self.line(f"for ({t} {name} = 0; {name} < {ext}; ++{name}) {{")
        why = f"loop {s.var.name} of {ext} steps" if self.per_thread(s.extent) else None
        self.diverging(why, lambda b: self.with_range(s.var, loop_range(s.extent), b), s.body)
        self.line("}")

    def vector_copy(self, s: S.For) -> bool:
        """dst[a + v] = src[b + v] for v < 2 or 4, a and b multiples of the width: one
        float2 / float4 load and store (fewer, wider memory transactions)."""
        n, body = const_int(s.extent), s.body
        if not isinstance(body, S.Store) or not isinstance(body.value, S.BufferLoad):
            return False
        vt = _VEC.get((body.buffer.dtype, n))
        if vt is None or body.value.buffer.dtype != body.buffer.dtype:
            return False
        bases = [self.base(body.index, s.var), self.base(body.value.index, s.var)]
        if any(b is None or not self.multiple_of(b, n) for b in bases):
            return False
        bufs = [body.buffer, body.value.buffer]
        if any(b.scope in ("shared", "local") and b.size % n for b in bufs):
            return False
        dst, src = (self.scope.name(b) for b in bufs)
        load = f"*(const {vt}*)({src} + {self.scalar.expr(bases[1])})"
        if _prefetch_from_global(body):
            load = f"__ldcg((const {vt}*)({self.address(bufs[1], bases[1], body.buffer)}))"
        self.line(f"*({vt}*)({dst} + {self.scalar.expr(bases[0])}) = {load};  "
                  f"// {s.var.name}: {n} lanes")
        return True

    def store(self, s: S.Store) -> None:
        if not _prefetch_from_global(s):
            return super().store(s)
        self.line(f"{self.scope.name(s.buffer)}[{self.scalar.expr(s.index)}] = "
                  f"__ldcg({self.address(s.value.buffer, s.value.index, s.buffer)});")

    def address(self, buf: S.Buffer, index: E.Expr, pf: S.Buffer) -> str:
        """`buf + (outer terms) + (terms of the unrolled copy loops)` of a prefetch load:
        after unrolling the second part is a constant that ptxas folds into the load's
        immediate offset (a single 32-bit index would need a 64-bit multiply per load)."""
        terms = _terms(index)
        inner = [t for t in terms if any(isinstance(x, E.Var) and x in pf.prefetch_loops
                                         for x in E.walk(t))]
        outer = [t for t in terms if not any(t is x for x in inner)]
        text = self.scope.name(buf)
        for part in (outer, inner):
            if part:
                total = part[0]
                for t in part[1:]:
                    total = E.binop("add", total, t)
                text += f" + ({self.scalar.expr(total)})"
        return text

    def base(self, index: E.Expr, v: E.Var):
        """index - v when index is exactly base + v with v not in base."""
        rest = simplify(index - v, self.scope.ranges)
        if any(isinstance(x, E.Var) and x is v for x in E.walk(rest)):
            return None
        return rest

    def multiple_of(self, e: E.Expr, n: int) -> bool:
        r = simplify(E.binop("floormod", e, E.IntImm(n)), self.scope.ranges)
        return isinstance(r, E.IntImm) and r.value == 0

    def declare(self, s: S.Allocate) -> None:
        b = s.buffer
        name, t = self.scope.name(b), ctype(b.dtype)
        size = max(b.size, 1)
        if b.scope == "shared":
            self.line(f"__shared__ __align__(16) {t} {name}[{size}];")
        elif b.scope == "local":
            self.line(f"__align__(16) {t} {name}[{size}];")
        else:
            raise CodegenError(f"buffer {b.name} of scope {b.scope} inside a GPU kernel")
        self.stmt(s.body)


# ---------------------------------------------------------------- printing helpers

def _prefetch_from_global(s: S.Store) -> bool:
    """A register copy of pipeline_fetches loading one global element: it loads with
    __ldcg (ld.global.cg, L2 only), which ptxas keeps ahead of the barrier after it (it
    sinks the read-only ld.global.nc loads down to their use, exposing the latency again)."""
    return getattr(s.buffer, "prefetch_loops", None) is not None and \
        isinstance(s.value, S.BufferLoad) and s.value.buffer.scope == "global"


def _terms(e: E.Expr) -> list:
    if isinstance(e, E.BinOp) and e.op == "add":
        return _terms(e.a) + _terms(e.b)
    return [e]


__all__ = ["device_body", "launch_plan", "pipeline_fetches", "render", "render_many"]
