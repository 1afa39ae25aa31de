"""The lab-check framework, exercised with a tiny example lab three ways (and then some)."""

from __future__ import annotations

from pathlib import Path

import nbformat
import pytest

from helpers.labs import framework as labs
from helpers.labs.framework import (
    CORRECT,
    INCORRECT,
    NOT_ATTEMPTED,
    Incorrect,
    Lab,
    Outcome,
    get_lab,
    is_placeholder,
    register,
)

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
    solution_text = """
        def total_of(numbers):
            return sum(numbers)
    """

    def check_answer(self, total_of):
        result = total_of(list(NUMBERS))  # learner code: may raise
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


# --------------------------------------------------------------------------- check(), hints, solution


def test_check_prints_and_returns_the_outcome_outside_ipython(lab, capsys):
    outcome = lab.check(total_of=wrong)
    assert outcome.status == INCORRECT
    assert capsys.readouterr().out.strip() == str(outcome)
    assert str(outcome).startswith("\u2718 Incorrect: ")


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


def test_solution_shows_dedented_code(lab, capsys):
    lab.solution()
    assert (
        capsys.readouterr().out
        == "Solution:\ndef total_of(numbers):\n    return sum(numbers)\n"
    )


def test_lab_without_hints_says_so(capsys):
    class Bare(Lab):
        name = "test_bare"

    Bare().hint()
    assert "No hints" in capsys.readouterr().out


# --------------------------------------------------------------------------- outcome display


@pytest.mark.parametrize(
    ("status", "colour"),
    [(CORRECT, "#2e7d32"), (INCORRECT, "#c62828"), (NOT_ATTEMPTED, "#1565c0")],
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


def test_register_and_get_lab(monkeypatch):
    monkeypatch.setattr(labs, "LABS", {})

    @register
    class Registered(SumLab):
        name = "test_registered"

    assert isinstance(get_lab("test_registered"), Registered)
    register(Registered)  # re-registering the same class (a module reload) is fine

    class Impostor(SumLab):
        name = "test_registered"

    with pytest.raises(ValueError, match="used by both"):
        register(Impostor)


def test_unknown_lab_lists_known_names(monkeypatch):
    monkeypatch.setattr(labs, "LABS", {})
    register(type("Known", (SumLab,), {"name": "test_known"}))
    with pytest.raises(KeyError, match=r"known labs: .*test_known"):
        get_lab("nope")


def test_lab_without_name_cannot_register():
    with pytest.raises(ValueError, match="non-empty `name`"):
        register(type("Nameless", (Lab,), {}))


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
        kernel_name="python3",
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
