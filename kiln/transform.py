"""tvm.transform.PassContext for TVM scripts: `with PassContext(opt_level=3, config={...}):`.

kiln runs one exact pass pipeline whatever the opt_level (its passes change no result beyond
float rounding), so the context records the options for scripts that read them back and
checks them: an opt_level outside 0-4 or a config key kiln does not know is an
ArgumentError naming it, as TVM refuses unregistered options (a misspelt key must not pass
unnoticed). The known keys are TVM's common ones; see CONFIG_KEYS for what each does here.
"""

from __future__ import annotations

from typing import ClassVar

from .errors import ArgumentError

__all__ = ["CONFIG_KEYS", "PassContext"]

# key -> what kiln does with it
CONFIG_KEYS = {
    "relay.backend.use_auto_scheduler": "accepted; kiln applies an active ApplyHistoryBest "
                                        "with or without it",
    "relay.FuseOps.max_depth": "accepted; kiln's fusion rules bound a group themselves (one "
                               "anchor, its epilogue, cheap producers)",
}


class PassContext:
    """Options of a build; `with PassContext(...)` makes them current."""

    _stack: ClassVar[list] = []

    def __init__(self, opt_level: int = 2, required_pass=None, disabled_pass=None,
                 instruments=None, config: dict | None = None, trace=None):
        if not isinstance(opt_level, int) or not 0 <= opt_level <= 4:
            raise ArgumentError(f"PassContext(opt_level={opt_level!r}): expected 0-4")
        unknown = sorted(set(config or {}) - set(CONFIG_KEYS))
        if unknown:
            raise ArgumentError(f"PassContext config: unknown option(s) {', '.join(unknown)}; "
                                f"known: {', '.join(CONFIG_KEYS)}")
        self.opt_level = opt_level
        self.required_pass = list(required_pass or [])
        self.disabled_pass = list(disabled_pass or [])
        self.instruments = list(instruments or [])
        self.config = dict(config or {})

    def __enter__(self) -> PassContext:
        PassContext._stack.append(self)
        return self

    def __exit__(self, *exc) -> None:
        PassContext._stack.pop()

    @staticmethod
    def current() -> PassContext:
        """The innermost active context (a default one when none is active)."""
        return PassContext._stack[-1] if PassContext._stack else PassContext()

    def __repr__(self) -> str:
        return f"PassContext(opt_level={self.opt_level}, config={self.config})"
