"""The schedule representation (State + Steps), shared by hand-written schedules and the search."""

from .dag import ComputeDAG
from .facade import LoopVar, Schedule, ScheduleStage, create_schedule
from .state import Iterator, Stage, State
from .steps import STEP_TYPES, replay, step_from_record

__all__ = ["ComputeDAG", "Iterator", "LoopVar", "STEP_TYPES", "Schedule", "ScheduleStage", "Stage",
           "State", "create_schedule", "replay", "step_from_record"]
