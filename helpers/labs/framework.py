"""Lab checks for the workshop notebooks: declared problems, three outcomes, a hint ladder.

A lab is a small class: a name, a title, hints and the solution code as class
attributes, plus ``check_answer`` when the answer needs inspecting. Learners
call ``lab.check(name=value)`` and see one of three outcomes:

* *not attempted*: a placeholder (``...``, ``None``, ``"TODO"``) is still there;
* *incorrect*: what is wrong (the variable, the type, the shape), not the answer;
* *correct*.

Anything the learner's own objects raise while being checked becomes a
one-line *incorrect* outcome instead of a long traceback.

    from helpers.labs.framework import get_lab
    lab = get_lab("03_parquet")
    lab.check(parquet_path=parquet_path)
    # lab.hint()
    # lab.solution()

Concrete labs live in ``helpers.labs.lessons_early`` and register themselves with
``@register``; ``get_lab`` imports that module on first use.
"""

from __future__ import annotations

import html
import importlib
import inspect
import textwrap
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar, NoReturn

from helpers.errors import first_line
from helpers.show.ipython import ipython_shell

NOT_ATTEMPTED = "not_attempted"
INCORRECT = "incorrect"
CORRECT = "correct"
STATUSES = (NOT_ATTEMPTED, INCORRECT, CORRECT)

_LABELS = {NOT_ATTEMPTED: "Not attempted", INCORRECT: "Incorrect", CORRECT: "Correct"}
_SYMBOLS = {NOT_ATTEMPTED: "\u25cb", INCORRECT: "\u2718", CORRECT: "\u2714"}
_COLOURS = {NOT_ATTEMPTED: "#1565c0", INCORRECT: "#c62828", CORRECT: "#2e7d32"}
_CHECKS_MODULE = "helpers.labs.lessons_early"


def is_placeholder(value: Any) -> bool:
    """True for the values starter code leaves in place: ``...``, ``None`` and ``"TODO"``."""
    if value is Ellipsis or value is None:
        return True
    return isinstance(value, str) and value.strip() == "TODO"




def _show_markdown(text: str, plain: str) -> None:
    if ipython_shell() is None:
        print(plain)
        return
    from IPython.display import Markdown, display

    display(Markdown(text))


@dataclass(eq=False)
class Outcome:
    """The result of one check. Truthy only when correct."""

    status: str
    message: str = ""
    exception: BaseException | None = field(default=None, repr=False)
    _shown_in: int | None = field(default=None, init=False, repr=False)

    def __post_init__(self) -> None:
        if self.status not in STATUSES:
            raise ValueError(f"status must be one of {STATUSES}, got {self.status!r}")

    def __bool__(self) -> bool:
        return self.status == CORRECT

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Outcome):
            return NotImplemented
        return (self.status, self.message) == (other.status, other.message)

    __hash__ = None  # mutable display bookkeeping; outcomes are not dict keys

    def __str__(self) -> str:
        label = f"{_SYMBOLS[self.status]} {_LABELS[self.status]}"
        return f"{label}: {self.message}" if self.message else label

    def _repr_markdown_(self) -> str:
        label = f'<span style="color:{_COLOURS[self.status]}">**{_SYMBOLS[self.status]} {_LABELS[self.status]}**</span>'
        return f"{label}: {self.message}" if self.message else label

    def _repr_html_(self) -> str:
        colour = _COLOURS[self.status]
        label = f"<strong>{_SYMBOLS[self.status]} {_LABELS[self.status]}</strong>"
        text = f"{label}: {html.escape(self.message)}" if self.message else label
        return f'<div style="color:{colour}">{text}</div>'

    def _ipython_display_(self) -> None:
        # ``lab.check(...)`` both displays its outcome and returns it; when the
        # call is the last line of a cell IPython would show it a second time.
        # Showing each outcome once per cell execution avoids that echo while
        # still letting a later cell display a stored outcome again.
        shell = ipython_shell()
        count = getattr(shell, "execution_count", None)
        if count is not None and self._shown_in == count:
            return
        self._shown_in = count
        from IPython.display import display

        display(
            {
                "text/plain": str(self),
                "text/markdown": self._repr_markdown_(),
                "text/html": self._repr_html_(),
            },
            raw=True,
        )


class CheckSignal(Exception):
    """Raised inside a check to end it with a given outcome."""

    status: ClassVar[str]

    def __init__(self, message: str = ""):
        super().__init__(message)
        self.message = message


class NotAttempted(CheckSignal):
    status = NOT_ATTEMPTED


class Incorrect(CheckSignal):
    status = INCORRECT


class Correct(CheckSignal):
    status = CORRECT


class Lab:
    """One exercise. Subclass it, fill in the class attributes, implement ``check_answer``.

    ``check_answer(**kwargs)`` receives exactly what the learner passed to
    ``check``. It ends by returning (``None`` means correct), by returning an
    ``Outcome``, or by calling ``self.not_attempted`` / ``self.incorrect`` /
    ``self.correct`` (which raise, so they work from nested helpers too).
    """

    name: ClassVar[str] = ""
    title: ClassVar[str] = ""
    hints: ClassVar[Sequence[str]] = ()
    solution_text: ClassVar[str] = ""
    correct_message: ClassVar[str] = "Well done."
    # Any argument still holding a placeholder means the starter code is untouched.
    placeholders_mean_not_attempted: ClassVar[bool] = True

    def check_answer(self, **kwargs: Any) -> Outcome | None:
        raise NotImplementedError(
            f"{type(self).__name__} must implement check_answer()"
        )

    # Outcome raisers -------------------------------------------------------

    def not_attempted(self, message: str = "") -> NoReturn:
        raise NotAttempted(message)

    def incorrect(self, message: str) -> NoReturn:
        raise Incorrect(message)

    def correct(self, message: str = "") -> NoReturn:
        raise Correct(message or self.correct_message)

    # Learner-facing API ----------------------------------------------------

    def check(self, **kwargs: Any) -> Outcome:
        """Check the learner's answer, show the outcome, and return it."""
        outcome = self.evaluate(**kwargs)
        if ipython_shell() is None:
            print(outcome)
        else:
            outcome._ipython_display_()
        return outcome

    def evaluate(self, **kwargs: Any) -> Outcome:
        """Like ``check`` but shows nothing (for tests and for composing checks)."""
        try:
            inspect.signature(self.check_answer).bind(**kwargs)
        except TypeError:
            return Outcome(INCORRECT, self._usage_message(kwargs))
        if self.placeholders_mean_not_attempted:
            waiting = [name for name, value in kwargs.items() if is_placeholder(value)]
            if waiting:
                names = ", ".join(f"`{name}`" for name in waiting)
                verb = (
                    "still holds a placeholder"
                    if len(waiting) == 1
                    else "still hold placeholders"
                )
                return Outcome(
                    NOT_ATTEMPTED, f"{names} {verb}; replace it with your answer."
                )
        try:
            result = self.check_answer(**kwargs)
        except CheckSignal as signal:
            return Outcome(signal.status, signal.message)
        except Exception as exc:  # noqa: BLE001 - raised by the learner's objects while we inspect them
            return Outcome(INCORRECT, first_line(exc), exception=exc)
        if result is None:
            return Outcome(CORRECT, self.correct_message)
        if not isinstance(result, Outcome):
            raise TypeError(
                f"{type(self).__name__}.check_answer must return an Outcome or None, not {type(result).__name__}"
            )
        return result

    def hint(self, n: int = 1) -> None:
        """Show hint ``n`` (1-based, clamped to the hints there are)."""
        if not self.hints:
            _show_markdown(
                "No hints for this lab; try `.solution()`.",
                "No hints for this lab; try .solution().",
            )
            return
        n = min(max(int(n), 1), len(self.hints))
        text = textwrap.dedent(self.hints[n - 1]).strip()
        follow = f"`.hint({n + 1})`" if n < len(self.hints) else "`.solution()`"
        header = f"Hint {n} of {len(self.hints)}"
        _show_markdown(
            f"**{header}:** {text}\n\n*Still stuck? Try {follow}.*",
            f"{header}: {text}\nStill stuck? Try {follow.strip('`')}.",
        )

    def solution(self) -> None:
        """Show the solution code."""
        code = textwrap.dedent(self.solution_text).strip("\n")
        if not code:
            _show_markdown(
                "No solution text for this lab.", "No solution text for this lab."
            )
            return
        _show_markdown(f"**Solution:**\n\n```python\n{code}\n```", f"Solution:\n{code}")

    def _usage_message(self, kwargs: dict[str, Any]) -> str:
        expected = ", ".join(
            f"{name}=..." for name in inspect.signature(self.check_answer).parameters
        )
        given = ", ".join(f"{name}=..." for name in kwargs) or "nothing"
        return f"call `check({expected})`; got `check({given})`."

    def __repr__(self) -> str:
        return f"<Lab {self.name!r}: {self.title}>"


LABS: dict[str, Lab] = {}


def register(cls: type[Lab]) -> type[Lab]:
    """Class decorator: make the lab available to ``get_lab(cls.name)``."""
    if not cls.name:
        raise ValueError(
            f"{cls.__qualname__} needs a non-empty `name` to be registered"
        )
    existing = LABS.get(cls.name)
    if existing is not None and _qualified(type(existing)) != _qualified(cls):
        raise ValueError(
            f"lab name {cls.name!r} is used by both {_qualified(type(existing))} and {_qualified(cls)}"
        )
    LABS[cls.name] = cls()  # re-registering the same class (module reload) replaces it
    return cls


def _qualified(cls: type) -> str:
    return f"{cls.__module__}.{cls.__qualname__}"


def get_lab(name: str) -> Lab:
    """The registered lab called ``name``; loads ``helpers.labs.lessons_early`` on first use."""
    if name not in LABS:
        try:
            importlib.import_module(_CHECKS_MODULE)
        except ModuleNotFoundError as exc:
            if exc.name != _CHECKS_MODULE:
                raise
    try:
        return LABS[name]
    except KeyError:
        known = ", ".join(sorted(LABS)) or "none"
        raise KeyError(f"no lab named {name!r}; known labs: {known}") from None
