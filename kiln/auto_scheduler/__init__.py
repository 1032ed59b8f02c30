"""The search for fast schedules (Ansor): workload registry, tasks, sketches, cost model, records."""

from ..schedule import ComputeDAG
from .task import WORKLOAD_FUNCS, make_workload_key, register_workload, workload_tensors

__all__ = ["ComputeDAG", "WORKLOAD_FUNCS", "make_workload_key", "register_workload",
           "workload_tensors"]
