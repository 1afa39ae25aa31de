"""``lab.solution()`` shows the lab's cells of its solution notebook (:mod:`helpers.labs.solutions`).

For every lab the shown code is compared with the notebook's cells, read here
independently: the code cells with solution markers between the previous
lab's check and this one's, marker lines dropped and ``# SOLUTION`` comments cut.
A lab whose cells cannot be found fails here, not in front of a learner.
"""

from __future__ import annotations

import importlib
import re
from pathlib import Path

import nbformat
import pytest

from helpers.labs import solutions
from helpers.labs.framework import LABS, Lab, get_lab, lesson_modules
from helpers.labs.solutions import SolutionNotFound, lesson_notebook, solution_cells

REPO_ROOT = Path(__file__).resolve().parents[1]
MARKER_LINE = re.compile(r"^\s*#\s*(BEGIN SOLUTION|END SOLUTION|STUB:.*)$")
SOLUTION_COMMENT = re.compile(r"\s*#\s*SOLUTION\s*$")


def all_lab_names() -> list[str]:
    for module in lesson_modules():
        importlib.import_module(module)
    return sorted(name for name in LABS if name[:2].isdigit())


def expected_cells(lab_name: str) -> list[str]:
    """The lab's solution cells, found by walking back from its check cell."""
    (path,) = sorted((REPO_ROOT / "solutions").glob(f"{lab_name[:2]}_*.ipynb"))
    cells = [
        cell.source
        for cell in nbformat.read(path, as_version=4).cells
        if cell.cell_type == "code" and not cell.source.startswith("# HIDDEN")
    ]
    check = next(i for i, source in enumerate(cells) if f'get_lab("{lab_name}")' in source)
    found = []
    for source in reversed(cells[:check]):
        if "get_lab(" in source:
            break
        if "SOLUTION" in source:
            lines = [SOLUTION_COMMENT.sub("", line) for line in source.split("\n") if not MARKER_LINE.match(line)]
            found.insert(0, "\n".join(lines).strip("\n"))
    return found


def test_every_lesson_has_labs():
    assert [name[:2] for name in all_lab_names()] == ["01", "01", "02", "03", "04", "05", "06", "07"]


@pytest.mark.parametrize("lab_name", all_lab_names())
def test_solution_shows_the_labs_cells_of_the_solution_notebook(lab_name, capsys):
    expected = expected_cells(lab_name)
    assert expected, f"no solution cell before get_lab({lab_name!r}) in its solution notebook"
    assert solution_cells(lab_name) == expected
    get_lab(lab_name).solution()
    shown = capsys.readouterr().out
    assert shown == "Solution:\n" + "\n\n".join(expected) + "\n"
    assert "SOLUTION" not in shown and "# STUB" not in shown
    for code in expected:
        compile(code, lab_name, "exec")


# --------------------------------------------------------------------------- a notebook written here


def notebook(folder: Path, name: str, *sources: str) -> Path:
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_markdown_cell("## The lab")] + [nbformat.v4.new_code_cell(s) for s in sources]
    path = folder / name
    nbformat.write(nb, path)
    return path


class SumLab(Lab):
    name = "99_sum"

    def check_answer(self, total_of):
        pass


SUM_SOLUTION = """def total_of(numbers):
    # BEGIN SOLUTION
    return sum(numbers)
    # END SOLUTION"""
SUM_CHECK = 'lab = get_lab("99_sum")\nlab.check(total_of=total_of)\n# lab.solution()'


@pytest.fixture
def folder(tmp_path, monkeypatch):
    monkeypatch.setattr(solutions, "SOLUTIONS", tmp_path)
    return tmp_path


def test_solution_shows_the_code_without_markers(folder, capsys):
    notebook(folder, "99_sums.ipynb", "numbers = [1, 2, 3]", SUM_SOLUTION, SUM_CHECK)
    SumLab().solution()
    assert capsys.readouterr().out == "Solution:\ndef total_of(numbers):\n    return sum(numbers)\n"


def test_cells_after_the_previous_lab_and_solution_lines_count(folder):
    notebook(
        folder,
        "99_sums.ipynb",
        "first = 1  # SOLUTION",
        'get_lab("99_first").check(first=first)',
        "# HIDDEN\nassert first == 1  # SOLUTION",
        "# BEGIN SOLUTION\n# STUB: total_of = ...\ntotal_of = sum\n# END SOLUTION",
        "print(total_of([1]))",
        "shown = total_of([2])  # SOLUTION\nshown",
        SUM_CHECK,
    )
    assert solution_cells("99_sum") == ["total_of = sum", "shown = total_of([2])\nshown"]
    assert solution_cells("99_first") == ["first = 1"]


@pytest.mark.parametrize(
    ("notebooks", "words"),
    [
        ((), "no notebook named 99_*.ipynb"),
        ((("99_sums.ipynb", SUM_SOLUTION),), "no cell that calls get_lab('99_sum')"),
        ((("99_sums.ipynb", "total_of = sum", SUM_CHECK),), "no cell with solution markers"),
        ((("99_sums.ipynb", SUM_SOLUTION, SUM_CHECK), ("99_copy.ipynb", SUM_SOLUTION, SUM_CHECK)), "2 notebooks"),
    ],
)
def test_a_solution_that_cannot_be_found_is_said_plainly(folder, capsys, notebooks, words):
    for name, *sources in notebooks:
        notebook(folder, name, *sources)
    with pytest.raises(SolutionNotFound, match=re.escape(words)):
        solution_cells("99_sum")
    SumLab().solution()
    shown = capsys.readouterr().out
    assert shown.startswith("No solution to show: ") and words in shown


def test_the_lesson_is_the_labs_prefix():
    assert lesson_notebook("04_png").name == "04_join.ipynb"
