"""Measuring candidates for real: build (parallel C compiles), run (isolated worker), record."""

from .builder import LocalBuilder
from .common import BuildResult, ErrorNo, MeasureInput, MeasureResult
from .measurer import ProgramMeasurer
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
from .runner import LocalRunner

__all__ = ["RECORD_VERSION", "ApplyHistoryBest", "BuildResult", "ErrorNo", "KeySummary",
           "LocalBuilder", "LocalRunner", "MeasureInput", "MeasureResult", "ProgramMeasurer",
           "Record", "RecordToFile", "best_by_key", "load_best_record", "load_records"]
