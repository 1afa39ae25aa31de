"""Every fenced ```python example in the lessons' markdown runs, or says in its first line why not.

The examples are read from every ``solutions/*.ipynb`` (a new lesson is covered as soon as it exists),
and the student copies in ``notebooks/`` must hold the same ones. An example that is not meant to run
here starts with a comment a reader does not mind, e.g. ``# not run here: needs a GPU and the Hugging
Face hub``; its code must still parse, and its imports must resolve with the installed packages. Every
other example runs in a fresh namespace, with the setup named for it in ``SETUPS`` below (none when it
needs nothing), and the value of its last expression is checked there, as a notebook would show it.
"""

from __future__ import annotations

import ast
import json
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
NOT_RUN = re.compile(r"#\s*not run here\b\s*:?\s*(?P<reason>.*)", re.IGNORECASE)
OPENING = re.compile(r"^(?P<indent>\s*)(?P<fence>`{3,}|~{3,})[ \t]*(?P<info>[^`\n]*)$")
PYTHON = {"python", "py", "python3", "ipython", "ipython3"}


@dataclass(frozen=True)
class Example:
    notebook: str  # the lesson, e.g. "06_parameterization"
    cell: str  # the markdown cell's id
    code: str

    @property
    def first_line(self) -> str:
        return next((line.strip() for line in self.code.splitlines() if line.strip()), "")

    @property
    def marked(self) -> bool:
        return NOT_RUN.fullmatch(self.first_line) is not None

    @property
    def reason(self) -> str:
        match = NOT_RUN.fullmatch(self.first_line)
        return match["reason"].strip() if match else ""

    @property
    def key(self) -> tuple[str, str]:
        """(lesson, first line of code): what ``SETUPS`` names an example by."""
        code = (line.strip() for line in self.code.splitlines())
        return self.notebook, next((line for line in code if line and not line.startswith("#")), "")


def fenced_python(markdown: str) -> list[str]:
    """The code of each fenced block whose info string names Python (CommonMark's fences, ``` or ~~~)."""
    blocks, lines, i = [], markdown.splitlines(), 0
    while i < len(lines):
        opening = OPENING.match(lines[i])
        i += 1
        if not opening:
            continue
        fence, indent = opening["fence"], len(opening["indent"])
        closing = re.compile(rf"^\s*{re.escape(fence[0])}{{{len(fence)},}}\s*$")
        body = []
        while i < len(lines) and not closing.match(lines[i]):
            line = lines[i]
            body.append(line[min(indent, len(line) - len(line.lstrip(" "))):])
            i += 1
        i += 1  # the closing fence (or the end of the cell, which closes it too)
        info = opening["info"].split()
        if info and info[0].lower() in PYTHON:
            blocks.append("\n".join(body) + "\n")
    return blocks


def examples(folder: str) -> list[Example]:
    found = []
    for path in sorted((REPO / folder).glob("*.ipynb")):
        for cell in json.loads(path.read_text())["cells"]:
            if cell["cell_type"] == "markdown":
                source = "".join(cell["source"])
                found += [Example(path.stem, cell.get("id", "?"), code) for code in fenced_python(source)]
    return found


# ---------------------------------------------------------------- what each runnable example needs


@dataclass(frozen=True)
class Setup:
    """Names an example uses without defining them, and what its last expression's value must be."""

    prepare: Callable[[dict], None]
    check: Callable[[object], None] = lambda value: None
    needs_ray: bool = False  # runs on the workshop's local Ray (the session fixture): marked slow


def _constructor_kwargs_stage(namespace: dict) -> None:
    """``ds``: six rows on the local Ray; ``MyStage``: tags each row with the threshold its actor was built with."""
    import numpy as np
    import ray

    class MyStage:
        def __init__(self, threshold):
            self.threshold = threshold

        def __call__(self, batch):
            batch["threshold"] = np.full(len(batch["id"]), self.threshold)
            return batch

    namespace.update(ray=ray, ds=ray.data.range(6), MyStage=MyStage)


def _every_actor_got_the_threshold(dataset) -> None:
    rows = dataset.take_all()
    assert sorted(row["id"] for row in rows) == list(range(6))
    assert {row["threshold"] for row in rows} == {0.5}


SETUPS: dict[tuple[str, str], Setup] = {
    (
        "06_parameterization",
        'ds.map_batches(MyStage, fn_constructor_kwargs={"threshold": 0.5}, compute=ray.data.ActorPoolStrategy(size=2))',
    ): Setup(_constructor_kwargs_stage, _every_actor_got_the_threshold, needs_ray=True),
}

SOLUTIONS = examples("solutions")


def _param(example: Example):
    setup = SETUPS.get(example.key)
    marks = [pytest.mark.slow] if setup is not None and setup.needs_ray and not example.marked else []
    return pytest.param(example, id=f"{example.notebook}-{example.cell}-{example.first_line[:30]}", marks=marks)


def test_fences_are_read_as_commonmark_writes_them():
    markdown = ("1. a step\n\n   ```python\n   x = 1\n   ```\n\n~~~py\ny = 2\n~~~\n\n"
                "```text\nnot python\n```\n```python\nz = 3")  # unclosed: it ends with the cell
    assert fenced_python(markdown) == ["x = 1\n", "y = 2\n", "z = 3\n"]


def test_a_not_run_marker_needs_its_reason():
    marked = Example("00_welcome", "c", "# not run here: needs a GPU\nimport torch\n")
    assert marked.marked and marked.reason == "needs a GPU" and marked.key == ("00_welcome", "import torch")
    assert Example("x", "c", "# not run here\nx = ...\n").marked
    assert not Example("x", "c", "# not run here\nx = ...\n").reason
    assert not Example("x", "c", "x = 1  # not run here: nothing\n").marked


def test_the_lessons_hold_fenced_examples():
    assert {example.notebook for example in SOLUTIONS} >= {"00_welcome", "06_parameterization"}


def test_the_student_notebooks_hold_the_same_examples():
    students = examples("notebooks")
    assert [(e.notebook, e.code) for e in students] == [(e.notebook, e.code) for e in SOLUTIONS]


def test_every_setup_belongs_to_an_example():
    assert set(SETUPS) <= {example.key for example in SOLUTIONS}, "a setup names an example that is gone"


def _run(statements: list[ast.stmt], namespace: dict, example: Example) -> None:
    module = ast.fix_missing_locations(ast.Module(statements, type_ignores=[]))
    exec(compile(module, f"{example.notebook} cell {example.cell}", "exec"), namespace)  # noqa: S102 - the lesson's example


@pytest.mark.parametrize("example", [_param(e) for e in SOLUTIONS])
def test_fenced_example(example: Example, request):
    tree = ast.parse(example.code, filename=f"{example.notebook} cell {example.cell}")
    if example.marked:
        assert example.reason, f"{example.notebook} cell {example.cell}: say why it is not run ('# not run here: ...')"
        imports = [node for node in tree.body if isinstance(node, ast.Import | ast.ImportFrom)]
        _run(imports, {}, example)  # the names it imports exist
        return
    setup = SETUPS.get(example.key, Setup(prepare=lambda namespace: None))
    if setup.needs_ray:
        request.getfixturevalue("session")
    namespace: dict = {"__name__": "__main__"}
    setup.prepare(namespace)
    *body, last = tree.body
    try:
        _run(body, namespace, example)
        if isinstance(last, ast.Expr):  # shown by a notebook: checked here
            _run([ast.Assign([ast.Name("_shown", ast.Store())], last.value)], namespace, example)
            setup.check(namespace["_shown"])
        else:
            _run([last], namespace, example)
    except Exception as err:
        err.add_note(f"{example.notebook} cell {example.cell}: fix the example, give it a setup in SETUPS, "
                     "or start it with '# not run here: <why>'")
        raise
