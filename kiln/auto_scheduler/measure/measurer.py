"""ProgramMeasurer: States of a task in, MeasureResults out, callbacks told about every one.

In: a task and candidate States (or ready MeasureInputs, e.g. with `extra` search metadata).
Out: one MeasureResult per candidate, in order.
Why: the search calls one function per batch; the builder compiles the batch in parallel, the
runner measures one candidate at a time, and each callback (e.g. RecordToFile) is invoked
right after each result, as `cb(task, [input], [result])`, so a tuner killed mid-batch
loses at most the candidate being measured. A runner whose run() takes no `on_result` gets
its callbacks once per batch instead. The reference output of a task (its default schedule) is
built by the same builder, with the task's first batch, and handed to the runner once
(runner.set_reference), so a runner on another machine never needs the compute graph.
"""

from __future__ import annotations

import inspect
import sys
from collections import Counter
from collections.abc import Callable

from .common import BuildResult, ErrorNo, MeasureInput, MeasureResult
from .runner import reference_input


class ProgramMeasurer:
    """Build then run a batch of candidates; report each result to the callbacks."""

    def __init__(self, builder, runner, callbacks=(), verbose: int = 1):
        self.builder = builder
        self.runner = runner
        self.callbacks = list(callbacks or ())
        self.verbose = verbose
        self._referenced: set = set()  # workload keys whose reference the runner has

    def measure(self, task, states: list, inputs: list[MeasureInput] | None = None,
                on_result: Callable[[int, MeasureResult], None] | None = None
                ) -> list[MeasureResult]:
        """Measure `states` (or the given `inputs`, which take precedence) of `task`;
        `on_result(i, result)` runs after the callbacks of each result (the caller learns of
        every stored result even when a Ctrl-C ends the batch early)."""
        if inputs is None:
            inputs = [MeasureInput(task, s) for s in states]
        builds = self._build(task, inputs)

        def done(i: int, res: MeasureResult) -> None:
            try:
                self._notify(task, inputs[i], res)
            finally:  # also when a Ctrl-C lands in a callback: the record may be stored
                if on_result is not None:
                    on_result(i, res)
        if _takes_on_result(self.runner):
            results = self.runner.run(inputs, builds, on_result=done)
        else:
            results = self.runner.run(inputs, builds)
            for i, res in enumerate(results):
                done(i, res)
        if self.verbose:
            self._summary(task, results)
        return results

    def _build(self, task, inputs: list[MeasureInput]) -> list[BuildResult]:
        """The batch's builds; the task's reference is built with its first batch."""
        wants = getattr(self.runner, "set_reference", None) is not None and \
            getattr(self.runner, "check_correctness", True) and \
            task.workload_key not in self._referenced
        if not wants:
            return self.builder.build(inputs)
        *builds, ref = self.builder.build([*inputs, reference_input(task)])
        if ref.ok:  # else the runner builds it itself, with a longer timeout
            self.runner.set_reference(task, ref)
        self._referenced.add(task.workload_key)
        return builds

    def _notify(self, task, inp: MeasureInput, res: MeasureResult) -> None:
        for cb in self.callbacks:
            cb(task, [inp], [res])

    def _summary(self, task, results: list) -> None:
        kinds = Counter(r.error_no for r in results)
        best = min((r.mean_cost for r in results), default=float("inf"))
        ok = kinds.pop(ErrorNo.OK, 0)
        errs = ", ".join(f"{k} {n}" for k, n in sorted(kinds.items())) or "none"
        best_text = f"{best * 1e3:.4f} ms" if best != float("inf") else "-"
        print(f"[kiln] measured {len(results)} of {getattr(task, 'desc', task)}: ok {ok}, "
              f"errors: {errs}, batch best {best_text}", file=sys.stderr, flush=True)


def _takes_on_result(runner) -> bool:
    try:
        return "on_result" in inspect.signature(runner.run).parameters
    except (TypeError, ValueError):
        return False
