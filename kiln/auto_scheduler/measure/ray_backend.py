"""Ray backends: compile candidates anywhere on a cluster, measure them on every node.

In: the same MeasureInputs / BuildResults as the local builder and runner (same protocols).
Out: RayBuilder -> BuildResults carrying the library bytes and their sha256 (built by Ray tasks
on any node with a free CPU); RayRunner -> MeasureResults from one actor per measuring device
(per node, or `workers_per_node` per node), each wrapping a MeasureExecutor (worker process,
reference files) on its node.
Why: tuning is measurement-bound; a cluster measures as many candidates at once as it has
nodes. Lowering and C rendering stay on the head (fast Python, needs the compute graph);
only C sources go out and libraries come back. Nothing is lost when a node dies: a Ray
build task is retried (max_retries), an actor is restarted (max_restarts) and the candidates
it had in flight are queued again for another actor of the same target, never recorded as
failures (unless `max_attempts` actors died on the same candidate: that one is recorded as a
runtime error). Runners are grouped by the concrete target string of their node; a task goes
only to runners of its target, so every record names the machine kind that measured it.
Ray is optional (`pip install "kiln[ray]"`); importing this module does not need it.
"""

from __future__ import annotations

import os
import re
import socket
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

from ...errors import KilnError
from .builder import LocalBuilder, _compile, _render
from .common import BuildResult, ErrorNo, MeasureInput, MeasureResult
from .runner import (
    MeasureExecutor,
    check_flush_mode,
    measure_job,
    reference_input,
    reference_job,
    result_of,
)

START_TIMEOUT = 120.0  # seconds for the actors of a cluster to start and say who they are
KILLED_FROM_OUTSIDE = "worker process killed by signal SIGKILL"  # runner.Worker.death_message


class ClusterError(KilnError):
    """Ray is missing, or the cluster cannot measure a task (no runner of its target)."""


def _ray():
    try:
        import ray
    except ImportError:
        raise ClusterError("tuning on a cluster needs Ray: pip install 'kiln[ray]' "
                           "(or pip install 'ray>=2.9')") from None
    return ray


def connect(address: str | None = None):
    """The ray module, initialised: joined to `address` ("auto", "HOST:6379") or, with None
    and no running Ray here, a local instance."""
    ray = _ray()
    if not ray.is_initialized():
        try:
            ray.init(address=address, include_dashboard=False, log_to_driver=False)
        except ConnectionError as err:
            raise ClusterError(f"cannot reach the Ray cluster at {address!r}: {err}; start it "
                               "with `ray start --head` first") from None
    return ray


def target_key(text: str) -> str:
    """What two targets must share for one's runner to measure the other's tasks: the
    concrete target string without the core count (`-num-cores` is a tuning hint)."""
    from ...target import as_target
    return re.sub(r"\s*-num-cores=\d+", "", str(as_target(text))).strip()


# ---------------------------------------------------------------- builder
def _compile_remote(source: str, target_text: str, timeout: float, spent: float) -> BuildResult:
    """Runs in a Ray task: compile, then return the library's bytes with the result."""
    from ...target import as_target
    return _compile(source, as_target(target_text), timeout, spent).packed()


class RayBuilder:
    """Builds candidates with Ray tasks on any node; results carry the library bytes."""

    def __init__(self, timeout: float = 15, cpus_per_build: float = 1.0,
                 max_retries: int = 3, address: str | None = None):
        self.timeout = float(timeout)
        self.cpus_per_build = float(cpus_per_build)
        self.max_retries = int(max_retries)
        self.address = address
        self._fn = None

    def build(self, inputs: list[MeasureInput]) -> list[BuildResult]:
        """One BuildResult per input (same order); a build whose node died is retried."""
        ray = connect(self.address)
        if self._fn is None:
            self._fn = ray.remote(_compile_remote)
        fn = self._fn.options(num_cpus=self.cpus_per_build, max_retries=self.max_retries)
        rendered = [_render(inp) for inp in inputs]
        futures = [None if isinstance(r, BuildResult) else
                   fn.remote(r[0], str(inp.task.target), self.timeout, r[1])
                   for inp, r in zip(inputs, rendered, strict=True)]
        return [r if f is None else _get_build(ray, f, r[0])
                for r, f in zip(rendered, futures, strict=True)]


def _get_build(ray, future, source: str) -> BuildResult:
    try:
        return ray.get(future)
    except ray.exceptions.RayError as err:
        return BuildResult(None, source, ErrorNo.COMPILE, f"the build task failed: {err}"[:2000])


# ---------------------------------------------------------------- runner
class MeasureActor:
    """Lives in a Ray actor on a measuring node: a MeasureExecutor and what the node is."""

    def __init__(self, timeout: float, core: int | None = None, target: str | None = None):
        from ...target import Target
        if core is not None and hasattr(os, "sched_setaffinity"):
            cores = sorted(os.sched_getaffinity(0))
            os.sched_setaffinity(0, {cores[core % len(cores)]})  # the worker inherits it
        self.executor = MeasureExecutor(timeout)
        self.target = target or str(Target.host())

    def info(self) -> dict:
        return {"target": self.target, "node": socket.gethostname(), "pid": os.getpid()}

    def measure(self, job: dict, build: BuildResult, ref_job: dict | None) -> tuple:
        """(the worker's reply, seconds this actor was busy with it)."""
        t0 = time.perf_counter()
        if job.get("ref_key") and ref_job is not None:
            self.executor.add_reference(ref_job)
        return self.executor.execute(job, build), time.perf_counter() - t0


@dataclass
class Slot:
    """One runner actor as the head sees it."""

    handle: object
    target: str      # the concrete target string its node reported
    node: str
    index: int
    node_id: str | None = None
    busy_s: float = 0.0
    trials: int = 0
    failures: int = 0  # consecutive deaths; past max_restarts + 1 it is dropped
    dropped: bool = False

    @property
    def key(self) -> str:
        return target_key(self.target)


class RayRunner:
    """Measures candidates on runner actors across a Ray cluster (CPU targets)."""

    def __init__(self, timeout: float = 10, number: int = 3, repeat: int = 1,
                 min_repeat_ms: float = 100, enable_cpu_cache_flush: bool | str = "auto",
                 check_correctness: bool = True, workers_per_node: int = 1,
                 cpus_per_worker: float = 1.0, pin_cores: bool = False, max_restarts: int = 3,
                 max_attempts: int = 4, address: str | None = None):
        self.timeout = float(timeout)
        self.number, self.repeat = max(1, int(number)), max(1, int(repeat))
        self.min_repeat_ms = float(min_repeat_ms)
        self.enable_cpu_cache_flush = check_flush_mode(enable_cpu_cache_flush)  # as LocalRunner
        self.check_correctness = check_correctness
        self.workers_per_node = max(1, int(workers_per_node))
        self.cpus_per_worker = float(cpus_per_worker)
        self.pin_cores = pin_cores
        self.max_restarts, self.max_attempts = int(max_restarts), max(1, int(max_attempts))
        self.address = address
        self.slots: list[Slot] = []
        self.requeued = 0        # candidates measured again after their actor died
        self.wall_s = 0.0        # time spent inside run()
        self.in_flight: dict = {}  # actor index -> (candidate index, start time): busy now
        self._ref_builds: dict = {}  # workload key -> packed reference BuildResult
        self._ref_objs: dict = {}    # workload key -> ray object ref of the reference job
        self._actor_cls = None

    # ------------------------------------------------------------ public
    def set_reference(self, task, build: BuildResult) -> None:
        """The build of the task's default schedule; shipped to each actor once per node."""
        self._ref_builds[task.workload_key] = build.packed() if build.ok else build
        self._ref_objs.pop(task.workload_key, None)

    def add_actor(self, node_id: str | None = None, core: int | None = None,
                  target: str | None = None) -> Slot:
        """Start one runner actor (on `node_id`, pinned to `core` of it). `target` overrides
        the target string the actor reports (tests; a node known to differ)."""
        ray = connect(self.address)
        slot = self._spawn(ray, node_id, core, target)
        slot.target, slot.node = self._info(ray, [slot])[0]
        return slot

    def run(self, inputs: list[MeasureInput], build_results: list[BuildResult],
            on_result: Callable[[int, MeasureResult], None] | None = None) -> list[MeasureResult]:
        """Measure the batch on every actor of its target at once; `on_result(i, result)` as
        each result arrives (in completion order)."""
        ray = connect(self.address)
        self._discover(ray)
        t0 = time.perf_counter()
        try:
            return _Batch(self, ray, inputs, build_results, on_result).run()
        finally:  # also on Ctrl-C: what is still in flight is abandoned, not waited for
            self.wall_s += time.perf_counter() - t0
            self.in_flight.clear()

    def stats(self) -> dict:
        """Per node: runner actors, trials, busy seconds and utilisation within run()."""
        out: dict = {}
        for s in self.slots:
            d = out.setdefault(s.node, {"actors": 0, "trials": 0, "busy_s": 0.0})
            d["actors"] += 1
            d["trials"] += s.trials
            d["busy_s"] += s.busy_s
        for d in out.values():
            d["utilisation"] = d["busy_s"] / (d["actors"] * self.wall_s) if self.wall_s else 0.0
        return out

    def summary(self) -> str:
        """Trials per minute of measurement and per-node utilisation, one line each."""
        stats = self.stats()
        total = sum(d["trials"] for d in stats.values())
        rate = total / self.wall_s * 60 if self.wall_s else 0.0
        lines = [f"[kiln] cluster: {total} trials measured in {self.wall_s:.1f} s of "
                 f"measurement ({rate:.0f} trials/min), {self.requeued} re-queued after a "
                 f"runner died"]
        lines += [f"  node {n}: {d['actors']} runner(s), {d['trials']} trials, "
                  f"utilisation {d['utilisation']:.0%}" for n, d in sorted(stats.items())]
        return "\n".join(lines)

    def close(self) -> None:
        """Stop every runner actor."""
        if self.slots:
            ray = _ray()
            for s in self.slots:
                try:
                    ray.kill(s.handle, no_restart=True)
                except Exception:  # noqa: BLE001 - already gone
                    pass
        self.slots = []

    def __enter__(self) -> RayRunner:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # ------------------------------------------------------------ actors
    def _discover(self, ray) -> None:
        """One actor per measuring slot of every alive node with CPUs not yet served."""
        served = {s.node_id for s in self.slots if not s.dropped}
        new = []
        for node in ray.nodes():
            nid = node.get("NodeID")
            if not node.get("Alive") or nid in served or \
                    node.get("Resources", {}).get("CPU", 0) <= 0:
                continue
            for k in range(self.workers_per_node):
                new.append(self._spawn(ray, nid, k if self.pin_cores else None, None))
        for slot, (target, host) in zip(new, self._info(ray, new)):
            slot.target, slot.node = target, host

    def _spawn(self, ray, node_id: str | None, core: int | None, target: str | None) -> Slot:
        from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy
        if self._actor_cls is None:
            self._actor_cls = ray.remote(MeasureActor)
        opts = {"num_cpus": self.cpus_per_worker, "max_restarts": self.max_restarts,
                "max_task_retries": 0}
        if node_id is not None:
            opts["scheduling_strategy"] = NodeAffinitySchedulingStrategy(node_id, soft=False)
        handle = self._actor_cls.options(**opts).remote(self.timeout, core, target)
        slot = Slot(handle, "", "", len(self.slots), node_id)
        self.slots.append(slot)
        return slot

    def _info(self, ray, slots: list[Slot]) -> list[tuple]:
        infos = ray.get([s.handle.info.remote() for s in slots], timeout=START_TIMEOUT)
        return [(i["target"], i["node"]) for i in infos]

    def _reference(self, ray, task):
        """The object ref of the task's reference job (built here if the measurer did not)."""
        key = task.workload_key
        if key not in self._ref_objs:
            build = self._ref_builds.get(key)
            if build is None or not build.ok:
                build = LocalBuilder(timeout=max(60.0, 6 * self.timeout), n_parallel=1) \
                    .build([reference_input(task)])[0].packed()
            self._ref_objs[key] = ray.put(reference_job(task, build))
        return self._ref_objs[key]


class _Batch:
    """One run() call: a queue of candidates, fed to idle actors of their target."""

    def __init__(self, runner: RayRunner, ray, inputs, builds, on_result):
        self.r, self.ray, self.inputs, self.builds = runner, ray, inputs, builds
        self.on_result = on_result
        self.results: list = [None] * len(inputs)
        self.queue: deque = deque()
        self.jobs: dict = {}
        self.keys: dict = {}      # candidate -> target key of its task
        self.avoid: dict = {}     # candidate -> index of the actor that died on it
        self.attempts: dict = {}
        self.inflight: dict = {}  # future -> (candidate, slot, start time)

    def run(self) -> list[MeasureResult]:
        for i, (inp, br) in enumerate(zip(self.inputs, self.builds, strict=True)):
            if br.ok:
                self._enqueue(i, inp, br)
            else:
                self._done(i, MeasureResult([], br.error_no, br.error_msg, br.time_cost))
        while self.queue or self.inflight:
            self._dispatch()
            if not self.inflight:
                raise ClusterError(self._no_runner_message())
            ready, _ = self.ray.wait(list(self.inflight), num_returns=1)
            for fut in ready:
                self._collect(fut)
        return self.results

    def _enqueue(self, i: int, inp: MeasureInput, br: BuildResult) -> None:
        task = inp.task
        if task.target.kind != "cpu":
            raise ClusterError(f"RayRunner measures CPU targets; {task.desc} targets "
                               f"{task.target} (tune CUDA tasks with the local GPU runner)")
        key = target_key(str(task.target))
        if not any(s.key == key and not s.dropped for s in self.r.slots):
            raise ClusterError(self._no_runner_message(key))
        self.keys[i] = key
        job = measure_job(inp, self.r)
        ref = self.r._reference(self.ray, task) if job["ref_key"] else None
        self.jobs[i] = (job, br.packed(), ref)
        self.queue.append(i)

    def _dispatch(self) -> None:
        """Give every idle live actor the first queued candidate of its target."""
        busy = {slot.index for _, slot, _ in self.inflight.values()}
        for slot in self.r.slots:
            if slot.dropped or slot.index in busy:
                continue
            i = self._pick(slot)
            if i is None:
                continue
            self.queue.remove(i)
            job, build, ref = self.jobs[i]
            fut = slot.handle.measure.remote(job, build, ref)
            self.inflight[fut] = (i, slot, time.perf_counter())
            self.r.in_flight[slot.index] = (i, time.monotonic())

    def _pick(self, slot: Slot) -> int | None:
        """The first queued candidate this actor may take (not one it died on, unless it is
        the only live actor of that target)."""
        for i in self.queue:
            if self.keys[i] != slot.key:
                continue
            if self.avoid.get(i) == slot.index and self._others(slot):
                continue
            return i
        return None

    def _others(self, slot: Slot) -> bool:
        return any(s is not slot and not s.dropped and s.key == slot.key for s in self.r.slots)

    def _collect(self, fut) -> None:
        i, slot, t0 = self.inflight.pop(fut)
        self.r.in_flight.pop(slot.index, None)
        try:
            reply, busy = self.ray.get(fut)
        except self.ray.exceptions.RayActorError as err:
            self._actor_died(i, slot, err)
            return
        except self.ray.exceptions.RayError as err:  # the actor method raised: a kiln bug
            reply, busy = {"error_no": ErrorNo.RUNTIME, "error_msg": f"runner: {err}"[:2000]}, 0
        if str(reply.get("error_msg", "")).startswith(KILLED_FROM_OUTSIDE):
            # the actor's measurement process got SIGKILL (the actor being killed takes its
            # children first, or the OOM killer): no candidate does that to itself, and a
            # timeout is reported as such, so it is the node's fault: measure it again
            self._actor_died(i, slot, reply["error_msg"])
            return
        slot.failures, slot.busy_s, slot.trials = 0, slot.busy_s + busy, slot.trials + 1
        build = self.jobs[i][1]
        self._done(i, result_of(reply, build.time_cost + time.perf_counter() - t0))

    def _actor_died(self, i: int, slot: Slot, err) -> None:
        """Queue the candidate again (first in line) unless actors died on it too often."""
        slot.failures += 1
        if slot.failures > self.r.max_restarts + 1:
            slot.dropped = True
        self.attempts[i] = self.attempts.get(i, 0) + 1
        if self.attempts[i] >= self.r.max_attempts:
            msg = f"{self.attempts[i]} runner actors died measuring it; last: {err}"
            self._done(i, MeasureResult([], ErrorNo.RUNTIME, msg[:2000], 0.0))
            return
        self.r.requeued += 1
        self.avoid[i] = slot.index
        self.queue.appendleft(i)

    def _done(self, i: int, res: MeasureResult) -> None:
        self.results[i] = res
        if self.on_result is not None:
            self.on_result(i, res)

    def _no_runner_message(self, key: str | None = None) -> str:
        have = sorted({s.target for s in self.r.slots if not s.dropped}) or ["none"]
        want = key or ", ".join(sorted(set(self.keys.values())))
        return (f"no live runner on the cluster measures target {want!r}; runners: "
                f"{'; '.join(have)}. Add nodes of that machine type or tune for theirs")
