"""Readable text of a tuned schedule: TVM-style schedule code replaying the best record's steps,
the loop summary and (optionally) the generated C."""

from __future__ import annotations


def step_code(state) -> list:
    """One line of State-API code per step (replayable by hand)."""
    lines, stages = [], None
    replay = state.dag.init_state()
    for step in state.steps:
        stages = replay.stages
        rec = step.to_record()
        code, sid = rec[0], rec[1]
        name = stages[sid].name
        args = ", ".join(repr(x) for x in rec[2:])
        lines.append(f"s = s.{_NAMES.get(code, code)}({name!r}, {args})  # {rec}")
        replay = replay.apply(step)
    return lines


_NAMES = {"SP": "split", "FSP": "follow_split", "FU": "fuse", "RE": "reorder", "CA": "compute_at",
          "CI": "compute_inline", "CR": "compute_root", "AN": "annotate", "PR": "pragma",
          "CW": "cache_write", "CH": "cache_read", "RF": "rfactor", "LR": "layout_rewrite",
          "SA": "storage_align", "SS": "set_scope", "DB": "double_buffer",
          "SPR": "store_predicate"}


def best_schedule_text(task, log_file: str, print_mode: str = "schedule") -> str:
    import kiln

    rec, state = task.best_record(log_file)
    cost = rec.mean_cost
    gflops = task.flop_ct / cost / 1e9 if cost else 0.0
    out = [f"# best of {task.desc}: {cost * 1e3:.4f} ms, {gflops:.2f} GFLOPS",
           "# loop nest:", *("#   " + ln for ln in str(state).splitlines()),
           "# steps (indices refer to stages / loops at that point):", *step_code(state)]
    if print_mode in ("c", "source", "cuda"):
        out += ["", kiln.build(state, task.args, target=task.target).source]
    return "\n".join(out)
