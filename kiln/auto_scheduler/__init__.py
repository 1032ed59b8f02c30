"""The search for fast schedules (Ansor): tasks, sketches, evolution, cost model, measurement."""

from ..graph.tasks import extract_tasks
from ..schedule import ComputeDAG
from ..schedule.layout import input_layouts, pack_array, pack_inputs
from .measure import (
                      ApplyHistoryBest,
                      LocalBuilder,
                      LocalRunner,
                      MeasureInput,
                      MeasureResult,
                      ProgramMeasurer,
                      RecordToFile,
                      load_best_record,
                      load_records,
)
from .task import (
                      WORKLOAD_FUNCS,
                      LayoutRewriteOption,
                      SearchTask,
                      TuningOptions,
                      make_workload_key,
                      register_workload,
                      workload_tensors,
)

__all__ = ["ApplyHistoryBest", "ComputeDAG", "LayoutRewriteOption", "LocalBuilder", "LocalRunner",
           "MeasureInput", "MeasureResult", "ProgramMeasurer", "RecordToFile", "SearchTask",
           "TuningOptions", "WORKLOAD_FUNCS", "extract_tasks", "input_layouts", "load_best_record",
           "load_records", "make_workload_key", "pack_array", "pack_inputs", "register_workload",
           "workload_tensors"]
