"""Helpers of the reliability tests: a tiny matmul task and real kernels of it whose C body is
edited (to hang, for instance), built through the toolchain."""

from __future__ import annotations

import re

import workloads

from kiln.auto_scheduler import SearchTask
from kiln.auto_scheduler.measure import BuildResult
from kiln.codegen import toolchain
from kiln.codegen.c import render
from kiln.schedule import ComputeDAG
from kiln.tir.lower import lower

HANG = "  for (;;) { __asm__ volatile(\"\"); }\n"


def matmul_task(n: int = 16) -> SearchTask:
    ins, outs, _ = workloads.matmul(n, n, 8)
    return SearchTask(compute_dag=ComputeDAG(ins + outs), desc=f"matmul{n}")


def patched(task, body_prefix: str) -> BuildResult:
    """A real kernel of the task with `body_prefix` inserted at the start of its C body."""
    src = render(lower(task.compute_dag.init_state(), task.args), task.target)
    head = re.search(r"int32_t default_function\([^)]*\) \{\n", src)
    src = src[:head.end()] + body_prefix + src[head.end():]
    return BuildResult(toolchain.compile(src, task.target), src)
