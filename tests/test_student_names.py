"""Every name a student notebook, its labs' hints and their solutions use is imported or defined by then.

A learner runs the student copy top to bottom, then follows a hint or pastes
``lab.solution()`` into the stub cell: a name that only the solution notebook's
removed code imported (``np`` in lesson 03 once) fails there as a ``NameError``
for whoever writes the answer from the hints. So a solution may import only
the workshop's own helpers; packages come from the student notebook's cells.
Names are read from the cells' syntax trees (:mod:`helpers.kernel`), not run.
"""

from __future__ import annotations

import ast
import json
import re
from pathlib import Path

import pytest

from helpers.kernel import BUILTIN_NAMES, names_bound, names_used
from helpers.labs.framework import get_lab
from helpers.labs.solutions import solution_cells
from helpers.runtime.settings import REPO_ROOT

STUDENT = sorted((REPO_ROOT / "notebooks").glob("*.ipynb"))
_GET_LAB = re.compile(r"""get_lab\(\s*["'](?P<name>[^"']+)["']\s*\)""")
_FILE_NAME = re.compile(r"[\w-]+\.(csv|parquet|png|json|ipynb|sh)")


def code_cells(path: Path) -> list[str]:
    return ["".join(cell["source"]) for cell in json.loads(path.read_text())["cells"] if cell["cell_type"] == "code"]


def package_imports(source: str) -> set[str]:
    """The names ``source`` binds by importing a package other than the workshop's ``helpers``."""
    names = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            names |= {(a.asname or a.name).split(".")[0] for a in node.names if a.name.split(".")[0] != "helpers"}
        elif isinstance(node, ast.ImportFrom) and (node.module or "").split(".")[0] != "helpers":
            names |= {a.asname or a.name for a in node.names}
    return names


def hint_roots(hint: str) -> set[str]:
    """The names a hint's code spans reach attributes through (``np`` in `np.array(x)`); not its placeholders."""
    roots = set()
    for span in re.findall(r"`([^`]+)`", hint):
        if _FILE_NAME.fullmatch(span):
            continue
        try:
            tree = ast.parse(span)
        except SyntaxError:
            continue  # prose in backticks
        for node in ast.walk(tree):
            if isinstance(node, ast.Attribute):
                while isinstance(node, ast.Attribute):
                    node = node.value
                if isinstance(node, ast.Name):
                    roots.add(node.id)
    return roots


@pytest.mark.parametrize("path", STUDENT, ids=lambda p: p.name)
def test_student_notebook_names_are_defined_where_they_are_used(path):
    defined = set(BUILTIN_NAMES)
    problems = []
    for number, source in enumerate(code_cells(path), start=1):
        missing = names_used(source) - names_bound(source) - defined
        problems += [f"code cell {number} uses {name}" for name in sorted(missing)]
        defined |= names_bound(source, inner=False)
        for lab_name in _GET_LAB.findall(source):
            lab = get_lab(lab_name)
            for step, hint in enumerate(lab.hints, start=1):
                missing = hint_roots(hint) - defined - {"self"}  # `self.x` speaks of the learner's own class
                problems += [f"lab {lab_name} hint {step} uses {name}" for name in sorted(missing)]
            solution = "\n\n".join(solution_cells(lab_name))
            missing = names_used(solution) - (names_bound(solution) - package_imports(solution)) - defined
            problems += [f"lab {lab_name}'s solution uses {name}" for name in sorted(missing)]
    assert problems == [], f"{path.name}: names never imported or defined before: {problems}"


def test_the_check_finds_a_name_only_a_solution_imports():
    student = ["import ray\n\nsession = 1", "# TODO: your code here\nparquet_path = ...", "x = np.zeros(3)"]
    defined = set(BUILTIN_NAMES)
    for source in student[:2]:
        defined |= names_bound(source, inner=False)
    assert names_used(student[2]) - names_bound(student[2]) - defined == {"np"}
    solution = "import numpy as np\nfrom helpers.models import png_bytes\ny = np.array([png_bytes(i) for i in []])"
    assert names_used(solution) - (names_bound(solution) - package_imports(solution)) - defined == {"np"}
    assert hint_roots("A function can turn it into `np.array(image)`, see `animals.csv`") == {"np"}
