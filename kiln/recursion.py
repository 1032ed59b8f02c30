"""Deep expressions: room for the recursive expression walkers, and a sentence past it.

In: the body of a compilation step (lowering, code generation, a whole build).
Out: the step run with a recursion limit high enough for expressions thousands of nodes deep
(a long chain of inlined elementwise stages becomes one such expression), and a KilnError
that says what to do instead of a RecursionError traceback when even that is exceeded.
Why: the te walkers (substitute, simplify, print) recurse once per nesting level; Python's
default limit of 1000 frames stops at a few hundred inlined stages.
"""

from __future__ import annotations

import contextlib
import sys

from .errors import KilnError

LIMIT = 20000


class ExpressionTooDeepError(KilnError, RecursionError):
    """An expression nests deeper than kiln's walkers can follow."""


@contextlib.contextmanager
def deep_recursion(what: str = "this computation"):
    old = sys.getrecursionlimit()
    if old < LIMIT:
        sys.setrecursionlimit(LIMIT)
    try:
        yield
    except RecursionError as err:
        if isinstance(err, KilnError):
            raise
        raise ExpressionTooDeepError(
            f"{what} builds an expression too deep to compile (over {LIMIT} nested calls): "
            "compute part of the chain at the root instead of inlining all of it, or split "
            "the expression into stages") from None
    finally:
        if old < LIMIT:
            sys.setrecursionlimit(old)
