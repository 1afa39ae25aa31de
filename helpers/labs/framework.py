"""Lab checks for the workshop notebooks: declared problems, three outcomes, a hint ladder.

A lab is a small class, mostly data: a name, a title, hints, and for each
variable the learner passes, a class attribute of that name declaring the
shape it must have (:mod:`helpers.labs.shapes`: a value to equal, a folder of
written files, a pipeline's plan). ``check_answer`` adds code only for what
the declarations cannot say. The solution is not typed here: ``solution()`` shows the lab's
cells of the solution notebook (:mod:`helpers.labs.solutions`). Learners call
``lab.check(name=value)`` and see one of three outcomes:

* *not attempted*: a placeholder (``...``, ``None``, ``"TODO"``) is still there;
* *incorrect*: what is wrong (the variable, the type, the shape), not the answer;
* *correct*.

What the learner's own code raises, when the check calls it as the
instructions say (inside :func:`learners_code`), becomes a one-line
*incorrect* outcome instead of a long traceback. Anything else a check raises
is a bug in the check, never the learner's fault: ``evaluate`` raises
:class:`CheckBug` (so a lab's tests fail on it), and ``check`` shows a
*check error* that says so.

    from helpers.labs.framework import get_lab
    lab = get_lab("03_parquet")
    lab.check(parquet_path=parquet_path)
    # lab.hint()
    # lab.solution()

Each lesson's labs live in ``helpers.labs.lessonNN`` and register themselves
with ``@register``; ``get_lab("NN_...")`` imports that module on first use.
"""

from __future__ import annotations

import html
import importlib
import inspect
import pkgutil
import re
import textwrap
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, NoReturn

from helpers.errors import UnknownLabError, first_line
from helpers.show.ipython import ipython_shell

NOT_ATTEMPTED = "not_attempted"
INCORRECT = "incorrect"
CORRECT = "correct"
CHECK_ERROR = "check_error"  # the check itself failed: shown by check(), raised as CheckBug by evaluate()
STATUSES = (NOT_ATTEMPTED, INCORRECT, CORRECT, CHECK_ERROR)

_LABELS = {NOT_ATTEMPTED: "Not attempted", INCORRECT: "Incorrect", CORRECT: "Correct", CHECK_ERROR: "Check error"}
_SYMBOLS = {NOT_ATTEMPTED: "\u25cb", INCORRECT: "\u2718", CORRECT: "\u2714", CHECK_ERROR: "\u26a0"}
_COLOURS = {NOT_ATTEMPTED: "#1565c0", INCORRECT: "#c62828", CORRECT: "#2e7d32", CHECK_ERROR: "#6d4c41"}
_LESSON_MODULE = re.compile(r"lesson\d\d")


def is_placeholder(value: Any) -> bool:
    """True for the values starter code leaves in place: ``...``, ``None`` and ``"TODO"``."""
    if value is Ellipsis or value is None:
        return True
    return isinstance(value, str) and value.strip() == "TODO"


def quote(values: Iterable) -> str:
    """``a``, ``b`` as a message lists names: each in backticks."""
    return ", ".join(f"`{value}`" for value in values)


def type_name(value: Any) -> str:
    return type(value).__name__


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
    """Raised inside a check to end it with a given outcome.

    ``exception`` is what the learner's code raised, when that is the reason.
    """

    status: ClassVar[str]

    def __init__(self, message: str = "", exception: BaseException | None = None):
        super().__init__(message)
        self.message = message
        self.exception = exception


class NotAttempted(CheckSignal):
    status = NOT_ATTEMPTED


class Incorrect(CheckSignal):
    status = INCORRECT


class Correct(CheckSignal):
    status = CORRECT


class CheckBug(RuntimeError):
    """A check raised an exception of its own: a bug in the lab, not a wrong answer.

    Raised by :meth:`Lab.evaluate` from the original exception, so tests and
    authors see its traceback; learners see a *check error* from :meth:`Lab.check`.
    """

    def __init__(self, lab: str, exception: BaseException):
        super().__init__(f"the check of lab {lab!r} failed: {first_line(exception)}")
        self.lab = lab
        self.exception = exception


@contextmanager
def learners_code(call: str = "") -> Iterator[None]:
    """Run the learner's own code: what it raises is an incorrect answer, in one line.

    A check calls the learner's function or class inside this block, as the
    instructions say it will be called (``with learners_code("`f(batch)`"):
    result = f(batch)``). Only here does an exception count against the
    learner; raised anywhere else in a check, it is a :class:`CheckBug`.
    ``call`` names what was called, for the message.
    """
    try:
        yield
    except CheckSignal:
        raise
    except Exception as exc:  # the learner's code: any exception it raises is theirs
        message = f"{call} raised {first_line(exc)}." if call else first_line(exc)
        missing = _missing_name(exc)
        if missing:
            message = (
                f"{message.rstrip('.')}. The code may be right: `{missing}` is missing from this kernel "
                f"(a restart clears it). Run the cell that defines or imports `{missing}` "
                "(Run > Run All Above), then check again."
            )
        raise Incorrect(message, exception=exc) from exc


_UNDEFINED_NAME = re.compile(r"name '([^']+)' is not defined")


def _missing_name(exc: BaseException) -> str | None:
    """The global name a ``NameError`` did not find (``np``), or None for any other error.

    An ``UnboundLocalError`` is a ``NameError`` too, but it is a mistake inside
    the function (a local read before it is assigned), not a cell left unrun.
    """
    if not isinstance(exc, NameError) or isinstance(exc, UnboundLocalError):
        return None
    name = getattr(exc, "name", None)
    if isinstance(name, str) and name:
        return name
    found = _UNDEFINED_NAME.search(str(exc))
    return found.group(1) if found else None


class Expect:
    """What one variable must be: the base of the declared shapes in :mod:`helpers.labs.shapes`.

    ``check`` raises ``Incorrect`` (saying what is wrong) or returns the value
    as ``check_answer`` receives it, read as far as the shape reads it (a
    folder's files, a pipeline's stages). ``summary`` of that value starts the
    *correct* message when ``check_answer`` has nothing to add.
    """

    def check(self, name: str, value: Any) -> Any:
        raise NotImplementedError(f"{type(self).__name__} must implement check()")

    def summary(self, value: Any) -> str:
        return ""


class Lab:
    """One exercise. Subclass it and declare it with class attributes.

    Each variable the learner passes to :func:`Lab.check` may be declared as a
    class attribute named after it, holding the shape it must have
    (``num_outfits = Equals(...)``; they are collected into ``expect``). The
    shapes are checked in turn; then ``check_answer``, when the lab defines
    one, receives every variable (as its shape read it) and checks what the
    declarations cannot say. Its parameters name the variables; without it
    they are the declared ones. It ends by returning (``None`` means
    correct), by returning an ``Outcome``, or by calling
    ``self.not_attempted`` / ``self.incorrect`` / ``self.correct`` (which
    raise, so they work from nested helpers too).
    """

    name: ClassVar[str] = ""
    title: ClassVar[str] = ""
    hints: ClassVar[Sequence[str]] = ()
    expect: ClassVar[Mapping[str, Expect]] = {}
    correct_message: ClassVar[str] = "Well done."
    # Any argument still holding a placeholder means the starter code is untouched.
    placeholders_mean_not_attempted: ClassVar[bool] = True
    #: What the last ``check`` showed (None before the first). A solution notebook's
    #: test cell asserts on it where judging again would be slow (lab 06 loads a model).
    last_outcome: Outcome | None = None

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        cls.expect = {
            name: value
            for klass in reversed(cls.__mro__)
            for name, value in vars(klass).items()
            if isinstance(value, Expect)
        }

    def check_answer(self, **values: Any) -> Outcome | None:
        """What the declarations cannot say; by default nothing more."""
        return None

    @classmethod
    def variables(cls) -> tuple[str, ...]:
        """The names the learner passes to ``check``, in order."""
        if cls.check_answer is Lab.check_answer:
            return tuple(cls.expect)
        return tuple(inspect.signature(cls.check_answer).parameters)[1:]

    # Outcome raisers -------------------------------------------------------

    def not_attempted(self, message: str = "") -> NoReturn:
        raise NotAttempted(message)

    def incorrect(self, message: str) -> NoReturn:
        raise Incorrect(message)

    def correct(self, message: str = "") -> NoReturn:
        raise Correct(message or self.correct_message)

    # Learner-facing API ----------------------------------------------------

    def check(self, **kwargs: Any) -> Outcome:
        """Check the learner's answer, show the outcome, and return it.

        A bug in the check is shown as a *check error*, which says that the
        answer was not judged, instead of a traceback or a wrong *incorrect*.
        """
        try:
            outcome = self.evaluate(**kwargs)
        except CheckBug as bug:
            outcome = Outcome(
                CHECK_ERROR,
                f"the check itself failed ({first_line(bug.exception)}), so your answer was not judged. "
                "This is a bug in the lab, not in your answer: please report it to the instructors.",
                exception=bug.exception,
            )
        self.last_outcome = outcome
        if ipython_shell() is None:
            print(outcome)
        else:
            outcome._ipython_display_()
        return outcome

    def evaluate(self, **kwargs: Any) -> Outcome:
        """Like ``check`` but shows nothing (for tests and for composing checks).

        Raises :class:`CheckBug` when the check itself fails: an exception
        raised outside :func:`learners_code`, or a ``check_answer`` that
        returns something other than an ``Outcome`` or ``None``.
        """
        variables = self.variables()
        if sorted(kwargs) != sorted(variables):
            return Outcome(INCORRECT, self._usage_message(kwargs))
        if self.placeholders_mean_not_attempted:
            waiting = [name for name, value in kwargs.items() if is_placeholder(value)]
            if waiting:
                names = quote(waiting)
                verb = (
                    "still holds a placeholder"
                    if len(waiting) == 1
                    else "still hold placeholders"
                )
                return Outcome(
                    NOT_ATTEMPTED, f"{names} {verb}; replace it with your answer."
                )
        read: dict[str, Any] = {}
        try:
            for name in variables:
                shape = self.expect.get(name)
                read[name] = kwargs[name] if shape is None else shape.check(name, kwargs[name])
            result = self.check_answer(**read)
            if result is None:
                summaries = [self.expect[name].summary(read[name]) for name in variables if name in self.expect]
                return Outcome(CORRECT, " ".join([*filter(None, summaries), self.correct_message]))
            if not isinstance(result, Outcome):
                raise TypeError(
                    f"{type(self).__name__}.check_answer must return an Outcome or None, not {type(result).__name__}"
                )
        except CheckSignal as signal:
            return Outcome(signal.status, signal.message, exception=signal.exception)
        except Exception as exc:  # not the learner's code (that is learners_code's): a bug in the check
            raise CheckBug(self.name or type(self).__name__, exc) from exc
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
        """Show the lab's solution cells of the solution notebook, one code block per cell."""
        from helpers.labs.solutions import SolutionNotFound, solution_cells

        try:
            cells = solution_cells(self.name)
        except SolutionNotFound as exc:
            _show_markdown(f"No solution to show: {exc}.", f"No solution to show: {exc}.")
            return
        blocks = "\n\n".join(f"```python\n{code}\n```" for code in cells)
        _show_markdown(f"**Solution:**\n\n{blocks}", "Solution:\n" + "\n\n".join(cells))

    def _usage_message(self, kwargs: dict[str, Any]) -> str:
        expected = ", ".join(f"{name}=..." for name in self.variables())
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
    variables = cls.variables()
    if not variables:
        raise ValueError(f"lab {cls.name!r} takes no variables: declare their shapes or write `check_answer`")
    undeclared = [name for name in cls.expect if name not in variables]
    if undeclared:
        raise ValueError(f"lab {cls.name!r} declares {quote(undeclared)}, which its `check_answer` does not take")
    existing = LABS.get(cls.name)
    if existing is not None and _qualified(type(existing)) != _qualified(cls):
        raise ValueError(
            f"lab name {cls.name!r} is used by both {_qualified(type(existing))} and {_qualified(cls)}"
        )
    LABS[cls.name] = cls()  # re-registering the same class (module reload) replaces it
    return cls


def _qualified(cls: type) -> str:
    return f"{cls.__module__}.{cls.__qualname__}"


def lesson_modules() -> list[str]:
    """The modules that hold the lessons' labs: ``helpers.labs.lesson01`` ... in order."""
    here = Path(__file__).parent
    return sorted(
        f"{__package__}.{module.name}"
        for module in pkgutil.iter_modules([str(here)])
        if _LESSON_MODULE.fullmatch(module.name)
    )


def get_lab(name: str) -> Lab:
    """The registered lab called ``name``; imports its lesson's module (``"04_png"``: ``lesson04``) on first use."""
    if name not in LABS:
        lessons = lesson_modules()
        own = f"{__package__}.lesson{name.split('_', 1)[0]}"
        for module in [own] if own in lessons else lessons:
            importlib.import_module(module)
        if name not in LABS:  # a mistyped name: load every lesson to list the labs there are
            for module in lessons:
                importlib.import_module(module)
    try:
        return LABS[name]
    except KeyError:
        known = ", ".join(sorted(LABS)) or "none"
        raise UnknownLabError(f"no lab named {name!r}; known labs: {known}") from None
