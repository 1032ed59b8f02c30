"""Resume: the measured records of a task, from the log files the tuner appends to.

In: a task, its measure callbacks (RecordToFile knows its file name) and the sketch infos.
Out: replayed States, mean costs (inf for errors) and genomes where the record kept one, so
a second tune() on the same log neither measures a state twice nor starts the model cold.
"""

from __future__ import annotations

import math
import os

from ..errors import KilnError
from .annotate import Genome


def log_files(callbacks) -> list:
    return list(dict.fromkeys(cb.filename for cb in callbacks or () if hasattr(cb, "filename")))


def records_for_task(task, callbacks, infos):
    from .measure.record import load_records
    states, costs, genomes = [], [], []
    for path in log_files(callbacks):
        if not os.path.exists(path):
            continue
        for rec in load_records(path):
            if rec.workload_key != task.workload_key or rec.target != str(task.target):
                continue
            try:
                state = task.replay(rec.steps)
            except KilnError:
                continue
            ok = rec.error == "ok" and rec.costs
            states.append(state)
            costs.append(sum(rec.costs) / len(rec.costs) if ok else math.inf)
            genomes.append(_genome((rec.meta or {}).get("genome"), infos))
    return states, costs, genomes


def _genome(d, infos):
    if not d or d.get("sketch", -1) >= len(infos):
        return None
    try:
        return Genome(int(d["sketch"]), tuple(tuple(t) for t in d["tiles"]),
                      tuple((int(a), int(b)) for a, b in d["parallel"]),
                      tuple((int(a), bool(b)) for a, b in d["vectorize"]),
                      tuple((int(a), int(b)) for a, b in d["unroll"]),
                      tuple((int(a), int(b)) for a, b in d["location"]))
    except (KeyError, TypeError, ValueError):
        return None
