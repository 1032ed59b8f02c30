"""The search for fast schedules (Ansor): tasks, sketches, evolution, cost model, measurement."""

from ..graph.tasks import extract_tasks
from ..schedule import ComputeDAG
from ..schedule.layout import input_layouts, pack_array, pack_inputs
from .cost_model import CostModel, RandomModel, XGBModel
from .measure import (
                      ApplyHistoryBest,
                      LocalBuilder,
                      LocalRPCMeasureContext,
                      LocalRunner,
                      MeasureInput,
                      MeasureResult,
                      ProgramMeasurer,
                      RayBuilder,
                      RayRunner,
                      RecordToFile,
                      load_best_record,
                      load_records,
)
from .policy import PreloadMeasuredStates, SearchPolicyParams, SketchPolicy
from .task import (
                      WORKLOAD_FUNCS,
                      LayoutRewriteOption,
                      SearchTask,
                      TuningOptions,
                      make_workload_key,
                      register_workload,
                      workload_tensors,
)
from .task_scheduler import TaskScheduler

__all__ = ["ApplyHistoryBest", "ComputeDAG", "CostModel", "LayoutRewriteOption", "LocalBuilder",
           "LocalRPCMeasureContext", "LocalRunner", "MeasureInput", "MeasureResult",
           "PreloadMeasuredStates", "ProgramMeasurer", "RandomModel",
           "RayBuilder", "RayRunner", "RecordToFile", "SearchPolicyParams", "SearchTask",
           "SketchPolicy", "TaskScheduler",
           "TuningOptions", "WORKLOAD_FUNCS", "XGBModel", "extract_tasks", "input_layouts",
           "load_best_record", "load_records", "make_workload_key", "pack_array", "pack_inputs",
           "register_workload", "workload_tensors"]
