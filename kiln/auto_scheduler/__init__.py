"""The search for fast schedules (Ansor): tasks, sketches, evolution, cost model, measurement."""

from ..schedule import ComputeDAG
from .task import (
                   WORKLOAD_FUNCS,
                   SearchTask,
                   TuningOptions,
                   make_workload_key,
                   register_workload,
                   workload_tensors,
)

__all__ = ["ComputeDAG", "SearchTask", "TuningOptions", "WORKLOAD_FUNCS", "make_workload_key",
           "register_workload", "workload_tensors"]
