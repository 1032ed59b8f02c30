"""Tuning records: one JSON object per line, appended and flushed per measurement.

In: measured (task, MeasureInput, MeasureResult) triples (RecordToFile is a measure callback);
log files written by earlier runs. Out: Record values (load_records), the best record of a
workload on a target (load_best_record), per-workload summaries (best_by_key), and
ApplyHistoryBest, a context under which kiln.build turns a default schedule into the best
recorded one.
Why: records are the product of tuning. Every record carries the workload key, the target
string and a format version, so it is never applied to another workload or target; loading
skips (with a warning) a line cut short by a killed tuner and records of unknown versions.
"""

from __future__ import annotations

import functools
import json
import logging
import math
import os
import warnings
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import ClassVar

from ... import __version__ as KILN_VERSION
from ...errors import KilnError
from .common import ErrorNo, MeasureInput, MeasureResult

RECORD_VERSION = 1
ERROR_MSG_CHARS = 500
_REQUIRED = ("workload_key", "target", "steps", "costs", "error", "version")
log = logging.getLogger("kiln.auto_scheduler")


@dataclass
class Record:
    """One measurement as stored in a log file."""

    workload_key: str
    target: str
    steps: list
    costs: list
    error: str
    timestamp: float = 0.0
    workload_desc: str = ""
    error_msg: str = ""
    all_cost: float = 0.0
    version: int = RECORD_VERSION
    kiln_version: str = ""
    meta: dict | None = None
    # the output was compared with the reference and matched; records written before this
    # field existed were checked whenever a reference could be built, so they read as True
    checked: bool = True
    # how the caches were left before each timed call: "warm", or "flushed" (the task's cold
    # inputs, its weights, evicted as in the network); older records were measured warm
    cache: str = "warm"

    @property
    def mean_cost(self) -> float:
        """Mean seconds per run; inf unless the measurement was ok."""
        if self.error != ErrorNo.OK or not self.costs:
            return math.inf
        return sum(self.costs) / len(self.costs)

    def to_json(self) -> dict:
        out = {"workload_key": self.workload_key, "workload_desc": self.workload_desc,
               "target": self.target, "steps": self.steps, "costs": self.costs,
               "error": self.error, "error_msg": self.error_msg[:ERROR_MSG_CHARS],
               "all_cost": self.all_cost, "timestamp": self.timestamp,
               "version": self.version, "kiln_version": self.kiln_version,
               "checked": self.checked, "cache": self.cache}
        if self.meta is not None:
            out["meta"] = self.meta
        return out

    @staticmethod
    def from_json(obj: dict) -> Record:
        missing = [k for k in _REQUIRED if k not in obj]
        if missing:
            raise ValueError(f"missing field(s) {', '.join(missing)}")
        rec = Record(str(obj["workload_key"]), str(obj["target"]), list(obj["steps"]),
                     [float(c) for c in obj["costs"]], str(obj["error"]),
                     float(obj.get("timestamp", 0.0)), str(obj.get("workload_desc", "")),
                     str(obj.get("error_msg", "")), float(obj.get("all_cost", 0.0)),
                     obj["version"], str(obj.get("kiln_version", "")), obj.get("meta"),
                     bool(obj.get("checked", True)), str(obj.get("cache", "warm")))
        if rec.error == ErrorNo.OK and not (rec.costs and all(
                math.isfinite(c) and c > 0 for c in rec.costs)):
            raise ValueError(f"an ok record needs positive finite costs, not {rec.costs}")
        return rec

    def rank(self) -> tuple:
        """Sort key of the best record: checked outputs first, then the lowest mean cost."""
        return (not self.checked, self.mean_cost)


def make_record(task, inp: MeasureInput, res: MeasureResult) -> Record:
    """The Record of one measurement."""
    return Record(task.workload_key, str(task.target), [s.to_record() for s in inp.state.steps],
                  list(res.costs), res.error_no, res.timestamp, getattr(task, "desc", ""),
                  res.error_msg[:ERROR_MSG_CHARS], res.all_cost, RECORD_VERSION, KILN_VERSION,
                  inp.extra, bool(getattr(res, "checked", False)),
                  str(getattr(res, "cache", "warm")))


class RecordToFile:
    """Measure callback appending one JSON line per result, flushed at once (fsync optional)."""

    def __init__(self, filename: str, fsync: bool = False):
        self.filename = os.fspath(filename)
        self.fsync = fsync
        self._checked_tail = False

    def __call__(self, task, inputs: list, results: list) -> None:
        lines = "".join(json.dumps(make_record(task, i, r).to_json()) + "\n"
                        for i, r in zip(inputs, results, strict=True))
        folder = os.path.dirname(os.path.abspath(self.filename))
        os.makedirs(folder, exist_ok=True)
        with open(self.filename, "a+b") as f:
            if not self._checked_tail:
                lines = _newline_if_cut(f) + lines
                self._checked_tail = True
            f.write(lines.encode())
            f.flush()
            if self.fsync:
                os.fsync(f.fileno())


def _newline_if_cut(f) -> str:
    """A newline if the file ends inside a line (a killed writer), so new records start
    on a line of their own; else the empty string."""
    f.seek(0, os.SEEK_END)
    if f.tell() == 0:
        return ""
    f.seek(-1, os.SEEK_END)
    return "" if f.read(1) == b"\n" else "\n"


def load_records(filename: str) -> Iterator[Record]:
    """Records of a log file in order; malformed lines (bad JSON, missing fields, an ok
    record without positive finite costs) and unknown versions are skipped with a warning."""
    filename = os.fspath(filename)
    if not os.path.isfile(filename):
        raise KilnError(f"no such log file: {filename}")
    warned_version = False
    with open(filename, encoding="utf-8", errors="replace") as f:
        for lineno, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                obj = json.loads(line)
                if not isinstance(obj, dict):
                    raise ValueError("not a JSON object")
                if obj.get("version") != RECORD_VERSION:
                    if not warned_version:
                        warnings.warn(f"{filename}:{lineno}: skipping records of version "
                                      f"{obj.get('version')!r} (this kiln reads version "
                                      f"{RECORD_VERSION})", stacklevel=2)
                        warned_version = True
                    continue
                rec = Record.from_json(obj)
            except (ValueError, TypeError, RecursionError) as err:
                what = "nested too deeply" if isinstance(err, RecursionError) else err
                warnings.warn(f"{filename}:{lineno}: skipping a malformed record line "
                              f"(truncated write?): {what}", stacklevel=2)
                continue
            yield rec


@functools.lru_cache(maxsize=64)
def canonical_target(target) -> str:
    """The canonical string of a target ("llvm" -> "cpu"); unknown strings stay as they are."""
    from ...target import as_target
    try:
        return str(as_target(target))
    except KilnError:
        return str(target)


LEGACY_CPU = "cpu (ISA not recorded)"


def record_target(text: str) -> str:
    """The canonical target of a record. A bare "cpu" / "llvm" is a record from before kiln
    wrote the ISA into the target string: it could come from any x86 or Arm machine, so it
    matches no target (it is reported as another target) instead of being misapplied."""
    if str(text).strip() in ("cpu", "llvm", "c"):
        return LEGACY_CPU
    return canonical_target(text)


def _matches(rec: Record, workload_key: str, target: str) -> bool:
    return rec.workload_key == workload_key and record_target(rec.target) == target


def ranked_records(filename: str, workload_key: str, target) -> list[Record]:
    """The ok records of this workload and target, best first (Record.rank)."""
    target = canonical_target(str(target))
    return sorted((rec for rec in load_records(filename) if _matches(rec, workload_key, target)
                   and math.isfinite(rec.mean_cost)), key=Record.rank)


def load_best_record(filename: str, workload_key: str, target) -> tuple[Record, float] | None:
    """(the best ok record of this workload and target, its mean cost): records whose output
    was checked against the reference first, then the lowest mean cost."""
    ranked = ranked_records(filename, workload_key, target)
    return (ranked[0], ranked[0].mean_cost) if ranked else None


def first_replaying(records: Iterable[Record], dag, label: str = ""):
    """(record, replayed State) of the first record whose steps replay on `dag`, or None.
    Records that do not replay (edited or from an incompatible kiln) are skipped with one
    warning, so the next-best record is used instead of failing the build."""
    from ...schedule import replay
    skipped, why, key = 0, "", ""
    for rec in records:
        try:
            state = replay(dag, rec.steps)
        except Exception as err:  # noqa: BLE001 - a record is untrusted input
            skipped, why = skipped + 1, why or f"{type(err).__name__}: {err}"
            key = rec.workload_key
            continue
        if skipped:
            _warn_skipped(skipped, key, label, why, "the next best one is used")
        return rec, state
    if skipped:
        _warn_skipped(skipped, key, label, why, "none is left")
    return None


def _warn_skipped(n: int, key: str, label: str, why: str, then: str) -> None:
    warnings.warn(f"kiln: {label + ': ' if label else ''}{n} best record(s) of workload {key} "
                  f"do not replay ({why[:200]}); {then}", stacklevel=3)


@dataclass
class KeySummary:
    """What a log holds for one (workload key, target)."""

    workload_key: str
    target: str
    desc: str = ""
    trials: int = 0
    errors: dict = field(default_factory=dict)  # error kind -> count (not "ok")
    best_cost: float = math.inf
    best: Record | None = None


def best_by_key(filename: str) -> dict[tuple[str, str], KeySummary]:
    """Per (workload key, target): trial count, errors by kind, best mean cost and record."""
    out: dict = {}
    for rec in load_records(filename):
        key = (rec.workload_key, record_target(rec.target))
        s = out.setdefault(key, KeySummary(*key))
        s.desc = s.desc or rec.workload_desc
        s.trials += 1
        if rec.error != ErrorNo.OK:
            s.errors[rec.error] = s.errors.get(rec.error, 0) + 1
        elif rec.mean_cost < s.best_cost:
            s.best_cost, s.best = rec.mean_cost, rec
    return out


@dataclass
class LogCoverage:
    """How the records of a log relate to a set of workloads on one target."""

    filename: str
    used: int = 0            # records of these workloads on this target
    other_target: int = 0    # records of these workloads tuned for another target
    other_workload: int = 0  # records of workloads not in the set (another model or shape)
    other_targets: set = field(default_factory=set)
    other_keys: set = field(default_factory=set)

    def message(self) -> str:
        """One line for the user, or "" when every record applies."""
        if not self.other_target and not self.other_workload:
            return ""
        parts = [f"{self.filename}: {self.used} records apply"]
        if self.other_workload:
            parts.append(f"{self.other_workload} records of {len(self.other_keys)} workloads "
                         f"not in this model (another model or shape) are ignored")
        if self.other_target:
            parts.append(f"{self.other_target} records for other targets "
                         f"({', '.join(sorted(self.other_targets))}) are ignored")
        return "; ".join(parts)


def log_coverage(filename: str, workload_keys, target) -> LogCoverage:
    """Count which records of `filename` apply to `workload_keys` on `target`."""
    return ApplyHistoryBest(filename).coverage(str(filename), target, workload_keys)


class ApplyHistoryBest:
    """While active (`with ApplyHistoryBest(log):`), kiln.build of a default schedule builds
    the best recorded schedule of its workload on the build target instead.

    `records`: a log file name, a list of file names, or a list of Records (mixed is fine).
    """

    _stack: ClassVar[list] = []

    def __init__(self, records):
        self.ok: dict = {}       # (workload key, target) -> ok Records (ranked when queried)
        self._sorted: set = set()
        self.targets: dict = {}  # workload key -> set of targets with records
        self.counts: dict = {}   # (workload key, target) -> number of records
        self.queried: set = set()  # workload keys asked for (by builds inside the context)
        self._told: set = set()
        for rec in _iter_records(records):
            self._add(rec)

    def _add(self, rec: Record) -> None:
        target = record_target(rec.target)
        self.targets.setdefault(rec.workload_key, set()).add(target)
        cost = rec.mean_cost
        key = (rec.workload_key, target)
        self.counts[key] = self.counts.get(key, 0) + 1
        if math.isfinite(cost):
            self.ok.setdefault(key, []).append(rec)
            self._sorted.discard(key)

    def ranked(self, workload_key: str, target) -> list[Record]:
        """The ok records of this workload and target, best first (Record.rank)."""
        target = canonical_target(str(target))
        self.queried.add(workload_key)
        key = (workload_key, target)
        recs = self.ok.get(key, [])
        if key not in self._sorted:
            recs.sort(key=Record.rank)
            self._sorted.add(key)
        if not recs:
            self._tell_other_targets(workload_key, target)
        return recs

    def query_record(self, workload_key: str, target) -> tuple[Record, float] | None:
        """(best record, its mean cost) for this workload and target, or None."""
        recs = self.ranked(workload_key, target)
        return (recs[0], recs[0].mean_cost) if recs else None

    def query_state(self, dag, target, workload_key: str | None = None):
        """The replayed State of the best record of `dag`'s workload (`workload_key`, default
        dag.workload_key()) on `target` that replays (records that do not are skipped with a
        warning), or None."""
        key = workload_key or dag.workload_key()
        hit = first_replaying(self.ranked(key, target), dag, "ApplyHistoryBest")
        return hit[1] if hit is not None else None

    def _tell_other_targets(self, workload_key: str, target: str) -> None:
        others = self.targets.get(workload_key, set()) - {target}
        if others and (workload_key, target) not in self._told:
            self._told.add((workload_key, target))
            log.warning("ApplyHistoryBest: records of workload %s exist only for target(s) %s, "
                        "not %s; they are ignored", workload_key, ", ".join(sorted(others)),
                        target)

    def coverage(self, label: str, target, workload_keys=None) -> LogCoverage:
        """How these records relate to `workload_keys` (default: the keys queried so far,
        i.e. the kernels of what was built inside the context) on `target`."""
        target = canonical_target(str(target))
        keys = self.queried if workload_keys is None else set(workload_keys)
        cov = LogCoverage(label)
        for (key, tgt), n in self.counts.items():
            if key not in keys:
                cov.other_workload += n
                cov.other_keys.add(key)
            elif tgt != target:
                cov.other_target += n
                cov.other_targets.add(tgt)
            else:
                cov.used += n
        return cov

    def query(self, workload_key: str, target) -> list | None:
        """Step records of the best record for this workload and target, or None."""
        hit = self.query_record(workload_key, target)
        return hit[0].steps if hit is not None else None

    @staticmethod
    def current() -> ApplyHistoryBest | None:
        """The innermost active context, or None."""
        return ApplyHistoryBest._stack[-1] if ApplyHistoryBest._stack else None

    def __enter__(self) -> ApplyHistoryBest:
        ApplyHistoryBest._stack.append(self)
        return self

    def __exit__(self, *exc) -> None:
        ApplyHistoryBest._stack.remove(self)


def _iter_records(records) -> Iterator[Record]:
    if isinstance(records, (str, os.PathLike, Record)):
        records = [records]
    if not isinstance(records, Iterable):
        raise KilnError(f"ApplyHistoryBest takes a log file name, a list of them or a list of "
                        f"Records, got {type(records).__name__}")
    for item in records:
        if isinstance(item, Record):
            yield item
        else:
            yield from load_records(item)


def apply_history_best(sch, target):
    """`sch` itself, or, for a default schedule (no steps) under an active ApplyHistoryBest
    with a record of its workload on `target`, the replayed State of the best record."""
    ctx = ApplyHistoryBest.current()
    state = getattr(sch, "state", sch)
    if ctx is None or getattr(state, "steps", None) != ():
        return sch
    best = ctx.query_state(state.dag, target)
    return sch if best is None else best

