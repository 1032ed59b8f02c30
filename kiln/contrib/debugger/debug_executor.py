"""debug_executor: TVM's graph executor that also times every kernel of the model.

In: what graph_executor takes (a compiled model, or lib["default"](dev)), and optionally a
dump_root folder. Out: a GraphModule whose run() computes the outputs through the model's
profiling entry (a clock read after every step, so each kernel is timed where it runs), keeps
the per-kernel report and prints it as TVM's debug executor does; profile() measures over
several runs. With dump_root, each run's report is also written there as JSON.
Why: TVM users find the slow operator with this; kiln's kernels are its fused groups, so a
row is a fused group (its kernel name says which ops it holds), not a single relay node.
"""

from __future__ import annotations

import json
import os

from ...errors import ArgumentError
from ..graph_executor import GraphModule

__all__ = ["DebugGraphModule", "ProfileReport", "create"]


class ProfileReport:
    """Per kernel: name, launches per inference, seconds per launch (median over runs)."""

    def __init__(self, rows: list):
        self.rows = [(str(n), int(k), float(t)) for n, k, t in rows]
        self.total = sum(k * t for _, k, t in self.rows)

    def table(self) -> str:
        head = f"{'Kernel':<56}{'Calls':>6}{'Time(us)':>12}{'Time(%)':>9}"
        lines = [head, "-" * len(head)]
        for name, calls, t in self.rows:
            share = 100.0 * calls * t / self.total if self.total else 0.0
            lines.append(f"{name[:55]:<56}{calls:>6}{calls * t * 1e6:>12.1f}{share:>9.2f}")
        lines.append(f"{'Total':<56}{sum(k for _, k, _ in self.rows):>6}"
                     f"{self.total * 1e6:>12.1f}{100.0:>9.2f}")
        return "\n".join(lines)

    def json(self) -> str:
        return json.dumps({"total_seconds": self.total,
                           "kernels": [{"name": n, "calls": k, "seconds_per_call": t}
                                       for n, k, t in self.rows]}, indent=1)

    def __str__(self) -> str:
        return self.table()


class DebugGraphModule(GraphModule):
    """graph_executor.GraphModule plus per-kernel timing (module docstring)."""

    def __init__(self, module, device=None, dump_root: str | None = None):
        super().__init__(module, device)
        if not hasattr(self.lib, "profile"):
            raise ArgumentError("debug_executor times CPU models; this model has no "
                                "profiling entry")
        self.dump_root = os.fspath(dump_root) if dump_root is not None else None
        self.report: ProfileReport | None = None

    def run(self, **input_dict) -> None:
        """One inference through the profiling entry: outputs as run() gives them, the
        report printed and kept in `self.report`."""
        if input_dict:
            self.set_input(**input_dict)
        self.report = ProfileReport(self.lib.profile(number=1))
        self._ran = True
        print(self.report)
        self._dump()

    def profile(self, number: int = 10, **input_dict) -> ProfileReport:
        """The report over `number` runs (medians per kernel), not printed."""
        if input_dict:
            self.set_input(**input_dict)
        self.report = ProfileReport(self.lib.profile(number=number))
        self._ran = True
        self._dump()
        return self.report

    def _dump(self) -> None:
        if self.dump_root is None:
            return
        os.makedirs(self.dump_root, exist_ok=True)
        with open(os.path.join(self.dump_root, "kiln_profile.json"), "w") as f:
            f.write(self.report.json())


def create(graph_json_str, libmod, device, dump_root: str | None = None) -> DebugGraphModule:
    """TVM's debug_executor.create(graph_json, lib, dev, dump_root=...)."""
    if isinstance(device, (list, tuple)):
        if len(device) != 1:
            raise ArgumentError("kiln runs a model on one device")
        device = device[0]
    return DebugGraphModule(libmod["default"](device), dump_root=dump_root)
