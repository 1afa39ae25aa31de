"""Errors a learner can act on, shown in a notebook as the one line that says the fix.

The workshop's own errors (a setting, an input file, a model folder, a
resource request that can never be scheduled, a stage out of memory) carry
their whole explanation in the message. The frames above it are Ray's or
this package's internals, which help nobody in a lesson: IPython shows an
exception's ``_render_traceback_()`` instead of the traceback when it has one.
Outside IPython (scripts, the pipeline command, pytest) nothing changes.
"""

from __future__ import annotations

_RED = "\x1b[31m"
_RESET = "\x1b[0m"


class ActionableError(Exception):
    """Mixin for errors whose message is the whole story: name, what is wrong, what to change."""

    def _render_traceback_(self) -> list[str]:
        return [f"{_RED}{type(self).__name__}{_RESET}: {self}"]


def first_line(error: BaseException, name: str | None = None) -> str:
    """``"ValueError: first line of the message"``: enough to act on, short enough to read.

    ``name`` replaces the type's name, for errors that stand for another
    (a notebook cell's error carries the original type as ``ename``).
    """
    text = next((line.strip() for line in str(error).splitlines() if line.strip()), "")
    name = name or type(error).__name__
    return f"{name}: {text}" if text else name
