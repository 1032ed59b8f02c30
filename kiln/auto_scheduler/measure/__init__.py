"""Measuring candidates for real: build (parallel C compiles), run (isolated worker), record."""

from .builder import LocalBuilder
from .common import BuildResult, ErrorNo, MeasureInput, MeasureResult
from .measurer import ProgramMeasurer
from .protocols import Builder, Runner, make_builder, make_measurer, make_runner
from .ray_backend import RayBuilder, RayRunner
from .record import (
    RECORD_VERSION,
    ApplyHistoryBest,
    KeySummary,
    Record,
    RecordToFile,
    best_by_key,
    load_best_record,
    load_records,
)
from .runner import LocalRPCMeasureContext, LocalRunner, MeasureExecutor

__all__ = ["RECORD_VERSION", "ApplyHistoryBest", "BuildResult", "Builder", "ErrorNo",
           "KeySummary", "LocalBuilder", "LocalRPCMeasureContext", "LocalRunner",
           "MeasureExecutor", "MeasureInput",
           "MeasureResult", "ProgramMeasurer", "RayBuilder", "RayRunner", "Record",
           "RecordToFile", "Runner", "best_by_key", "load_best_record", "load_records",
           "make_builder", "make_measurer", "make_runner"]
