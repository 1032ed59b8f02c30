"""The measurement seam: what a builder and a runner are, and the one factory of measurers.

In: TuningOptions (builder / runner: "local", "ray", or objects satisfying the protocols).
Out: a ProgramMeasurer (make_measurer), used by SketchPolicy and TaskScheduler alike.
Why: the search must not care where candidates are compiled or timed. A Builder turns
MeasureInputs into BuildResults that carry their library (bytes + sha256 when they leave the
building process); a Runner turns BuildResults into MeasureResults wherever it lives (this
process's worker, Ray actors on other nodes). LocalBuilder/LocalRunner and RayBuilder/RayRunner
satisfy the same protocols.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol, runtime_checkable

from ...errors import KilnError
from .common import BuildResult, MeasureInput, MeasureResult


@runtime_checkable
class Builder(Protocol):
    """Compiles candidates; one BuildResult per input, in order; never raises for a bad one."""

    def build(self, inputs: list[MeasureInput]) -> list[BuildResult]: ...


@runtime_checkable
class Runner(Protocol):
    """Measures built candidates; `on_result(i, result)` as soon as result i is known (in any
    order); set_reference() receives the build of a task's default schedule (the reference
    output every candidate is checked against) before its candidates are run."""

    def run(self, inputs: list[MeasureInput], build_results: list[BuildResult],
            on_result: Callable[[int, MeasureResult], None] | None = None
            ) -> list[MeasureResult]: ...

    def set_reference(self, task, build: BuildResult) -> None: ...


class MeasureOptionError(KilnError):
    """TuningOptions name a builder or runner kiln does not know."""


def make_builder(spec) -> Builder:
    """A builder from "local" / "ray" or a Builder object (returned as is)."""
    if not isinstance(spec, str):
        return spec
    if spec == "local":
        from .builder import LocalBuilder
        return LocalBuilder()
    if spec == "ray":
        from .ray_backend import RayBuilder
        return RayBuilder()
    raise MeasureOptionError(f"unknown builder {spec!r}: use 'local', 'ray' or a Builder")


def make_runner(spec) -> Runner:
    """A runner from "local" / "ray" or a Runner object (returned as is)."""
    if not isinstance(spec, str):
        return spec
    if spec == "local":
        from .runner import LocalRunner
        return LocalRunner()
    if spec == "ray":
        from .ray_backend import RayRunner
        return RayRunner()
    raise MeasureOptionError(f"unknown runner {spec!r}: use 'local', 'ray' or a Runner")


def make_measurer(options, verbose: int = 0):
    """The ProgramMeasurer of TuningOptions (builder, runner, measure callbacks)."""
    from .measurer import ProgramMeasurer
    return ProgramMeasurer(make_builder(options.builder), make_runner(options.runner),
                           options.measure_callbacks, verbose=verbose)
