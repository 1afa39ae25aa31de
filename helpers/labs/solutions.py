"""Where ``lab.solution()`` finds its code: the lab's marked cells in ``solutions/NN_*.ipynb``.

The solution notebook is the single source of every answer (the student copy
is generated from it), so the solution a lab shows is read from there instead of
being typed a second time. A lab's solution cells are the code cells holding
solution markers that come after the previous lab's check (or the top of the
notebook) and before the cell that calls ``get_lab("<name>")``; the lesson is
the lab name's prefix (``"04_png"`` is in ``solutions/04_*.ipynb``). They are
shown as the learner would type them: marker lines dropped, ``# SOLUTION``
comments cut. The markers are those of :mod:`helpers.commands.notebooks`,
whose patterns are reused here so that the two can never disagree.
"""

from __future__ import annotations

import re
from pathlib import Path

from helpers.commands.notebooks import BEGIN_MARK, END_MARK, SOLUTION_LINE_MARK, STUB_MARK, is_hidden_cell
from helpers.runtime.settings import REPO_ROOT

#: The solution notebooks; the repository ships them next to the student copies.
SOLUTIONS = REPO_ROOT / "solutions"

_GET_LAB = re.compile(r"""get_lab\(\s*(["'])(?P<name>[^"']+)\1\s*\)""")


class SolutionNotFound(LookupError):
    """The lab's solution cells are not where the lab's name says they are."""


def lesson_notebook(lab_name: str, folder: Path | None = None) -> Path:
    """The solution notebook of the lesson named by the lab's prefix: ``"04_png"`` -> ``04_*.ipynb``."""
    folder = Path(folder or SOLUTIONS)
    lesson = lab_name.split("_", 1)[0]
    found = sorted(folder.glob(f"{lesson}_*.ipynb"))
    if len(found) != 1:
        what = "no notebook" if not found else f"{len(found)} notebooks"
        raise SolutionNotFound(f"{folder} holds {what} named {lesson}_*.ipynb for lab {lab_name!r}")
    return found[0]


def solution_cells(lab_name: str, folder: Path | None = None) -> list[str]:
    """The code of the lab's solution cells, markers removed, in notebook order."""
    import nbformat

    path = lesson_notebook(lab_name, folder)
    cells = [cell for cell in nbformat.read(path, as_version=4).cells
             if cell.cell_type == "code" and not is_hidden_cell(cell)]
    checks = [index for index, cell in enumerate(cells) if _GET_LAB.search(cell.source)]
    mine = [index for index in checks if lab_name in _lab_names(cells[index].source)]
    if not mine:
        raise SolutionNotFound(f"{path.name} has no cell that calls get_lab({lab_name!r})")
    start = max((index for index in checks if index < mine[0]), default=-1) + 1
    code = [without_markers(cell.source) for cell in cells[start : mine[0]] if _is_marked(cell.source)]
    if not code:
        raise SolutionNotFound(
            f"{path.name} has no cell with solution markers before the one that calls get_lab({lab_name!r})"
        )
    return code


def _lab_names(source: str) -> set[str]:
    return {match["name"] for match in _GET_LAB.finditer(source)}


def _is_marked(source: str) -> bool:
    """True when a cell holds solution code: a ``# BEGIN SOLUTION`` block or a ``# SOLUTION`` line."""
    return any(BEGIN_MARK.match(line) or SOLUTION_LINE_MARK.match(line) for line in source.split("\n"))


def without_markers(source: str) -> str:
    """The solution code of a cell as a learner would type it: no marker lines, no ``# SOLUTION`` comments."""
    lines = []
    for line in source.split("\n"):
        if BEGIN_MARK.match(line) or END_MARK.match(line) or STUB_MARK.match(line):
            continue
        solution = SOLUTION_LINE_MARK.match(line)
        lines.append(solution["code"] if solution else line)
    return "\n".join(lines).strip("\n")
