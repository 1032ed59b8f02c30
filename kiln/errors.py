"""Error types of kiln: every user mistake raises a KilnError subclass naming what and where."""


class KilnError(Exception):
    """Base class of every error kiln raises on purpose."""


class ShapeError(KilnError, ValueError):
    """A shape, an index count or an extent is wrong."""


class DTypeError(KilnError, TypeError):
    """A dtype is unknown or does not fit where it is used."""


class ExprError(KilnError, TypeError):
    """An expression is malformed (wrong operand type, symbolic value used as a bool...)."""


class ScheduleError(KilnError, ValueError):
    """A schedule primitive is illegal for the stage or the iterator it was applied to."""


class LoweringError(KilnError):
    """A schedule could not be lowered to the loop IR."""


class CodegenError(KilnError):
    """The loop IR could not be printed as code for the target."""


class BuildError(KilnError):
    """The C compiler failed or a library could not be loaded."""


class TargetError(KilnError, ValueError):
    """A target string or option is unknown."""


class ArgumentError(KilnError, ValueError):
    """A compiled function was called with wrong arguments (count, shape, dtype, layout)."""


class RuntimeFailure(KilnError, RuntimeError):
    """Generated code reported an error at run time (e.g. an allocation failed)."""


class DeviceError(KilnError, RuntimeError):
    """A GPU is missing or failed: no driver or device, out of device memory, a failed launch."""
