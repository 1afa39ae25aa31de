"""The lab-check framework (:mod:`helpers.labs.framework`), exercised with a tiny example lab three ways and more."""

from __future__ import annotations

import importlib
import sys
from pathlib import Path

import nbformat
import pytest

from helpers.commands.notebooks import KERNELSPEC
from helpers.labs import framework as labs
from helpers.labs.framework import (
    CHECK_ERROR,
    CORRECT,
    INCORRECT,
    NOT_ATTEMPTED,
    CheckBug,
    Expect,
    Incorrect,
    Lab,
    Outcome,
    get_lab,
    is_placeholder,
    learners_code,
    lesson_modules,
    register,
)
from helpers.labs.shapes import WHOLE_NUMBER, Equals, Mistake

REPO_ROOT = Path(__file__).resolve().parents[1]
NUMBERS = [1, 2, 3, 4]


def _require_number(name: str, value) -> None:
    """A nested helper: signals through an exception, not a return value."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise Incorrect(
            f"`{name}` should return a number, but it returned a {type(value).__name__}."
        )


class SumLab(Lab):
    """Example: the learner writes ``total_of(numbers)``."""

    name = "test_sum"
    title = "Sum a list"
    hints = (
        "Python has a built-in for this.",
        "Look at `sum()`.",
        "`return sum(numbers)`",
    )

    def check_answer(self, total_of):
        with learners_code():  # the learner's function, called as the exercise says
            result = total_of(list(NUMBERS))
        if is_placeholder(result):
            self.not_attempted("`total_of` returns nothing yet; fill in its body.")
        _require_number("total_of", result)
        if result != sum(NUMBERS):
            self.incorrect(
                f"`total_of({NUMBERS})` returned {result}; it should add the numbers up."
            )


def starter(numbers): ...


def solution(numbers):
    return sum(numbers)


def wrong(numbers):
    return len(numbers)


def crashes(numbers):
    raise ZeroDivisionError("division by zero\n  a second line that must not show")


@pytest.fixture
def lab():
    return SumLab()


# --------------------------------------------------------------------------- the three ways


def test_untouched_starter_is_not_attempted(lab):
    outcome = lab.evaluate(total_of=...)
    assert outcome.status == NOT_ATTEMPTED and not outcome
    assert "`total_of`" in outcome.message


def test_starter_function_with_empty_body_is_not_attempted(lab):
    assert lab.evaluate(total_of=starter).status == NOT_ATTEMPTED


def test_solution_is_correct(lab):
    outcome = lab.evaluate(total_of=solution)
    assert outcome.status == CORRECT and outcome
    assert outcome.message == Lab.correct_message


def test_plausible_wrong_answer_is_incorrect_and_says_why(lab):
    outcome = lab.evaluate(total_of=wrong)
    assert outcome.status == INCORRECT and not outcome
    assert "returned 4" in outcome.message
    assert "10" not in outcome.message  # says what is wrong, not the answer


def test_nested_helper_can_raise_incorrect(lab):
    outcome = lab.evaluate(total_of=lambda numbers: "10")
    assert outcome.status == INCORRECT
    assert "returned a str" in outcome.message


def test_learner_exception_becomes_one_line_incorrect(lab):
    outcome = lab.evaluate(total_of=crashes)
    assert outcome.status == INCORRECT
    assert outcome.message == "ZeroDivisionError: division by zero"
    assert "\n" not in outcome.message
    assert isinstance(
        outcome.exception, ZeroDivisionError
    )  # kept for authors debugging a check


def test_exception_without_message_shows_its_type(lab):
    def raises_bare(numbers):
        raise KeyError()

    assert lab.evaluate(total_of=raises_bare).message == "KeyError"


def test_learners_code_can_name_the_call():
    class CallLab(Lab):
        name = "test_call"

        def check_answer(self, f):
            with learners_code("`f(2)`"):
                f(2)

    outcome = CallLab().evaluate(f=lambda x: x / 0)
    assert outcome.status == INCORRECT
    assert outcome.message == "`f(2)` raised ZeroDivisionError: division by zero."


def test_a_name_missing_from_the_kernel_says_which_and_to_run_the_cell_that_defines_it(lab):
    def uses_an_unimported_module(numbers):
        return undefined_module.sum(numbers)  # noqa: F821 - the import cell was not run

    outcome = lab.evaluate(total_of=uses_an_unimported_module)
    assert outcome.status == INCORRECT
    assert outcome.message.startswith("NameError: name 'undefined_module' is not defined.")
    assert "Run the cell that defines or imports `undefined_module` (Run > Run All Above)" in outcome.message
    assert isinstance(outcome.exception, NameError)


def test_a_local_read_before_assignment_is_the_learners_mistake_not_a_missing_cell(lab):
    def reads_before_assigning(numbers):
        for number in numbers:
            total += number  # noqa: F821 - the learner's bug
        total = 0
        return total

    outcome = lab.evaluate(total_of=reads_before_assigning)
    assert outcome.status == INCORRECT
    assert outcome.message.startswith("UnboundLocalError")
    assert "Run All Above" not in outcome.message


# --------------------------------------------------------------------------- a bug in the check: not the learner's


class BrokenLab(Lab):
    """A check with a bug of its own: it indexes past the end of the learner's (correct) list."""

    name = "test_broken"

    def check_answer(self, numbers):
        if numbers[len(numbers)] != 0:  # the bug: off by one
            self.incorrect("`numbers` should end with 0.")


def test_a_broken_check_raises_check_bug_from_evaluate_not_incorrect():
    with pytest.raises(CheckBug, match=r"the check of lab 'test_broken' failed: IndexError") as caught:
        BrokenLab().evaluate(numbers=[1, 2, 0])
    assert isinstance(caught.value.__cause__, IndexError)  # the check's own traceback, for its authors


def test_a_broken_check_shows_a_check_error_to_the_learner(capsys):
    outcome = BrokenLab().check(numbers=[1, 2, 0])
    assert outcome.status == CHECK_ERROR and not outcome
    assert "IndexError" in outcome.message and "not in your answer" in outcome.message
    assert "\n" not in outcome.message
    assert capsys.readouterr().out.strip().startswith("\u26a0 Check error: the check itself failed")


def test_a_shape_that_fails_is_a_check_bug_too():
    class BrokenShape(Expect):
        def check(self, name, value):
            return value.missing_attribute

    class ShapeLab(Lab):
        name = "test_broken_shape"
        x = BrokenShape()

    with pytest.raises(CheckBug, match="AttributeError"):
        ShapeLab().evaluate(x=1)


def test_check_answer_returning_something_else_is_a_check_bug():
    class ReturnsText(Lab):
        name = "test_returns_text"

        def check_answer(self, x):
            return "fine"

    with pytest.raises(CheckBug, match="must return an Outcome or None"):
        ReturnsText().evaluate(x=1)


# --------------------------------------------------------------------------- check() and hints


def test_check_prints_and_returns_the_outcome_outside_ipython(lab, capsys):
    outcome = lab.check(total_of=wrong)
    assert outcome.status == INCORRECT
    assert capsys.readouterr().out.strip() == str(outcome)
    assert str(outcome).startswith("\u2718 Incorrect: ")


def test_the_lab_keeps_what_its_last_check_showed(lab, capsys):
    assert lab.last_outcome is None
    shown = lab.check(total_of=wrong)
    assert lab.last_outcome is shown and not lab.last_outcome
    assert BrokenLab().check(numbers=[1, 2, 0]).status == CHECK_ERROR  # another lab's verdict is its own
    assert lab.last_outcome is shown


def test_wrong_argument_name_is_incorrect_with_usage(lab):
    outcome = lab.evaluate(total=solution)
    assert outcome.status == INCORRECT
    assert (
        "check(total_of=...)" in outcome.message
        and "check(total=...)" in outcome.message
    )


def test_placeholder_strings_and_none_are_not_attempted(lab):
    assert lab.evaluate(total_of=None).status == NOT_ATTEMPTED
    assert lab.evaluate(total_of="TODO").status == NOT_ATTEMPTED


def test_check_answer_may_return_an_outcome_or_use_raisers():
    class Direct(Lab):
        name = "test_direct"

        def check_answer(self, value):
            if value == 1:
                return Outcome(CORRECT, "one")
            if value == 2:
                self.correct("two")
            self.incorrect("not one or two")

    lab = Direct()
    assert lab.evaluate(value=1) == Outcome(CORRECT, "one")
    assert lab.evaluate(value=2) == Outcome(CORRECT, "two")
    assert lab.evaluate(value=3) == Outcome(INCORRECT, "not one or two")


def test_placeholder_detection_can_be_switched_off():
    class AcceptsNone(Lab):
        name = "test_none"
        placeholders_mean_not_attempted = False

        def check_answer(self, value):
            if value is not None:
                self.incorrect("expected None")

    assert AcceptsNone().evaluate(value=None).status == CORRECT


def test_hint_ladder_is_clamped(lab, capsys):
    lab.hint()
    assert capsys.readouterr().out.startswith(
        "Hint 1 of 3: Python has a built-in for this."
    )
    lab.hint(2)
    out = capsys.readouterr().out
    assert out.startswith("Hint 2 of 3: Look at `sum()`.") and ".hint(3)" in out
    lab.hint(99)
    out = capsys.readouterr().out
    assert out.startswith("Hint 3 of 3:") and ".solution()" in out
    lab.hint(0)
    assert capsys.readouterr().out.startswith("Hint 1 of 3:")


def test_lab_without_hints_says_so(capsys):
    class Bare(Lab):
        name = "test_bare"

    Bare().hint()
    assert "No hints" in capsys.readouterr().out


# --------------------------------------------------------------------------- outcome display


@pytest.mark.parametrize(
    ("status", "colour"),
    [(CORRECT, "#2e7d32"), (INCORRECT, "#c62828"), (NOT_ATTEMPTED, "#1565c0"), (CHECK_ERROR, "#6d4c41")],
)
def test_outcome_renders_coloured_one_liners(status, colour):
    outcome = Outcome(status, "`x` is <wrong>")
    assert colour in outcome._repr_html_() and "&lt;wrong&gt;" in outcome._repr_html_()
    assert (
        colour in outcome._repr_markdown_()
        and "`x` is <wrong>" in outcome._repr_markdown_()
    )
    assert "\n" not in outcome._repr_html_()
    assert bool(outcome) is (status == CORRECT)


def test_outcome_rejects_unknown_status():
    with pytest.raises(ValueError, match="status must be one of"):
        Outcome("maybe")


def test_is_placeholder():
    for value in (..., None, "TODO", " TODO "):
        assert is_placeholder(value)
    for value in (0, "", "todo list", [], False, [None]):
        assert not is_placeholder(value)


# --------------------------------------------------------------------------- registry


@pytest.fixture
def empty_registry(monkeypatch):
    """An empty lab registry for one test.

    A lesson module the test imports registers its labs in that empty registry, not
    in the real one; it is forgotten afterwards, so that a later ``get_lab`` imports
    it again and registers its labs where the lessons look. Lesson modules imported
    before the test come back as they were.
    """
    monkeypatch.setattr(labs, "LABS", {})
    for name in [name for name in sys.modules if name.startswith(f"{labs.__package__}.lesson")]:
        monkeypatch.delitem(sys.modules, name)
    yield
    for name in [name for name in sys.modules if name.startswith(f"{labs.__package__}.lesson")]:
        del sys.modules[name]


def test_register_and_get_lab(empty_registry):

    @register
    class Registered(SumLab):
        name = "test_registered"

    assert isinstance(get_lab("test_registered"), Registered)
    register(Registered)  # re-registering the same class (a module reload) is fine

    class Impostor(SumLab):
        name = "test_registered"

    with pytest.raises(ValueError, match="used by both"):
        register(Impostor)


def test_unknown_lab_lists_known_names(empty_registry):
    register(type("Known", (SumLab,), {"name": "test_known"}))
    with pytest.raises(KeyError, match=r"known labs: .*test_known") as raised:
        get_lab("nope")
    [line] = raised.value._render_traceback_()
    assert line.startswith("\x1b[31mUnknownLabError\x1b[0m: no lab named 'nope'; known labs: "), "no KeyError quotes"


def test_lab_without_name_cannot_register():
    with pytest.raises(ValueError, match="non-empty `name`"):
        register(type("Nameless", (Lab,), {}))


def test_lab_without_variables_or_with_a_stray_declaration_cannot_register(empty_registry):
    with pytest.raises(ValueError, match="takes no variables"):
        register(type("Empty", (Lab,), {"name": "test_empty"}))

    class Stray(SumLab):
        name = "test_stray"
        total = Equals(expected=lambda: 10, wrong="")

    with pytest.raises(ValueError, match="`total`, which its `check_answer` does not take"):
        register(Stray)


def test_get_lab_imports_the_lesson_module_named_by_the_prefix(empty_registry):
    assert type(get_lab("04_png")).__module__ == "helpers.labs.lesson04"
    assert sorted(labs.LABS) == ["04_png"]


def test_every_lesson_module_holds_only_labs_named_after_it():
    """``get_lab`` finds a lab through its name's prefix: ``"04_png"`` must live in ``lesson04``."""
    modules = lesson_modules()
    assert modules == [f"helpers.labs.lesson{n:02d}" for n in range(1, 8)]
    for module_name in modules:
        module = importlib.import_module(module_name)
        lesson = module_name.removeprefix("helpers.labs.lesson")
        names = [
            value.name
            for value in vars(module).values()
            if isinstance(value, type) and issubclass(value, Lab) and value.__module__ == module_name
        ]
        assert names and all(name.startswith(f"{lesson}_") for name in names), (module_name, names)


# --------------------------------------------------------------------------- declared variables


class DeclaredTotalLab(Lab):
    """The same exercise, declared: the learner passes the total itself."""

    name = "test_declared_total"
    total = Equals(
        expected=lambda: sum(NUMBERS),
        kind=WHOLE_NUMBER,
        mistakes=(
            Mistake(
                when=lambda found, expected: found == len(NUMBERS),
                message="`{name}` is {value}: that counts the numbers.",
            ),
        ),
        wrong="`{name}` is {value}; add the numbers up.",
    )


def test_declared_variables_are_what_check_takes():
    lab = DeclaredTotalLab()
    assert lab.variables() == ("total",)
    assert lab.evaluate(total=10) == Outcome(CORRECT, Lab.correct_message)
    assert lab.evaluate(total=...).status == NOT_ATTEMPTED
    assert lab.evaluate(sum=10).message == "call `check(total=...)`; got `check(sum=...)`."


def test_declared_value_says_what_is_wrong_not_the_answer():
    lab = DeclaredTotalLab()
    assert lab.evaluate(total=4).message == "`total` is 4: that counts the numbers."
    assert lab.evaluate(total=9).message == "`total` is 9; add the numbers up."
    assert lab.evaluate(total="10").message == "`total` should be a whole number, not a str."
    assert lab.evaluate(total=True).status == INCORRECT


def test_check_answer_gets_what_the_shapes_read_and_their_summary_starts_the_message():
    class Doubled(Expect):
        def check(self, name, value):
            return value * 2

        def summary(self, value):
            return f"Read {value}."

    seen = []

    class DoublingLab(Lab):
        name = "test_doubling"
        x = Doubled()

        def check_answer(self, x, y):
            seen.append((x, y))

    outcome = DoublingLab().evaluate(x=3, y=3)
    assert seen == [(6, 3)]
    assert outcome == Outcome(CORRECT, f"Read 6. {Lab.correct_message}")


# --------------------------------------------------------------------------- in a real kernel


def test_check_displays_once_in_a_notebook(tmp_path):
    """``lab.check(...)`` as a cell's last line shows one outcome, not two."""
    from nbclient import NotebookClient

    setup = f"""
import sys
sys.path.insert(0, {str(REPO_ROOT)!r})
from helpers.labs.framework import Lab

class SumLab(Lab):
    name = "kernel_sum"
    def check_answer(self, total):
        if total != 10:
            self.incorrect(f"got {{total}}")

lab = SumLab()
"""
    nb = nbformat.v4.new_notebook()
    nb.cells = [
        nbformat.v4.new_code_cell(setup),
        nbformat.v4.new_code_cell(
            "outcome = lab.check(total=...)\nlab.check(total=10)"
        ),
        nbformat.v4.new_code_cell("outcome"),
        nbformat.v4.new_code_cell("lab.hint()"),
    ]
    NotebookClient(
        nb,
        timeout=60,
        kernel_name=KERNELSPEC["name"],
        resources={"metadata": {"path": str(tmp_path)}},
    ).execute()

    outputs = nb.cells[1].outputs
    assert [output.output_type for output in outputs] == [
        "display_data",
        "display_data",
    ]
    assert "Not attempted" in outputs[0].data["text/plain"]
    assert "Correct" in outputs[1].data["text/plain"]
    assert "#2e7d32" in outputs[1].data["text/html"]

    redisplayed = nb.cells[2].outputs
    assert [output.output_type for output in redisplayed] == ["display_data"]
    assert "Not attempted" in redisplayed[0].data["text/plain"]

    assert "No hints" in nb.cells[3].outputs[0].data["text/markdown"]
