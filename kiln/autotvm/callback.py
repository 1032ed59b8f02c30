"""Tuner callbacks (TVM's autotvm.callback): each is called as f(tuner, inputs, results)
after every measured batch.

log_to_file appends one record per config and flushes it at once (a crash or Ctrl-C loses
no record); progress_bar prints the trial count and the best GFLOPS so far.
"""

from __future__ import annotations

import os
import sys

from .record import encode


def log_to_file(file_out: str, protocol: str = "json"):
    """Append each measured config of the tuner to the log `file_out`."""
    if protocol != "json":
        raise ValueError(f"log_to_file: kiln writes the 'json' protocol, not {protocol!r}")
    path = os.fspath(file_out)

    def _callback(tuner, inputs, results) -> None:
        with open(path, "a", encoding="utf-8") as f:
            for inp, res in zip(inputs, results, strict=True):
                f.write(encode(inp, res) + "\n")
                f.flush()
    return _callback


def progress_bar(total: int, prefix: str = "", si_prefix: str = "G"):
    """Print `prefix Current/Best: x/y GFLOPS | Progress: (i/total)` after every batch."""
    scale = {"G": 1e9, "M": 1e6, "K": 1e3, "T": 1e12}.get(si_prefix, 1e9)
    state = {"done": 0}

    def _callback(tuner, inputs, results) -> None:
        state["done"] += len(inputs)
        cur = max((tuner.task.flop / (sum(r.costs) / len(r.costs)) for r in results
                   if r.error_no == 0 and r.costs), default=0.0)
        print(f"{prefix}Current/Best: {cur / scale:7.2f}/{tuner.best_flops / scale:7.2f} "
              f"{si_prefix}FLOPS | Progress: ({state['done']}/{total})", file=sys.stderr,
              flush=True)
    return _callback


__all__ = ["log_to_file", "progress_bar"]
