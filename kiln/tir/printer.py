"""Readable text of the loop IR (what `kiln.lower(...)` prints)."""

from __future__ import annotations

from ..te.printer import expr_str
from . import stmt as S


def stmt_str(s, indent: int = 0) -> str:
    pad = "  " * indent
    if isinstance(s, S.For):
        prag = "".join(f" {k}={v}" for k, v in s.pragmas.items())
        if s.thread_tag:
            prag = f" bound to {s.thread_tag}" + prag
        head = f"{pad}for {s.var.name} in range({expr_str(s.extent)}):  # {s.kind}{prag}"
        return head + "\n" + stmt_str(s.body, indent + 1)
    if isinstance(s, S.Store):
        return f"{pad}{s.buffer.name}[{expr_str(s.index)}] = {expr_str(s.value)}"
    if isinstance(s, S.Allocate):
        b = s.buffer
        return (f"{pad}allocate {b.name}: {b.dtype}[{b.size}]  # {b.scope}\n"
                + stmt_str(s.body, indent))
    if isinstance(s, S.IfThenElse):
        out = f"{pad}if {expr_str(s.cond)}:\n" + stmt_str(s.then, indent + 1)
        if s.else_ is not None:
            out += f"\n{pad}else:\n" + stmt_str(s.else_, indent + 1)
        return out
    if isinstance(s, S.SeqStmt):
        return "\n".join(stmt_str(x, indent) for x in s.stmts)
    if isinstance(s, S.LetStmt):
        return f"{pad}{s.var.name} = {expr_str(s.value)}\n" + stmt_str(s.body, indent)
    if isinstance(s, S.CallPacked):
        args = ", ".join(a.name if isinstance(a, S.Buffer) else expr_str(a) for a in s.args)
        return f"{pad}call_packed({s.func_name!r}, {args})"
    if isinstance(s, S.Evaluate):
        return f"{pad}{expr_str(s.value)}"
    if isinstance(s, S.Barrier):
        return f"{pad}barrier()  # __syncthreads"
    if isinstance(s, S.LastBlock):
        return (f"{pad}if last_of({s.count}, arrivals[{expr_str(s.index)}]):  # the last block "
                f"of {s.count} to arrive runs this\n" + stmt_str(s.body, indent + 1))
    if isinstance(s, S.AllReduce):
        return (f"{pad}{s.dst.name}[0] = all_reduce_{s.name}({s.src.name}[0], "
                f"threadIdx.x < {s.extent})  # across the block's threads")
    if isinstance(s, S.MmaTile):
        return (f"{pad}mma_{s.kind}({s.acc.name}, {len(s.a)} x {len(s.b)} tiles of 16 x 8)  "
                f"# A fragments {', '.join(expr_str(x) for x in s.a[0])}; B fragments "
                f"{', '.join(expr_str(x) for x in s.b[0])}; ...")
    return f"{pad}<{type(s).__name__}>"


def func_str(f) -> str:
    params = ", ".join(f"{b.name}: {b.dtype}{list(b.shape)}" for b in f.params)
    scal = "".join(f", {v.name}: {v.dtype}" for v in f.scalar_params)
    return f"def {f.name}({params}{scal}):\n" + stmt_str(f.body, 1)
