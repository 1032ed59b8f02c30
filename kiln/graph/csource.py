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
the state the network leaves them.
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


def _entry(steps: list, name: str, stamp: bool) -> list:
    extra = ", double* stamps" if stamp else ""
    lines = [_EXPORT, f"int32_t {name}(void** inputs, void** outputs, void** params, "
             f"void* workspace{extra}) {{",
             "  char* ws = (char*)workspace;",
             "  (void)inputs; (void)outputs; (void)params; (void)ws;"]
    if stamp:
        lines.append("  stamps[0] = kiln_clock();")
    for k, step in enumerate(steps):
        lines.extend(_step_c(k, step, stamp))
    return lines + ["  return 0;", "}", ""]


def entry_function(steps: list, name: str = ENTRY) -> str:
    """C text of kiln_graph_run (or `name`) for the ordered steps, and of its profiling twin
    `name + PROFILE_SUFFIX`."""
    return "\n".join(_entry(steps, name, False) + _entry(steps, name + PROFILE_SUFFIX, True))


def program_source(kernel_texts: list, kernel_names: list, steps: list,
                   entries: dict | None = None) -> str:
    """The whole translation unit: kernels, module entries and the graph entry function (or
    one entry function per name in `entries`, {name: steps}, for a model built at several
    input shapes)."""
    entries = entries or {ENTRY: steps}
    head = "\n".join(["#include <stdint.h>", "#include <string.h>", "#include <time.h>", "",
                      _CLOCK, ""])
    return (merge_kernels(kernel_texts) + "\n" + head
            + "\n".join(entry_function(st, name) for name, st in entries.items())
            + module_entries(kernel_names))
