"""TaskScheduler: share a trial (or time) budget across the tasks of a network (Ansor §6).

In: tasks and their weights (how often each kernel runs per inference), TuningOptions.
Out: tuned records in the log; the estimated network latency sum(w_i * best_i). A Ctrl-C
stops the whole run (`interrupted` is set), prints the table so far and returns.
After a round-robin warm-up, each round goes to the task with the largest estimated
gradient of the network latency with respect to its trials:
  w_i * (alpha * backward difference of its best latency over the last rounds
         + (1 - alpha) * optimistic guess -best_i / trials_i),
with an epsilon share of random picks; a task stops when it has not improved for
`early_stopping` trials. One cost model is shared by all tasks.
"""

from __future__ import annotations

import math
import random
import sys
import time

from ..errors import KilnError
from .policy import SketchPolicy


class _LogFile:
    """A read-only log to resume from (what RecordToFile looks like to resume.log_files)."""

    def __init__(self, filename: str):
        self.filename = filename


class TaskScheduler:
    def __init__(self, tasks, task_weights=None, strategy: str = "gradient", seed: int = 0,
                 alpha: float = 0.2, eps: float = 0.05, time_budget_s: float | None = None,
                 load_log_file: str | None = None, verbose: int = 1, cost_model=None,
                 load_model_file: str | None = None, transfer_max_programs: int = 3000):
        from .cost_model import XGBModel
        self.tasks = list(tasks)
        self.weights = list(task_weights or [1] * len(self.tasks))
        self.strategy, self.alpha, self.eps = strategy, alpha, eps
        self.rng = random.Random(seed)
        self.time_budget_s, self.verbose = time_budget_s, verbose
        self.gpu = bool(self.tasks) and all(t.target.kind == "cuda" for t in self.tasks)
        if not self.gpu and any(t.target.kind == "cuda" for t in self.tasks):
            raise KilnError("TaskScheduler: tune CPU and CUDA tasks in separate schedulers")
        if cost_model is None:
            cost_model = _gpu_model(seed) if self.gpu else XGBModel()
        self.model = cost_model
        if load_model_file:
            # transfer: start from a model trained on other tasks (another model's tuning);
            # their measurements stay in the training set, labelled per task
            self.model.load(load_model_file, max_programs=transfer_max_programs)
            self._say(f"cost model warm-started from {load_model_file} "
                      f"({len(self.model.throughputs)} measured programs)")
        self.load_log_file = load_log_file
        self.policies = _gpu_policies(self.tasks, self.model, seed) if self.gpu else \
            [SketchPolicy(t, self.model, seed=seed + i, verbose=0)
             for i, t in enumerate(self.tasks)]
        self.trials = [0] * len(self.tasks)
        self.history = [[] for _ in self.tasks]  # best latency after each round
        self.dead = [False] * len(self.tasks)
        self.allocation: list = []  # task index of every round, in order
        self.interrupted = False  # the last tune() was stopped by Ctrl-C

    def best(self, i: int) -> float:
        return self.policies[i].best_cost

    def estimated_latency(self) -> float:
        return sum(w * self.best(i) for i, w in enumerate(self.weights))

    def tune(self, options):
        from .measure import ProgramMeasurer, make_measurer
        if self.gpu:  # GPU policies measure with their own (or the options') GPU builder/runner
            from .gpu import as_gpu_builder, as_gpu_runner
            builder, runner = as_gpu_builder(options.builder), as_gpu_runner(options.runner)
            for p in self.policies:
                p.builder = p.builder if builder is None else builder
                p.runner = p.runner if runner is None else runner
            measurer = ProgramMeasurer(None, None, options.measure_callbacks, verbose=0)
        else:
            measurer = make_measurer(options)
        resume_from = list(options.measure_callbacks or [])
        if self.load_log_file:
            resume_from.append(_LogFile(self.load_log_file))
        for p in self.policies:
            p._resume(resume_from)
            p.verbose = 0
        resumed = sum(len(p.measured) for p in self.policies)
        if resumed:
            self._say(f"resumed {resumed} measured records of these tasks from the log")
        t0, total = time.time(), 0
        per = options.num_measures_per_round
        order = list(range(len(self.tasks)))
        self.interrupted = False
        try:
            while total < options.num_measure_trials and not all(self.dead):
                if self.time_budget_s and time.time() - t0 > self.time_budget_s:
                    self._say(f"time budget of {self.time_budget_s:.0f}s reached")
                    break
                i = order.pop(0) if order else self._pick()
                n = min(per, options.num_measure_trials - total)
                total += self._round(i, n, options.early_stopping, measurer)
                self._print(total, options.num_measure_trials, time.time() - t0)
        except KeyboardInterrupt:
            # the whole tuning stops (not just the task whose search saw the Ctrl-C); a run
            # on the same log resumes from every stored record
            self.interrupted = True
            self._say("interrupted: stopping, every measured record is kept")
            self._print(sum(self.trials), options.num_measure_trials, time.time() - t0)
        finally:
            self._close_gpu_workers()
        return self.estimated_latency()

    def _close_gpu_workers(self) -> None:
        """Stop the NVRTC pool and the measurement worker the GPU policies share (both start
        again on demand): left running, the pool's shutdown at interpreter exit races its
        wakeup pipe on Python 3.12 ("Bad file descriptor" printed after a finished tune)."""
        if not self.gpu:
            return
        seen: set = set()
        for p in self.policies:
            for w in (p.builder, p.runner):
                if id(w) not in seen and hasattr(w, "close"):
                    seen.add(id(w))
                    w.close()

    def _round(self, i: int, n: int, early_stopping, measurer) -> int:
        """One round of task i; returns how many candidates were measured. Raises
        KeyboardInterrupt (after counting what was measured) when the search was interrupted."""
        p = self.policies[i]
        before = len(p.measured)
        p.search(n, None, n, measurer)
        done = len(p.measured) - before
        self.trials[i] += done
        if p.interrupted:
            raise KeyboardInterrupt
        self.history[i].append(p.best_cost)
        self.allocation.append(i)
        if early_stopping and self.trials[i] - self._last_improve(i) >= early_stopping:
            self.dead[i] = True
        # a round may measure fewer than n without the space being exhausted (the initial
        # population holds duplicates, a batch is cut short): only an empty batch ends a task
        if getattr(p, "exhausted", False) or done == 0:
            self.dead[i] = True
        return done

    def _last_improve(self, i: int) -> int:
        h, per = self.history[i], max(1, self.trials[i] // max(len(self.history[i]), 1))
        for k in range(len(h) - 1, 0, -1):
            if h[k] < h[k - 1]:
                return (k + 1) * per
        return per

    def _pick(self) -> int:
        alive = [i for i in range(len(self.tasks)) if not self.dead[i]]
        if self.strategy == "round-robin":
            return min(alive, key=lambda i: self.trials[i])
        if self.rng.random() < self.eps:
            return self.rng.choice(alive)
        return max(alive, key=self._gain)

    def _gain(self, i: int) -> float:
        """Estimated latency reduction per trial (positive is good)."""
        h, t = self.history[i], max(self.trials[i], 1)
        best = self.best(i)
        if not math.isfinite(best):
            return math.inf
        back = 0.0
        if len(h) >= 2 and math.isfinite(h[-2]):
            back = (h[-2] - h[-1]) / max(t / len(h), 1)
        forward = best / t
        return self.weights[i] * (self.alpha * back + (1 - self.alpha) * forward)

    def _say(self, msg: str) -> None:
        if self.verbose:
            print(f"[kiln] task scheduler: {msg}", file=sys.stderr, flush=True)

    def _print(self, total: int, budget: int, elapsed: float) -> None:
        if not self.verbose:
            return
        left = elapsed / max(total, 1) * max(budget - total, 0)
        if self.time_budget_s:
            left = min(left, max(self.time_budget_s - elapsed, 0.0))
        lines = [f"[kiln] {total}/{budget} trials, {elapsed:.0f}s elapsed, ~{left:.0f}s left, "
                 f"estimated latency {self.estimated_latency() * 1e3:.3f} ms",
                 "  id  weight  trials   best ms    GFLOPS  task"]
        for i, t in enumerate(self.tasks):
            b = self.best(i)
            gf = t.flop_ct / b / 1e9 if math.isfinite(b) else 0.0
            ms = f"{b * 1e3:9.4f}" if math.isfinite(b) else "        -"
            lines.append(f"  {i:2d}  {self.weights[i]:6d}  {self.trials[i]:6d}  {ms}  "
                         f"{gf:8.2f}  {t.desc[:60]}{' (done)' if self.dead[i] else ''}")
        print("\n".join(lines), file=sys.stderr, flush=True)


def _gpu_model(seed: int):
    from .gpu import GpuCostModel
    return GpuCostModel(seed)


def _gpu_policies(tasks: list, model, seed: int) -> list:
    """One GPU search policy per task, sharing the cost model, the NVRTC builder pool and
    the measurement worker (which is told the task it measures before each round)."""
    from .gpu import GpuBuilder, GpuRunner, GpuSearchPolicy
    builder, runner = GpuBuilder(), GpuRunner()
    return [GpuSearchPolicy(t, model, builder=builder, runner=runner, seed=seed + i,
                            verbose=0) for i, t in enumerate(tasks)]
