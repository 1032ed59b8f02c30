"""Readable text of a State: the loop nest summary of every stage, outermost loop first."""

from __future__ import annotations


def state_str(state) -> str:
    lines = []
    for s in state.stages:
        if s.is_placeholder:
            lines.append(f"Placeholder: {s.name}")
            continue
        if s.attach[0] == "inline":
            lines.append(f"{s.name}: inlined")
            continue
        where = "root" if s.attach[0] == "root" else f"at {s.attach[1].name}.{s.attach[2]}"
        loops = []
        for it in s.iters:
            ann = "" if it.annotation == "none" else f" {it.annotation}"
            if s.tensorize and s.tensorize[0] == it.name:
                ann += f" tensorize {s.tensorize[1].name}"
            kind = "r" if it.kind == "reduce" else ""
            loops.append(f"{it.name}{kind}({it.extent}{ann})")
        lines.append(f"{s.name} [{where}]: " + " > ".join(loops))
    return "\n".join(lines)
