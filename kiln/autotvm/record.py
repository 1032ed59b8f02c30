"""AutoTVM tuning logs: one JSON object per measured config, and the history they make.

In: (MeasureInput, MeasureResult) pairs from a tuner; log files. Out: lines in TVM's
autotvm shape ({"input": [target, template name, args, {}], "config": {...}, "result":
[costs, error_no, all_cost, timestamp], "version": 0.2}), `load_from_file`, `pick_best`, and
`ApplyHistoryBest`, which makes templates built inside it use the best config of their
(target, workload).
Why: TVM users keep, merge and apply these logs; lines are appended and flushed one by one
(a crash loses no record) and a damaged or foreign line is skipped with a warning.
"""

from __future__ import annotations

import json
import logging
import os
from typing import NamedTuple

from ..target import as_target
from .config import ConfigEntity
from .measure import MeasureErrorNo, MeasureInput, MeasureResult
from .task import DispatchContext, serialize_args, workload_of

logger = logging.getLogger("autotvm")
VERSION = 0.2


class TaskRef(NamedTuple):
    """The template call a record names (not instantiated)."""

    name: str
    args: tuple

    @property
    def workload(self) -> str:
        return workload_of(self.name, self.args)


def encode(inp: MeasureInput, result: MeasureResult) -> str:
    return json.dumps({
        "input": [str(as_target(inp.target)), inp.task.name, serialize_args(inp.task.args), {}],
        "config": inp.config.to_json_dict(),
        "result": [list(result.costs), int(result.error_no), float(result.all_cost),
                   float(result.timestamp)],
        "version": VERSION, "tvm_version": "kiln"})


def decode(line: str):
    """(MeasureInput, MeasureResult) of a log line, or None when it is not one."""
    try:
        obj = json.loads(line)
        target, name, args, _ = obj["input"]
        cfg = ConfigEntity.from_json_dict(obj["config"])
        costs, error_no, all_cost, stamp = obj["result"]
        return (MeasureInput(target, TaskRef(name, _tuples(args)), cfg),
                MeasureResult(list(costs), int(error_no), float(all_cost), float(stamp)))
    except (ValueError, KeyError, TypeError, IndexError) as err:
        logger.warning("skipping a line that is not an autotvm record (%s): %.80s", err, line)
        return None


def _tuples(args):
    return tuple(tuple(_tuples(a)) if isinstance(a, list) and a[:1] != ["TENSOR"] else a
                 for a in args)


def load_from_file(path: str):
    """Yield (MeasureInput, MeasureResult) per record of the log at `path`."""
    with open(path, encoding="utf-8") as f:
        for line in f:
            if line.strip():
                rec = decode(line)
                if rec is not None:
                    yield rec


def save_to_file(path: str, records) -> None:
    with open(path, "a", encoding="utf-8") as f:
        for inp, res in records:
            f.write(encode(inp, res) + "\n")


def _mean(res: MeasureResult) -> float:
    if res.error_no != MeasureErrorNo.NO_ERROR or not res.costs:
        return float("inf")
    return sum(res.costs) / len(res.costs)


def best_records(records) -> dict:
    """{(target text, workload): (MeasureInput, MeasureResult)} of the fastest valid record."""
    best: dict = {}
    for inp, res in records:
        if _mean(res) == float("inf"):
            continue
        key = (str(inp.target), inp.task.workload)
        if key not in best or _mean(res) < _mean(best[key][1]):
            best[key] = (inp, res)
    return best


def pick_best(in_file: str, out_file: str) -> None:
    """Write the best record of each (target, workload) of `in_file` to `out_file`."""
    best = best_records(load_from_file(in_file))
    tmp = out_file + ".tmp"
    with open(tmp, "w", encoding="utf-8") as f:
        for inp, res in best.values():
            f.write(encode(inp, res) + "\n")
    os.replace(tmp, out_file)


class ApplyHistoryBest(DispatchContext):
    """Inside it, a template builds with the best logged config of its (target, workload);
    other workloads fall through (to the fallback config, with a warning)."""

    def __init__(self, records):
        self.best: dict = {}
        self.load(records)

    def load(self, records) -> None:
        if isinstance(records, (str, os.PathLike)):
            records = [records]
        pairs = []
        for r in records:
            if isinstance(r, (str, os.PathLike)):
                pairs.extend(load_from_file(os.fspath(r)))
            else:
                pairs.append(r)
        for key, rec in best_records(pairs).items():
            if key not in self.best or _mean(rec[1]) < _mean(self.best[key][1]):
                self.best[key] = rec

    def query(self, target, workload):
        rec = self.best.get((str(as_target(target)), workload))
        return None if rec is None else rec[0].config


def apply_history_best(records) -> ApplyHistoryBest:
    return ApplyHistoryBest(records)


__all__ = ["ApplyHistoryBest", "apply_history_best", "best_records", "decode", "encode",
           "load_from_file", "pick_best", "save_to_file"]
