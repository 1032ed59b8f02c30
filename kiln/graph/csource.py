"""One C translation unit for a whole model: the kernels plus the graph entry function.

In: the rendered C text of each unique kernel (codegen.c.render(..., module=False)) and the
program: an ordered list of kernel calls and copies whose arguments refer to graph inputs,
graph outputs, bound parameters or offsets in the workspace arena.
Out: C source with every shared helper (includes, vector typedefs, static inline math)
defined once, every kernel, `kiln_module_entries()` (so the library is also a plain kiln
runtime Module, each kernel callable and timeable on its own) and

  int32_t kiln_graph_run(void** inputs, void** outputs, void** params, void* workspace)

which runs the kernels in order: 0 on success, else 1 + the index of the failing step, and
beside it `kiln_graph_run_profile(..., double* stamps)`, the same steps writing a monotonic
clock reading after each one (stamps[0] before the first), so that `GraphModule.profile()`
times every kernel where it really runs: after its producer, with the caches and threads in
the state the network leaves them. Built with flush_denormals, each entry sets the floating-
point mode to flush denormal results and read denormal inputs as zero (x86 MXCSR FTZ + DAZ,
AArch64 FPCR.FZ) on the calling thread and on every thread of the kernels' OpenMP team for the
duration of the call, and restores each thread's previous mode before it returns.
Why: one compiler invocation per model and one Python -> C call per inference.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..codegen.c import module_entries
from ..codegen.c_lib import ctype

__all__ = ["Arg", "Call", "Copy", "ENTRY", "PROFILE_SUFFIX", "merge_kernels", "program_source"]

ENTRY = "kiln_graph_run"
PROFILE_SUFFIX = "_profile"
_EXPORT = '__attribute__((visibility("default")))'


@dataclass(frozen=True)
class Arg:
    """A tensor the entry function passes: kind in input/output/param/workspace."""

    kind: str
    index: int  # position in its pointer array, or the byte offset in the workspace
    dtype: str

    def c_expr(self) -> str:
        t = ctype(self.dtype)
        if self.kind == "workspace":
            return f"({t}*)(ws + {self.index})"
        array = {"input": "inputs", "output": "outputs", "param": "params"}[self.kind]
        return f"({t}*){array}[{self.index}]"


@dataclass(frozen=True)
class Call:
    kernel: str
    args: tuple
    comment: str = ""


@dataclass(frozen=True)
class Copy:
    dst: Arg
    src: Arg
    nbytes: int


def _items(prefix: str) -> list:
    """Top-level items of C text (comments, preprocessor lines, declarations, functions).
    An `#if ... #endif` group is one item: its branches are alternatives, deduplicated whole."""
    items, cur, depth, in_comment, cond = [], [], 0, False, 0
    for line in prefix.splitlines():
        if not cur and not line.strip():
            continue
        cur.append(line)
        text = line
        if text.startswith("#if"):
            cond += 1
        elif text.startswith("#endif"):
            cond -= 1
        if cond > 0:
            continue
        if in_comment or text.lstrip().startswith("/*"):
            in_comment = "*/" not in text
            if not in_comment and depth == 0:
                items.append("\n".join(cur))
                cur = []
            continue
        code = text.split("//")[0]
        depth += code.count("{") - code.count("}")
        if depth == 0 and (text.startswith("#") or code.rstrip().endswith((";", "}"))):
            items.append("\n".join(cur))
            cur = []
    if cur:
        items.append("\n".join(cur))
    return items


def merge_kernels(texts: list) -> str:
    """Kernels rendered one by one, joined with their shared helpers defined once."""
    shared, seen, bodies = [], set(), []
    for text in texts:
        cut = text.find(_EXPORT)
        prefix, body = (text[:cut], text[cut:]) if cut >= 0 else ("", text)
        comments = []
        for item in _items(prefix):
            if item.lstrip().startswith("/*"):
                comments.append(item)
            elif item not in seen:
                seen.add(item)
                shared.append(item)
        bodies.append("\n".join(comments + [body]))
    return "\n\n".join(shared) + "\n\n" + "\n".join(bodies)


def _step_c(k: int, step, stamp: bool) -> list:
    tail = [f"  stamps[{k + 1}] = kiln_clock();"] if stamp else []
    if isinstance(step, Copy):
        return [f"  memcpy({step.dst.c_expr()}, {step.src.c_expr()}, {step.nbytes});", *tail]
    args = ", ".join(a.c_expr() for a in step.args)
    head = [f"  /* {step.comment} */"] if step.comment else []
    return head + [f"  if ({step.kernel}({args}) != 0) {{", f"    return {k + 1};", "  }",
                   *tail]


_CLOCK = """static double kiln_clock(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}"""


# The mode is per thread: the team's threads set it inside a parallel region of the kernels'
# own width (libgomp reuses the same threads for every region of that width), each keeping
# its previous mode in a thread-local to restore it.
_FP_MODE = """#if defined(__x86_64__) || defined(__i386__)
#include <xmmintrin.h>
typedef unsigned int kiln_fp_mode_t;
static kiln_fp_mode_t kiln_fp_mode(void) { return _mm_getcsr(); }
static void kiln_fp_set(kiln_fp_mode_t m) { _mm_setcsr(m); }
#define KILN_FLUSH_BITS 0x8040u
#elif defined(__aarch64__)
typedef unsigned long kiln_fp_mode_t;
static kiln_fp_mode_t kiln_fp_mode(void) {
  kiln_fp_mode_t m;
  __asm__ volatile("mrs %0, fpcr" : "=r"(m));
  return m;
}
static void kiln_fp_set(kiln_fp_mode_t m) { __asm__ volatile("msr fpcr, %0" : : "r"(m)); }
#define KILN_FLUSH_BITS (1ul << 24)
#else
#error "flush_denormals: unsupported CPU architecture"
#endif
static __thread kiln_fp_mode_t kiln_fp_saved;
static void kiln_flush_denormals(int on) {
  #pragma omp parallel num_threads(KILN_THREADS)
  {
    if (on) {
      kiln_fp_saved = kiln_fp_mode();
      kiln_fp_set(kiln_fp_saved | KILN_FLUSH_BITS);
    } else {
      kiln_fp_set(kiln_fp_saved);
    }
  }
}"""


def _entry(steps: list, name: str, stamp: bool, flush: bool = False) -> list:
    extra = ", double* stamps" if stamp else ""
    params = f"(void** inputs, void** outputs, void** params, void* workspace{extra})"
    if flush:  # the steps return early on failure: the mode is restored around them
        args = "(inputs, outputs, params, workspace" + (", stamps)" if stamp else ")")
        wrapper = [_EXPORT, f"int32_t {name}{params} {{", "  kiln_flush_denormals(1);",
                   f"  int32_t failed = {name}_steps{args};", "  kiln_flush_denormals(0);",
                   "  return failed;", "}", ""]
        inner = _entry(steps, name + "_steps", stamp)  # [_EXPORT, signature, body...]
        return ["static " + inner[1], *inner[2:], *wrapper]
    lines = [_EXPORT, f"int32_t {name}{params} {{",
             "  char* ws = (char*)workspace;",
             "  (void)inputs; (void)outputs; (void)params; (void)ws;"]
    if stamp:
        lines.append("  stamps[0] = kiln_clock();")
    for k, step in enumerate(steps):
        lines.extend(_step_c(k, step, stamp))
    return lines + ["  return 0;", "}", ""]


def entry_function(steps: list, name: str = ENTRY, flush: bool = False) -> str:
    """C text of kiln_graph_run (or `name`) for the ordered steps, and of its profiling twin
    `name + PROFILE_SUFFIX`; flush: each sets and restores the flush-denormals mode."""
    return "\n".join(_entry(steps, name, False, flush)
                     + _entry(steps, name + PROFILE_SUFFIX, True, flush))


def program_source(kernel_texts: list, kernel_names: list, steps: list,
                   entries: dict | None = None, flush_threads: int = 0) -> str:
    """The whole translation unit: kernels, module entries and the graph entry function (or
    one entry function per name in `entries`, {name: steps}, for a model built at several
    input shapes). flush_threads > 0: the entries flush denormals on the calling thread and
    on an OpenMP team of that many threads (the kernels' width)."""
    entries = entries or {ENTRY: steps}
    flush = flush_threads > 0
    mode = [f"#define KILN_THREADS {int(flush_threads)}", _FP_MODE, ""] if flush else []
    head = "\n".join(["#include <stdint.h>", "#include <string.h>", "#include <time.h>", "",
                      _CLOCK, "", *mode])
    return (merge_kernels(kernel_texts) + "\n" + head
            + "\n".join(entry_function(st, name, flush) for name, st in entries.items())
            + module_entries(kernel_names))
